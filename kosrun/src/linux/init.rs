//! The container's init, from clone to the user's program. Steps follow the
//! runtime spec's create and start operations in order.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::unistd::{setresgid, setresuid, Gid, Uid};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::confine::Confinement;
use super::namespaces::Plan;
use super::process::{exec, launch, signals};
use super::rootfs::{self, mount::MountCtx};
use super::sync::{Channel, Msg};
use super::{console, sysctl};
use crate::error::{Error, Result, Stage, SysContext};
use crate::hooks;

pub struct InitCtx<'a> {
    pub spec: &'a Spec,
    pub rootfs: &'a Path,
    pub bundle: &'a Path,
    pub plan: &'a Plan,
    /// How `start` reaches the init once it is ready.
    pub start: StartBy<'a>,
    pub console_socket: Option<&'a OwnedFd>,
    pub cgroup_sources: &'a [kos_cgroups::CgroupMountSource],
    /// The caller's descriptors the program gets (--preserve-fds and LISTEN_FDS).
    pub preserved: &'a [i32],
    /// How many of the preserved descriptors came from systemd socket activation.
    pub listen_fds: u32,
    pub no_pivot: bool,
    pub new_keyring: bool,
    pub id: &'a str,
    /// Descriptors of kosrun's own the init must not keep (the state lock, kosrun's
    /// end of the channel).
    pub close_fds: &'a [i32],
    pub confinement: &'a Confinement,
    /// Per spec mount, an idmapped source tree (made by the runtime) to attach.
    pub idmap_trees: &'a [Option<OwnedFd>],
    /// The container's cgroup for the init to join itself (v1 `tasks` files and the v2
    /// directory clone3 used); None when the parent places it.
    pub cgroup_join: Option<&'a kos_cgroups::SelfJoin>,
    /// The v1 hierarchies are made by the parent while the init builds its root:
    /// `cgroup_join` then holds only the v2 directory, and the `tasks` files come in a
    /// [`Msg::JoinCgroups`] that the init waits for when it first needs its cgroup.
    pub v1_later: bool,
}

/// How the ready init waits for `start`.
#[derive(Clone, Copy)]
pub enum StartBy<'a> {
    /// A later `kosrun start` connects to this listening socket in the state directory.
    Socket(&'a OwnedFd),
    /// `run`: the kosrun that made the init starts it over the init channel it holds,
    /// with no socket in the state directory. If that kosrun goes away first, nothing
    /// else could start the init, so it exits.
    Channel,
    /// `run` with nothing to do between create and start: the init goes on to the start
    /// as soon as it has said Ready, and reports on the init channel as for `Channel`.
    AtOnce,
}

/// Runs in the cloned child; never returns. `wait_go`: the parent has work to finish
/// (id maps, cgroup placement, oom_score_adj) before the init may go on, and says
/// [`Msg::Go`] when done; otherwise nothing is waited for (each hand-over between two
/// processes costs a wake-up, up to half a millisecond on an idle virtual CPU).
pub fn run(ctx: &InitCtx, chan: &Channel, wait_go: bool) -> ! {
    // Nothing outside the container may open our /proc/<pid>/exe (the runtime
    // binary) while we are in its namespaces (CVE-2019-5736). execve resets it.
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    crate::sys::close_fds(ctx.close_fds);
    match setup(ctx, chan, wait_go) {
        Ok(ready) => start(ctx, chan, ready),
        Err(e) => {
            let _ = chan.send(&Msg::Error(e.to_remote()));
            // SAFETY: leave without unwinding into the parent's copy of the stack.
            unsafe { libc::_exit(1) }
        }
    }
}

