//! The OCI runtime (kosrun, runc or crun) driven through the runc command line.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Instant;

use crate::options::RuntimeOptions;
use crate::stdio::ChildStdio;

#[derive(Debug, Clone)]
pub struct Runtime {
    pub binary: String,
    root: String,
    systemd: bool,
    no_pivot: bool,
    no_new_keyring: bool,
    /// The runtime's own log (`--log`, JSON), read back for its error message.
    log: PathBuf,
}

#[derive(Debug)]
pub struct RuntimeError {
    pub step: String,
    pub message: String,
    /// The binary could not be run at all.
    pub not_found: bool,
}

impl std::fmt::Display for RuntimeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.step, self.message)
    }
}

type Result<T> = std::result::Result<T, RuntimeError>;

impl Runtime {
    pub fn new(o: &RuntimeOptions, bundle: &Path) -> Runtime {
        Runtime {
            binary: o.binary_name.clone(),
            root: o.root.clone(),
            systemd: o.systemd_cgroup,
            no_pivot: o.no_pivot_root,
            no_new_keyring: o.no_new_keyring,
            log: bundle.join("log.json"),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.binary);
        c.arg("--root").arg(&self.root);
        c.arg("--log")
            .arg(&self.log)
            .arg("--log-format")
            .arg("json");
        if self.systemd {
            c.arg("--systemd-cgroup");
        }
        c.args(args);
        c
    }

    pub fn create(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        console: Option<&Path>,
        stdio: ChildStdio,
    ) -> Result<()> {
        self.create_as(&["create"], id, bundle, pid_file, console, stdio)
    }

    /// Create and start in one exec (`run --detach`): returns once the program runs (or
    /// failed to, with the error `start` would have given).
    pub fn run_detached(
        &self,
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        console: Option<&Path>,
        stdio: ChildStdio,
    ) -> Result<()> {
        self.create_as(&["run", "--detach"], id, bundle, pid_file, console, stdio)
    }

    fn create_as(
        &self,
        command: &[&str],
        id: &str,
        bundle: &Path,
        pid_file: &Path,
        console: Option<&Path>,
        stdio: ChildStdio,
    ) -> Result<()> {
        let mut args = command.to_vec();
        args.push("--bundle");
        let b = bundle.to_string_lossy();
        let p = pid_file.to_string_lossy();
        args.extend([b.as_ref(), "--pid-file", p.as_ref()]);
        let c = console.map(|c| c.to_string_lossy().into_owned());
        if let Some(c) = &c {
            args.extend(["--console-socket", c.as_str()]);
        }
        if self.no_pivot {
            args.push("--no-pivot");
        }
        if self.no_new_keyring {
            args.push("--no-new-keyring");
        }
        args.push(id);
        self.run_with_stdio(command[0], &args, stdio)
    }

    pub fn exec(
        &self,
        id: &str,
        process_file: &Path,
        pid_file: &Path,
        console: Option<&Path>,
        stdio: ChildStdio,
    ) -> Result<()> {
        let pf = process_file.to_string_lossy();
        let pid = pid_file.to_string_lossy();
        let mut args = vec![
            "exec",
            "--detach",
            "--process",
            pf.as_ref(),
            "--pid-file",
            pid.as_ref(),
        ];
        let c = console.map(|c| c.to_string_lossy().into_owned());
        if let Some(c) = &c {
            args.extend(["--console-socket", c.as_str()]);
        }
        args.push(id);
        self.run_with_stdio("exec", &args, stdio)
    }

    pub fn start(&self, id: &str) -> Result<()> {
        self.run("start", &["start", id], None)
    }

    pub fn kill(&self, id: &str, signal: u32, all: bool) -> Result<()> {
        let sig = signal.to_string();
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.extend([id, sig.as_str()]);
        self.run("kill", &args, None)
    }

    pub fn delete(&self, id: &str, force: bool) -> Result<()> {
        let mut args = vec!["delete"];
        if force {
            args.push("--force");
        }
        args.push(id);
        self.run("delete", &args, None)
    }

