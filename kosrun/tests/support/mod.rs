//! What every kosrun integration test needs: the binary, unique names, temp
//! directories that clean up after themselves, a busybox-static rootfs, and
//! commands whose output goes through files (a pipe held open by a container's
//! init would never reach EOF).

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub fn kosrun() -> &'static str {
    kos_testsupport::kosrun_or(env!("CARGO_BIN_EXE_kosrun"))
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

pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Under /var/tmp: overlay upper directories need a filesystem that takes xattrs.
    pub fn new(what: &str) -> TempDir {
        let p = Path::new("/var/tmp").join(unique(what));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Mounts a client left under the directory go first.
        let _ = Command::new("umount")
            .arg("-R")
            .arg("-l")
            .arg(&self.0)
            .stderr(Stdio::null())
            .status();
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
            let prefix = self.0.to_string_lossy().into_owned();
            let mut inside: Vec<&str> = mounts
                .lines()
                .filter_map(|l| l.split(' ').nth(1))
                .filter(|m| m.starts_with(&prefix))
                .collect();
            inside.sort_by_key(|m| std::cmp::Reverse(m.len()));
            for m in inside {
                let _ = Command::new("umount").args(["-l", m]).status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A rootfs of Debian's static busybox and its applets.
pub fn busybox_rootfs(dir: &Path) {
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "root"] {
        std::fs::create_dir_all(dir.join(d)).expect("rootfs dir");
    }
    kos_testsupport::executable::copy_executable(
        Path::new("/bin/busybox"),
        &dir.join("bin/busybox"),
    )
    .expect("copy busybox");
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

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A busybox rootfs under `dir/rootfs` and the config `kosrun spec` writes, running
/// `args` without a terminal; the caller changes it and writes it with `write_config`.
pub fn spec_config(dir: &Path, args: &[&str]) -> serde_json::Value {
    busybox_rootfs(&dir.join("rootfs"));
    let st = Command::new(kosrun())
        .args(["spec", "-b"])
        .arg(dir)
        .status()
        .expect("kosrun spec");
    assert!(st.success(), "kosrun spec failed");
    let path = dir.join("config.json");
    let mut c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).expect("read config")).expect("config");
    c["process"]["args"] = serde_json::json!(args);
    c["process"]["terminal"] = serde_json::Value::from(false);
    c
}

pub fn write_config(dir: &Path, config: &serde_json::Value) {
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec_pretty(config).expect("json"),
    )
    .expect("write config");
}

/// Records that the calling test cannot run here because the machine lacks a kernel feature
/// (`reason` names it). A missing tool is never a skip: `require_tool` fails instead, and
/// scripts/deps.sh installs it. `make test` points KOS_TEST_SKIPS at a directory and counts
/// the lines written there.
pub fn skip(reason: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .to_string();
    let line = format!("{} {test}: {reason}\n", env!("CARGO_PKG_NAME"));
    eprint!("KOS-SKIP {line}");
    if let Some(dir) = std::env::var_os("KOS_TEST_SKIPS") {
        use std::io::Write;
        let p = Path::new(&dir).join("skips.log");
        // One O_APPEND write per line: concurrent tests never interleave.
        let res = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = res {
            panic!("recording the skip in {}: {e}", p.display());
        }
    }
}

/// The path of `bin` on PATH; fails the test when it is missing, naming the Debian package
/// that scripts/deps.sh installs it from.
pub fn require_tool(bin: &str, pkg: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("{bin} is not installed: run scripts/deps.sh (Debian package {pkg})")
        })
}