/// Everything `create` does inside the container; returns after `start` connects.
fn setup(ctx: &InitCtx, chan: &Channel, wait_go: bool) -> Result<Ready> {
    if wait_go {
        chan.expect("go-ahead from kosrun", |m| matches!(m, Msg::Go))?;
    }
    let cgroups = CgroupEntry {
        ctx,
        chan,
        done: std::cell::Cell::new(false),
    };
    if !ctx.v1_later {
        cgroups.enter()?;
    }
    let spec = ctx.spec;
    let plan = ctx.plan;
    let in_userns = plan.has(LinuxNamespaceType::User);
    if in_userns {
        // Become root of the user namespace (mapped uid 0), created or joined: the host
        // root we were is unmapped there, and files it creates would fail with EOVERFLOW.
        setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
            .ctx(|| "setgid 0 in user namespace".into())?;
        setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
            .ctx(|| "setuid 0 in user namespace".into())?;
    }
    nix::unistd::setsid().ctx(|| "setsid".into())?;
    if plan.creates(LinuxNamespaceType::Network) {
        super::netlo::loopback_up()?;
    }
    signals::reset();
    if ctx.new_keyring {
        join_session_keyring(ctx.id);
    }
    if plan.creates(LinuxNamespaceType::Uts) {
        if let Some(h) = spec.hostname() {
            nix::unistd::sethostname(h).ctx(|| format!("sethostname {h:?}"))?;
        }
        if let Some(d) = spec.domainname() {
            // SAFETY: pointer and length of a live buffer.
            if unsafe { libc::setdomainname(d.as_ptr().cast(), d.len()) } != 0 {
                return Err(Error::failed(
                    Stage::Create,
                    format!("setdomainname {d:?}: {}", std::io::Error::last_os_error()),
                ));
            }
        }
    }
    let mctx = MountCtx {
        rootfs: ctx.rootfs,
        root: rootfs::mount::RootDir::new(ctx.rootfs),
        bundle: ctx.bundle,
        cgroups: ctx.cgroup_sources,
        cgroup_ns: plan.has(LinuxNamespaceType::Cgroup),
        mount_label: spec
            .linux()
            .as_ref()
            .and_then(|l| l.mount_label().as_deref()),
        idmap_trees: ctx.idmap_trees,
        enter_cgroup: &|| cgroups.enter(),
    };
    if plan.has(LinuxNamespaceType::Mount) {
        rootfs::prepare(&mctx, spec, in_userns)?;
    } else {
        rootfs::prepare_in_host_ns(&mctx, spec, in_userns)?;
    }
    // A config without a cgroup mount: the mounts did not need it, hooks and sysctls may.
    cgroups.enter()?;
    for (k, v) in spec
        .linux()
        .iter()
        .flat_map(|l| l.sysctl().iter().flatten())
    {
        let p = sysctl::path(k);
        std::fs::write(&p, v.as_bytes())
            .map_err(|e| Error::failed_by(Stage::Create, format!("sysctl {k}={v}: {e}"), e))?;
    }

    // prestart and createRuntime hooks run in the runtime namespace: the parent's job.
    // It also sends the state document the init's own hooks get; with no hook at all,
    // neither is needed.
    let state = if hooks::any(spec) {
        chan.send(&Msg::RunHooks)?;
        match chan.expect("hooks done", |m| matches!(m, Msg::HooksDone(_)))? {
            Msg::HooksDone(s) => s,
            _ => unreachable_msg()?,
        }
    } else {
        String::new()
    };
    hooks::run_all(hooks::of(spec), hooks::Kind::CreateContainer, &state)?;

    if plan.has(LinuxNamespaceType::Mount) {
        rootfs::finish(ctx.rootfs, spec, ctx.no_pivot)?;
    } else {
        nix::unistd::chroot(ctx.rootfs).ctx(|| "chroot".into())?;
        nix::unistd::chdir("/").ctx(|| "chdir /".into())?;
    }

    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::invalid_in(Stage::Create, "process", "process is required".into()))?;
    console::setup_terminal(process, ctx.console_socket, true)?;
    let personality = spec.linux().as_ref().and_then(|l| l.personality().as_ref());
    // The cwd is resolved after the root switch, so it can only name a place inside.
    let mut extra_env = Vec::new();
    if ctx.listen_fds > 0 {
        // Socket activation passes through, addressed to the container's own pid.
        extra_env.push(format!("LISTEN_FDS={}", ctx.listen_fds));
        extra_env.push(format!("LISTEN_PID={}", nix::unistd::getpid()));
    }
    // startContainer hooks see the state as `start` leaves it; made now, while nothing
    // can deny the allocations.
    let start_state = if state.is_empty() {
        // No hooks: nothing to make (and parsing "" would fail, at some cost).
        String::new()
    } else {
        started_state(&state)
    };
    let (prepared, listener) = launch::confine(
        launch::Launch {
            process,
            create_cwd: true,
            preserved: ctx.preserved,
            extra_env,
        },
        personality,
        ctx.confinement,
        in_userns,
    )?;
    if let Some(l) = listener {
        chan.send_fd(&Msg::SeccompListener, &l)?;
    }
    chan.send(&Msg::Ready)?;
    Ok(Ready {
        program: prepared,
        start_state,
    })
}

/// The init's entry into its cgroup: the v1 hierarchies joined by itself, then the cgroup
/// namespace made, whose root is the cgroup the init is in at that moment. Done once, at
/// the start of setup or, when the parent makes the v1 hierarchies meanwhile, when the
/// first cgroup mount (or the end of the mounts) needs it.
struct CgroupEntry<'a> {
    ctx: &'a InitCtx<'a>,
    chan: &'a Channel,
    done: std::cell::Cell<bool>,
}

