//! Per-test OCI bundles: a rootfs and a config.json built from a sane default and then
//! changed by the test.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{json, Value};

/// The default configuration, close to what `runc spec` prints: the namespaces and mounts a
/// plain Linux container gets, the three default capabilities, no new privileges.
pub fn default_config(args: &[&str], cgroups_path: &str) -> Value {
    let caps = json!(["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]);
    json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": 0, "gid": 0},
            "args": args,
            "env": ["PATH=/bin:/sbin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": caps,
                "effective": caps,
                "permitted": caps
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": false},
        "hostname": "kosconf",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]}
        ],
        "linux": {
            "cgroupsPath": cgroups_path,
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}

/// A bundle directory owned by one test; removed with the test's directory.
pub struct Bundle {
    pub dir: PathBuf,
    pub config: Value,
}

impl Bundle {
    pub fn new(dir: PathBuf, config: Value) -> Self {
        Self { dir, config }
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// Path of `p` (absolute inside the container) on the host side of the rootfs.
    pub fn in_rootfs(&self, p: &str) -> PathBuf {
        self.rootfs().join(p.trim_start_matches('/'))
    }

    pub fn write_config(&self) -> Result<()> {
        let text = serde_json::to_string_pretty(&self.config)?;
        let path = self.dir.join("config.json");
        fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    }

    pub fn set_args(&mut self, args: &[&str]) {
        self.config["process"]["args"] = json!(args);
    }

    /// Edits the `linux.namespaces` array (made empty first if it is missing or malformed).
    fn edit_namespaces(&mut self, f: impl FnOnce(&mut Vec<Value>)) {
        let slot = &mut self.config["linux"]["namespaces"];
        let mut list = match slot.take() {
            Value::Array(a) => a,
            _ => Vec::new(),
        };
        f(&mut list);
        *slot = Value::Array(list);
    }

    /// Adds (or replaces) a namespace of `kind`, joining `path` when given.
    pub fn set_namespace(&mut self, kind: &str, path: Option<&str>) {
        self.remove_namespace(kind);
        let mut ns = json!({"type": kind});
        if let Some(p) = path {
            ns["path"] = json!(p);
        }
        self.edit_namespaces(|l| l.push(ns));
    }

    pub fn remove_namespace(&mut self, kind: &str) {
        self.edit_namespaces(|l| l.retain(|n| n["type"] != kind));
    }

    pub fn add_mount(&mut self, mount: Value) {
        if let Value::Array(m) = &mut self.config["mounts"] {
            m.push(mount);
        } else {
            self.config["mounts"] = json!([mount]);
        }
    }

    /// Adds a bind mount of a host path at `dest`.
    pub fn bind(&mut self, host: &Path, dest: &str, extra: &[&str]) {
        let mut opts = vec!["bind"];
        opts.extend_from_slice(extra);
        self.add_mount(json!({
            "destination": dest, "type": "bind",
            "source": host.to_string_lossy(), "options": opts
        }));
    }

    pub fn set_hook(&mut self, kind: &str, hooks: Value) {
        self.config["hooks"][kind] = hooks;
    }
}
