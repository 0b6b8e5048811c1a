//! `create`: build the container and leave its init waiting before the user's program.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use super::StateDoc;
use crate::config::{load_bundle, Bundle};
use crate::error::{Error, Result, Stage};
use crate::hooks;
use crate::linux::confine::Confinement;
use crate::linux::init::{InitCtx, StartBy};
use crate::linux::namespaces::Plan;
use crate::linux::spawn::{self, Parent};
use crate::linux::sync::{self, Msg};
use crate::store::{process_start_time_unreaped, ContainerDir, Saved, Status};

#[derive(Debug, Clone, Default)]
pub struct CreateOpts {
    pub root: PathBuf,
    pub id: String,
    pub bundle: PathBuf,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    pub listen_fds: u32,
    /// The descriptors from 3 on that were open when kosrun started (see
    /// [`crate::linux::process::fds::open_among`]): of the preserve_fds + listen_fds
    /// range, only these reach the container, never a descriptor of kosrun's own.
    pub inherited_fds: Vec<i32>,
}

/// Undoes a half-made container unless disarmed: init killed, cgroup and state removed.
struct Cleanup {
    dir: Option<ContainerDir>,
    cgroup: Option<kos_cgroups::Manager>,
    pid: Option<i32>,
    poststop: Option<(Option<oci_spec::runtime::Hooks>, String)>,
    /// The rootfs of a container without a mount namespace: its mounts are the host's.
    host_mounts: Option<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            crate::sys::kill_and_reap(pid);
        }
        if let Some(cg) = self.cgroup.take() {
            let _ = cg.remove();
        }
        if let Some(r) = self.host_mounts.take() {
            let _ = crate::linux::rootfs::unmount_host_mounts(&r);
        }
        if let Some(d) = self.dir.take() {
            let _ = d.destroy();
        }
        // Last, as in delete: a poststop hook cannot strand what is already gone.
        if let Some((hooks, state)) = self.poststop.take() {
            hooks::run_all_warn(hooks.as_ref(), hooks::Kind::Poststop, &state);
        }
    }
}

pub struct Created {
    pub pid: i32,
    pub saved: Saved,
    /// The container's cgroup, for a `run` that deletes it in the same process.
    pub cgroup: kos_cgroups::Manager,
    /// For `run`: what starts the init (see [`create_for_run`]).
    pub starter: Option<Starter>,
}

/// What `run` holds between its create and its start: the container's directory, still
/// locked, and kosrun's end of the init channel, which the init waits on.
pub struct Starter {
    pub dir: ContainerDir,
    pub chan: sync::Channel,
    /// The init starts by itself ([`StartMode::AtOnce`]): nothing to send, only its
    /// report to read.
    pub at_once: bool,
}

/// `create`: the init waits on a socket in the state directory for a later `start`.
pub fn create(opts: &CreateOpts) -> Result<Created> {
    create_bundle(opts, &load_bundle(&opts.bundle)?, StartMode::Later)
}

/// How the init of a new container waits for its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// `create`: on a socket in the state directory, for a later `kosrun start`.
    Later,
    /// `run`: on the channel this process holds (no start socket is made), for the start
    /// that follows at once, with the state lock kept.
    Channel,
    /// `run` with nothing to do between create and start (no terminal of kosrun's own to
    /// size, no pid file): the init starts the program right after its setup. Taken on a
    /// v1 or hybrid host, where the v1 cgroup is the init's last message from kosrun (sent
    /// once its pid is recorded); elsewhere this is [`StartMode::Channel`].
    AtOnce,
}

/// `run`'s create (`mode` is [`StartMode::Channel`] or [`StartMode::AtOnce`]).
pub fn create_for_run(opts: &CreateOpts, bundle: &Bundle, mode: StartMode) -> Result<Created> {
    create_bundle(opts, bundle, mode)
}

