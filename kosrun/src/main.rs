//! `kosrun`: a runc-compatible OCI runtime.

mod cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kosrun::ops::{self, create::CreateOpts};

use cli::log;

// The shipped kosrun is a musl build (scripts/build-kosrun.sh). musl's own malloc hands
// freed memory back to the kernel at once: a profile of `kosrun --version` spent a fifth of
// its time in mmap and munmap. dlmalloc keeps what it got.
#[cfg(target_env = "musl")]
#[global_allocator]
static ALLOC: dlmalloc::GlobalDlmalloc = dlmalloc::GlobalDlmalloc;

#[derive(Parser)]
#[command(
    name = "kosrun",
    version,
    about = "KOS OCI runtime (runc-compatible command line)"
)]
struct Cli {
    /// Directory for container state (tmpfs recommended)
    #[arg(long, global = true, default_value = "/run/kosrun")]
    root: PathBuf,
    /// Log file (default: stderr)
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log format
    #[arg(long = "log-format", global = true, value_enum, default_value = "text")]
    log_format: log::Format,
    /// Debug logging
    #[arg(long, global = true)]
    debug: bool,
    /// Use systemd to manage cgroups (not supported: kosrun drives cgroupfs directly)
    #[arg(long = "systemd-cgroup")]
    systemd_cgroup: bool,
    /// Accepted for runc compatibility; rootless mode is detected from the config
    #[arg(long = "rootless", id = "global_rootless", num_args = 0..=1, default_missing_value = "true")]
    _rootless: Option<String>,
    /// Accepted for runc compatibility (checkpointing is not supported)
    #[arg(long = "criu", hide = true)]
    _criu: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(clap::Args, Clone)]
struct CreateArgs {
    /// Path to the bundle (directory with config.json)
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Unix socket that receives the pty master when process.terminal is true
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// File to write the init process's pid to
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Use MS_MOVE + chroot instead of pivot_root (for ramfs roots)
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Do not create a new session keyring for the container
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    /// Pass N additional descriptors (from 3) to the container
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// Container id
    id: String,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a container: everything is built, the user's program waits for `start`
    Create(CreateArgs),
    /// Run the user's program of a created container
    Start { id: String },
    /// Create and start a container, wait for it, and return its exit status
    Run {
        #[command(flatten)]
        args: CreateArgs,
        /// Return after starting instead of waiting
        #[arg(short, long)]
        detach: bool,
        /// Keep the container's state after it exits
        #[arg(long)]
        keep: bool,
    },
    /// Print the container's state as JSON
    State { id: String },
    /// Send a signal to the container's init (default SIGTERM)
    Kill {
        id: String,
        #[arg(default_value = "TERM")]
        signal: String,
        /// Signal every process in the container
        #[arg(short, long)]
        all: bool,
    },
    /// Delete a stopped container's resources
    Delete {
        id: String,
        /// Kill the container first if it is running
        #[arg(short, long)]
        force: bool,
    },
    /// List containers
    List {
        #[arg(short, long, default_value = "table")]
        format: String,
        /// Only ids
        #[arg(short, long)]
        quiet: bool,
    },
    /// Write a starting config.json
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        /// Generate a config for a rootless container
        #[arg(long)]
        rootless: bool,
    },
    /// Print the runtime's features document
    Features,
    #[command(flatten)]
    Cgroup(cli::cgroup_cmds::Cmd),
    /// Execute a new process inside a running container
    Exec(Box<cli::exec::ExecArgs>),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    log::init(cli.log.clone(), cli.log_format, cli.debug);
    match dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            log::error(&one_line(&e), runtime_error(&e));
            ExitCode::FAILURE
        }
    }
}

/// The runtime's own errors already name their cause in their message (the source is kept
/// for callers that want the typed value), so printing the chain would say it twice.
fn one_line(e: &anyhow::Error) -> String {
    if runtime_error(e).is_some() {
        format!("{e}")
    } else {
        format!("{e:#}")
    }
}

/// The runtime's typed error, when it is the whole of `e` (not under added context).
fn runtime_error(e: &anyhow::Error) -> Option<&kosrun::Error> {
    let top: &(dyn std::error::Error + 'static) = &**e;
    top.downcast_ref::<kosrun::Error>()
}

fn create_opts(root: &std::path::Path, a: &CreateArgs) -> CreateOpts {
    CreateOpts {
        root: root.to_path_buf(),
        id: a.id.clone(),
        bundle: a.bundle.clone(),
        console_socket: a.console_socket.clone(),
        pid_file: a.pid_file.clone(),
        no_pivot: a.no_pivot,
        no_new_keyring: a.no_new_keyring,
        preserve_fds: a.preserve_fds,
        listen_fds: listen_fds(),
        // Taken before kosrun opens anything of its own.
        inherited_fds: kosrun::linux::process::fds::open_among(
            3,
            a.preserve_fds.saturating_add(listen_fds()),
        ),
    }
}

/// Descriptors handed to us by systemd socket activation are passed on, as runc does.
fn listen_fds() -> u32 {
    std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn warn_all(w: Vec<String>) {
    for m in w {
        log::warn(&m);
    }
}

fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    if cli.systemd_cgroup {
        anyhow::bail!("--systemd-cgroup is not supported: kosrun manages cgroupfs directly; use the cgroupfs driver");
    }
    let root = cli.root.as_path();
    match &cli.cmd {
        Cmd::Create(a) => {
            ops::create::create(&create_opts(root, a))?;
        }
        Cmd::Start { id } => warn_all(ops::start::start(root, id)?),
        Cmd::Run { args, detach, keep } => {
            if args.console_socket.is_some() && !detach {
                anyhow::bail!(
                    "--console-socket needs --detach: without it kosrun relays the terminal itself"
                );
            }
            let out = ops::run::run(&create_opts(root, args), *detach, *keep)?;
            warn_all(out.warnings);
            return Ok(ExitCode::from(out.exit_code.clamp(0, 255) as u8));
        }
        Cmd::State { id } => {
            let (saved, status) = ops::state::state(root, id)?;
            let doc = ops::StateDoc::new(&saved, status);
            println!("{}", serde_json::to_string_pretty(&doc)?);
        }
        Cmd::Kill { id, signal, all } => {
            let sig = ops::kill::parse_signal(signal)?;
            ops::kill::kill(root, id, sig, *all)?;
        }
        Cmd::Delete { id, force } => warn_all(ops::delete::delete(root, id, *force)?),
        Cmd::List { format, quiet } => cli::list::run(root, format, *quiet)?,
        Cmd::Spec { bundle, rootless } => cli::spec::run(bundle, *rootless)?,
        Cmd::Exec(a) => return cli::exec::run(root, a),
        Cmd::Cgroup(c) => return cli::cgroup_cmds::run(root, c),
        Cmd::Features => println!(
            "{}",
            serde_json::to_string_pretty(&cli::features::document())?
        ),
    }
    log::debug("done");
    Ok(ExitCode::SUCCESS)
}
