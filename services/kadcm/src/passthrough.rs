//! Passing a host device into a running container and taking it back: policy check (kaim's
//! engine), cgroup rule, device node. Attach allows the device in the cgroup first and makes
//! the node second, undoing the rule if the node cannot be made; detach removes the node
//! first and then revokes the rule, unless the container's own config allowed the device.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};
use serde_json::json;

use crate::container::Container;
use crate::devcgroup::{self, DeviceCgroup};
use crate::device::{Device, NodeType};
use crate::error::{Error, Result};
use crate::node::{self, NodeSpec};

#[derive(Debug, Clone)]
pub struct AttachOptions {
    /// Path inside the container; the host node's path by default.
    pub path: Option<PathBuf>,
    /// Cgroup access, a subset of "rwm".
    pub access: String,
    /// Mode and owner of the node; the host node's by default.
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

impl Default for AttachOptions {
    fn default() -> Self {
        AttachOptions {
            path: None,
            access: "rwm".into(),
            mode: None,
            uid: None,
            gid: None,
        }
    }
}

pub struct Passthrough {
    policy: Arc<kaim::Policy>,
    /// Rules added per container id, for v2 programs rebuilt from base + attached.
    attached: Mutex<HashMap<String, Vec<LinuxDeviceCgroup>>>,
}

fn node_of(d: &Device) -> Result<(NodeType, u32, u32, PathBuf)> {
    match (d.node_type, d.major, d.minor, &d.devnode) {
        (Some(t), Some(ma), Some(mi), Some(p)) => Ok((t, ma, mi, p.clone())),
        _ => Err(Error::HotplugInvalid(format!(
            "{} has no device node",
            d.syspath.display()
        ))),
    }
}

/// Whether `rules` (OCI order: the last matching rule wins, default deny) allow the device.
pub fn rules_allow(rules: &[LinuxDeviceCgroup], t: NodeType, major: u32, minor: u32) -> bool {
    let mut allowed = false;
    for r in rules {
        let type_ok = match r.typ() {
            None | Some(LinuxDeviceType::A) => true,
            Some(LinuxDeviceType::C) => t == NodeType::Char,
            Some(LinuxDeviceType::B) => t == NodeType::Block,
            Some(_) => false,
        };
        let num_ok =
            |want: Option<i64>, have: u32| want.is_none_or(|w| w < 0 || w == i64::from(have));
        if type_ok && num_ok(r.major(), major) && num_ok(r.minor(), minor) {
            let full = r
                .access()
                .as_deref()
                .is_none_or(|a| ['r', 'w', 'm'].iter().all(|c| a.contains(*c)));
            if r.allow() && full || !r.allow() {
                allowed = r.allow();
            }
        }
    }
    allowed
}

impl Passthrough {
    pub fn new(policy: Arc<kaim::Policy>) -> Passthrough {
        Passthrough {
            policy,
            attached: Mutex::new(HashMap::new()),
        }
    }

    /// The policy's verdict on attaching `d` to `c` (input kind "device").
    pub fn check(&self, c: &Container, d: &Device, opts: &AttachOptions) -> Result<()> {
        let input = json!({
            "Kind": "device",
            "Action": "attach",
            "Device": d,
            "Container": { "id": c.id, "pid": c.pid },
            "Access": opts.access,
            "ContainerPath": opts.path.as_ref().or(d.devnode.as_ref()),
        });
        let decision = self.policy.evaluate(input);
        if decision.allow {
            Ok(())
        } else {
            Err(Error::Denied {
                device: d.describe(),
                container: c.id.clone(),
                reason: decision.reason,
            })
        }
    }

    fn rules_of(&self, id: &str) -> Vec<LinuxDeviceCgroup> {
        self.attached
            .lock()
            .map(|g| g.get(id).cloned().unwrap_or_default())
            .unwrap_or_default()
    }

    fn set_rules(&self, id: &str, rules: Vec<LinuxDeviceCgroup>) {
        if let Ok(mut g) = self.attached.lock() {
            if rules.is_empty() {
                g.remove(id);
            } else {
                g.insert(id.to_string(), rules);
            }
        }
    }

    pub fn attach(&self, c: &Container, d: &Device, opts: &AttachOptions) -> Result<NodeSpec> {
        let cg = DeviceCgroup::new(c.cgroups_path.as_deref(), &c.id)?;
        self.attach_with(c, d, opts, &cg)
    }