fn create_bundle(opts: &CreateOpts, bundle: &Bundle, mode: StartMode) -> Result<Created> {
    let for_run = mode != StartMode::Later;
    let spec = &bundle.spec;
    let plan = Plan::from_spec(spec)?;
    let confinement = Confinement::prepare(spec, &bundle.rootfs)?;
    let idmap_trees = crate::linux::rootfs::idmap::prepare_all(spec, &bundle.dir)?;
    let console = match &opts.console_socket {
        Some(p) => Some(OwnedFd::from(UnixStream::connect(p).map_err(|e| {
            Error::failed_by(
                Stage::Create,
                format!("console socket {}: {e}", p.display()),
                e,
            )
        })?)),
        None => None,
    };
    let terminal = spec
        .process()
        .as_ref()
        .and_then(|p| p.terminal())
        .unwrap_or(false);
    if console.is_some() && !terminal {
        return Err(Error::failed(
            Stage::Create,
            "--console-socket was given but process.terminal is false: no pty would be sent".into(),
        ));
    }
    if terminal && console.is_none() {
        return Err(Error::failed(
            Stage::Create,
            "process.terminal is true: a --console-socket is required".into(),
        ));
    }

    let linux = spec.linux().as_ref();
    let cg_path = linux
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.to_string_lossy().into_owned());
    let cgroup = kos_cgroups::Manager::new(cg_path.as_deref(), &opts.id)?;

    // The id is taken with the state already in it, so a create killed at any later
    // moment leaves a container that `state` and `list` show and `delete --force` removes.
    let mut saved = Saved {
        id: opts.id.clone(),
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        pid: 0,
        pid_start: 0,
        created: crate::time::now_rfc3339(),
        owner: String::new(),
        started: false,
        cgroup_path: cgroup.resolved_path().to_string(),
        annotations: spec.annotations().clone().unwrap_or_default(),
        config: bundle.config.clone(),
        create_done: false,
        init_exe: crate::store::file_id(Path::new("/proc/self/exe")),
    };
    let dir = ContainerDir::create(&opts.root, &opts.id, &saved)?;
    let mut cleanup = Cleanup {
        dir: None,
        cgroup: None,
        pid: None,
        poststop: None,
        host_mounts: None,
    };
    let dir_path = dir.path.clone();
    let (parent_end, child_end) = sync::pair()?;
    let close_fds = [dir.lock_fd(), parent_end.raw()];
    cleanup.dir = Some(dir);
    // After the id check, so a duplicate id is reported as such.
    refuse_owned_cgroup(&cgroup)?;

    let mut resources = linux
        .and_then(|l| l.resources().clone())
        .unwrap_or_default();
    let devices = linux.and_then(|l| l.devices().as_deref()).unwrap_or(&[]);
    let mut rules = resources.devices().clone().unwrap_or_default();
    rules.extend(crate::linux::rootfs::devices::default_cgroup_rules(devices));
    resources.set_devices(Some(rules));
    // On a v1 or hybrid host the v1 hierarchies (a directory, limits and device rules in
    // each) are made after the clone, while the init builds its root on the other CPU;
    // the init waits for them at its first cgroup mount. Only the v2 directory clone3
    // places the init in is made first. A joined namespace needs the intermediate
    // process, which keeps the simple order.
    let v1_later = cgroup.splits_v1() && plan.join.is_empty();
    // Starting at once needs a message the init waits for after kosrun has recorded its
    // pid (so that a kosrun killed meanwhile never leaves a program running unrecorded):
    // the v1 cgroup's is one; without it the init waits for run's start byte as before.
    let mode = match mode {
        StartMode::AtOnce if !v1_later => StartMode::Channel,
        m => m,
    };
    let premade = if v1_later {
        kos_cgroups::validate_resources(&resources)?;
        cgroup.create_v2_dir()?
    } else {
        cgroup.create_with_resources(&resources)?;
        Vec::new()
    };
    cleanup.cgroup = Some(cgroup.clone());
    if !plan.has(LinuxNamespaceType::Mount) {
        cleanup.host_mounts = Some(bundle.rootfs.clone());
    }

    let listener = if for_run {
        None
    } else {
        Some(spawn::start_listener(&dir_path)?)
    };
    let last = 3 + opts.preserve_fds.saturating_add(opts.listen_fds) as i64;
    let preserved: Vec<i32> = opts
        .inherited_fds
        .iter()
        .copied()
        .filter(|fd| (*fd as i64) < last)
        .collect();
    let self_join = if v1_later {
        cgroup.open_self_join_v2()?
    } else {
        cgroup.open_self_join()?
    };
    let sources = cgroup.mount_sources();
    let ctx = InitCtx {
        spec,
        rootfs: &bundle.rootfs,
        bundle: &bundle.dir,
        plan: &plan,
        start: match (&listener, mode) {
            (Some(l), _) => StartBy::Socket(l),
            (None, StartMode::AtOnce) => StartBy::AtOnce,
            (None, _) => StartBy::Channel,
        },
        console_socket: console.as_ref(),
        cgroup_sources: &sources,
        preserved: &preserved,
        listen_fds: opts.listen_fds,
        no_pivot: opts.no_pivot,
        new_keyring: !opts.no_new_keyring,
        id: &opts.id,
        close_fds: &close_fds,
        confinement: &confinement,
        idmap_trees: &idmap_trees,
        cgroup_join: Some(&self_join),
        v1_later,
    };
    let parent = Parent {
        spec,
        cgroup: Some(&cgroup),
    };
    let pid = spawn::spawn(&ctx, child_end, &parent, &parent_end)?;
    cleanup.pid = Some(pid);
    drop(listener);

    saved.pid = pid;
    // An init that `run` starts at once may have run its program to the end already:
    // its start time is still there until it is reaped.
    saved.pid_start = process_start_time_unreaped(pid).ok_or_else(|| init_gone(pid, spec))?;
    cleanup
        .dir
        .as_ref()
        .ok_or_else(|| Error::failed(Stage::Create, "state lost".into()))?
        .save(&saved)?;
    // After the pid is recorded: the init goes no further than its cgroup until this
    // comes, so a program it starts at once is never running unrecorded.
    if v1_later {
        make_v1_cgroup(&cgroup, &premade, &resources, &parent_end)?;
    }
    loop {
        let (msg, fd) = match parent_end.recv_with_fd() {
            // A killed init with unread data resets the channel rather than closing it.
            Err(e) if e.errno() == Some(libc::ECONNRESET) => return Err(init_gone(pid, spec)),
            r => r?,
        };
        match msg {
            Some(Msg::SeccompListener) => {
                let (Some(fd), Some(prog)) = (fd, confinement.seccomp.as_ref()) else {
                    return Err(Error::failed(
                        Stage::Create,
                        "seccomp listener message without a descriptor".into(),
                    ));
                };
                let state = oci_state(&saved, "creating")?;
                prog.send_listener(std::os::fd::AsFd::as_fd(&fd), &state)
                    .map_err(|e| {
                        Error::failed_by(Stage::Create, format!("seccomp listener: {e}"), e)
                    })?;
            }
            Some(Msg::RunHooks) => {
                let state = StateDoc::new(&saved, Status::Creating).json();
                cleanup.poststop = Some((spec.hooks().clone(), state.clone()));
                hooks::run_all(hooks::of(spec), hooks::Kind::Prestart, &state)?;
                hooks::run_all(hooks::of(spec), hooks::Kind::CreateRuntime, &state)?;
                parent_end.send(&Msg::HooksDone(state))?;
            }
            Some(Msg::Ready) => break,
            Some(Msg::Error(e)) => return Err(Error::Remote(e)),
            Some(m) => {
                return Err(Error::failed(
                    Stage::Create,
                    format!("init channel: unexpected {m:?}"),
                ))
            }
            None => return Err(init_gone(pid, spec)),
        }
    }
    // It told us it is ready; if it died since, it is a zombie of ours (the init is our
    // child, or our sibling's child by CLONE_PARENT): ask wait, not /proc. An init that
    // starts at once may have run its program to the end by now: its start reports.
    if mode != StartMode::AtOnce && crate::sys::child_exited(pid) {
        return Err(Error::failed(
            Stage::Create,
            "container init exited during setup".into(),
        ));
    }
    saved.create_done = true;
    // `run` records this together with its start, in one write (each is a new inode and
    // a rename); until then its container shows as creating, and once the init has
    // exec'd, as running (the kernel's word, see `status_of`).
    if !for_run {
        let dir = cleanup
            .dir
            .as_ref()
            .ok_or_else(|| Error::failed(Stage::Create, "state lost".into()))?;
        dir.save(&saved)?;
    }
    if let Some(pf) = &opts.pid_file {
        write_pid_file(pf, pid)?;
    }
    // Created: keep everything. The directory lock is released when we return, or
    // for `run` when its start is done.
    cleanup.pid = None;
    cleanup.cgroup = None;
    cleanup.poststop = None;
    cleanup.host_mounts = None;
    let dir = cleanup
        .dir
        .take()
        .ok_or_else(|| Error::failed(Stage::Create, "state lost".into()))?;
    let starter = for_run.then_some(Starter {
        dir,
        chan: parent_end,
        at_once: mode == StartMode::AtOnce,
    });
    Ok(Created {
        pid,
        saved,
        cgroup,
        starter,
    })
}

