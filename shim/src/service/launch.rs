//! Launching processes: Create (rootfs, stdio, the runtime's create, or its run when the
//! caller asked to start at create, terminal, OOM watch) and the start of an exec.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_shim_protos::api;
use containerd_shim_protos::events::task as ev;
use protobuf::MessageField;

use super::{encode, rt_err, Service, CONSOLE_TIMEOUT, R};
use crate::container::{Container, Process, Status};
use crate::events::Event;
use crate::mount::{self, MountSpec};
use crate::options::RuntimeOptions;
use crate::runtime::Runtime;
use crate::spec::Spec;
use crate::stdio::console::ConsoleSocket;
use crate::stdio::{IoRequest, ProcessIo};
use crate::ttrpc::RpcError;

fn read_pid(path: &Path) -> R<u32> {
    let data = crate::spec::read_bounded(path, 64)
        .map_err(|e| RpcError::internal(format!("pid file {}: {e}", path.display())))?;
    String::from_utf8_lossy(&data)
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| RpcError::internal(format!("pid file {}: no pid in it", path.display())))
}

/// Whether `bin` can be run: a path to a file, or a name found on PATH.
fn binary_exists(bin: &str) -> bool {
    if bin.contains('/') {
        return Path::new(bin).is_file();
    }
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()))
        .unwrap_or(false)
}

impl Service {
    pub(super) fn create(&mut self, r: api::CreateTaskRequest) -> R<Vec<u8>> {
        if r.id.is_empty() {
            return Err(RpcError::invalid("create: empty container id"));
        }
        if self.containers.contains_key(&r.id) {
            return Err(RpcError::exists(format!(
                "container {}: already exists",
                r.id
            )));
        }
        if !r.checkpoint.is_empty() {
            return Err(RpcError::precondition(
                "create: restoring from a checkpoint is not supported (kosrun has no \
                 checkpoint/restore, and the kos shim does not drive another runtime's restore)",
            ));
        }
        let bundle = PathBuf::from(&r.bundle);
        if !bundle.is_absolute() {
            return Err(RpcError::invalid(format!(
                "create: bundle {:?} is not an absolute path",
                r.bundle
            )));
        }
        let spec = Spec::load(&bundle).map_err(RpcError::invalid)?;
        let opts = RuntimeOptions::from_any(r.options.as_ref())
            .map_err(RpcError::invalid)?
            .with_defaults(&self.namespace);
        if !opts.shim_cgroup.is_empty() {
            // For callers that give no options to the start action (kosd); containerd's
            // were applied there already, and joining again changes nothing.
            crate::shim_cgroup::join(&opts.shim_cgroup, std::process::id() as i32)
                .map_err(|e| RpcError::invalid(format!("create: {e}")))?;
        }
        if !binary_exists(&opts.binary_name) {
            return Err(RpcError::precondition(format!(
                "create: runtime binary {:?} not found",
                opts.binary_name
            )));
        }
        opts.save(&bundle)
            .map_err(|e| RpcError::internal(format!("create: saving runtime options: {e}")))?;
        let runtime = Runtime::new(&opts, &bundle);

        let mut init = Process::new("", &r.stdin, &r.stdout, &r.stderr, r.terminal);
        let (io, child) = ProcessIo::open(&IoRequest {
            stdin: &r.stdin,
            stdout: &r.stdout,
            stderr: &r.stderr,
            terminal: r.terminal,
            container_id: &r.id,
            namespace: &self.namespace,
            owner: opts.io_owner(),
        })
        .map_err(|e| RpcError::invalid(format!("create: {e}")))?;
        init.io = io;

        let rootfs = bundle.join("rootfs");
        let mounts: Vec<MountSpec> = r
            .rootfs
            .iter()
            .map(|m| MountSpec {
                kind: m.type_.clone(),
                source: m.source.clone(),
                options: m.options.clone(),
            })
            .collect();
        if !mounts.is_empty() {
            std::fs::create_dir_all(&rootfs)
                .map_err(|e| RpcError::internal(format!("create: {}: {e}", rootfs.display())))?;
            mount::mount_all(&mounts, &rootfs)
                .map_err(|e| RpcError::internal(format!("create: {e}")))?;
        }
        let undo = |runtime: &Runtime| {
            let _ = runtime.delete(&r.id, true);
            if !mounts.is_empty() {
                mount::unmount_all(&rootfs);
            }
        };

        let console = if r.terminal {
            match ConsoleSocket::new() {
                Ok(c) => Some(c),
                Err(e) => {
                    undo(&runtime);
                    return Err(RpcError::internal(format!("create: console socket: {e}")));
                }
            }
        } else {
            None
        };
        let pid_file = bundle.join("init.pid");
        let _ = std::fs::remove_file(&pid_file);
        // Started at create, the program runs before Start: its exit is held for Start (see
        // Service::release_held_exit), so the caller sees the task API as it always is.
        let launch = if opts.start_at_create {
            Runtime::run_detached
        } else {
            Runtime::create
        };
        if let Err(e) = launch(
            &runtime,
            &r.id,
            &bundle,
            &pid_file,
            console.as_ref().map(|c| c.path()),
            child,
        ) {
            undo(&runtime);
            return Err(rt_err(e));
        }
        if let Some(c) = &console {
            let attached = c
                .receive(CONSOLE_TIMEOUT)
                .and_then(|m| init.io.attach_console(m));
            if let Err(e) = attached {
                undo(&runtime);
                return Err(RpcError::internal(format!("create: terminal: {e}")));
            }
        }
        let pid = match read_pid(&pid_file) {
            Ok(p) => p,
            Err(e) => {
                undo(&runtime);
                return Err(e);
            }
        };
        init.pid = pid;

        let cgroups_path = spec.cgroups_path().map(str::to_string);
        let cgroup = kos_cgroups::Manager::new(cgroups_path.as_deref(), &r.id);
        let oom = cgroup
            .as_ref()
            .map_err(|e| e.to_string())
            .and_then(|m| kos_cgroups::OomWatch::open(m).map_err(|e| e.to_string()))
            .unwrap_or_else(|e| {
                crate::log::warn(&format!("{}: no OOM notifications: {e}", r.id));
                None
            });
        let oom_count_file = cgroup.ok().and_then(|m| oom_count_file(&m));
        self.containers.insert(
            r.id.clone(),
            Container {
                id: r.id.clone(),
                bundle: bundle.clone(),
                runtime,
                init,
                execs: BTreeMap::new(),
                cgroups_path,
                oom,
                rootfs_mounted: !mounts.is_empty(),
                kill_all_on_exit: !spec.own_pid_namespace(),
                io_owner: opts.io_owner(),
                awaiting_start: opts.start_at_create,
                held_exit: None,
                early_delete: Default::default(),
                oom_count_file,
            },
        );

        let mut e = ev::TaskCreate::new();
        e.container_id = r.id.clone();
        e.bundle = r.bundle.clone();
        e.rootfs = r.rootfs.clone();
        let mut tio = ev::TaskIO::new();
        tio.stdin = r.stdin.clone();
        tio.stdout = r.stdout.clone();
        tio.stderr = r.stderr.clone();
        tio.terminal = r.terminal;
        e.io = MessageField::some(tio);
        e.pid = pid;
        self.events.push(Event::Create(e));

        let mut resp = api::CreateTaskResponse::new();
        resp.pid = pid;
        encode(&resp)
    }
}

