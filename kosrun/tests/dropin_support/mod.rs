//! Helpers for the drop-in tests under containerd and podman: a busybox-static
//! image as a docker-archive tarball built locally (no registry is ever
//! contacted), and commands whose output is captured through files.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub use crate::support::*;

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
    kos_testsupport::executable::copy_executable(
        Path::new("/bin/busybox"),
        &rootfs.join("bin/busybox"),
    )
    .expect("copy busybox");
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
