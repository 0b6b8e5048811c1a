//! Running OCI hooks: the container state on stdin, the hook's own argv and env,
//! and a timeout after which the hook is killed and counted as failed.

use std::io::{Read, Seek, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::{Hook, Hooks, Spec};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Prestart,
    CreateRuntime,
    CreateContainer,
    StartContainer,
    Poststart,
    Poststop,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Prestart,
        Kind::CreateRuntime,
        Kind::CreateContainer,
        Kind::StartContainer,
        Kind::Poststart,
        Kind::Poststop,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Prestart => "prestart",
            Kind::CreateRuntime => "createRuntime",
            Kind::CreateContainer => "createContainer",
            Kind::StartContainer => "startContainer",
            Kind::Poststart => "poststart",
            Kind::Poststop => "poststop",
        }
    }
}

impl Kind {
    /// The spec field holding hooks of this kind.
    pub fn field(self) -> &'static str {
        match self {
            Kind::Prestart => "hooks.prestart",
            Kind::CreateRuntime => "hooks.createRuntime",
            Kind::CreateContainer => "hooks.createContainer",
            Kind::StartContainer => "hooks.startContainer",
            Kind::Poststart => "hooks.poststart",
            Kind::Poststop => "hooks.poststop",
        }
    }
}

/// The hooks of `kind` among `hooks` (a spec's `hooks`, as [`of`] gives them).
pub fn of_kind(hooks: Option<&Hooks>, kind: Kind) -> &[Hook] {
    let Some(h) = hooks else {
        return &[];
    };
    #[allow(deprecated)]
    let list = match kind {
        Kind::Prestart => h.prestart(),
        Kind::CreateRuntime => h.create_runtime(),
        Kind::CreateContainer => h.create_container(),
        Kind::StartContainer => h.start_container(),
        Kind::Poststart => h.poststart(),
        Kind::Poststop => h.poststop(),
    };
    list.as_deref().unwrap_or(&[])
}

/// Whether the spec has any hook at all: without one, create skips the round trip
/// between the init and kosrun that runs them.
pub fn any(spec: &Spec) -> bool {
    Kind::ALL.iter().any(|k| !of_kind(of(spec), *k).is_empty())
}

/// A spec's hooks.
pub fn of(spec: &Spec) -> Option<&Hooks> {
    spec.hooks().as_ref()
}

/// Run every hook of `kind` in order; the first failure stops the rest.
pub fn run_all(hooks: Option<&Hooks>, kind: Kind, state_json: &str) -> Result<()> {
    for (i, hook) in of_kind(hooks, kind).iter().enumerate() {
        run_one(hook, state_json).map_err(|reason| Error::Hook {
            kind,
            index: i,
            path: hook.path().clone(),
            reason,
        })?;
    }
    Ok(())
}

/// Run hooks whose failure the spec says must only be logged (poststart, poststop).
pub fn run_all_warn(hooks: Option<&Hooks>, kind: Kind, state_json: &str) -> Vec<String> {
    let mut warnings = Vec::new();
    for (i, hook) in of_kind(hooks, kind).iter().enumerate() {
        if let Err(e) = run_one(hook, state_json) {
            warnings.push(format!(
                "{}[{i}] {}: {e}",
                kind.name(),
                hook.path().display()
            ));
        }
    }
    warnings
}

fn run_one(hook: &Hook, state_json: &str) -> std::result::Result<(), String> {
    let mut cmd = Command::new(hook.path());
    if let Some(args) = hook.args() {
        if let Some((argv0, rest)) = args.split_first() {
            cmd.arg0(argv0).args(rest);
        }
    }
    // A hook without `env` gets the runtime's environment (runc and youki do the same, and
    // hook authors rely on PATH); an `env` list, even an empty one, is the whole of it.
    if let Some(env) = hook.env() {
        cmd.env_clear();
        for kv in env {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
    }
    // Output goes to an anonymous file rather than a pipe so a chatty hook
    // cannot block on a full pipe while we wait for it.
    let out = memfd("kosrun-hook-output")?;
    let out_file = std::fs::File::from(out);
    cmd.stdin(Stdio::piped())
        .stdout(out_file.try_clone().map_err(|e| e.to_string())?)
        .stderr(out_file.try_clone().map_err(|e| e.to_string())?);
    let mut child = cmd.spawn().map_err(|e| e.to_string())?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook that does not read its stdin is fine: ignore EPIPE.
        let _ = stdin.write_all(state_json.as_bytes());
    }
    let timeout = hook
        .timeout()
        .filter(|t| *t > 0)
        .map(|t| Duration::from_secs(t as u64));
    let status = wait_with_timeout(&mut child, timeout)?;
    if status.success() {
        return Ok(());
    }
    let mut output = String::new();
    let mut f = out_file;
    let _ = f.rewind();
    let _ = f.take(4096).read_to_string(&mut output);
    let output = output.trim().replace('\n', "; ");
    let why = match status.code() {
        Some(c) => format!("exited with status {c}"),
        None => "was killed by a signal".to_string(),
    };
    if output.is_empty() {
        Err(why)
    } else {
        Err(format!("{why}: {output}"))
    }
}

fn wait_with_timeout(
    child: &mut std::process::Child,
    timeout: Option<Duration>,
) -> std::result::Result<std::process::ExitStatus, String> {
    let Some(timeout) = timeout else {
        return child.wait().map_err(|e| e.to_string());
    };
    let deadline = Instant::now() + timeout;
    if let Ok(pidfd) = crate::sys::pidfd_open(child.id() as i32) {
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        let mut pfd = libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            let left = deadline
                .saturating_duration_since(Instant::now())
                .as_millis() as i32;
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, left.min(ms)) };
            if rc > 0 || Instant::now() >= deadline {
                break;
            }
            if rc < 0 && std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted {
                break;
            }
        }
    } else {
        while Instant::now() < deadline {
            if child.try_wait().map_err(|e| e.to_string())?.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    match child.try_wait().map_err(|e| e.to_string())? {
        Some(st) => Ok(st),
        None => {
            let _ = child.kill();
            let _ = child.wait();
            Err(format!(
                "timed out after {}s and was killed",
                timeout.as_secs()
            ))
        }
    }
}

fn memfd(name: &str) -> std::result::Result<OwnedFd, String> {
    let cname = std::ffi::CString::new(name).map_err(|e| e.to_string())?;
    // SAFETY: valid NUL-terminated name.
    let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    // SAFETY: fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
