//! A host device as kadcm describes it: what sysfs says about it, classified.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The classes kadcm sorts devices into; each device-node class is one CDI kind
/// `kos.dev/<class>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceClass {
    Block,
    Char,
    Net,
    Usb,
    Pci,
    Drm,
    Input,
    Kvm,
    Fuse,
    Tun,
}

impl DeviceClass {
    pub const ALL: [DeviceClass; 10] = [
        DeviceClass::Block,
        DeviceClass::Char,
        DeviceClass::Net,
        DeviceClass::Usb,
        DeviceClass::Pci,
        DeviceClass::Drm,
        DeviceClass::Input,
        DeviceClass::Kvm,
        DeviceClass::Fuse,
        DeviceClass::Tun,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceClass::Block => "block",
            DeviceClass::Char => "char",
            DeviceClass::Net => "net",
            DeviceClass::Usb => "usb",
            DeviceClass::Pci => "pci",
            DeviceClass::Drm => "drm",
            DeviceClass::Input => "input",
            DeviceClass::Kvm => "kvm",
            DeviceClass::Fuse => "fuse",
            DeviceClass::Tun => "tun",
        }
    }
}

/// Character or block special file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NodeType {
    #[serde(rename = "c")]
    Char,
    #[serde(rename = "b")]
    Block,
}

impl NodeType {
    pub fn letter(self) -> &'static str {
        match self {
            NodeType::Char => "c",
            NodeType::Block => "b",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub class: DeviceClass,
    /// The kernel's subsystem (`block`, `misc`, `tty`, `net`, `usb`, `pci`, ...).
    pub subsystem: String,
    /// /sys/devices/... of the device.
    pub syspath: PathBuf,
    /// /dev/... when the device has a node.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devnode: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_type: Option<NodeType>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub major: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub minor: Option<u32>,
    /// USB idVendor / PCI vendor of the device or its nearest ancestor that has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vendor_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product_id: Option<String>,
    /// The device's uevent variables (DEVNAME, DEVTYPE, DRIVER, INTERFACE, ...).
    pub properties: BTreeMap<String, String>,
}

impl Device {
    /// The name used in CDI (`kos.dev/<class>=<name>`): the class itself for the
    /// one-of-a-kind classes, else the node path below /dev (or the sysfs name) with `/` as `-`.
    pub fn cdi_name(&self) -> String {
        match self.class {
            DeviceClass::Kvm | DeviceClass::Fuse | DeviceClass::Tun => {
                self.class.as_str().to_string()
            }
            _ => {
                let base = match &self.devnode {
                    Some(n) => n
                        .strip_prefix("/dev")
                        .unwrap_or(n)
                        .to_string_lossy()
                        .trim_start_matches('/')
                        .to_string(),
                    None => self
                        .syspath
                        .file_name()
                        .map(|f| f.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                };
                base.chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-') {
                            c
                        } else {
                            '-'
                        }
                    })
                    .collect()
            }
        }
    }

    /// "c 10:232" style, for messages.
    pub fn describe(&self) -> String {
        match (&self.devnode, self.node_type, self.major, self.minor) {
            (Some(n), Some(t), Some(ma), Some(mi)) => {
                format!("{} ({} {ma}:{mi})", n.display(), t.letter())
            }
            _ => self.syspath.display().to_string(),
        }
    }
}
