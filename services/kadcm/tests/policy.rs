//! The shipped default passthrough policy decides as its comments say, on real devices.

use std::path::Path;
use std::sync::Arc;

use kadcm::container::Container;
use kadcm::passthrough::{AttachOptions, Passthrough};
use kadcm::{sysfs, Device, Error};

fn pt() -> Passthrough {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/default.rego");
    Passthrough::new(Arc::new(
        kaim::Policy::from_file(&p).expect("policy compiles"),
    ))
}

fn ctr(id: &str) -> Container {
    Container {
        id: id.into(),
        pid: 1,
        cgroups_path: None,
        base_rules: Vec::new(),
    }
}

fn dev(node: &str) -> Device {
    sysfs::device_for_node(Path::new("/sys"), Path::new(node)).expect("device")
}

fn check(d: &Device, id: &str, access: &str) -> Result<(), Error> {
    let opts = AttachOptions {
        access: access.into(),
        ..Default::default()
    };
    pt().check(&ctr(id), d, &opts)
}

#[test]
fn default_policy() {
    for n in ["/dev/kvm", "/dev/fuse", "/dev/net/tun"] {
        check(&dev(n), "any", "rwm").unwrap_or_else(|e| panic!("{n}: {e}"));
    }
    let mut serial = dev("/dev/null");
    serial.subsystem = "tty".into();
    serial.class = kadcm::DeviceClass::Char;
    serial.vendor_id = Some("0403".into());
    assert!(check(&serial, "serial-gw", "rw").is_ok());
    assert!(matches!(
        check(&serial, "other", "rw"),
        Err(Error::Denied { .. })
    ));

    let mem = sysfs::enumerate(Path::new("/sys"))
        .expect("enumerate")
        .into_iter()
        .find(|d| d.subsystem == "mem" && d.minor == Some(11))
        .expect("/dev/kmsg");
    match check(&mem, "any", "r") {
        Err(Error::Denied { reason, .. }) => assert!(reason.contains("memory devices"), "{reason}"),
        other => panic!("/dev/kmsg not denied: {other:?}"),
    }
    let block = sysfs::enumerate(Path::new("/sys"))
        .expect("enumerate")
        .into_iter()
        .find(|d| d.class == kadcm::DeviceClass::Block && d.devnode.is_some())
        .expect("a block device");
    match check(&block, "any", "rwm") {
        Err(Error::Denied { reason, .. }) => assert!(reason.contains("block devices"), "{reason}"),
        other => panic!("block device not denied: {other:?}"),
    }
    // A path outside /dev is refused by the policy before anything is made.
    let opts = AttachOptions {
        path: Some("/etc/kvm".into()),
        ..Default::default()
    };
    assert!(matches!(
        pt().check(&ctr("x"), &dev("/dev/kvm"), &opts),
        Err(Error::Denied { .. })
    ));
}
