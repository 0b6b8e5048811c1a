//! Cloning the container's init into its namespaces, and the parent's half of
//! the handshake (id maps, cgroup) that must happen before the init goes on.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use nix::sched::CloneFlags;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::init::{self, InitCtx};
use super::namespaces::{write_id_maps, Plan, TimeNs};
use super::sync::{Channel, Msg};
use crate::error::{Error, Result, Stage, SysContext};
use crate::sys::KillOnDrop;

/// clone(2) as fork, with namespace flags; see [`crate::sys::raw_clone`].
fn clone(flags: libc::c_ulong) -> Result<i32> {
    crate::sys::raw_clone(flags)
        .map_err(|e| Error::failed_by(Stage::Create, format!("clone: {e}"), e))
}

/// clone(2) as fork, straight into the container's v2 cgroup directory when one is given
/// and clone3 can place it there; returns the pid and whether it was placed.
fn clone_joined(flags: libc::c_ulong, v2_dir: Option<BorrowedFd>) -> Result<(i32, bool)> {
    if let Some(dir) = v2_dir {
        // Any refusal (a kernel before 5.7, no write access from a user namespace we
        // entered) leaves nothing made: clone as before and let the parent place it.
        if let Ok(pid) = crate::sys::raw_clone_into_cgroup(flags, dir.as_raw_fd()) {
            return Ok((pid, true));
        }
    }
    Ok((clone(flags)?, false))
}

/// Everything the parent needs to finish the init's setup.
pub struct Parent<'a> {
    pub spec: &'a Spec,
    pub cgroup: Option<&'a kos_cgroups::Manager>,
}

/// Start the init process; returns its pid once it has been told to go on.
pub fn spawn(ctx: &InitCtx, child_end: Channel, parent: &Parent, chan: &Channel) -> Result<i32> {
    let timens = if ctx.plan.creates(LinuxNamespaceType::Time) {
        Some(TimeNs::prepare(ctx.spec)?)
    } else {
        None
    };
    let result = if ctx.plan.join.is_empty() {
        direct(ctx, &child_end, parent, chan)
    } else {
        via_intermediate(ctx, &child_end, parent, chan)
    };
    drop(child_end);
    if let Some(t) = timens {
        t.restore()?;
    }
    result
}

/// Flags that must not be passed to clone: the cgroup namespace is entered after
/// the cgroup is joined, the time namespace was prepared by the parent.
fn clone_flags(plan: &Plan) -> libc::c_ulong {
    let skip = CloneFlags::CLONE_NEWCGROUP | CloneFlags::from_bits_retain(libc::CLONE_NEWTIME);
    (plan.new - skip).bits() as libc::c_ulong
}

fn direct(ctx: &InitCtx, child_end: &Channel, parent: &Parent, chan: &Channel) -> Result<i32> {
    let v2_dir = ctx.cgroup_join.and_then(|j| j.v2_dir());
    let has_v2 = v2_dir.is_some();
    let (pid, in_v2) = clone_joined(clone_flags(ctx.plan), v2_dir)?;
    let write_maps = ctx.plan.creates(LinuxNamespaceType::User);
    let joined = Joined::by(ctx, in_v2);
    // Both sides know what the parent has left to do once clone returns.
    let wait_go = write_maps || parent_has_work(ctx, joined, has_v2);
    if pid == 0 {
        init::run(ctx, child_end, wait_go);
    }
    let guard = KillOnDrop::new(pid);
    if wait_go {
        finish_parent(pid, write_maps, joined, parent, chan)?;
    }
    guard.disarm();
    Ok(pid)
}

