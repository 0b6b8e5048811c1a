//! Docker-archive images (`ctr images import`) built from the host's /bin/busybox.

use std::path::Path;
use std::process::Command;

use sha2::{Digest, Sha256};

const APPLETS: &[&str] = &[
    "sh", "true", "false", "cat", "echo", "sleep", "ls", "ps", "id", "env", "head", "tail", "yes",
    "dd", "tty", "stty", "printf", "seq", "wc", "kill", "mkdir", "rm", "tr", "stat",
];

fn hex(d: &[u8]) -> String {
    Sha256::digest(d)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes a docker-save archive of a busybox image named `name` with command `cmd`.
pub fn docker_archive(dest: &Path, name: &str, cmd: &[&str]) {
    let work = dest.with_extension("build");
    let root = work.join("root");
    let out = work.join("out");
    std::fs::create_dir_all(root.join("bin")).expect("mkdir");
    std::fs::create_dir_all(root.join("tmp")).expect("mkdir");
    std::fs::create_dir_all(&out).expect("mkdir");
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static");
    for a in APPLETS {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).expect("applet");
    }
    let layer = work.join("layer.tar");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&layer)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success());
    let layer_bytes = std::fs::read(&layer).expect("layer");
    let diff = hex(&layer_bytes);
    std::fs::create_dir_all(out.join(&diff)).expect("mkdir");
    std::fs::write(out.join(&diff).join("layer.tar"), &layer_bytes).expect("write");
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": cmd, "Env": ["PATH=/bin"]},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff}")]},
    });
    let cfg = serde_json::to_vec(&config).expect("json");
    let cfg_hex = hex(&cfg);
    std::fs::write(out.join(format!("{cfg_hex}.json")), &cfg).expect("write");
    let manifest = serde_json::json!([{
        "Config": format!("{cfg_hex}.json"),
        "RepoTags": [name],
        "Layers": [format!("{diff}/layer.tar")],
    }]);
    std::fs::write(
        out.join("manifest.json"),
        serde_json::to_vec(&manifest).expect("json"),
    )
    .expect("write");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&out)
        .arg("-cf")
        .arg(dest)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success());
    let _ = std::fs::remove_dir_all(&work);
}

/// A bundle directory for driving the shim directly: busybox rootfs and a config.json from
/// `kosrun spec`, running `args`, in the cgroup `/<cgroup_parent>/<id>`.
pub fn bundle(dir: &Path, id: &str, cgroup_parent: &str, args: &[&str], terminal: bool) {
    let root = dir.join("rootfs");
    std::fs::create_dir_all(root.join("bin")).expect("mkdir");
    kos_testsupport::executable::copy_executable(
        Path::new("/bin/busybox"),
        &root.join("bin/busybox"),
    )
    .expect("busybox-static");
    for a in APPLETS {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).expect("applet");
    }
    let st = Command::new(super::kosrun())
        .arg("spec")
        .current_dir(dir)
        .status()
        .expect("kosrun spec");
    assert!(st.success());
    let p = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&p).expect("read")).expect("json");
    v["process"]["args"] = serde_json::json!(args);
    v["process"]["terminal"] = serde_json::json!(terminal);
    v["process"]["env"] = serde_json::json!(["PATH=/bin"]);
    v["root"]["readonly"] = serde_json::json!(false);
    v["linux"]["cgroupsPath"] = serde_json::json!(format!("/{cgroup_parent}/{id}"));
    std::fs::write(&p, serde_json::to_vec_pretty(&v).expect("json")).expect("write");
}
