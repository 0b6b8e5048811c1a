//! Helpers for the drop-in tests under containerd and podman: installing a
//! client from Debian when absent, a busybox-static image as a docker-archive
//! tarball built locally (no registry is ever contacted), and commands whose
//! output is captured through files.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub fn kosrun() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kosrun"))
}

/// runc, for the same tests with runc in kosrun's place.
pub fn runc() -> Option<PathBuf> {
    ["/usr/sbin/runc", "/usr/bin/runc"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

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

/// Whether `bin` runs; if not, `apt-get install -y pkg` once and look again.
pub fn ensure_tool(bin: &str, pkg: &str) -> bool {
    let present = || {
        Command::new("sh")
            .args(["-c", &format!("command -v {bin}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if present() {
        return true;
    }
    let _ = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", pkg])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    present()
}

/// Run with stdout/stderr in files (a detached process may hold pipes forever).
pub fn run(cmd: &mut Command) -> Output {
    let dir = TempDir::new("out");
    let (o, e) = (dir.0.join("stdout"), dir.0.join("stderr"));
    let status = cmd
        .stdin(Stdio::null())
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

/// Assert success and return stdout.
pub fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({:?}): {}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    text(&out.stdout)
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn sha256(path: &Path) -> String {
    let out = Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    text(&out.stdout)
        .split_whitespace()
        .next()
        .expect("digest")
        .to_string()
}

/// A docker-archive tarball of a one-layer image: Debian's busybox-static with
/// its applets, tagged `tag`. Both `ctr images import` and `podman load` take it.
pub fn busybox_archive(dir: &Path, tag: &str) -> PathBuf {
    let rootfs = dir.join("rootfs");
    for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "root"] {
        std::fs::create_dir_all(rootfs.join(d)).expect("rootfs dir");
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy busybox");
    let list = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    for a in text(&list.stdout).lines() {
        if a != "busybox" && !a.is_empty() {
            let _ = std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a));
        }
    }
    std::fs::write(rootfs.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\n").expect("passwd");
    std::fs::write(rootfs.join("etc/group"), "root:x:0:\n").expect("group");
    let img = dir.join("image");
    std::fs::create_dir_all(&img).expect("image dir");
    let layer = img.join("layer.tar");
    ok(Command::new("tar")
        .arg("--numeric-owner")
        .arg("-C")
        .arg(&rootfs)
        .arg("-cf")
        .arg(&layer)
        .arg("."));
    let diff_id = sha256(&layer);
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff_id}")]},
        "history": [{"created_by": "kos test: busybox-static"}]
    });
    let cfg_path = img.join("config.json");
    std::fs::write(&cfg_path, serde_json::to_vec(&config).expect("json")).expect("config");
    let cfg_digest = sha256(&cfg_path);
    std::fs::rename(&cfg_path, img.join(format!("{cfg_digest}.json"))).expect("rename");
    let manifest = serde_json::json!([{
        "Config": format!("{cfg_digest}.json"),
        "RepoTags": [tag],
        "Layers": ["layer.tar"]
    }]);
    std::fs::write(
        img.join("manifest.json"),
        serde_json::to_vec(&manifest).expect("json"),
    )
    .expect("manifest");
    let archive = dir.join("busybox.tar");
    ok(Command::new("tar")
        .arg("-C")
        .arg(&img)
        .arg("-cf")
        .arg(&archive)
        .arg("manifest.json")
        .arg(format!("{cfg_digest}.json"))
        .arg("layer.tar"));
    archive
}
