//! Invoking the runtime under test (or any helper program) with a hard time limit.
//!
//! Output goes to files, not pipes: a `create`d or `run --detach`ed container inherits the
//! runtime's stdio, so a pipe would never reach EOF while the container lives. Files also
//! give the container's own output to the test once the container has stopped.

use std::ffi::OsString;
use std::fs::File;
use std::os::unix::io::RawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

/// Default limit for one runtime command; generous so a slow CI machine is not a failure
/// (runc needs well under a second), short enough that a hanging runtime cannot stall the suite.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Once the runtime has hung this many times, it is taken to be broken and the default limit
/// drops to [`BROKEN_TIMEOUT`], so a hanging runtime costs minutes, not an hour.
const HANGS_BEFORE_SHORT_TIMEOUTS: usize = 3;
const BROKEN_TIMEOUT: Duration = Duration::from_secs(3);

/// After SIGINT/SIGTERM, commands still running get this long before they are killed, so
/// cleanup commands can run but nothing waits long.
const GRACE_AFTER_INTERRUPT: Duration = Duration::from_secs(5);

static HANGS: AtomicUsize = AtomicUsize::new(0);
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// The limit for a command that does not set its own.
pub fn default_timeout() -> Duration {
    if HANGS.load(Ordering::Relaxed) >= HANGS_BEFORE_SHORT_TIMEOUTS {
        BROKEN_TIMEOUT
    } else {
        DEFAULT_TIMEOUT
    }
}

pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::Relaxed)
}

extern "C" fn on_signal(_sig: libc::c_int) {
    // A second signal means "stop now", cleanup or not.
    if INTERRUPTED.swap(true, Ordering::SeqCst) {
        // SAFETY: _exit is async-signal-safe.
        unsafe { libc::_exit(130) };
    }
}

/// SIGINT and SIGTERM stop the run gracefully: no new tests start, running commands are
/// cut short, and the guards and the final sweep still clean up.
pub fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only touches an atomic and calls _exit.
        unsafe {
            libc::signal(
                sig,
                on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t,
            );
        }
    }
}

/// How a command is run.
pub struct RunOpts {
    pub timeout: Duration,
    pub cwd: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    /// (file, fd number it must have in the child, without close-on-exec).
    pub fds: Vec<(RawFd, RawFd)>,
    /// Where stdout/stderr go; the caller chooses unique paths.
    pub stdout: PathBuf,
    pub stderr: PathBuf,
}

/// What a finished command did.
#[derive(Debug, Clone)]
pub struct Output {
    pub cmdline: String,
    pub status: ExitStatus,
    /// The file stdout went to: processes that inherited it (a created container) keep
    /// writing there after the command exits.
    pub stdout_path: PathBuf,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Output {
    pub fn success(&self) -> bool {
        self.status.success()
    }

    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// One line describing the exit, for failure messages.
    pub fn describe(&self) -> String {
        let how = match (self.status.code(), self.status.signal()) {
            (Some(c), _) => format!("exit {c}"),
            (None, Some(s)) => format!("signal {s}"),
            _ => "unknown status".to_string(),
        };
        let err = self.stderr.trim();
        let err = if err.len() > 600 { &err[..600] } else { err };
        format!("`{}` -> {how}; stderr: {err:?}", self.cmdline)
    }

    /// Fails unless the command exited 0.
    pub fn expect_success(&self) -> Result<&Self> {
        if !self.success() {
            bail!("command failed: {}", self.describe());
        }
        Ok(self)
    }

    /// Fails unless the command exited non-zero (the spec's "MUST generate an error").
    pub fn expect_failure(&self, why: &str) -> Result<&Self> {
        if self.success() {
            bail!(
                "{why}: expected an error, but `{}` exited 0 (stdout {:?})",
                self.cmdline,
                self.stdout.trim()
            );
        }
        Ok(self)
    }
}

/// Runs `program args` and waits at most `opts.timeout`; the whole process group is killed
/// on timeout so a stuck runtime leaves no helper behind.
pub fn run_command(program: &Path, args: &[OsString], opts: &RunOpts) -> Result<Output> {
    let cmdline = std::iter::once(program.as_os_str().to_string_lossy().into_owned())
        .chain(args.iter().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ");
    let stdout = File::create(&opts.stdout)
        .with_context(|| format!("creating {}", opts.stdout.display()))?;
    let stderr = File::create(&opts.stderr)
        .with_context(|| format!("creating {}", opts.stderr.display()))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0);
    if let Some(cwd) = &opts.cwd {
        cmd.current_dir(cwd);
    }
    for (k, v) in &opts.env {
        cmd.env(k, v);
    }
    if !opts.fds.is_empty() {
        let fds = opts.fds.clone();
        // SAFETY: only async-signal-safe calls (dup2, fcntl) between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                for &(src, dst) in &fds {
                    if src == dst {
                        if libc::fcntl(dst, libc::F_SETFD, 0) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    } else if libc::dup2(src, dst) < 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
    }
    let start = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("spawning {}", program.display()))?;
    let pgid = child.id() as i32;
    let mut nap = Duration::from_millis(2);
    let mut interrupt_seen: Option<Instant> = None;
    let status = loop {
        if let Some(st) = child.try_wait().context("waiting for child")? {
            break st;
        }
        if interrupted() {
            let since = *interrupt_seen.get_or_insert_with(Instant::now);
            if since.elapsed() > GRACE_AFTER_INTERRUPT {
                // SAFETY: plain kill(2) of the process group we created.
                unsafe {
                    libc::kill(-pgid, libc::SIGKILL);
                }
                let _ = child.wait();
                bail!("`{cmdline}` killed: the run was interrupted");
            }
        }
        if start.elapsed() > opts.timeout {
            HANGS.fetch_add(1, Ordering::Relaxed);
            // SAFETY: plain kill(2) of the process group we created.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
            let _ = child.wait();
            bail!(
                "`{cmdline}` did not finish within {:?}; killed it",
                opts.timeout
            );
        }
        std::thread::sleep(nap);
        nap = (nap * 2).min(Duration::from_millis(20));
    };
    let elapsed = start.elapsed();
    Ok(Output {
        cmdline,
        status,
        stdout_path: opts.stdout.clone(),
        stdout: read_lossy(&opts.stdout),
        stderr: read_lossy(&opts.stderr),
        elapsed,
    })
}

/// Reads a file as text; a missing file reads as empty (the command may not have written).
pub fn read_lossy(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}
