//! `kosrun exec`: runc's flags for a new process in a running container.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use kosrun::ops::exec::{self, ExecOpts, ProcessFlags, ProcessSource};

#[derive(clap::Args, Clone, Debug)]
pub struct ExecArgs {
    /// Unix socket that receives the pty master when a terminal is requested
    #[arg(long = "console-socket")]
    pub console_socket: Option<PathBuf>,
    /// Current working directory in the container
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Set an environment variable (KEY=VALUE), repeatable
    #[arg(short, long = "env")]
    pub env: Vec<String>,
    /// Allocate a pseudo-TTY
    #[arg(short, long)]
    pub tty: bool,
    /// User as uid[:gid]
    #[arg(short, long)]
    pub user: Option<String>,
    /// Additional gids, repeatable
    #[arg(short = 'g', long = "additional-gids")]
    pub additional_gids: Vec<u32>,
    /// process.json with the complete process (other process flags are ignored)
    #[arg(short, long)]
    pub process: Option<PathBuf>,
    /// Detach from the process; exit once it runs
    #[arg(short, long)]
    pub detach: bool,
    /// File to write the process's pid to
    #[arg(long = "pid-file")]
    pub pid_file: Option<PathBuf>,
    /// SELinux label for the process
    #[arg(long = "process-label")]
    pub process_label: Option<String>,
    /// AppArmor profile for the process
    #[arg(long)]
    pub apparmor: Option<String>,
    /// Set no_new_privs for the process
    #[arg(long = "no-new-privs")]
    pub no_new_privs: bool,
    /// Add a capability to the process's sets, repeatable
    #[arg(short, long = "cap")]
    pub cap: Vec<String>,
    /// Pass N additional descriptors (from 3) to the process
    #[arg(long = "preserve-fds", default_value_t = 0)]
    pub preserve_fds: u32,
    /// Run the process in a sub-cgroup: [controller[,controller]:]path, repeatable
    #[arg(long)]
    pub cgroup: Vec<String>,
    /// Allow exec into a paused container (the process waits until it is resumed)
    #[arg(long = "ignore-paused")]
    pub ignore_paused: bool,
    /// Container id
    pub id: String,
    /// Command and arguments (not with --process)
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

pub fn run(root: &Path, a: &ExecArgs) -> anyhow::Result<ExitCode> {
    // Before kosrun opens anything of its own.
    let inherited_fds = kosrun::linux::process::fds::open_among(3, a.preserve_fds);
    let process = match &a.process {
        Some(p) => ProcessSource::File(p.clone()),
        None => {
            if a.command.is_empty() {
                anyhow::bail!("exec: no command given: kosrun exec [flags] ID COMMAND [ARGS...], or --process process.json");
            }
            ProcessSource::Flags(ProcessFlags {
                args: a.command.clone(),
                env: a.env.clone(),
                user: a.user.clone(),
                additional_gids: a.additional_gids.clone(),
                cwd: a.cwd.clone(),
                caps: a.cap.clone(),
                no_new_privs: a.no_new_privs,
                apparmor: a.apparmor.clone(),
                process_label: a.process_label.clone(),
                tty: a.tty,
            })
        }
    };
    let out = exec::exec(&ExecOpts {
        root: root.to_path_buf(),
        id: a.id.clone(),
        process,
        detach: a.detach,
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        // runc's exec passes only what --preserve-fds names (LISTEN_FDS is create's).
        preserve_fds: a.preserve_fds,
        inherited_fds,
        ignore_paused: a.ignore_paused,
        cgroup: a.cgroup.clone(),
    })?;
    Ok(match out.exit_code {
        Some(c) => ExitCode::from(c.clamp(0, 255) as u8),
        None => ExitCode::SUCCESS,
    })
}
