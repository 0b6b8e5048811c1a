//! Finding a running container: its init pid, cgroup path and device rules, asked of the
//! runtime that runs it (`RUNTIME [--root R] state ID`, then the bundle's config.json), so
//! kosrun, runc and crun containers are all found the same way.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use oci_spec::runtime::LinuxDeviceCgroup;

use crate::error::{Error, Result};

const MAX_CONFIG: u64 = 4 << 20;

#[derive(Debug, Clone)]
pub struct Container {
    pub id: String,
    /// The init's pid in kadcm's pid namespace.
    pub pid: i32,
    pub cgroups_path: Option<String>,
    /// The device rules of the container's config (the base v2 programs are built from).
    pub base_rules: Vec<LinuxDeviceCgroup>,
}

/// Where containers are looked up.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub binary: PathBuf,
    pub root: Option<PathBuf>,
}

impl Runtime {
    pub fn container(&self, id: &str) -> Result<Container> {
        let err = |message: String| Error::Container {
            id: id.to_string(),
            message,
        };
        let mut cmd = Command::new(&self.binary);
        if let Some(r) = &self.root {
            cmd.arg("--root").arg(r);
        }
        let out = cmd
            .arg("state")
            .arg(id)
            .output()
            .map_err(|e| err(format!("running {} state: {e}", self.binary.display())))?;
        if !out.status.success() {
            return Err(err(format!(
                "{} state: {}",
                self.binary.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let state: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| err(format!("state output is not JSON: {e}")))?;
        if state["status"] != "running" && state["status"] != "created" {
            return Err(err(format!("not running (status {})", state["status"])));
        }
        let pid = state["pid"]
            .as_i64()
            .filter(|p| *p > 0)
            .ok_or_else(|| err("state has no pid".into()))? as i32;
        let bundle = state["bundle"]
            .as_str()
            .ok_or_else(|| err("state has no bundle".into()))?;
        let (cgroups_path, base_rules) =
            read_config(&Path::new(bundle).join("config.json")).map_err(err)?;
        Ok(Container {
            id: id.to_string(),
            pid,
            cgroups_path,
            base_rules,
        })
    }
}

fn read_config(
    path: &Path,
) -> std::result::Result<(Option<String>, Vec<LinuxDeviceCgroup>), String> {
    let mut text = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CONFIG).read_to_end(&mut text))
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    let spec: oci_spec::runtime::Spec =
        serde_json::from_slice(&text).map_err(|e| format!("parsing {}: {e}", path.display()))?;
    let linux = spec.linux().as_ref();
    let cg = linux
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.display().to_string());
    let rules = linux
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.devices().clone())
        .unwrap_or_default();
    Ok((cg, rules))
}
