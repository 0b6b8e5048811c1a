//! Helpers for the exec and terminal tests: busybox bundles, detached
//! containers that delete themselves, and kosrun invocations.

#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

use serde_json::Value;

pub use crate::support::*;

/// A bundle from `kosrun spec` running `args`, then changed by `tweak`.
pub fn bundle(dir: &Path, args: &[&str], tweak: impl FnOnce(&mut Value)) {
    let mut c = spec_config(dir, args);
    tweak(&mut c);
    write_config(dir, &c);
}

/// A detached container with its own state root; deleted (forced) on drop.
pub struct Container {
    pub id: String,
    pub root: TempDir,
    pub bundle: TempDir,
}

impl Container {
    /// `kosrun run -d` of a bundle running `args`.
    pub fn start(args: &[&str], tweak: impl FnOnce(&mut Value)) -> Container {
        let c = Container {
            id: unique("exec"),
            root: TempDir::new("exec-root"),
            bundle: TempDir::new("exec-bundle"),
        };
        bundle(&c.bundle.0, args, tweak);
        let out = c.kosrun(&["run", "-d", "-b", &c.bundle.0.to_string_lossy(), &c.id]);
        assert!(
            out.status.success(),
            "run -d failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        c
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(kosrun());
        c.arg("--root").arg(&self.root.0);
        c
    }

    /// Output goes through files, not pipes: a detached process keeps its
    /// stdio open long after kosrun has returned.
    pub fn kosrun(&self, args: &[&str]) -> Output {
        output_via_files(self.cmd().args(args).stdin(Stdio::null()))
    }

    /// `kosrun exec ID args...` with extra flags before the id.
    pub fn exec(&self, flags: &[&str], args: &[&str]) -> Output {
        let mut v = vec!["exec"];
        v.extend_from_slice(flags);
        v.push(&self.id);
        v.extend_from_slice(args);
        self.kosrun(&v)
    }

    pub fn state(&self) -> Value {
        let out = self.kosrun(&["state", &self.id]);
        serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
    }

    pub fn pid(&self) -> i32 {
        self.state()["pid"].as_i64().unwrap_or(0) as i32
    }

    /// Every pid in the container's cgroup (the pids controller's view).
    pub fn cgroup_pids(&self) -> Vec<i32> {
        let pid = self.pid();
        let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
        let Some(path) = cg.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrl, p) = (f.next()?, f.next()?, f.next()?);
            ctrl.split(',').any(|c| c == "pids").then(|| p.to_string())
        }) else {
            return Vec::new();
        };
        let procs = format!("/sys/fs/cgroup/pids{path}/cgroup.procs");
        std::fs::read_to_string(procs)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.kosrun(&["delete", "--force", &self.id]);
    }
}

/// The namespace identity (e.g. "pid:[4026531836]") of a process.
pub fn ns_of(pid: &str, ns: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}
