//! Host devices in kosd, over kadcm: CDI device names at create/start (`cdi`), the kernel's
//! device uevents in the /events stream (`events`), and device nodes hot-plugged into
//! running containers and taken out again, each judged by a kaim policy (`hotplug`).

pub mod cdi;
pub mod events;
pub mod hotplug;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{ApiError, Result};

/// Where sysfs is: the device tree kadcm reads.
pub const SYS_ROOT: &str = "/sys";

/// What every devices call shares: the CDI spec directories and the passthrough state.
pub struct Devices {
    /// CDI spec directories, lowest priority first.
    pub cdi_dirs: Vec<PathBuf>,
    pub hotplug: hotplug::Hotplug,
}

/// Without `--device-policy`, hot-plug through kosd's own (root-only) socket is allowed:
/// whoever holds that socket can already run privileged containers.
const ALLOW_ALL: &str =
    "package kaim\n\nallow := true\n\nreason := \"no device policy configured\"\n";

impl Devices {
    pub fn new(cdi_dirs: Vec<PathBuf>, policy: Option<&Path>) -> Result<Devices> {
        let policy = match policy {
            Some(p) => kaim::Policy::from_file(p)
                .map_err(|e| ApiError::bad(format!("device policy {}: {e}", p.display())))?,
            None => kaim::Policy::from_source(Path::new("<no device policy>"), ALLOW_ALL)
                .map_err(|e| ApiError::internal("compiling the allow-all device policy", e))?,
        };
        Ok(Devices {
            cdi_dirs,
            hotplug: hotplug::Hotplug::new(Arc::new(policy)),
        })
    }
}

impl Devices {
    /// The devices' part of a container's config.json: the CDI devices it asked for.
    pub fn edit_spec(
        &self,
        spec: &mut serde_json::Value,
        hc: &bollard_stubs::models::HostConfig,
        _id: &str,
        _labels: &std::collections::BTreeMap<String, String>,
    ) -> Result<()> {
        cdi::apply(spec, hc, &self.cdi_dirs)
    }
}
