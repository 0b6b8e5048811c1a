//! containerd-shim-kos-v2: the per-container monitor for containerd and kosd, speaking the
//! shim v2 task API (containerd.task.v2.Task) over ttrpc.

mod address;
mod args;
mod container;
mod events;
mod idle;
mod kosrun_delete;
mod log;
mod metrics;
mod mount;
mod options;
mod reaper;
mod runtime;
mod server;
mod service;
mod shim_cgroup;
mod spec;
mod stdio;
mod timefmt;
mod ttrpc;

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use containerd_shim_protos::api::DeleteResponse;
use protobuf::Message;

use args::Args;

fn main() {
    let args = match Args::parse(std::env::args().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("containerd-shim-kos-v2: {e}");
            std::process::exit(2);
        }
    };
    if args.version {
        println!("containerd-shim-kos-v2 {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    log::set_debug(args.debug);
    let res = match args.action.as_str() {
        "start" => start(&args),
        "delete" => delete(&args),
        "" => Err(anyhow::anyhow!("no action given (start or delete)")),
        other => Err(anyhow::anyhow!(
            "unknown action {other:?} (start or delete)"
        )),
    };
    if let Err(e) = res {
        eprintln!("containerd-shim-kos-v2: {e:#}");
        std::process::exit(1);
    }
}

fn require(v: &str, flag: &str) -> Result<()> {
    if v.is_empty() {
        bail!("-{flag} is required");
    }
    Ok(())
}

/// `start`: make (or find) the shim serving this container's group, print its address.
fn start(args: &Args) -> Result<()> {
    require(&args.namespace, "namespace")?;
    require(&args.id, "id")?;
    let bundle = bundle_of(args)?;
    // A bundle without a usable config.json still gets a shim: Create then says what is
    // wrong as a ttrpc error.
    let group = spec::Spec::load(&bundle)
        .ok()
        .and_then(|s| {
            spec::GROUP_ANNOTATIONS
                .iter()
                .find_map(|k| s.annotations.get(*k).cloned())
        })
        .filter(|g| !g.is_empty())
        .unwrap_or_else(|| args.id.clone());
    let path = address::socket_path(&args.address, &args.namespace, &group);
    let uri = address::uri(&path);
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(dir)
            .with_context(|| format!("socket directory {}", dir.display()))?;
    }
    let listener = match UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if UnixStream::connect(&path).is_ok() {
                // The group's shim is running: this container joins it.
                write_address(&bundle, &uri)?;
                println!("{uri}");
                return Ok(());
            }
            std::fs::remove_file(&path)
                .with_context(|| format!("removing stale socket {}", path.display()))?;
            UnixListener::bind(&path).with_context(|| format!("socket {}", path.display()))?
        }
        Err(e) => return Err(e).with_context(|| format!("socket {}", path.display())),
    };
    if let Err(e) = write_address(&bundle, &uri).and_then(|()| join_shim_cgroup()) {
        let _ = std::fs::remove_file(&path);
        return Err(e);
    }
    // SAFETY: the shim has started no threads, so the child may run anything after fork.
    match unsafe { nix::unistd::fork() }.context("fork")? {
        nix::unistd::ForkResult::Parent { .. } => {
            println!("{uri}");
            Ok(())
        }
        nix::unistd::ForkResult::Child => {
            // A server that ran has unlinked its socket itself, before its last answer.
            let code = match daemon(args, listener, &path, &bundle) {
                Ok(()) => 0,
                Err(e) => {
                    log::warn(&format!("{e:#}"));
                    let _ = std::fs::remove_file(&path);
                    1
                }
            };
            std::process::exit(code);
        }
    }
}

/// containerd passes the runtime options on stdin: with a `ShimCgroup`, the shim goes there
/// (this process, before the fork, so the daemon is born in it).
fn join_shim_cgroup() -> Result<()> {
    let opts = shim_cgroup::options_from_stdin().map_err(anyhow::Error::msg)?;
    match opts {
        Some(o) if !o.shim_cgroup.is_empty() => {
            shim_cgroup::join(&o.shim_cgroup, std::process::id() as i32).map_err(anyhow::Error::msg)
        }
        _ => Ok(()),
    }
}

