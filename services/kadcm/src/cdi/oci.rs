//! Applying resolved CDI edits to an OCI runtime spec: device nodes (and their cgroup rules),
//! mounts, environment and hooks, as a CDI-aware engine does at container create.

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use oci_spec::runtime::{
    Hook, HookBuilder, Hooks, Linux, LinuxDevice, LinuxDeviceBuilder, LinuxDeviceCgroup,
    LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxResources, MountBuilder, Process, Spec,
};

use super::spec::{ContainerEdits, DeviceNode};
use crate::error::{Error, Result};

fn major(dev: u64) -> i64 {
    i64::from(libc::major(dev))
}

fn minor(dev: u64) -> i64 {
    i64::from(libc::minor(dev))
}

/// Type, major and minor of a node entry, filled in from the host node where the spec
/// leaves them out.
fn complete(n: &DeviceNode) -> Result<(LinuxDeviceType, i64, i64)> {
    let typ = n.typ.as_deref();
    if let (Some(t), Some(ma), Some(mi)) = (typ, n.major, n.minor) {
        return Ok((letter_type(t)?, ma, mi));
    }
    let host = n.host_path.as_deref().unwrap_or(&n.path);
    let md = std::fs::metadata(host)
        .map_err(|e| Error::OciEdit(format!("device node {}: stat {host}: {e}", n.path)))?;
    let ft = md.file_type();
    let t = if ft.is_char_device() {
        LinuxDeviceType::C
    } else if ft.is_block_device() {
        LinuxDeviceType::B
    } else {
        return Err(Error::OciEdit(format!("{host} is not a device node")));
    };
    let t = match typ {
        Some(l) => letter_type(l)?,
        None => t,
    };
    Ok((
        t,
        n.major.unwrap_or_else(|| major(md.rdev())),
        n.minor.unwrap_or_else(|| minor(md.rdev())),
    ))
}

fn letter_type(t: &str) -> Result<LinuxDeviceType> {
    Ok(match t {
        "c" => LinuxDeviceType::C,
        "b" => LinuxDeviceType::B,
        "u" => LinuxDeviceType::U,
        "p" => LinuxDeviceType::P,
        other => return Err(Error::OciEdit(format!("bad device type {other:?}"))),
    })
}

fn oci_err(e: oci_spec::OciSpecError) -> Error {
    Error::OciEdit(e.to_string())
}

/// A CDI device node with its type and numbers filled in (from the host node where the
/// spec leaves them out): what the OCI spec and the device cgroup get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedNode {
    pub path: String,
    pub typ: LinuxDeviceType,
    pub major: i64,
    pub minor: i64,
    pub file_mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    /// Cgroup access, a subset of "rwm" ("rwm" when the spec says nothing).
    pub access: String,
}

impl ResolvedNode {
    /// Char and block devices get a cgroup rule; fifos and unbuffered nodes do not.
    pub fn has_cgroup_rule(&self) -> bool {
        matches!(self.typ, LinuxDeviceType::C | LinuxDeviceType::B)
    }

    /// The OCI spec's one-letter type.
    pub fn type_letter(&self) -> &'static str {
        match self.typ {
            LinuxDeviceType::C => "c",
            LinuxDeviceType::B => "b",
            LinuxDeviceType::U => "u",
            LinuxDeviceType::P => "p",
            LinuxDeviceType::A => "a",
        }
    }
}

/// Every device node of `edits`, completed; a node whose host device is missing (or not
/// a device) is an error naming it.
pub fn resolve_nodes(edits: &ContainerEdits) -> Result<Vec<ResolvedNode>> {
    edits
        .device_nodes
        .iter()
        .map(|n| {
            let (typ, major, minor) = complete(n)?;
            Ok(ResolvedNode {
                path: n.path.clone(),
                typ,
                major,
                minor,
                file_mode: n.file_mode,
                uid: n.uid,
                gid: n.gid,
                access: n.permissions.clone().unwrap_or_else(|| "rwm".into()),
            })
        })
        .collect()
}