/// The v1 half of the container's cgroup, made while the init builds its root, and its
/// `tasks` files sent to the init, which joins through them.
fn make_v1_cgroup(
    cgroup: &kos_cgroups::Manager,
    premade: &[PathBuf],
    resources: &oci_spec::runtime::LinuxResources,
    chan: &sync::Channel,
) -> Result<()> {
    cgroup.create_rest_with_resources(premade, resources)?;
    let (paths, files): (Vec<PathBuf>, Vec<OwnedFd>) = cgroup
        .open_self_join_v1()?
        .into_v1_tasks()
        .into_iter()
        .unzip();
    let raw: Vec<i32> = files.iter().map(|f| f.as_raw_fd()).collect();
    match chan.send_fds(&Msg::JoinCgroups { tasks: paths }, &raw) {
        Ok(()) => Ok(()),
        // An init that failed before it needed its cgroup said why before it went.
        Err(e) => match chan.recv() {
            Ok(Some(Msg::Error(r))) => Err(Error::Remote(r)),
            _ => Err(e),
        },
    }
}

/// The runtime spec's state as oci-spec types, for the seccomp agent.
fn oci_state(saved: &Saved, status: &str) -> Result<oci_spec::runtime::State> {
    let doc = StateDoc::new(saved, Status::Creating);
    let mut v = serde_json::to_value(&doc)
        .map_err(|e| Error::failed_by(Stage::Create, e.to_string(), e))?;
    v["status"] = serde_json::Value::from(status);
    serde_json::from_value(v)
        .map_err(|e| Error::failed_by(Stage::Create, format!("state document: {e}"), e))
}