    /// `attach` with the device cgroup given.
    pub fn attach_with(
        &self,
        c: &Container,
        d: &Device,
        opts: &AttachOptions,
        cg: &DeviceCgroup,
    ) -> Result<NodeSpec> {
        let (t, major, minor, host_path) = node_of(d)?;
        if opts.access.is_empty() || !opts.access.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
            return Err(Error::HotplugInvalid(format!(
                "access {:?} is not a subset of rwm",
                opts.access
            )));
        }
        self.check(c, d, opts)?;
        let host = std::fs::metadata(&host_path).map_err(|source| Error::Read {
            path: host_path.clone(),
            source,
        })?;
        let spec = NodeSpec {
            path: opts.path.clone().unwrap_or(host_path),
            node_type: t,
            major,
            minor,
            mode: opts.mode.unwrap_or(host.mode() & 0o7777),
            uid: opts.uid.unwrap_or(host.uid()),
            gid: opts.gid.unwrap_or(host.gid()),
        };
        let allow = devcgroup::rule(true, t, major, minor, &opts.access)?;
        let mut attached = self.rules_of(&c.id);
        attached.push(allow.clone());
        cg.set(allow, with_base(c, &attached))?;
        if let Err(e) = node::make(c.pid, &spec) {
            let remaining = &attached[..attached.len() - 1];
            if let Err(undo) = deny(cg, c, t, major, minor, remaining) {
                tracing::warn!("revoking {t:?} {major}:{minor} from {}: {undo}", c.id);
            }
            return Err(e);
        }
        self.set_rules(&c.id, attached);
        Ok(spec)
    }

    /// Removes the node and the cgroup rule of a device attached before.
    pub fn detach(&self, c: &Container, spec: &NodeSpec) -> Result<()> {
        let cg = DeviceCgroup::new(c.cgroups_path.as_deref(), &c.id)?;
        self.detach_with(c, spec, &cg)
    }

    /// `detach` with the device cgroup given.
    pub fn detach_with(&self, c: &Container, spec: &NodeSpec, cg: &DeviceCgroup) -> Result<()> {
        node::remove(c.pid, spec)?;
        let mut attached = self.rules_of(&c.id);
        attached.retain(|r| {
            !(r.major() == Some(i64::from(spec.major)) && r.minor() == Some(i64::from(spec.minor)))
        });
        deny(cg, c, spec.node_type, spec.major, spec.minor, &attached)?;
        self.set_rules(&c.id, attached);
        Ok(())
    }
}

/// The container's own rules followed by the ones attached since: the full list the device
/// cgroup must end up with.
fn with_base(c: &Container, attached: &[LinuxDeviceCgroup]) -> Vec<LinuxDeviceCgroup> {
    c.base_rules.iter().chain(attached).cloned().collect()
}

/// Takes a device away again, unless the container's own rules allow it anyway (then the
/// device was never ours to revoke).
fn deny(
    cg: &DeviceCgroup,
    c: &Container,
    t: NodeType,
    major: u32,
    minor: u32,
    remaining: &[LinuxDeviceCgroup],
) -> Result<()> {
    if rules_allow(&c.base_rules, t, major, minor) {
        return Ok(());
    }
    let rule = devcgroup::rule(false, t, major, minor, "rwm")?;
    cg.set(rule, with_base(c, remaining))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(
        allow: bool,
        t: Option<LinuxDeviceType>,
        ma: Option<i64>,
        mi: Option<i64>,
    ) -> LinuxDeviceCgroup {
        let mut x = LinuxDeviceCgroup::default();
        x.set_allow(allow);
        x.set_typ(t);
        x.set_major(ma);
        x.set_minor(mi);
        x.set_access(Some("rwm".into()));
        x
    }

    #[test]
    fn last_matching_rule_wins() {
        let base = vec![
            r(false, Some(LinuxDeviceType::A), None, None),
            r(true, Some(LinuxDeviceType::C), Some(1), Some(3)),
        ];
        assert!(rules_allow(&base, NodeType::Char, 1, 3));
        assert!(!rules_allow(&base, NodeType::Char, 10, 229));
        assert!(!rules_allow(&base, NodeType::Block, 1, 3));
        let mut more = base.clone();
        more.push(r(false, Some(LinuxDeviceType::C), Some(1), None));
        assert!(!rules_allow(&more, NodeType::Char, 1, 3));
        assert!(!rules_allow(&[], NodeType::Char, 1, 3));
    }
}
