//! The Container Device Interface spec (cdiVersion 0.6.0 - 0.8.0) as serde types. Unknown
//! fields are accepted: newer minor versions add fields this code does not need.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub const CDI_VERSION: &str = "0.6.0";

/// Versions whose JSON shape these types read.
pub const KNOWN_VERSIONS: &[&str] = &["0.3.0", "0.4.0", "0.5.0", "0.6.0", "0.7.0", "0.8.0"];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    pub cdi_version: String,
    pub kind: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    pub devices: Vec<CdiDevice>,
    #[serde(default, skip_serializing_if = "ContainerEdits::is_empty")]
    pub container_edits: ContainerEdits,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CdiDevice {
    pub name: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    pub container_edits: ContainerEdits,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerEdits {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_nodes: Vec<DeviceNode>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hooks: Vec<Hook>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mounts: Vec<Mount>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub additional_gids: Vec<u32>,
}

impl ContainerEdits {
    pub fn is_empty(&self) -> bool {
        self.env.is_empty()
            && self.device_nodes.is_empty()
            && self.hooks.is_empty()
            && self.mounts.is_empty()
            && self.additional_gids.is_empty()
    }

    /// Appends `other`, a later edit replacing an earlier one for the same node path,
    /// mount target or variable.
    pub fn merge(&mut self, other: &ContainerEdits) {
        for e in &other.env {
            let key = e.split('=').next().unwrap_or("");
            self.env
                .retain(|x| x.split('=').next().unwrap_or("") != key);
            self.env.push(e.clone());
        }
        for n in &other.device_nodes {
            self.device_nodes.retain(|x| x.path != n.path);
            self.device_nodes.push(n.clone());
        }
        for m in &other.mounts {
            self.mounts.retain(|x| x.container_path != m.container_path);
            self.mounts.push(m.clone());
        }
        for h in &other.hooks {
            if !self.hooks.contains(h) {
                self.hooks.push(h.clone());
            }
        }
        for g in &other.additional_gids {
            if !self.additional_gids.contains(g) {
                self.additional_gids.push(*g);
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceNode {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub major: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minor: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_mode: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permissions: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mount {
    pub host_path: String,
    pub container_path: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Hook {
    pub hook_name: String,
    pub path: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<i64>,
}

/// `vendor.tld/class`: a DNS-like vendor, one class label.
pub fn valid_kind(kind: &str) -> bool {
    let Some((vendor, class)) = kind.split_once('/') else {
        return false;
    };
    let label = |s: &str, extra: &[char]| {
        !s.is_empty()
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || extra.contains(&c))
    };
    label(vendor, &['.', '-']) && label(class, &['.', '-', '_'])
}

/// A device name: starts with a letter or digit; letters, digits, `_ . : -` after that.
pub fn valid_device_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
}

/// Splits `vendor/class=name`.
pub fn parse_qualified(q: &str) -> Option<(&str, &str)> {
    let (kind, name) = q.split_once('=')?;
    (valid_kind(kind) && valid_device_name(name)).then_some((kind, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_kind("kos.dev/kvm"));
        assert!(valid_kind("nvidia.com/gpu"));
        assert!(!valid_kind("kos.dev"));
        assert!(!valid_kind("kos.dev/"));
        assert!(!valid_kind("-x/y"));
        assert!(!valid_kind("a/b/c"));
        assert!(valid_device_name("loop0"));
        assert!(valid_device_name("bus-usb-001-002"));
        assert!(!valid_device_name("../x"));
        assert!(!valid_device_name(""));
        assert_eq!(
            parse_qualified("kos.dev/kvm=kvm"),
            Some(("kos.dev/kvm", "kvm"))
        );
        assert_eq!(parse_qualified("kos.dev/kvm"), None);
    }

    #[test]
    fn merge_replaces_same_targets() {
        let mut a = ContainerEdits {
            env: vec!["A=1".into(), "B=2".into()],
            ..Default::default()
        };
        let b = ContainerEdits {
            env: vec!["A=3".into()],
            ..Default::default()
        };
        a.merge(&b);
        assert_eq!(a.env, vec!["B=2".to_string(), "A=3".to_string()]);
    }

    #[test]
    fn reads_a_third_party_spec() {
        let s: Spec = serde_json::from_str(
            r#"{"cdiVersion":"0.8.0","kind":"vendor.com/gpu","devices":[{"name":"0",
            "containerEdits":{"deviceNodes":[{"path":"/dev/vgpu0","type":"c","major":195,"minor":0}],
            "env":["VGPU=0"]}}],"containerEdits":{"mounts":[{"hostPath":"/usr/lib/v","containerPath":"/usr/lib/v","options":["ro","bind"]}],
            "hooks":[{"hookName":"createContainer","path":"/bin/true","args":["true"]}]},"futureField":1}"#,
        )
        .expect("parse");
        assert_eq!(
            s.devices[0].container_edits.device_nodes[0].major,
            Some(195)
        );
        assert_eq!(s.container_edits.hooks[0].hook_name, "createContainer");
    }
}