/// Written atomically: whoever watches for it never sees a partial number.
pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io(".", e))?
            .join(path)
    };
    let tmp = abs.with_file_name(format!(
        ".{}.tmp",
        abs.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, pid.to_string()).map_err(|e| Error::io(&tmp, e))?;
    std::fs::rename(&tmp, &abs).map_err(|e| Error::io(&abs, e))
}

/// A cgroup that already holds processes belongs to a live container (or to something
/// else): sharing it would let one container's delete kill the other (runc refuses too).
fn refuse_owned_cgroup(cgroup: &kos_cgroups::Manager) -> Result<()> {
    if !cgroup.exists() {
        return Ok(());
    }
    let pids = cgroup.pids().unwrap_or_default();
    if pids.is_empty() {
        return Ok(());
    }
    Err(Error::failed(
        Stage::Create,
        format!(
            "linux.cgroupsPath {}: the cgroup already holds processes {:?} of another container",
            cgroup.resolved_path(),
            &pids[..pids.len().min(8)]
        ),
    ))
}

/// Why the init went away without a word: its exit status from the kernel, and the
/// likely cause of a SIGKILL (a memory limit the setup itself outgrew).
fn init_gone(pid: i32, spec: &Spec) -> Error {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let p = nix::unistd::Pid::from_raw(pid);
    let mut how = String::new();
    // It closed its end of the channel by dying; give the kernel a moment to say so.
    for _ in 0..100 {
        match waitpid(p, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, c)) => {
                how = format!(": exit status {c}");
                break;
            }
            Ok(WaitStatus::Signaled(_, sig, _)) => {
                how = format!(": killed by {sig}");
                if sig == nix::sys::signal::Signal::SIGKILL {
                    if let Some(limit) = spec
                        .linux()
                        .as_ref()
                        .and_then(|l| l.resources().as_ref())
                        .and_then(|r| r.memory().as_ref())
                        .and_then(|m| m.limit())
                    {
                        how.push_str(&format!(
                            " (linux.resources.memory.limit {limit} may be too low to set it up)"
                        ));
                    }
                }
                break;
            }
            Ok(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
            Err(_) => break,
        }
    }
    Error::failed(
        Stage::Create,
        format!("container init exited during setup{how}"),
    )
}