    /// `delete` started in the background, its output discarded: the caller collects its
    /// exit through the shim's reaper and runs a `delete --force` of its own when it failed.
    /// A plain fork, not `Command::spawn`, whose vfork would hold the shim's loop until the
    /// runtime's exec is done. Under kosrun, the child runs kosrun's library delete and
    /// execs nothing (`kosrun_delete.rs`).
    pub fn spawn_delete(&self, id: &str) -> Result<u32> {
        if self.is_kosrun() && !self.systemd {
            return crate::kosrun_delete::spawn(Path::new(&self.root), id)
                .map_err(|e| self.spawn_error("delete", e));
        }
        use std::os::fd::AsRawFd;
        use std::os::unix::ffi::OsStrExt;
        let cmd = self.command(&["delete", id]);
        let cstr = |s: &std::ffi::OsStr| {
            std::ffi::CString::new(s.as_bytes()).map_err(|e| RuntimeError {
                step: format!("{} delete", self.binary),
                message: format!("argument with a NUL byte: {e}"),
                not_found: false,
            })
        };
        let prog = cstr(cmd.get_program())?;
        let argv = std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(cstr)
            .collect::<Result<Vec<_>>>()?;
        let null = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/null")
            .map_err(|e| self.spawn_error("delete", e))?;
        let nfd = null.as_raw_fd();
        // SAFETY: the shim is single-threaded (one poll loop), so no lock is held by another
        // thread at the fork; the child only duplicates descriptors, resets its signal mask
        // (SIGCHLD is blocked in the shim) and execs, or exits.
        match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => {
                // SAFETY: dup2 of an open descriptor onto the standard ones; _exit ends the
                // child without running the parent's destructors.
                unsafe {
                    libc::dup2(nfd, 0);
                    libc::dup2(nfd, 1);
                    libc::dup2(nfd, 2);
                }
                let _ = nix::sys::signal::SigSet::empty().thread_set_mask();
                let _ = nix::unistd::execvp(&prog, &argv);
                // SAFETY: the exec failed: the child ends here (127, as a shell says).
                unsafe { libc::_exit(127) }
            }
            Ok(nix::unistd::ForkResult::Parent { child }) => Ok(child.as_raw() as u32),
            Err(e) => Err(self.spawn_error("delete", e.into())),
        }
    }

    pub fn pause(&self, id: &str) -> Result<()> {
        self.run("pause", &["pause", id], None)
    }

    pub fn resume(&self, id: &str) -> Result<()> {
        self.run("resume", &["resume", id], None)
    }

    /// `update --resources -` with the LinuxResources JSON on stdin.
    pub fn update(&self, id: &str, resources_json: &[u8]) -> Result<()> {
        self.run(
            "update",
            &["update", "--resources", "-", id],
            Some(resources_json),
        )
    }

    /// Whether the binary is kosrun (by its file name), which has no checkpoint/restore.
    pub fn is_kosrun(&self) -> bool {
        Path::new(&self.binary).file_name() == Some(std::ffi::OsStr::new("kosrun"))
    }

    pub fn checkpoint(&self, id: &str, image_path: &str, work_path: &str) -> Result<()> {
        let mut args = vec!["checkpoint", "--image-path", image_path];
        if !work_path.is_empty() {
            args.extend(["--work-path", work_path]);
        }
        args.push(id);
        self.run("checkpoint", &args, None)
    }

    fn log_offset(&self) -> u64 {
        std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0)
    }

    fn spawn_error(&self, step: &str, e: std::io::Error) -> RuntimeError {
        RuntimeError {
            step: format!("{} {step}", self.binary),
            not_found: e.kind() == std::io::ErrorKind::NotFound,
            message: if e.kind() == std::io::ErrorKind::NotFound {
                format!("runtime binary {:?} not found", self.binary)
            } else {
                format!("cannot run runtime binary {:?}: {e}", self.binary)
            },
        }
    }

    fn run(&self, step: &str, args: &[&str], input: Option<&[u8]>) -> Result<()> {
        let started = Instant::now();
        let off = self.log_offset();
        let mut cmd = self.command(args);
        cmd.stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| self.spawn_error(step, e))?;
        if let (Some(data), Some(mut stdin)) = (input, child.stdin.take()) {
            // Small (a resources document); the runtime reads it before anything else.
            let _ = stdin.write_all(data);
        }
        let mut stderr = Vec::new();
        if let Some(mut e) = child.stderr.take() {
            // Keep the first 64 KiB, but read to the end: a runtime blocked on a full pipe
            // would never exit.
            let _ = (&mut e).take(64 * 1024).read_to_end(&mut stderr);
            let _ = std::io::copy(&mut e, &mut std::io::sink());
        }
        let status = child.wait().map_err(|e| self.spawn_error(step, e))?;
        self.timed(step, started);
        self.check(step, status, off, &stderr)
    }

    fn run_with_stdio(&self, step: &str, args: &[&str], stdio: ChildStdio) -> Result<()> {
        let started = Instant::now();
        let off = self.log_offset();
        let mut cmd = self.command(args);
        cmd.stdin(Stdio::from(stdio.stdin))
            .stdout(Stdio::from(stdio.stdout))
            .stderr(Stdio::from(stdio.stderr));
        let status = cmd.status().map_err(|e| self.spawn_error(step, e))?;
        self.timed(step, started);
        self.check(step, status, off, &[])
    }

    /// How long the runtime took, in the debug log: most of a lifecycle is spent there.
    fn timed(&self, step: &str, started: Instant) {
        crate::log::debug(&format!(
            "{} {step}: {} us",
            self.binary,
            started.elapsed().as_micros()
        ));
    }

    fn check(&self, step: &str, status: ExitStatus, log_off: u64, stderr: &[u8]) -> Result<()> {
        if status.success() {
            return Ok(());
        }
        let message = last_log_error(&self.log, log_off)
            .or_else(|| {
                let s = String::from_utf8_lossy(stderr).trim().to_string();
                (!s.is_empty()).then_some(s)
            })
            .unwrap_or_else(|| format!("exited with {status}"));
        Err(RuntimeError {
            step: format!("{} {step}", self.binary),
            message,
            not_found: false,
        })
    }
}

/// The last `"level":"error"` message the runtime logged after `off`.
fn last_log_error(path: &Path, off: u64) -> Option<String> {
    let mut f = std::fs::File::open(path).ok()?;
    f.seek(SeekFrom::Start(off)).ok()?;
    let mut data = Vec::new();
    f.take(256 * 1024).read_to_end(&mut data).ok()?;
    let text = String::from_utf8_lossy(&data);
    let mut last = None;
    for line in text.lines() {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            if v["level"] == "error" {
                if let Some(m) = v["msg"].as_str() {
                    last = Some(m.to_string());
                }
            }
        } else if !line.trim().is_empty() {
            last = Some(line.trim().to_string());
        }
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_last_error_after_the_offset() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("log.json");
        let old = "{\"level\":\"error\",\"msg\":\"old\"}\n";
        std::fs::write(
            &p,
            format!("{old}{{\"level\":\"info\",\"msg\":\"x\"}}\n{{\"level\":\"error\",\"msg\":\"new one\"}}\n"),
        )
        .expect("write");
        assert_eq!(
            last_log_error(&p, old.len() as u64).as_deref(),
            Some("new one")
        );
        assert_eq!(last_log_error(&p, 10_000), None);
    }
}
