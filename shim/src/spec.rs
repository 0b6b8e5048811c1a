//! The few parts of the bundle's config.json the shim reads itself.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use serde::Deserialize;

const MAX_CONFIG: u64 = 16 << 20;

#[derive(Debug, Default, Deserialize)]
pub struct Spec {
    #[serde(default)]
    pub annotations: HashMap<String, String>,
    #[serde(default)]
    pub linux: Option<Linux>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Linux {
    #[serde(default, rename = "cgroupsPath")]
    pub cgroups_path: Option<String>,
    #[serde(default)]
    pub namespaces: Vec<Namespace>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Namespace {
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub path: Option<String>,
}

impl Spec {
    pub fn load(bundle: &Path) -> Result<Spec, String> {
        let path = bundle.join("config.json");
        let data = read_bounded(&path, MAX_CONFIG).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!("bundle {} has no config.json", bundle.display())
            } else {
                format!("{}: {e}", path.display())
            }
        })?;
        serde_json::from_slice(&data).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Whether the container gets a pid namespace of its own: if not, its processes do not
    /// die with the init, and the shim kills them when it exits (as containerd's shims do).
    pub fn own_pid_namespace(&self) -> bool {
        self.linux.as_ref().is_some_and(|l| {
            l.namespaces
                .iter()
                .any(|n| n.kind == "pid" && n.path.as_deref().unwrap_or("").is_empty())
        })
    }

    pub fn cgroups_path(&self) -> Option<&str> {
        self.linux
            .as_ref()
            .and_then(|l| l.cgroups_path.as_deref())
            .filter(|p| !p.is_empty())
    }
}

/// Reads a file of at most `max` bytes; a bigger one is an error, not a truncation.
pub fn read_bounded(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let f = std::fs::File::open(path)?;
    let mut data = Vec::new();
    f.take(max + 1).read_to_end(&mut data)?;
    if data.len() as u64 > max {
        return Err(std::io::Error::other(format!("larger than {max} bytes")));
    }
    Ok(data)
}

/// The grouping key of a container: one shim serves every container of a pod.
pub const GROUP_ANNOTATIONS: [&str; 2] = [
    "io.containerd.runc.v2.group",
    "io.kubernetes.cri.sandbox-id",
];
