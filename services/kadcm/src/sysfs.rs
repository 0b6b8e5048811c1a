//! Enumerating host devices from sysfs: every device node (/sys/dev/char, /sys/dev/block),
//! every network interface (/sys/class/net) and every PCI function (/sys/bus/pci/devices).

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::device::{Device, DeviceClass, NodeType};
use crate::error::{Error, Result};

/// Largest sysfs attribute read.
const MAX_ATTR: u64 = 64 * 1024;

fn read_attr(p: &Path) -> Option<String> {
    let mut s = String::new();
    std::fs::File::open(p)
        .ok()?
        .take(MAX_ATTR)
        .read_to_string(&mut s)
        .ok()?;
    Some(s.trim().to_string())
}

fn parse_uevent(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn subsystem_of(syspath: &Path) -> String {
    std::fs::read_link(syspath.join("subsystem"))
        .ok()
        .and_then(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
        .unwrap_or_default()
}

/// USB idVendor/idProduct or PCI vendor/device of the device or its nearest ancestor.
fn vendor_product(syspath: &Path, sys_root: &Path) -> (Option<String>, Option<String>) {
    let devices = sys_root.join("devices");
    let mut cur = Some(syspath);
    while let Some(p) = cur {
        if !p.starts_with(&devices) || p == devices {
            break;
        }
        if let (Some(v), Some(d)) = (
            read_attr(&p.join("idVendor")),
            read_attr(&p.join("idProduct")),
        ) {
            return (Some(v), Some(d));
        }
        if subsystem_of(p) == "pci" {
            if let (Some(v), Some(d)) = (read_attr(&p.join("vendor")), read_attr(&p.join("device")))
            {
                let strip = |s: String| s.trim_start_matches("0x").to_string();
                return (Some(strip(v)), Some(strip(d)));
            }
        }
        cur = p.parent();
    }
    (None, None)
}

fn classify(
    subsystem: &str,
    props: &BTreeMap<String, String>,
    node: Option<NodeType>,
) -> DeviceClass {
    let devname = props.get("DEVNAME").map(String::as_str).unwrap_or("");
    match (subsystem, devname) {
        ("misc", "kvm") => DeviceClass::Kvm,
        ("misc", "fuse") => DeviceClass::Fuse,
        ("misc", "net/tun") => DeviceClass::Tun,
        ("block", _) => DeviceClass::Block,
        ("net", _) => DeviceClass::Net,
        ("drm", _) => DeviceClass::Drm,
        ("input", _) => DeviceClass::Input,
        ("usb", _) => DeviceClass::Usb,
        ("pci", _) => DeviceClass::Pci,
        _ => match node {
            Some(NodeType::Block) => DeviceClass::Block,
            _ => DeviceClass::Char,
        },
    }
}

/// Describes the device at `syspath` (a /sys/devices/... directory).
pub fn describe(sys_root: &Path, syspath: &Path) -> Result<Device> {
    let uevent = syspath.join("uevent");
    let text = read_attr(&uevent).ok_or_else(|| Error::Read {
        path: uevent.clone(),
        source: std::io::Error::from(std::io::ErrorKind::NotFound),
    })?;
    let properties = parse_uevent(&text);
    let subsystem = subsystem_of(syspath);
    let num = |k: &str| properties.get(k).and_then(|v| v.parse::<u32>().ok());
    let (major, minor) = (num("MAJOR"), num("MINOR"));
    let devnode = properties
        .get("DEVNAME")
        .filter(|n| !n.is_empty() && !n.contains(".."))
        .map(|n| Path::new("/dev").join(n.trim_start_matches('/')));
    let node_type = match (&devnode, major) {
        (Some(_), Some(_)) => Some(if subsystem == "block" {
            NodeType::Block
        } else {
            NodeType::Char
        }),
        _ => None,
    };
    let class = classify(&subsystem, &properties, node_type);
    let (vendor_id, product_id) = vendor_product(syspath, sys_root);
    Ok(Device {
        class,
        subsystem,
        syspath: syspath.to_path_buf(),
        devnode,
        node_type,
        major,
        minor,
        vendor_id,
        product_id,
        properties,
    })
}

fn entries(dir: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(_) => Vec::new(),
    }
}

/// Every device sysfs under `sys_root` (normally /sys) knows, sorted by syspath. Devices
/// that vanish while being read are skipped.
pub fn enumerate(sys_root: &Path) -> Result<Vec<Device>> {
    let dev = sys_root.join("dev");
    if !dev.join("char").is_dir() {
        return Err(Error::Read {
            path: dev.join("char"),
            source: std::io::Error::from(std::io::ErrorKind::NotFound),
        });
    }
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    let sources = [
        dev.join("char"),
        dev.join("block"),
        sys_root.join("class/net"),
        sys_root.join("bus/pci/devices"),
    ];
    for src in &sources {
        for link in entries(src) {
            let Ok(syspath) = std::fs::canonicalize(&link) else {
                continue;
            };
            if !seen.insert(syspath.clone()) {
                continue;
            }
            if let Ok(d) = describe(sys_root, &syspath) {
                out.push(d);
            }
        }
    }
    out.sort_by(|a, b| a.syspath.cmp(&b.syspath));
    Ok(out)
}

/// The device whose node is `node` on the host (found through /sys/dev/{char,block}).
pub fn device_for_node(sys_root: &Path, node: &Path) -> Result<Device> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let md = std::fs::metadata(node).map_err(|source| Error::Read {
        path: node.to_path_buf(),
        source,
    })?;
    let kind = if md.file_type().is_char_device() {
        "char"
    } else if md.file_type().is_block_device() {
        "block"
    } else {
        return Err(Error::HotplugInvalid(format!(
            "{} is not a device node",
            node.display()
        )));
    };
    let link = sys_root.join("dev").join(kind).join(format!(
        "{}:{}",
        libc::major(md.rdev()),
        libc::minor(md.rdev())
    ));
    let syspath = std::fs::canonicalize(&link).map_err(|source| Error::Read {
        path: link.clone(),
        source,
    })?;
    describe(sys_root, &syspath)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classify_misc_devices() {
        let p = |n: &str| BTreeMap::from([("DEVNAME".to_string(), n.to_string())]);
        assert_eq!(
            classify("misc", &p("kvm"), Some(NodeType::Char)),
            DeviceClass::Kvm
        );
        assert_eq!(
            classify("misc", &p("net/tun"), Some(NodeType::Char)),
            DeviceClass::Tun
        );
        assert_eq!(
            classify("misc", &p("fuse"), Some(NodeType::Char)),
            DeviceClass::Fuse
        );
        assert_eq!(
            classify("mem", &p("null"), Some(NodeType::Char)),
            DeviceClass::Char
        );
        assert_eq!(
            classify("block", &p("loop0"), Some(NodeType::Block)),
            DeviceClass::Block
        );
        assert_eq!(classify("net", &p(""), None), DeviceClass::Net);
    }

    #[test]
    fn uevent_parsing() {
        let m = parse_uevent("MAJOR=10\nMINOR=232\nDEVNAME=kvm\nDEVMODE=0666\n");
        assert_eq!(m["DEVNAME"], "kvm");
        assert_eq!(m["MAJOR"], "10");
        assert_eq!(m.len(), 4);
    }
}
