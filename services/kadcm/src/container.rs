//! Finding a running container: its init pid, cgroup path and device rules, asked of the
//! runtime that runs it (`RUNTIME [--root R] state ID`, then the bundle's config.json), so
//! kosrun, runc and crun containers are all found the same way.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use crate::error::{Error, Result};

const MAX_CONFIG: u64 = 4 << 20;

#[derive(Debug, Clone)]
pub struct Container {
    pub id: String,
    /// The init's pid in kadcm's pid namespace.
    pub pid: i32,
    pub cgroups_path: Option<String>,
    /// The device rules in force before kadcm changed anything: the config's rules, then
    /// the runtime-spec default devices every runtime allows, then the config's
    /// `linux.devices` (runc's and kosrun's order). v2 programs are rebuilt from these.
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

impl Container {
    /// A container whose engine already knows its init pid and bundle (kosd): the cgroup
    /// path and device rules come from the bundle's config.json, no runtime is asked.
    pub fn from_bundle(id: &str, pid: i32, config_json: &Path) -> Result<Container> {
        let err = |message: String| Error::Container {
            id: id.to_string(),
            message,
        };
        if pid <= 0 {
            return Err(err(format!("no init pid ({pid})")));
        }
        let (cgroups_path, base_rules) = read_config(config_json).map_err(err)?;
        Ok(Container {
            id: id.to_string(),
            pid,
            cgroups_path,
            base_rules,
        })
    }
}

fn allow_rule(
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(true);
    r.set_typ(Some(typ));
    r.set_major(major);
    r.set_minor(minor);
    r.set_access(Some(access.to_string()));
    r
}

/// The devices the runtime spec gives every Linux container (null, zero, full, random,
/// urandom, tty, console, ptmx, the pts slaves) and mknod of any node.
fn runtime_defaults() -> Vec<LinuxDeviceCgroup> {
    let c = LinuxDeviceType::C;
    let mut v: Vec<_> = [
        (1, 3),
        (1, 5),
        (1, 7),
        (1, 8),
        (1, 9),
        (5, 0),
        (5, 1),
        (5, 2),
    ]
    .into_iter()
    .map(|(ma, mi)| allow_rule(c, Some(ma), Some(mi), "rwm"))
    .collect();
    v.push(allow_rule(c, Some(136), None, "rwm"));
    v.push(allow_rule(c, None, None, "m"));
    v.push(allow_rule(LinuxDeviceType::B, None, None, "m"));
    v
}

fn read_config(
    path: &Path,
) -> std::result::Result<(Option<String>, Vec<LinuxDeviceCgroup>), String> {
    let mut text = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CONFIG + 1).read_to_end(&mut text))
        .map_err(|e| format!("reading {}: {e}", path.display()))?;
    if text.len() as u64 > MAX_CONFIG {
        return Err(format!(
            "{}: larger than {MAX_CONFIG} bytes",
            path.display()
        ));
    }
    let spec: oci_spec::runtime::Spec =
        serde_json::from_slice(&text).map_err(|e| format!("parsing {}: {e}", path.display()))?;
    let linux = spec.linux().as_ref();
    let cg = linux
        .and_then(|l| l.cgroups_path().as_ref())
        .map(|p| p.display().to_string());
    let mut rules = linux
        .and_then(|l| l.resources().as_ref())
        .and_then(|r| r.devices().clone())
        .unwrap_or_default();
    rules.extend(runtime_defaults());
    for d in linux
        .and_then(|l| l.devices().as_ref())
        .into_iter()
        .flatten()
    {
        let typ = match d.typ() {
            LinuxDeviceType::U => LinuxDeviceType::C,
            LinuxDeviceType::P => continue,
            t => t,
        };
        rules.push(allow_rule(typ, Some(d.major()), Some(d.minor()), "rwm"));
    }
    Ok((cg, rules))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::NodeType;
    use crate::passthrough::rules_allow;

    #[test]
    fn base_rules_keep_the_default_devices() {
        let dir = std::env::temp_dir().join(format!("kadcm-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let p = dir.join("config.json");
        std::fs::write(
            &p,
            r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"linux":{"cgroupsPath":"/kos/x",
            "resources":{"devices":[{"allow":false,"access":"rwm"}]},
            "devices":[{"path":"/dev/fuse","type":"c","major":10,"minor":229}]}}"#,
        )
        .expect("write");
        let (cg, rules) = read_config(&p).expect("read");
        assert_eq!(cg.as_deref(), Some("/kos/x"));
        assert!(rules_allow(&rules, NodeType::Char, 1, 3), "/dev/null");
        assert!(rules_allow(&rules, NodeType::Char, 136, 7), "pts");
        assert!(
            rules_allow(&rules, NodeType::Char, 10, 229),
            "linux.devices entry"
        );
        assert!(!rules_allow(&rules, NodeType::Char, 10, 232), "kvm");
        assert!(!rules_allow(&rules, NodeType::Block, 7, 0), "loop");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
