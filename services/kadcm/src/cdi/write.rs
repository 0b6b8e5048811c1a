//! kadcm's own CDI specs: one file per device-node class, `kos.dev-<class>.json`, kind
//! `kos.dev/<class>`, written atomically; files for classes that no longer have devices go.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::spec::{CdiDevice, ContainerEdits, DeviceNode, Spec, CDI_VERSION};
use crate::device::{Device, DeviceClass};
use crate::error::{Error, Result};

pub const VENDOR: &str = "kos.dev";

pub fn kind_of(class: DeviceClass) -> String {
    format!("{VENDOR}/{}", class.as_str())
}

fn file_name(class: DeviceClass) -> String {
    format!("{VENDOR}-{}.json", class.as_str())
}

/// The node entry for a device, its mode and owner taken from the host node.
fn node_for(d: &Device) -> Option<DeviceNode> {
    let path = d.devnode.as_ref()?;
    let md = std::fs::metadata(path).ok()?;
    Some(DeviceNode {
        path: path.display().to_string(),
        host_path: None,
        typ: Some(d.node_type?.letter().to_string()),
        major: Some(i64::from(d.major?)),
        minor: Some(i64::from(d.minor?)),
        file_mode: Some(md.mode() & 0o7777),
        permissions: Some("rwm".to_string()),
        uid: Some(md.uid()),
        gid: Some(md.gid()),
    })
}

/// One spec per class that has device nodes present on the host.
pub fn specs_for(devices: &[Device]) -> Vec<Spec> {
    let mut by_class: BTreeMap<DeviceClass, Vec<CdiDevice>> = BTreeMap::new();
    for d in devices {
        let Some(node) = node_for(d) else { continue };
        let list = by_class.entry(d.class).or_default();
        let name = d.cdi_name();
        if list.iter().any(|x| x.name == name) {
            continue;
        }
        list.push(CdiDevice {
            name,
            annotations: BTreeMap::new(),
            container_edits: ContainerEdits {
                device_nodes: vec![node],
                ..Default::default()
            },
        });
    }
    by_class
        .into_iter()
        .map(|(class, devices)| Spec {
            cdi_version: CDI_VERSION.to_string(),
            kind: kind_of(class),
            annotations: BTreeMap::new(),
            devices,
            container_edits: ContainerEdits::default(),
        })
        .collect()
}

/// Writes the specs for `devices` into `dir` and removes kadcm's specs of classes now
/// without devices. Third-party files in `dir` are left alone.
pub fn write_specs(dir: &Path, devices: &[Device]) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Write {
        path: dir.to_path_buf(),
        source,
    })?;
    let specs = specs_for(devices);
    let mut written = Vec::new();
    for s in &specs {
        let class = DeviceClass::ALL
            .into_iter()
            .find(|c| kind_of(*c) == s.kind)
            .unwrap_or(DeviceClass::Char);
        let path = dir.join(file_name(class));
        let text = serde_json::to_vec_pretty(s).map_err(|e| Error::Write {
            path: path.clone(),
            source: e.into(),
        })?;
        atomic_write(&path, &text)?;
        written.push(path);
    }
    for class in DeviceClass::ALL {
        let path = dir.join(file_name(class));
        if !written.contains(&path) && path.exists() {
            std::fs::remove_file(&path).map_err(|source| Error::Write {
                path: path.clone(),
                source,
            })?;
        }
    }
    Ok(written)
}

/// Replaced whole, so a runtime resolving CDI names never reads half a spec.
fn atomic_write(path: &Path, data: &[u8]) -> Result<()> {
    kos_statefile::replace(path, data, 0o644).map_err(|source| Error::Replace {
        path: path.to_path_buf(),
        source,
    })
}