impl CgroupEntry<'_> {
    fn enter(&self) -> Result<()> {
        if self.done.replace(true) {
            return Ok(());
        }
        if self.ctx.v1_later {
            let (msg, fds) = self.chan.recv_with_fds()?;
            let tasks = match msg {
                Some(Msg::JoinCgroups { tasks }) if tasks.len() == fds.len() => tasks,
                Some(Msg::Error(e)) => return Err(Error::Remote(e)),
                Some(m) => {
                    return Err(Error::failed(
                        Stage::Sync,
                        format!("init channel: expected the cgroup's tasks files, got {m:?}"),
                    ))
                }
                None => {
                    return Err(Error::failed(
                        Stage::Sync,
                        "kosrun went away before the cgroup was made".into(),
                    ))
                }
            };
            if let Some(j) = self.ctx.cgroup_join {
                crate::sys::close_fds(&j.raw_fds());
            }
            let join = kos_cgroups::SelfJoin::from_v1_tasks(tasks.into_iter().zip(fds).collect());
            join.join_v1()?;
        } else if let Some(j) = self.ctx.cgroup_join {
            j.join_v1()?;
            crate::sys::close_fds(&j.raw_fds());
        }
        if self.ctx.plan.creates(LinuxNamespaceType::Cgroup) {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWCGROUP)
                .ctx(|| "unshare cgroup namespace".into())?;
        }
        Ok(())
    }
}

/// What the init holds while it waits for `start`.
struct Ready {
    program: exec::Prepared,
    start_state: String,
}

/// The state document of `create` with the status `start` gives it.
fn started_state(state: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(state) {
        Ok(mut v) => {
            v["status"] = serde_json::Value::from("created");
            v.to_string()
        }
        Err(_) => state.to_string(),
    }
}

/// A session keyring of the container's own, so keys never leak between
/// containers. Kernels or user namespaces that refuse keyrings are not an error.
fn join_session_keyring(id: &str) {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    if let Ok(name) = std::ffi::CString::new(format!("_ses.{id}")) {
        // SAFETY: keyctl with a valid name string.
        unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    }
}

fn unreachable_msg<T>() -> Result<T> {
    Err(Error::failed(
        Stage::Create,
        "init channel: unexpected message".into(),
    ))
}

fn accept(listener: &OwnedFd) -> Result<OwnedFd> {
    loop {
        // SAFETY: accept4 on a listening socket we own.
        let fd = unsafe {
            libc::accept4(
                listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if fd >= 0 {
            // SAFETY: fresh descriptor.
            return Ok(unsafe { OwnedFd::from_raw_fd(fd) });
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(Error::failed(Stage::Create, format!("wait for start: {e}")));
        }
    }
}

/// Read the one byte that releases the init; false on EOF or an error.
fn read_go(fd: i32) -> bool {
    let mut go = [0u8; 1];
    loop {
        // SAFETY: read into our buffer.
        let n = unsafe { libc::read(fd, go.as_mut_ptr().cast(), go.len()) };
        if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        return n == 1;
    }
}

/// The start operation: wait for `start`'s byte, run startContainer hooks, exec.
fn start(ctx: &InitCtx, chan: &Channel, ready: Ready) -> ! {
    // The connection (or channel) the byte came on, where a failure is reported.
    let _conn: Option<OwnedFd>;
    let reply_fd = match ctx.start {
        StartBy::Socket(listener) => {
            // A `start` that dies before its byte leaves us waiting for the next one: the
            // container stays created, as its status says.
            let conn = loop {
                let Ok(conn) = accept(listener) else {
                    // SAFETY: leave without unwinding into the parent's copy of the stack.
                    unsafe { libc::_exit(1) }
                };
                if read_go(conn.as_raw_fd()) {
                    break conn;
                }
            };
            let fd = conn.as_raw_fd();
            _conn = Some(conn);
            fd
        }
        StartBy::Channel => {
            if !read_go(chan.raw()) {
                // SAFETY: leave without unwinding into the parent's copy of the stack.
                unsafe { libc::_exit(1) }
            }
            _conn = None;
            chan.raw()
        }
        StartBy::AtOnce => {
            _conn = None;
            chan.raw()
        }
    };
    let fail = |e: Error| -> ! {
        let mut msg = e.to_string();
        // One datagram carries it: keep it well under the socket's buffer.
        if msg.len() > 32 * 1024 {
            let mut cut = 32 * 1024;
            while !msg.is_char_boundary(cut) {
                cut -= 1;
            }
            msg.truncate(cut);
        }
        // SAFETY: writing our own buffer to the connection `start` reads.
        unsafe { libc::write(reply_fd, msg.as_ptr().cast(), msg.len()) };
        unsafe { libc::_exit(127) }
    };
    if let Err(e) = hooks::run_all(
        hooks::of(ctx.spec),
        hooks::Kind::StartContainer,
        &ready.start_state,
    ) {
        fail(e);
    }
    if let Err(e) = ctx.confinement.last() {
        fail(e);
    }
    fail(ready.program.exec())
}
