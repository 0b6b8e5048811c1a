//! Host devices in kosd, over kadcm: CDI device names at create/start (`cdi`), the kernel's
//! device uevents in the /events stream (`events`), and device nodes hot-plugged into
//! running containers and taken out again, each judged by a kaim policy (`hotplug`), and
//! kaim grants for containers labelled for one (`grant`).

pub mod cdi;
pub mod events;
pub mod grant;
pub mod hotplug;

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::{ApiError, Result};

/// Where sysfs is: the device tree kadcm reads.
pub const SYS_ROOT: &str = "/sys";

/// What every devices call shares: the CDI spec directories, the passthrough state and
/// kaim's control socket.
pub struct Devices {
    /// CDI spec directories, lowest priority first.
    pub cdi_dirs: Vec<PathBuf>,
    pub hotplug: hotplug::Hotplug,
    kaim: Option<grant::Kaim>,
    /// Where grant sockets are made (EXEC_ROOT/kaim).
    grants_dir: PathBuf,
    /// Containers' directories: a grant whose container has none is stale.
    containers_dir: PathBuf,
}

impl Devices {
    pub fn new(config: &crate::config::Config) -> Result<Devices> {
        let policy = match config.device_policy.as_deref() {
            Some(p) => Some(Arc::new(kaim::Policy::from_file(p).map_err(|e| {
                ApiError::bad(format!("device policy {}: {e}", p.display()))
            })?)),
            None => None,
        };
        Ok(Devices {
            cdi_dirs: config.cdi_spec_dirs.clone(),
            hotplug: hotplug::Hotplug::new(policy),
            kaim: config
                .kaim_control
                .clone()
                .map(|control| grant::Kaim { control }),
            grants_dir: config.exec_root.join("kaim"),
            containers_dir: config.data_root.join("containers"),
        })
    }
}

impl Devices {
    /// What can be checked at create, so a bad request makes nothing: every CDI device
    /// resolves, and a kaim grant label can be served.
    pub fn check_create(
        &self,
        hc: &bollard_stubs::models::HostConfig,
        labels: Option<&std::collections::HashMap<String, String>>,
    ) -> Result<()> {
        cdi::check(hc, &self.cdi_dirs)?;
        if let Some(policy) = labels.and_then(|l| l.get(grant::LABEL)) {
            self.kaim_for(policy)?;
        }
        Ok(())
    }

    fn kaim_for(&self, policy: &str) -> Result<&grant::Kaim> {
        if policy.is_empty() {
            return Err(ApiError::bad(format!("label {} is empty", grant::LABEL)));
        }
        self.kaim.as_ref().ok_or_else(|| {
            ApiError::bad(format!(
                "label {} needs kosd --kaim-control (kaim's control socket)",
                grant::LABEL
            ))
        })
    }

    /// A removed container's kaim grant and hot-plug records go with it.
    pub fn forget_container(&self, id: &str) {
        self.hotplug.forget(id);
        if let Some(kaim) = &self.kaim {
            if self.grants_dir.join(grant::dir_name(id)).exists() {
                if let Err(e) = kaim.revoke(&self.grants_dir, id) {
                    tracing::warn!(id, error = %e, "removing the kaim grant failed");
                }
            }
        }
    }

    /// The devices' part of a container's config.json: the CDI devices it asked for, and
    /// the kaim grant its `kos.kaim.policy` label asks for.
    pub fn edit_spec(
        &self,
        spec: &mut serde_json::Value,
        hc: &bollard_stubs::models::HostConfig,
        id: &str,
        labels: &std::collections::BTreeMap<String, String>,
    ) -> Result<()> {
        cdi::apply(spec, hc, &self.cdi_dirs)?;
        if let Some(policy) = labels.get(grant::LABEL) {
            let kaim = self.kaim_for(policy)?;
            let containers = &self.containers_dir;
            let exists = |other: &str| other == id || containers.join(other).is_dir();
            let dir = kaim.grant(&self.grants_dir, id, policy, &exists)?;
            let mounts = spec["mounts"]
                .as_array_mut()
                .ok_or_else(|| ApiError::Internal("config.json has no mounts".into()))?;
            mounts.retain(|m| m["destination"].as_str() != Some(grant::MOUNT_POINT));
            mounts.push(grant::mount(&dir));
        }
        Ok(())
    }
}
