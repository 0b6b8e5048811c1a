//! Running one plugin executable per the CNI execution protocol: CNI_* environment, config on
//! stdin, result or error on stdout, with bounded output and a deadline.

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::error::{Error, PluginError, Result};

/// Largest stdout accepted from a plugin (results are a few KiB).
pub const MAX_STDOUT: u64 = 1 << 20;
/// stderr kept for error messages.
const MAX_STDERR: u64 = 16 << 10;

/// The CNI_* variables of one call; None ones are left unset (VERSION, GC and STATUS pass
/// no container).
#[derive(Debug, Clone, Default)]
pub struct Invocation<'a> {
    pub command: &'static str,
    pub container_id: Option<&'a str>,
    pub netns: Option<&'a Path>,
    pub ifname: Option<&'a str>,
    /// Already formatted `K=V;K=V`.
    pub args: Option<&'a str>,
    pub path: &'a [PathBuf],
}

/// The first executable regular file called `name` in `dirs`.
pub fn find_plugin(name: &str, dirs: &[PathBuf]) -> Result<PathBuf> {
    for dir in dirs {
        let candidate = dir.join(name);
        if let Ok(meta) = std::fs::metadata(&candidate) {
            if meta.is_file() && meta.permissions().mode() & 0o111 != 0 {
                return Ok(candidate);
            }
        }
    }
    Err(Error::PluginNotFound {
        plugin: name.to_owned(),
        path: dirs.to_vec(),
    })
}

enum Stream {
    Out(std::io::Result<Vec<u8>>),
    Err(std::io::Result<Vec<u8>>),
}

fn read_bounded(mut r: impl Read, max: u64) -> std::io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    (&mut r).take(max + 1).read_to_end(&mut buf)?;
    if buf.len() as u64 > max {
        // Drain the rest so the plugin is not blocked on a full pipe before it is killed.
        let _ = std::io::copy(&mut r, &mut std::io::sink());
        return Err(std::io::Error::other(format!(
            "printed more than {max} bytes"
        )));
    }
    Ok(buf)
}

/// Runs `plugin` (found as `exe`) and returns its stdout on success. A non-zero exit becomes
/// [`Error::Plugin`] when stdout holds a CNI error, [`Error::PluginCrashed`] otherwise.
pub fn run(
    exe: &Path,
    plugin: &str,
    inv: &Invocation<'_>,
    stdin: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>> {
    let command = inv.command;
    let exec_err = |source| Error::Exec {
        plugin: plugin.to_owned(),
        command,
        source,
    };
    let mut cmd = Command::new(exe);
    // The plugin inherits the environment (it runs iptables, ip, ... from PATH) minus any
    // CNI_* of ours, then gets exactly this call's.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CNI_") {
            cmd.env_remove(&k);
        }
    }
    cmd.env("CNI_COMMAND", command);
    if let Some(v) = inv.container_id {
        cmd.env("CNI_CONTAINERID", v);
    }
    if let Some(v) = inv.netns {
        cmd.env("CNI_NETNS", v);
    }
    if let Some(v) = inv.ifname {
        cmd.env("CNI_IFNAME", v);
    }
    if let Some(v) = inv.args {
        cmd.env("CNI_ARGS", v);
    }
    let cni_path =
        std::env::join_paths(inv.path).map_err(|e| exec_err(std::io::Error::other(e)))?;
    cmd.env("CNI_PATH", cni_path);
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(exec_err)?;

    let (tx, rx) = mpsc::channel();
    let mut readers = Vec::new();
    if let Some(out) = child.stdout.take() {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            let _ = tx.send(Stream::Out(read_bounded(out, MAX_STDOUT)));
        }));
    }
    if let Some(err) = child.stderr.take() {
        let tx = tx.clone();
        readers.push(std::thread::spawn(move || {
            let _ = tx.send(Stream::Err(read_bounded(err, MAX_STDERR)));
        }));
    }
    drop(tx);
    if let Some(mut input) = child.stdin.take() {
        // On its own thread: a plugin that never reads a large config must still meet the
        // deadline. A plugin may exit without reading stdin (VERSION, early errors): EPIPE is
        // fine.
        let data = stdin.to_vec();
        std::thread::spawn(move || {
            let _ = input.write_all(&data);
        });
    }

    let deadline = Instant::now() + timeout;
    let timed_out = |child: &mut std::process::Child| {
        let _ = child.kill();
        let _ = child.wait();
        Error::Timeout {
            plugin: plugin.to_owned(),
            command,
            secs: timeout.as_secs(),
        }
    };
    let mut stdout = None;
    let mut stderr = None;
    while stdout.is_none() || stderr.is_none() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Stream::Out(r)) => stdout = Some(r),
            Ok(Stream::Err(r)) => stderr = Some(r),
            Err(mpsc::RecvTimeoutError::Timeout) => return Err(timed_out(&mut child)),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
    }
    // Both pipes are closed: the plugin has exited or is about to; still bounded by the deadline.
    let status = loop {
        match child.try_wait().map_err(exec_err)? {
            Some(s) => break s,
            None if Instant::now() >= deadline => return Err(timed_out(&mut child)),
            None => std::thread::sleep(Duration::from_millis(2)),
        }
    };
    for r in readers {
        let _ = r.join();
    }
    let stderr = stderr
        .and_then(|r| r.ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let stdout = match stdout {
        Some(Ok(b)) => b,
        Some(Err(e)) => {
            return Err(Error::BadOutput {
                plugin: plugin.to_owned(),
                command,
                why: e.to_string(),
            })
        }
        None => Vec::new(),
    };
    if status.success() {
        return Ok(stdout);
    }
    match parse_error(&stdout) {
        Some(error) => Err(Error::Plugin {
            plugin: plugin.to_owned(),
            command,
            error,
        }),
        None => Err(Error::PluginCrashed {
            plugin: plugin.to_owned(),
            command,
            status: status.to_string(),
            stderr: last_line(&stderr),
        }),
    }
}

/// A CNI error object: `{"code": N, "msg": "...", "details": "..."}`.
fn parse_error(stdout: &[u8]) -> Option<PluginError> {
    let v: Value = serde_json::from_slice(stdout).ok()?;
    let obj = v.as_object()?;
    let code = u32::try_from(obj.get("code")?.as_u64()?).ok()?;
    let text = |k: &str| {
        obj.get(k)
            .and_then(|m| m.as_str())
            .map(|s| one_line(s, 1024))
            .unwrap_or_default()
    };
    Some(PluginError {
        code,
        msg: text("msg"),
        details: text("details"),
    })
}

fn last_line(s: &str) -> String {
    one_line(s.trim().lines().last().unwrap_or_default(), 1024)
}

/// Plugin text shown in our errors: one line, bounded, no control characters.
fn one_line(s: &str, max: usize) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn error_objects() {
        let e = parse_error(br#"{"cniVersion":"1.0.0","code":7,"msg":"bad\nthing","details":"x"}"#)
            .unwrap();
        assert_eq!(e.code, 7);
        assert_eq!(e.msg, "bad thing");
        assert!(parse_error(b"garbage").is_none());
        assert!(parse_error(br#"{"msg":"no code"}"#).is_none());
        assert!(parse_error(br#"{"code":-1}"#).is_none());
    }
}
