//! Device nodes hot-plugged into running containers through kadcm's passthrough: the kaim
//! policy judges, the cgroup rule is added (v1 line, v2 program), the node is made in the
//! container's /dev; detach takes both away again. kosd knows each container's init pid
//! and bundle, so kadcm is handed the container directly instead of asking the runtime.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde::{Deserialize, Serialize};

use crate::containers::record::{Container as Record, Status};
use crate::error::{ApiError, Result};

/// `POST /kos/containers/{id}/devices`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct AttachRequest {
    /// The host's device node.
    pub path: String,
    /// Where it appears in the container (below /dev); the host path by default.
    #[serde(default)]
    pub path_in_container: Option<String>,
    /// Cgroup access, a subset of "rwm" ("rwm" by default).
    #[serde(default)]
    pub permissions: Option<String>,
}

/// A device attached to a container, as the API shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Attached {
    pub path_on_host: String,
    pub path_in_container: String,
    pub permissions: String,
    /// "c" or "b".
    pub r#type: String,
    pub major: u32,
    pub minor: u32,
    #[serde(skip)]
    node: kadcm::node::NodeSpec,
    /// The init it was attached under: a restarted container has a fresh /dev and cgroup.
    #[serde(skip)]
    pid: i32,
}

/// Why a hot-plug failed: the policy's refusal is its own case (403).
#[derive(Debug)]
pub enum Refused {
    Denied(String),
    Api(ApiError),
}

impl From<ApiError> for Refused {
    fn from(e: ApiError) -> Self {
        Refused::Api(e)
    }
}

fn map_err(e: kadcm::Error) -> Refused {
    use kadcm::Error as K;
    match e {
        K::Denied { .. } => Refused::Denied(e.to_string()),
        K::HotplugInvalid(_) | K::Read { .. } => Refused::Api(ApiError::bad(e.to_string())),
        K::Container { .. } => Refused::Api(ApiError::Conflict(e.to_string())),
        _ => Refused::Api(ApiError::Internal(e.to_string())),
    }
}

/// Without `--device-policy`, hot-plug through kosd's own (root-only) socket is allowed:
/// whoever holds that socket can already run privileged containers.
const ALLOW_ALL: &str =
    "package kaim\n\nallow := true\n\nreason := \"no device policy configured\"\n";

pub struct Hotplug {
    /// The policy's passthrough. Without `--device-policy` it is made (the allow-all policy
    /// compiled) at the first hot-plug: a kosd that plugs nothing never loads the Rego engine.
    passthrough: OnceLock<kadcm::passthrough::Passthrough>,
    attached: Mutex<HashMap<String, Vec<Attached>>>,
}

fn running(c: &Record) -> Result<i32> {
    if c.state.status == Status::Running && c.state.pid > 0 {
        Ok(c.state.pid as i32)
    } else {
        Err(ApiError::Conflict(format!(
            "Container {} is not running",
            c.id
        )))
    }
}

fn kadcm_container(
    c: &Record,
    pid: i32,
    config: &Path,
) -> std::result::Result<kadcm::container::Container, Refused> {
    kadcm::container::Container::from_bundle(&c.id, pid, config).map_err(map_err)
}

impl Hotplug {
    /// `policy` is the `--device-policy` one, already compiled (a bad file stops kosd at
    /// start); `None` allows every hot-plug.
    pub fn new(policy: Option<Arc<kaim::Policy>>) -> Hotplug {
        let passthrough = OnceLock::new();
        if let Some(policy) = policy {
            let _ = passthrough.set(kadcm::passthrough::Passthrough::new(policy));
        }
        Hotplug {
            passthrough,
            attached: Mutex::new(HashMap::new()),
        }
    }

    fn passthrough(&self) -> Result<&kadcm::passthrough::Passthrough> {
        if let Some(p) = self.passthrough.get() {
            return Ok(p);
        }
        let policy = kaim::Policy::from_source(Path::new("<no device policy>"), ALLOW_ALL)
            .map_err(|e| ApiError::internal("compiling the allow-all device policy", e))?;
        Ok(self
            .passthrough
            .get_or_init(|| kadcm::passthrough::Passthrough::new(Arc::new(policy))))
    }