/// The bundle: `-bundle`, else the working directory (containerd starts the shim in it).
/// Absolute either way: the daemon changes into it and goes on joining names to it.
fn bundle_of(args: &Args) -> Result<PathBuf> {
    if args.bundle.is_empty() {
        std::env::current_dir().context("the bundle (working directory)")
    } else {
        std::path::absolute(&args.bundle).with_context(|| format!("the bundle {}", args.bundle))
    }
}

fn write_address(bundle: &Path, uri: &str) -> Result<()> {
    let p = bundle.join("address");
    std::fs::write(&p, uri).with_context(|| format!("writing {}", p.display()))
}

/// The daemon: detached from containerd's session and output, serving until Shutdown.
fn daemon(args: &Args, listener: UnixListener, socket: &Path, bundle: &Path) -> Result<()> {
    let _ = nix::unistd::setsid();
    // In the bundle, as when containerd starts it there: not holding on to the caller's
    // working directory when it was given `-bundle`.
    std::env::set_current_dir(bundle)
        .with_context(|| format!("the bundle {}", bundle.display()))?;
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
        .context("/dev/null")?;
    // containerd reads the shim's diagnostics from the `log` fifo it made in the bundle.
    let log = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(bundle.join("log"))
        .ok();
    let err_fd = log
        .as_ref()
        .map(|f| f.as_raw_fd())
        .unwrap_or(null.as_raw_fd());
    // SAFETY: dup2 onto the standard descriptors, from descriptors open right here.
    unsafe {
        libc::dup2(null.as_raw_fd(), 0);
        libc::dup2(null.as_raw_fd(), 1);
        libc::dup2(err_fd, 2);
    }
    drop(log);
    drop(null);
    close_inherited(listener.as_raw_fd());
    let reaper = reaper::Reaper::new().context("SIGCHLD signalfd and subreaper")?;
    let publisher = events::Publisher::new(std::env::var("TTRPC_ADDRESS").ok(), &args.namespace);
    let service = service::Service::new(&args.namespace, publisher);
    let mut server =
        server::Server::new(listener, socket.to_path_buf(), reaper, service).context("listener")?;
    log::info(&format!("serving {} for {}", socket.display(), args.id));
    server.run();
    Ok(())
}

/// The dead shim's socket, unless a live shim (the rest of a pod) still answers on it.
fn remove_dead_socket(bundle: &Path) {
    let Ok(uri) = std::fs::read_to_string(bundle.join("address")) else {
        return;
    };
    let path = uri.trim().trim_start_matches("unix://");
    if !path.is_empty() && UnixStream::connect(path).is_err() {
        let _ = std::fs::remove_file(path);
    }
}

/// Closes every descriptor the shim inherited beyond stdio, except `keep`: whatever the
/// caller leaked must not live on in a long-running daemon or reach a container.
fn close_inherited(keep: i32) {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd > 2 && fd != keep)
        .collect();
    for fd in fds {
        // SAFETY: closing descriptors this process owns no Rust object for (the read_dir
        // handle is already closed; a stale number just fails with EBADF).
        unsafe { libc::close(fd) };
    }
}

/// `delete`: clean up a bundle whose shim is gone, and say how the task ended.
fn delete(args: &Args) -> Result<()> {
    require(&args.id, "id")?;
    let bundle = bundle_of(args)?;
    let opts = options::RuntimeOptions::load(&bundle)
        .unwrap_or_default()
        .with_defaults(&args.namespace);
    let rt = runtime::Runtime::new(&opts, &bundle);
    // runc, crun and kosrun all keep a container's state in ROOT/ID: when it is gone there
    // is nothing to delete (the usual case after a clean Shutdown), and no process to spawn.
    let state = Path::new(&opts.root).join(&args.id);
    if state.exists() {
        if let Err(e) = rt.delete(&args.id, true) {
            // Anything but "already gone" is worth a line in containerd's log.
            eprintln!("containerd-shim-kos-v2: {e}");
        }
    }
    mount::unmount_all(&bundle.join("rootfs"));
    remove_dead_socket(&bundle);
    let pid = std::fs::read_to_string(bundle.join("init.pid"))
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(0);
    let mut resp = DeleteResponse::new();
    resp.pid = pid;
    resp.exit_status = 128 + libc::SIGKILL as u32;
    resp.exited_at = protobuf::MessageField::some(timefmt::Time::now().to_proto());
    let data = resp.write_to_bytes().context("encoding DeleteResponse")?;
    std::io::stdout()
        .write_all(&data)
        .context("writing DeleteResponse")?;
    Ok(())
}