fn via_intermediate(
    ctx: &InitCtx,
    child_end: &Channel,
    parent: &Parent,
    chan: &Channel,
) -> Result<i32> {
    let mid = clone(0)?;
    if mid == 0 {
        crate::sys::close_fds(ctx.close_fds);
        let r = intermediate(ctx, child_end);
        if let Err(e) = r {
            let _ = child_end.send(&Msg::Error(e.to_remote()));
        }
        // SAFETY: leave without running the parent's exit handlers.
        unsafe { libc::_exit(0) };
    }
    // Until it has told us the init's pid, an error here leaves the intermediate
    // waiting for us: it is killed before it is reaped.
    let reap = KillOnDrop::new(mid);
    let (pid, in_v2) = loop {
        match chan.recv()? {
            Some(Msg::MapUsers) => {
                write_id_maps(mid, parent.spec)?;
                chan.send(&Msg::Mapped)?;
            }
            Some(Msg::InitPid { pid, in_v2_cgroup }) => break (pid, in_v2_cgroup),
            Some(Msg::Error(e)) => return Err(Error::Remote(e)),
            Some(m) => {
                return Err(Error::failed(
                    Stage::Create,
                    format!("init channel: unexpected {m:?}"),
                ))
            }
            None => {
                return Err(Error::failed(
                    Stage::Create,
                    "container setup process exited early".into(),
                ))
            }
        }
    };
    reap.disarm();
    let _ = waitpid(Pid::from_raw(mid), None);
    let guard = KillOnDrop::new(pid);
    // Always a go-ahead here: the init shares the intermediate's end of the channel, and
    // only waiting for it keeps the init's messages behind the intermediate's InitPid.
    finish_parent(pid, false, Joined::by(ctx, in_v2), parent, chan)?;
    guard.disarm();
    Ok(pid)
}

/// In the intermediate: join the given namespaces, create the rest, then clone
/// the init as a sibling (CLONE_PARENT) so it is kosrun's own child.
fn intermediate(ctx: &InitCtx, chan: &Channel) -> Result<()> {
    ctx.plan.enter_joined()?;
    if ctx.plan.creates(LinuxNamespaceType::User) {
        nix::sched::unshare(CloneFlags::CLONE_NEWUSER).ctx(|| "unshare user namespace".into())?;
        chan.send(&Msg::MapUsers)?;
        chan.expect("id mappings", |m| matches!(m, Msg::Mapped))?;
    }
    let rest = clone_flags(ctx.plan) & !(libc::CLONE_NEWUSER as libc::c_ulong);
    nix::sched::unshare(CloneFlags::from_bits_retain(rest as libc::c_int))
        .ctx(|| "unshare namespaces".into())?;
    let v2_dir = ctx.cgroup_join.and_then(|j| j.v2_dir());
    let (pid, in_v2_cgroup) = clone_joined(libc::CLONE_PARENT as libc::c_ulong, v2_dir)?;
    if pid == 0 {
        init::run(ctx, chan, true);
    }
    chan.send(&Msg::InitPid { pid, in_v2_cgroup })
}

/// How much of the cgroup placement the init has done or will do by itself.
#[derive(Clone, Copy)]
enum Joined {
    /// Nothing: the parent moves it in every hierarchy.
    No,
    /// The init joins the v1 hierarchies itself; `in_v2` if clone3 already put it in v2.
    Itself { in_v2: bool },
}

impl Joined {
    fn by(ctx: &InitCtx, in_v2: bool) -> Joined {
        match ctx.cgroup_join {
            Some(_) => Joined::Itself { in_v2 },
            None => Joined::No,
        }
    }

    /// Whether the parent still has to move the init into a cgroup directory (`has_v2`:
    /// the container has a v2 one).
    fn parent_places(self, has_v2: bool) -> bool {
        match self {
            Joined::No => true,
            Joined::Itself { in_v2 } => has_v2 && !in_v2,
        }
    }
}

fn oom_score_adj(spec: &Spec) -> Option<i32> {
    spec.process().as_ref().and_then(|p| p.oom_score_adj())
}

/// Whether, the id maps aside, the parent has work left once the init is cloned: a
/// cgroup placement clone3 could not do, or its oom_score_adj. Both sides of the clone
/// decide alike, so the init waits for "go" exactly when one will come.
fn parent_has_work(ctx: &InitCtx, joined: Joined, has_v2: bool) -> bool {
    joined.parent_places(has_v2) || oom_score_adj(ctx.spec).is_some()
}

