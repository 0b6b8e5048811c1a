//! Enumeration against this host's real sysfs.

mod support;

use std::path::Path;
use std::process::Command;

use kadcm::{sysfs, DeviceClass, NodeType};

fn find<'a>(devs: &'a [kadcm::Device], node: &str) -> &'a kadcm::Device {
    devs.iter()
        .find(|d| d.devnode.as_deref() == Some(Path::new(node)))
        .unwrap_or_else(|| panic!("{node} not enumerated"))
}

#[test]
fn finds_the_well_known_nodes() {
    let devs = sysfs::enumerate(Path::new("/sys")).expect("enumerate");
    let null = find(&devs, "/dev/null");
    assert_eq!((null.major, null.minor), (Some(1), Some(3)));
    assert_eq!(null.class, DeviceClass::Char);
    assert_eq!(null.subsystem, "mem");
    assert_eq!(null.node_type, Some(NodeType::Char));

    let kvm = find(&devs, "/dev/kvm");
    assert_eq!(kvm.class, DeviceClass::Kvm);
    assert_eq!(kvm.subsystem, "misc");
    assert_eq!(kvm.major, Some(10));
    assert_eq!(kvm.cdi_name(), "kvm");

    let fuse = find(&devs, "/dev/fuse");
    assert_eq!(fuse.class, DeviceClass::Fuse);
    assert_eq!((fuse.major, fuse.minor), (Some(10), Some(229)));

    let tun = find(&devs, "/dev/net/tun");
    assert_eq!(tun.class, DeviceClass::Tun);
    assert_eq!(tun.cdi_name(), "tun");

    // Network interfaces (no node) and block devices are there too.
    let lo = devs
        .iter()
        .find(|d| {
            d.class == DeviceClass::Net
                && d.properties.get("INTERFACE").map(String::as_str) == Some("lo")
        })
        .expect("lo enumerated");
    assert!(lo.devnode.is_none());
    assert!(devs
        .iter()
        .any(|d| d.class == DeviceClass::Block && d.node_type == Some(NodeType::Block)));
    // PCI functions carry vendor and device ids when the machine has a PCI bus.
    if Path::new("/sys/bus/pci/devices")
        .read_dir()
        .map(|mut r| r.next().is_some())
        .unwrap_or(false)
    {
        let pci = devs
            .iter()
            .find(|d| d.class == DeviceClass::Pci)
            .expect("a PCI device");
        assert!(
            pci.vendor_id.as_deref().is_some_and(|v| v.len() == 4),
            "{pci:?}"
        );
    }
    // Every node enumerated has a unique syspath.
    let mut paths: Vec<_> = devs.iter().map(|d| &d.syspath).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), devs.len());
}

#[test]
fn device_for_a_node_path() {
    let d = sysfs::device_for_node(Path::new("/sys"), Path::new("/dev/fuse")).expect("fuse");
    assert_eq!(d.class, DeviceClass::Fuse);
    assert!(sysfs::device_for_node(Path::new("/sys"), Path::new("/etc/passwd")).is_err());
}

#[test]
fn list_command_prints_json_lines() {
    let out = Command::new(env!("CARGO_BIN_EXE_kadcm"))
        .args(["list", "--class", "kvm"])
        .output()
        .expect("kadcm list");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!(lines[0]["devnode"], "/dev/kvm");
    assert_eq!(lines[0]["class"], "kvm");
}