pub fn apply(spec: &mut Spec, edits: &ContainerEdits) -> Result<()> {
    if !edits.env.is_empty() {
        let process = spec.process_mut().get_or_insert_with(Process::default);
        let env = process.env_mut().get_or_insert_with(Vec::new);
        for e in &edits.env {
            let key = e.split('=').next().unwrap_or("");
            env.retain(|x| x.split('=').next().unwrap_or("") != key);
            env.push(e.clone());
        }
    }
    if !edits.additional_gids.is_empty() {
        let process = spec.process_mut().get_or_insert_with(Process::default);
        let user = process.user_mut();
        let gids = user.additional_gids_mut().get_or_insert_with(Vec::new);
        for g in &edits.additional_gids {
            if !gids.contains(g) {
                gids.push(*g);
            }
        }
    }
    if !edits.device_nodes.is_empty() {
        let mut devices: Vec<LinuxDevice> = Vec::new();
        let mut rules: Vec<LinuxDeviceCgroup> = Vec::new();
        for n in resolve_nodes(edits)? {
            let mut b = LinuxDeviceBuilder::default()
                .path(n.path.clone())
                .typ(n.typ)
                .major(n.major)
                .minor(n.minor);
            if let Some(m) = n.file_mode {
                b = b.file_mode(m);
            }
            if let Some(u) = n.uid {
                b = b.uid(u);
            }
            if let Some(g) = n.gid {
                b = b.gid(g);
            }
            devices.push(b.build().map_err(oci_err)?);
            if n.has_cgroup_rule() {
                rules.push(
                    LinuxDeviceCgroupBuilder::default()
                        .allow(true)
                        .typ(n.typ)
                        .major(n.major)
                        .minor(n.minor)
                        .access(n.access.clone())
                        .build()
                        .map_err(oci_err)?,
                );
            }
        }
        let linux = spec.linux_mut().get_or_insert_with(Linux::default);
        let list = linux.devices_mut().get_or_insert_with(Vec::new);
        for d in devices {
            list.retain(|x| x.path() != d.path());
            list.push(d);
        }
        let res = linux
            .resources_mut()
            .get_or_insert_with(LinuxResources::default);
        res.devices_mut().get_or_insert_with(Vec::new).extend(rules);
    }
    if !edits.mounts.is_empty() {
        let mounts = spec.mounts_mut().get_or_insert_with(Vec::new);
        for m in &edits.mounts {
            let typ = m.typ.clone().unwrap_or_else(|| "bind".into());
            let mut options = m.options.clone();
            if typ == "bind" && !options.iter().any(|o| o == "bind" || o == "rbind") {
                options.push("bind".into());
            }
            let mount = MountBuilder::default()
                .destination(m.container_path.clone())
                .source(m.host_path.clone())
                .typ(typ)
                .options(options)
                .build()
                .map_err(oci_err)?;
            mounts.retain(|x| x.destination() != mount.destination());
            mounts.push(mount);
        }
    }
    if !edits.hooks.is_empty() {
        let hooks = spec.hooks_mut().get_or_insert_with(Hooks::default);
        for h in &edits.hooks {
            let mut b = HookBuilder::default().path(h.path.clone());
            if !h.args.is_empty() {
                b = b.args(h.args.clone());
            }
            if !h.env.is_empty() {
                b = b.env(h.env.clone());
            }
            if let Some(t) = h.timeout {
                b = b.timeout(t);
            }
            let hook: Hook = b.build().map_err(oci_err)?;
            let list = match h.hook_name.as_str() {
                "prestart" => hooks.prestart_mut(),
                "createRuntime" => hooks.create_runtime_mut(),
                "createContainer" => hooks.create_container_mut(),
                "startContainer" => hooks.start_container_mut(),
                "poststart" => hooks.poststart_mut(),
                "poststop" => hooks.poststop_mut(),
                other => return Err(Error::OciEdit(format!("unknown hook name {other:?}"))),
            };
            list.get_or_insert_with(Vec::new).push(hook);
        }
    }
    Ok(())
}