fn finish_parent(
    pid: i32,
    write_maps: bool,
    joined: Joined,
    parent: &Parent,
    chan: &Channel,
) -> Result<()> {
    if write_maps {
        write_id_maps(pid, parent.spec)?;
    }
    if let Some(cg) = parent.cgroup {
        match joined {
            Joined::No => cg.add_process(pid)?,
            Joined::Itself { in_v2: false } => cg.add_process_v2(pid)?,
            Joined::Itself { in_v2: true } => {}
        }
    }
    if let Some(adj) = oom_score_adj(parent.spec) {
        write_oom_score_adj(pid, adj)?;
    }
    chan.send(&Msg::Go)
}

/// Written from the runtime's side: the init is non-dumpable, so inside a user
/// namespace its own /proc files belong to the host's root, not to it.
pub fn write_oom_score_adj(pid: i32, adj: i32) -> Result<()> {
    let path = format!("/proc/{pid}/oom_score_adj");
    std::fs::write(&path, adj.to_string()).map_err(|e| {
        let lowering = std::fs::read_to_string(&path)
            .ok()
            .and_then(|s| s.trim().parse::<i32>().ok())
            .is_some_and(|cur| adj < cur);
        if lowering && matches!(e.raw_os_error(), Some(libc::EACCES) | Some(libc::EPERM)) {
            Error::failed(Stage::Create, format!(
                "process.oomScoreAdj {adj}: lowering the OOM score needs CAP_SYS_RESOURCE, which kosrun does not have here ({e})"
            ))
        } else {
            Error::failed(Stage::Create, format!("process.oomScoreAdj {adj}: {e}"))
        }
    })
}

fn seqpacket_socket() -> Result<OwnedFd> {
    use nix::sys::socket::{socket, AddressFamily, SockFlag, SockType};
    socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .ctx(|| "start socket".into())
}

/// Bind the listening socket `start` connects to; the init waits on it.
pub fn start_listener(dir: &Path) -> Result<OwnedFd> {
    use nix::sys::socket::{bind, listen, Backlog};
    let sock = seqpacket_socket()?;
    with_socket_addr(dir, crate::store::START_SOCKET, |addr| {
        bind(sock.as_raw_fd(), addr)
    })
    .ctx(|| format!("bind {}", dir.join(crate::store::START_SOCKET).display()))?;
    listen(&sock, Backlog::new(1).map_err(|e| Error::sys("listen", e))?)
        .ctx(|| "listen on the start socket".into())?;
    Ok(sock)
}

/// Connect to a created container's start socket (or the name older kosrun gave it);
/// returns the connection and the socket's name.
pub fn start_connect(dir: &Path) -> Result<(OwnedFd, &'static str)> {
    let sock = seqpacket_socket()?;
    let connect = |name| {
        with_socket_addr(dir, name, |addr| {
            nix::sys::socket::connect(sock.as_raw_fd(), addr)
        })
    };
    let name = match connect(crate::store::START_SOCKET) {
        Err(nix::errno::Errno::ENOENT) => {
            connect(crate::store::OLD_START_SOCKET)
                .ctx(|| "connect to the container's start socket".into())?;
            crate::store::OLD_START_SOCKET
        }
        r => {
            r.ctx(|| "connect to the container's start socket".into())?;
            crate::store::START_SOCKET
        }
    };
    Ok((sock, name))
}

/// sun_path holds 108 bytes; long --root paths and ids go through a short
/// /proc/self/fd alias of the state directory, open only for the call.
fn with_socket_addr(
    dir: &Path,
    name: &str,
    f: impl FnOnce(&nix::sys::socket::UnixAddr) -> nix::Result<()>,
) -> nix::Result<()> {
    use nix::sys::socket::UnixAddr;
    let full = dir.join(name);
    if full.as_os_str().len() < 100 {
        return f(&UnixAddr::new(&full)?);
    }
    let d = nix::fcntl::open(
        dir,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    let p = kos_security::path::proc_fd_path(&d).join(name);
    f(&UnixAddr::new(&p)?)
}
