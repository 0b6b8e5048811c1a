//! Sandbox and container records, one JSON file each under the data dir, written atomically
//! (temporary file, fsync, rename) so a crash never leaves half a record.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use k8s_cri::v1 as cri;
use serde::{de::DeserializeOwned, Deserialize, Serialize};

use crate::error::{Error, Result};

/// A record larger than this is not ours.
const MAX_RECORD: u64 = 4 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxState {
    Ready,
    NotReady,
}

/// A pod sandbox and what was made for it (so it can be unmade after a restart).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: String,
    pub config: cri::PodSandboxConfig,
    pub state: SandboxState,
    pub created_at: i64,
    /// The pod's directory (pins, resolv.conf, hosts, hostname, shm).
    pub dir: PathBuf,
    /// Pinned namespaces; `None` where the pod uses the host's.
    pub netns: Option<PathBuf>,
    pub ipcns: Option<PathBuf>,
    pub utsns: Option<PathBuf>,
    /// The pod's user namespace (userns mode POD); its net/ipc/uts pins are then ours too,
    /// not kos-network's.
    #[serde(default)]
    pub userns: Option<PathBuf>,
    /// The shared-PID holder: pid and its start time (to tell it from a reused pid).
    pub holder: Option<(i32, u64)>,
    /// CNI network name when attached.
    pub cni_network: Option<String>,
    pub ips: Vec<String>,
    /// The pod's cgroup parent (cgroupfs path) and whether we made it.
    pub cgroup_parent: String,
    pub own_cgroup: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    pub sandbox_id: String,
    pub config: cri::ContainerConfig,
    pub image_id: String,
    pub image_name: String,
    pub state: ContainerState,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    pub bundle: PathBuf,
    pub shim_address: String,
    pub pid: u32,
    /// Absolute log path (sandbox log directory + config log path), empty for none.
    pub log_path: String,
    pub cgroups_path: String,
    pub stop_signal: i32,
}

/// The on-disk store.
#[derive(Debug, Clone)]
pub struct StateDir {
    sandboxes: PathBuf,
    containers: PathBuf,
}

static TMP_SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    // A name of its own per write: two writers of one record must not share a scratch file.
    let n = TMP_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{n}"));
    let mut f = std::fs::File::create(&tmp).map_err(|e| Error::io("writing", &tmp, e))?;
    f.write_all(bytes)
        .and_then(|_| f.sync_all())
        .map_err(|e| Error::io("writing", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| Error::io("renaming", path, e))
}

fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let f = std::fs::File::open(path).map_err(|e| Error::io("reading", path, e))?;
    let mut buf = Vec::new();
    f.take(MAX_RECORD)
        .read_to_end(&mut buf)
        .map_err(|e| Error::io("reading", path, e))?;
    serde_json::from_slice(&buf).map_err(|e| Error::Internal {
        step: "parsing a state record",
        message: format!("{}: {e}", path.display()),
    })
}

fn list<T: DeserializeOwned>(dir: &Path) -> Result<Vec<T>> {
    let mut out = Vec::new();
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(Error::io("listing", dir, e)),
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.extension().and_then(|x| x.to_str()) == Some("json") {
            match read_json(&p) {
                Ok(r) => out.push(r),
                Err(err) => tracing::warn!(error = %err, "skipping unreadable record"),
            }
        }
    }
    Ok(out)
}

impl StateDir {
    pub fn open(dir: &Path) -> Result<StateDir> {
        let s = StateDir {
            sandboxes: dir.join("sandboxes"),
            containers: dir.join("containers"),
        };
        for d in [&s.sandboxes, &s.containers] {
            std::fs::create_dir_all(d).map_err(|e| Error::io("creating", d, e))?;
        }
        Ok(s)
    }

    pub fn put_sandbox(&self, r: &SandboxRecord) -> Result<()> {
        let bytes = serde_json::to_vec(r).map_err(|e| Error::Internal {
            step: "encoding a sandbox record",
            message: e.to_string(),
        })?;
        write_atomic(&self.sandboxes.join(format!("{}.json", r.id)), &bytes)
    }

    pub fn put_container(&self, r: &ContainerRecord) -> Result<()> {
        let bytes = serde_json::to_vec(r).map_err(|e| Error::Internal {
            step: "encoding a container record",
            message: e.to_string(),
        })?;
        write_atomic(&self.containers.join(format!("{}.json", r.id)), &bytes)
    }

    pub fn delete_sandbox(&self, id: &str) -> Result<()> {
        remove(&self.sandboxes.join(format!("{id}.json")))
    }

    pub fn delete_container(&self, id: &str) -> Result<()> {
        remove(&self.containers.join(format!("{id}.json")))
    }

    pub fn sandboxes(&self) -> Result<Vec<SandboxRecord>> {
        list(&self.sandboxes)
    }

    pub fn containers(&self) -> Result<Vec<ContainerRecord>> {
        list(&self.containers)
    }
}

fn remove(p: &Path) -> Result<()> {
    match std::fs::remove_file(p) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("removing", p, e)),
    }
}
