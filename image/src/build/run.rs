//! RUN steps: a bundle over the step's overlay rootfs, executed with
//! `kosrun run`, its output streamed line by line. The container is deleted
//! when it exits, and by a guard when the build is interrupted.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kos_security::seccomp::{self, profile::DEFAULT_CAPABILITIES};
use kos_security::spec_defaults;
use serde_json::json;
use tracing::debug;

/// How the step's container reaches the network.
#[derive(Debug, Clone)]
pub enum Net {
    /// Its own network namespace with only loopback.
    None,
    /// The host's network namespace.
    Host,
    /// A namespace the caller prepared (bridge), with its resolv.conf/hosts.
    Netns {
        path: PathBuf,
        resolv_conf: Option<PathBuf>,
        hosts: Option<PathBuf>,
    },
}

/// What to run.
pub struct Spec<'a> {
    pub id: &'a str,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    pub rootfs: &'a Path,
    pub net: Net,
    /// The cgroup the step's container goes below (the engine's cgroup parent).
    pub cgroup_parent: &'a str,
}

/// The exit of a step's process.
pub struct Outcome {
    pub code: i32,
    /// The last lines of output, for the error message.
    pub tail: String,
}

/// Mount destinations the runtime creates when missing; a step that did not
/// have them must not commit them.
pub fn mount_points(net: &Net) -> Vec<&'static str> {
    let mut v = vec!["proc", "dev", "sys"];
    if !matches!(net, Net::None) {
        v.extend(["etc/resolv.conf", "etc/hosts"]);
    }
    v
}

fn config(spec: &Spec) -> std::io::Result<serde_json::Value> {
    // Docker's build containers are ordinary containers: its default
    // capability set and seccomp profile, not the runtime's own defaults.
    let caps = serde_json::to_value(DEFAULT_CAPABILITIES).map_err(std::io::Error::other)?;
    let seccomp =
        serde_json::to_value(seccomp::default_profile()).map_err(std::io::Error::other)?;
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
    ];
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]}),
    ];
    let bind = |dest: &str, src: &Path| json!({"destination": dest, "type": "bind", "source": src, "options": ["rbind", "ro", "nosuid", "nodev", "noexec"]});
    match &spec.net {
        Net::None => namespaces.push(json!({"type": "network"})),
        Net::Host => {
            for f in ["/etc/resolv.conf", "/etc/hosts"] {
                if Path::new(f).is_file() {
                    mounts.push(bind(f, Path::new(f)));
                }
            }
        }
        Net::Netns {
            path,
            resolv_conf,
            hosts,
        } => {
            namespaces.push(json!({"type": "network", "path": path}));
            if let Some(r) = resolv_conf {
                mounts.push(bind("/etc/resolv.conf", r));
            }
            if let Some(h) = hosts {
                mounts.push(bind("/etc/hosts", h));
            }
        }
    }
    let hostname: String = spec
        .id
        .trim_start_matches("kos-build-")
        .chars()
        .take(12)
        .collect();
    Ok(json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": spec.uid, "gid": spec.gid, "additionalGids": spec.additional_gids},
            "args": spec.args,
            "env": spec.env,
            "cwd": spec.cwd,
            "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
            "noNewPrivileges": false,
        },
        "root": {"path": spec.rootfs, "readonly": false},
        "hostname": hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": format!("/{}/{}", spec.cgroup_parent.trim_matches('/'), spec.id),
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "maskedPaths": spec_defaults::masked_paths(),
            "readonlyPaths": spec_defaults::readonly_paths(),
            "seccomp": seccomp,
        },
    }))
}

/// Deletes the container on drop unless it is known to be gone.
struct ContainerGuard<'a> {
    /// Set once `kosrun run` returned: it removed the container itself.
    done: bool,
    kosrun: &'a Path,
    state: &'a Path,
    id: &'a str,
}

impl Drop for ContainerGuard<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let r = Command::new(self.kosrun)
            .arg("--root")
            .arg(self.state)
            .args(["delete", "--force", self.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        debug!(id = self.id, ?r, "build container removed");
    }
}

const TAIL_LINES: usize = 20;

/// Runs the step; every output line goes to `line` (with its newline).
pub fn run(
    kosrun: &Path,
    state: &Path,
    bundle: &Path,
    spec: &Spec,
    line: &mut dyn FnMut(&str),
) -> std::io::Result<Outcome> {
    std::fs::create_dir_all(bundle)?;
    std::fs::create_dir_all(state)?;
    let cfg = serde_json::to_vec(&config(spec)?).map_err(std::io::Error::other)?;
    std::fs::write(bundle.join("config.json"), cfg)?;
    let (reader, writer) = std::io::pipe()?;
    let writer2 = writer.try_clone()?;
    let mut guard = ContainerGuard {
        done: false,
        kosrun,
        state,
        id: spec.id,
    };
    let mut child = Command::new(kosrun)
        .arg("--root")
        .arg(state)
        .arg("run")
        .arg("--bundle")
        .arg(bundle)
        .arg(spec.id)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(writer2)
        .spawn()
        .map_err(|e| {
            std::io::Error::new(e.kind(), format!("starting {}: {e}", kosrun.display()))
        })?;
    let mut tail: std::collections::VecDeque<String> = std::collections::VecDeque::new();
    let mut r = BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        // Bound one line: a step printing without newlines still streams.
        let n = (&mut r).take(64 * 1024).read_until(b'\n', &mut buf)?;
        if n == 0 {
            break;
        }
        let mut s = String::from_utf8_lossy(&buf).into_owned();
        if !s.ends_with('\n') {
            s.push('\n');
        }
        line(&s);
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(s);
    }
    let status = child.wait()?;
    // `kosrun run` deletes the container when it exits normally; a runtime
    // killed by a signal may have left it.
    guard.done = status.code().is_some();
    let code = match status.code() {
        Some(c) => c,
        None => {
            use std::os::unix::process::ExitStatusExt;
            128 + status.signal().unwrap_or(0)
        }
    };
    Ok(Outcome {
        code,
        tail: tail.into_iter().collect(),
    })
}

use std::io::Read as _;
