//! A container's device cgroup rules, changed while it runs, through kos-cgroups: on v1 (and
//! hybrid hosts, where the devices controller is v1) one allow or deny line; on v2 the
//! device eBPF program is recompiled from the container's base rules plus the devices now
//! attached, and swapped in atomically.

use oci_spec::runtime::{
    LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxResourcesBuilder,
};

use crate::device::NodeType;
use crate::error::{Error, Result};

pub fn rule(
    allow: bool,
    t: NodeType,
    major: u32,
    minor: u32,
    access: &str,
) -> Result<LinuxDeviceCgroup> {
    LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .typ(match t {
            NodeType::Char => LinuxDeviceType::C,
            NodeType::Block => LinuxDeviceType::B,
        })
        .major(i64::from(major))
        .minor(i64::from(minor))
        .access(access.to_string())
        .build()
        .map_err(|e| Error::HotplugInvalid(e.to_string()))
}

/// Where the rules go.
pub struct DeviceCgroup {
    manager: kos_cgroups::Manager,
}

impl DeviceCgroup {
    pub fn new(cgroups_path: Option<&str>, container_id: &str) -> Result<DeviceCgroup> {
        Ok(DeviceCgroup {
            manager: kos_cgroups::Manager::new(cgroups_path, container_id)?,
        })
    }

    /// Over a manager built by the caller: e.g. the v2 hierarchy of a hybrid host, whose
    /// device programs apply alongside the v1 devices controller.
    pub fn from_manager(manager: kos_cgroups::Manager) -> DeviceCgroup {
        DeviceCgroup { manager }
    }

    pub fn is_v2(&self) -> bool {
        self.manager.layout() == kos_cgroups::Layout::V2
    }

    /// Sets the rules: `change` is the one rule added (v1 writes just it); `full` the whole
    /// list in force afterwards (v2 compiles it into the program).
    pub fn set(&self, change: LinuxDeviceCgroup, full: Vec<LinuxDeviceCgroup>) -> Result<()> {
        let devices = if self.is_v2() { full } else { vec![change] };
        let r = LinuxResourcesBuilder::default()
            .devices(devices)
            .build()
            .map_err(|e| Error::HotplugInvalid(e.to_string()))?;
        self.manager.update(&r)?;
        Ok(())
    }
}
