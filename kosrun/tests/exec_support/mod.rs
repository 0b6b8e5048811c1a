//! Helpers for the exec and terminal tests: busybox bundles, detached
//! containers that delete themselves, and kosrun invocations.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

pub fn kosrun() -> &'static str {
    env!("CARGO_BIN_EXE_kosrun")
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name no other test (or test run) uses; contains "kos" for the leak checks.
pub fn unique(what: &str) -> String {
    format!(
        "kos-{what}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        let p = std::env::temp_dir().join(unique(what));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A rootfs of Debian's static busybox and its applets.
pub fn busybox_rootfs(dir: &Path) {
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "root"] {
        std::fs::create_dir_all(dir.join(d)).expect("rootfs dir");
    }
    std::fs::copy("/bin/busybox", dir.join("bin/busybox")).expect("copy busybox");
    let list = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    for a in String::from_utf8_lossy(&list.stdout).lines() {
        if a != "busybox" && !a.is_empty() {
            let _ = std::os::unix::fs::symlink("busybox", dir.join("bin").join(a));
        }
    }
    std::fs::write(dir.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    std::fs::write(dir.join("etc/group"), "root:x:0:\n").expect("group");
}

/// A bundle from `kosrun spec` running `args`, then changed by `tweak`.
pub fn bundle(dir: &Path, args: &[&str], tweak: impl FnOnce(&mut Value)) {
    busybox_rootfs(&dir.join("rootfs"));
    let st = Command::new(kosrun())
        .args(["spec", "-b"])
        .arg(dir)
        .status()
        .expect("kosrun spec");
    assert!(st.success(), "kosrun spec failed");
    let path = dir.join("config.json");
    let mut c: Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read config")).expect("config");
    c["process"]["args"] = Value::from(args.iter().map(|a| a.to_string()).collect::<Vec<_>>());
    c["process"]["terminal"] = Value::from(false);
    tweak(&mut c);
    std::fs::write(&path, serde_json::to_vec_pretty(&c).expect("json")).expect("write config");
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

/// Run to completion with stdout and stderr captured in files.
pub fn output_via_files(cmd: &mut Command) -> Output {
    let dir = TempDir::new("out");
    let (o, e) = (dir.0.join("stdout"), dir.0.join("stderr"));
    let status = cmd
        .stdout(std::fs::File::create(&o).expect("stdout file"))
        .stderr(std::fs::File::create(&e).expect("stderr file"))
        .status()
        .expect("run command");
    Output {
        status,
        stdout: std::fs::read(&o).unwrap_or_default(),
        stderr: std::fs::read(&e).unwrap_or_default(),
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The namespace identity (e.g. "pid:[4026531836]") of a process.
pub fn ns_of(pid: &str, ns: &str) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/{ns}"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Whether `script` (util-linux) is there to give a command a terminal.
pub fn have_script() -> bool {
    Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}
