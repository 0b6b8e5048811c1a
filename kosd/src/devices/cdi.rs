//! CDI device names in containers: `docker run --device vendor/class=name` arrives as a
//! `HostConfig.DeviceRequests` entry with driver "cdi" (the docker CLI 25+ and `kos run`
//! send it so); the names resolve through kadcm's CDI registry and their edits (device
//! nodes with their cgroup rules, mounts, environment, hooks) go into config.json.

use std::path::PathBuf;

use bollard_stubs::models::HostConfig;
use serde_json::Value;

use crate::error::{ApiError, Result};

/// The driver name Docker's API uses for CDI device requests.
pub const DRIVER: &str = "cdi";

/// The CDI names a container asks for. A device request for any other driver (`--gpus`)
/// is refused as dockerd refuses it when no such driver is installed.
pub fn requested(hc: &HostConfig) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for r in hc.device_requests.iter().flatten() {
        let driver = r.driver.as_deref().unwrap_or("");
        if driver != DRIVER {
            let caps = r.capabilities.clone().unwrap_or_default();
            return Err(ApiError::bad(format!(
                "could not select device driver {driver:?} with capabilities: {caps:?}"
            )));
        }
        for id in r.device_ids.iter().flatten() {
            if !names.contains(id) {
                names.push(id.clone());
            }
        }
    }
    Ok(names)
}

fn failed(e: kadcm::Error) -> ApiError {
    // Every CDI failure here is about the request's names or the specs they name.
    ApiError::bad(format!("CDI device injection failed: {e}"))
}

/// Checks at create that every requested CDI device resolves (and its host nodes exist),
/// so a bad name is a 400 naming it before anything is made.
pub fn check(hc: &HostConfig, dirs: &[PathBuf]) -> Result<()> {
    let names = requested(hc)?;
    if names.is_empty() {
        return Ok(());
    }
    kadcm::cdi::resolve(&names, dirs)
        .map(|_| ())
        .map_err(failed)
}

/// Applies the requested CDI devices' edits to config.json (at each start, so a spec that
/// changed since create is read as it is now).
pub fn apply(spec: &mut Value, hc: &HostConfig, dirs: &[PathBuf]) -> Result<()> {
    let names = requested(hc)?;
    if names.is_empty() {
        return Ok(());
    }
    kadcm::cdi::apply_devices_json(spec, &names, dirs).map_err(failed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use bollard_stubs::models::DeviceRequest;

    #[test]
    fn names_from_cdi_requests_only() {
        let mut hc = HostConfig::default();
        assert!(requested(&hc).unwrap().is_empty());
        hc.device_requests = Some(vec![DeviceRequest {
            driver: Some("cdi".into()),
            device_ids: Some(vec!["kos.dev/null=a".into(), "kos.dev/null=a".into()]),
            ..Default::default()
        }]);
        assert_eq!(requested(&hc).unwrap(), vec!["kos.dev/null=a".to_string()]);
        hc.device_requests = Some(vec![DeviceRequest {
            driver: Some(String::new()),
            count: Some(-1),
            capabilities: Some(vec![vec!["gpu".into()]]),
            ..Default::default()
        }]);
        let e = requested(&hc).unwrap_err().to_string();
        assert!(
            e.contains("could not select device driver") && e.contains("gpu"),
            "{e}"
        );
    }
}