/// Where the container's OOM kill count is: the v1 memory hierarchy, else cgroup2.
fn oom_count_file(m: &kos_cgroups::Manager) -> Option<PathBuf> {
    let sources = m.mount_sources();
    sources
        .iter()
        .find(|s| !s.v2 && s.controllers.iter().any(|c| c == "memory"))
        .map(|s| s.host_dir.join("memory.oom_control"))
        .or_else(|| {
            sources
                .iter()
                .find(|s| s.v2)
                .map(|s| s.host_dir.join("memory.events"))
        })
}

/// Collects the exit status of a child the runtime has just killed.
pub(super) fn reap_now(pid: u32) -> u32 {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let p = nix::unistd::Pid::from_raw(pid as i32);
    for _ in 0..200 {
        match waitpid(p, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(10)),
            Ok(s) => return crate::reaper::exit_code(s).unwrap_or(137),
            Err(_) => break,
        }
    }
    137
}

/// Where an exec runs: its container and the shim's settings for it.
pub(super) struct ExecEnv<'a> {
    pub id: &'a str,
    pub namespace: &'a str,
    pub bundle: &'a Path,
    pub runtime: &'a Runtime,
    pub owner: Option<(u32, u32)>,
    /// Unique per exec in this shim, for its file names.
    pub seq: u64,
}

pub(super) fn start_exec(p: &mut Process, env: &ExecEnv<'_>, spec: &[u8]) -> R<()> {
    let ExecEnv {
        id,
        namespace,
        bundle,
        runtime,
        owner,
        seq,
    } = *env;
    let (io, child) = ProcessIo::open(&IoRequest {
        stdin: &p.stdin,
        stdout: &p.stdout,
        stderr: &p.stderr,
        terminal: p.terminal,
        container_id: id,
        namespace,
        owner,
    })
    .map_err(|e| RpcError::invalid(format!("exec {}: {e}", p.exec_id)))?;
    p.io = io;
    // Exec ids come from the client: file names are the shim's own.
    let process_file = bundle.join(format!(".kos-exec-{}-{seq}.json", std::process::id()));
    let pid_file = bundle.join(format!(".kos-exec-{}-{seq}.pid", std::process::id()));
    let cleanup = || {
        let _ = std::fs::remove_file(&process_file);
        let _ = std::fs::remove_file(&pid_file);
    };
    // The process may carry secrets in its environment: readable by root only.
    write_private(&process_file, spec)
        .map_err(|e| RpcError::internal(format!("exec: {}: {e}", process_file.display())))?;
    let console = if p.terminal {
        Some(ConsoleSocket::new().map_err(|e| {
            cleanup();
            RpcError::internal(format!("exec: console socket: {e}"))
        })?)
    } else {
        None
    };
    if let Err(e) = runtime.exec(
        id,
        &process_file,
        &pid_file,
        console.as_ref().map(|c| c.path()),
        child,
    ) {
        cleanup();
        return Err(rt_err(e));
    }
    if let Some(c) = &console {
        if let Err(e) = c
            .receive(CONSOLE_TIMEOUT)
            .and_then(|m| p.io.attach_console(m))
        {
            cleanup();
            return Err(RpcError::internal(format!(
                "exec {}: terminal: {e}",
                p.exec_id
            )));
        }
    }
    let pid = read_pid(&pid_file);
    cleanup();
    p.pid = pid?;
    p.status = Status::Running;
    Ok(())
}

fn write_private(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?
        .write_all(data)
}
