//! Auto-attach rules: "a USB serial device with vendor X goes to container Y". A rule matches
//! on the device's subsystem, class, vendor/product ids, node name and uevent properties;
//! matching devices that appear are attached (through the policy) and taken out again when
//! they go.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Deserialize;

use crate::container::Runtime;
use crate::device::{Device, DeviceClass};
use crate::error::{Error, Result};
use crate::node::NodeSpec;
use crate::passthrough::{AttachOptions, Passthrough};

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Match {
    #[serde(default)]
    pub subsystem: Option<String>,
    #[serde(default)]
    pub class: Option<DeviceClass>,
    #[serde(default)]
    pub vendor_id: Option<String>,
    #[serde(default)]
    pub product_id: Option<String>,
    /// The node name below /dev; a trailing `*` matches any suffix (`ttyUSB*`).
    #[serde(default)]
    pub devname: Option<String>,
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

impl Match {
    pub fn matches(&self, d: &Device) -> bool {
        let eq_ci = |want: &Option<String>, have: &Option<String>| match want {
            None => true,
            Some(w) => have.as_ref().is_some_and(|h| h.eq_ignore_ascii_case(w)),
        };
        let devname_ok = match &self.devname {
            None => true,
            Some(pat) => d
                .properties
                .get("DEVNAME")
                .is_some_and(|n| match pat.strip_suffix('*') {
                    Some(prefix) => n.starts_with(prefix),
                    None => n == pat,
                }),
        };
        self.subsystem.as_ref().is_none_or(|s| *s == d.subsystem)
            && self.class.is_none_or(|c| c == d.class)
            && eq_ci(&self.vendor_id, &d.vendor_id)
            && eq_ci(&self.product_id, &d.product_id)
            && devname_ok
            && self
                .properties
                .iter()
                .all(|(k, v)| d.properties.get(k) == Some(v))
    }
}

fn default_access() -> String {
    "rwm".into()
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    #[serde(rename = "match")]
    pub matcher: Match,
    /// The container's id as its runtime knows it.
    pub container: String,
    #[serde(default)]
    pub path: Option<PathBuf>,
    #[serde(default = "default_access")]
    pub access: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    #[serde(default)]
    pub rules: Vec<Rule>,
}

impl RuleFile {
    pub fn load(path: &Path) -> Result<RuleFile> {
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(1 << 20).read_to_string(&mut text))
            .map_err(|source| Error::Read {
                path: path.to_path_buf(),
                source,
            })?;
        let f: RuleFile = serde_json::from_str(&text).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        for r in &f.rules {
            if r.matcher == Match::default() {
                return Err(Error::Config {
                    path: path.to_path_buf(),
                    message: format!("rule {:?} matches every device", r.name),
                });
            }
        }
        Ok(f)
    }
}

/// Applies rules to device events, remembering what it attached so removal undoes it.
pub struct AutoAttach {
    rules: Vec<Rule>,
    runtime: Runtime,
    passthrough: Passthrough,
    /// syspath -> (container id, node made there)
    attached: Mutex<HashMap<PathBuf, Vec<(String, NodeSpec)>>>,
}

impl AutoAttach {
    pub fn new(rules: Vec<Rule>, runtime: Runtime, passthrough: Passthrough) -> AutoAttach {
        AutoAttach {
            rules,
            runtime,
            passthrough,
            attached: Mutex::new(HashMap::new()),
        }
    }

    /// A device appeared: attach it wherever a rule sends it. Returns what was done or why not.
    pub fn device_added(&self, d: &Device) -> Vec<Result<(String, NodeSpec)>> {
        let mut out = Vec::new();
        for r in self.rules.iter().filter(|r| r.matcher.matches(d)) {
            let res = self.runtime.container(&r.container).and_then(|c| {
                let opts = AttachOptions {
                    path: r.path.clone(),
                    access: r.access.clone(),
                    ..Default::default()
                };
                self.passthrough
                    .attach(&c, d, &opts)
                    .map(|n| (c.id.clone(), n))
            });
            if let Ok((id, n)) = &res {
                if let Ok(mut g) = self.attached.lock() {
                    g.entry(d.syspath.clone())
                        .or_default()
                        .push((id.clone(), n.clone()));
                }
            }
            out.push(res);
        }
        out
    }

    /// The device at `syspath` went: take its nodes and rules out of the containers.
    pub fn device_removed(&self, syspath: &Path) -> Vec<Result<String>> {
        let list = self
            .attached
            .lock()
            .ok()
            .and_then(|mut g| g.remove(syspath))
            .unwrap_or_default();
        list.into_iter()
            .map(|(id, node)| {
                let c = self.runtime.container(&id)?;
                self.passthrough.detach(&c, &node).map(|_| id)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serial() -> Device {
        Device {
            class: DeviceClass::Char,
            subsystem: "tty".into(),
            syspath: "/sys/devices/pci0000:00/usb1/1-1/1-1:1.0/ttyUSB0/tty/ttyUSB0".into(),
            devnode: Some("/dev/ttyUSB0".into()),
            node_type: Some(crate::device::NodeType::Char),
            major: Some(188),
            minor: Some(0),
            vendor_id: Some("0403".into()),
            product_id: Some("6001".into()),
            properties: BTreeMap::from([("DEVNAME".to_string(), "ttyUSB0".to_string())]),
        }
    }

    #[test]
    fn usb_serial_by_vendor() {
        let m: Match =
            serde_json::from_str(r#"{"subsystem":"tty","vendor_id":"0403","devname":"ttyUSB*"}"#)
                .expect("match");
        assert!(m.matches(&serial()));
        let other: Match =
            serde_json::from_str(r#"{"subsystem":"tty","vendor_id":"10c4"}"#).expect("match");
        assert!(!other.matches(&serial()));
        let by_prop: Match =
            serde_json::from_str(r#"{"properties":{"DEVNAME":"ttyUSB0"},"class":"char"}"#)
                .expect("match");
        assert!(by_prop.matches(&serial()));
        let wrong_class: Match = serde_json::from_str(r#"{"class":"block"}"#).expect("match");
        assert!(!wrong_class.matches(&serial()));
    }

    #[test]
    fn rule_file_checks() {
        let dir = std::env::temp_dir().join(format!("kadcm-rules-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let p = dir.join("r.json");
        std::fs::write(
            &p,
            r#"{"rules":[{"name":"s","match":{"vendor_id":"0403"},"container":"y"}]}"#,
        )
        .expect("w");
        let f = RuleFile::load(&p).expect("load");
        assert_eq!(f.rules[0].access, "rwm");
        std::fs::write(
            &p,
            r#"{"rules":[{"name":"all","match":{},"container":"y"}]}"#,
        )
        .expect("w");
        assert!(RuleFile::load(&p).is_err());
        std::fs::write(
            &p,
            r#"{"rules":[{"name":"x","match":{"bogus":1},"container":"y"}]}"#,
        )
        .expect("w");
        assert!(RuleFile::load(&p).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