    fn records(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Attached>>> {
        self.attached.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Drops the records of a removed container.
    pub fn forget(&self, id: &str) {
        self.records().remove(id);
    }

    /// The devices attached to the container's current init.
    pub fn list(&self, c: &Record) -> Vec<Attached> {
        let pid = c.state.pid as i32;
        let mut g = self.records();
        let Some(v) = g.get_mut(&c.id) else {
            return Vec::new();
        };
        v.retain(|a| a.pid == pid);
        v.clone()
    }

    /// `config`: the container's config.json.
    pub fn attach(
        &self,
        c: &Record,
        config: &Path,
        req: &AttachRequest,
    ) -> std::result::Result<Attached, Refused> {
        let pid = running(c)?;
        let host = Path::new(&req.path);
        if !host.is_absolute() {
            return Err(
                ApiError::bad(format!("device path {:?} is not absolute", req.path)).into(),
            );
        }
        let inside = PathBuf::from(req.path_in_container.as_deref().unwrap_or(&req.path));
        // Checked before the policy or the cgroup see it: a node goes only below /dev.
        let plain = inside
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
        if !plain || !inside.starts_with("/dev") || inside == Path::new("/dev") {
            return Err(ApiError::bad(format!(
                "device path in the container {} must be a plain path below /dev",
                inside.display()
            ))
            .into());
        }
        if self
            .list(c)
            .iter()
            .any(|a| Path::new(&a.path_in_container) == inside)
        {
            return Err(ApiError::Conflict(format!(
                "a device is already attached at {} in container {}",
                inside.display(),
                c.id
            ))
            .into());
        }
        let kc = kadcm_container(c, pid, config)?;
        let device =
            kadcm::sysfs::device_for_node(Path::new(super::SYS_ROOT), host).map_err(map_err)?;
        let access = req
            .permissions
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "rwm".into());
        let opts = kadcm::passthrough::AttachOptions {
            path: Some(inside),
            access: access.clone(),
            ..Default::default()
        };
        let node = self
            .passthrough()?
            .attach(&kc, &device, &opts)
            .map_err(map_err)?;
        let a = Attached {
            path_on_host: req.path.clone(),
            path_in_container: node.path.display().to_string(),
            permissions: access,
            r#type: node.node_type.letter().to_string(),
            major: node.major,
            minor: node.minor,
            node,
            pid,
        };
        self.records()
            .entry(c.id.clone())
            .or_default()
            .push(a.clone());
        Ok(a)
    }

    /// Takes the device attached at `path_in_container` out again.
    /// `config`: the container's config.json.
    pub fn detach(
        &self,
        c: &Record,
        config: &Path,
        path_in_container: &str,
    ) -> std::result::Result<Attached, Refused> {
        let pid = running(c)?;
        let a = self
            .list(c)
            .into_iter()
            .find(|a| a.path_in_container == path_in_container)
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "no device attached at {path_in_container} in container {}",
                    c.id
                ))
            })?;
        let kc = kadcm_container(c, pid, config)?;
        self.passthrough()?.detach(&kc, &a.node).map_err(map_err)?;
        if let Some(v) = self.records().get_mut(&c.id) {
            v.retain(|x| x.path_in_container != path_in_container);
        }
        Ok(a)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn allow_all_policy_compiled_at_first_use() {
        let h = Hotplug::new(None);
        assert!(h.passthrough.get().is_none());
        h.passthrough().unwrap();
        assert!(h.passthrough.get().is_some());
        let p = kaim::Policy::from_source(Path::new("<test>"), ALLOW_ALL).unwrap();
        let d = p.evaluate(serde_json::json!({"device": {"path": "/dev/null"}}));
        assert!(d.allow, "{d:?}");
    }
}
