//! Hot-plugging device nodes into a running kosrun container and out again, checked from
//! inside the container (node present, open works; after removal gone) and in the container's
//! v1 devices cgroup (this host's devices controller is v1).

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use kadcm::autoattach::{AutoAttach, Rule};
use kadcm::passthrough::{AttachOptions, Passthrough};
use kadcm::{sysfs, Error};
use support::*;

const POLICY: &str = r#"package kaim
default allow := false
allow if {
	input.Kind == "device"
	input.Device.class in {"fuse", "block"}
}
deny contains "kvm is reserved" if input.Device.class == "kvm"
"#;

fn passthrough(dir: &Path) -> Passthrough {
    let p = write_policy(dir, POLICY);
    Passthrough::new(Arc::new(kaim::Policy::from_file(&p).expect("policy")))
}

fn devices_list(c: &Container) -> String {
    let d = c
        .devices_cgroup()
        .expect("devices cgroup (v1 devices controller)");
    std::fs::read_to_string(d.join("devices.list")).expect("devices.list")
}

#[test]
fn fuse_in_and_out() {
    let dir = TempDir::new("hp");
    let pt = passthrough(&dir.0);
    let c = Container::start(&["sleep", "1000"]);
    let ctr = c.runtime().container(&c.id).expect("container");
    assert!(!devices_list(&c).contains("c 10:229 "));
    let (present, _) = c.sh("test -e /dev/fuse");
    assert!(!present, "fuse already in the container");

    let fuse = sysfs::device_for_node(Path::new("/sys"), Path::new("/dev/fuse")).expect("fuse");
    let opts = AttachOptions {
        mode: Some(0o666),
        ..Default::default()
    };
    let node = pt.attach(&ctr, &fuse, &opts).expect("attach");
    assert!(
        devices_list(&c).contains("c 10:229 rwm"),
        "{}",
        devices_list(&c)
    );
    let (ok, out) = c.sh("test -c /dev/fuse && exec 3<>/dev/fuse && echo opened");
    assert!(ok && out.contains("opened"), "{out}");
    let (_, ls) = c.sh("ls -l /dev/fuse");
    assert!(ls.starts_with("crw-rw-rw-"), "{ls}");

    pt.detach(&ctr, &node).expect("detach");
    let (present, _) = c.sh("test -e /dev/fuse");
    assert!(!present, "node still there after detach");
    assert!(
        !devices_list(&c).contains("c 10:229 "),
        "{}",
        devices_list(&c)
    );

    // The cgroup rule is what guards: a node alone (no rule) cannot be opened inside.
    kadcm::node::make(ctr.pid, &node).expect("node only");
    let (ok, out) = c.sh("exec 3<>/dev/fuse && echo opened");
    assert!(!ok && out.contains("not permitted"), "{out}");
    kadcm::node::remove(ctr.pid, &node).expect("remove node");
}

#[test]
fn loop_device_in_and_out_and_policy_denial() {
    let dir = TempDir::new("hp");
    let pt = passthrough(&dir.0);
    let lp = LoopDev::new();
    let c = Container::start(&["sleep", "1000"]);
    let ctr = c.runtime().container(&c.id).expect("container");
    let dev = sysfs::device_for_node(Path::new("/sys"), &lp.dev).expect("loop device");
    let node = pt
        .attach(
            &ctr,
            &dev,
            &AttachOptions {
                path: Some("/dev/disks/data".into()),
                ..Default::default()
            },
        )
        .expect("attach loop");
    let (ok, out) = c.sh("dd if=/dev/disks/data bs=4 count=1 2>/dev/null");
    assert!(ok && out.starts_with("ZZZZ"), "{out}");
    pt.detach(&ctr, &node).expect("detach");
    let (present, _) = c.sh("test -e /dev/disks/data");
    assert!(!present);

    // kvm is refused by the policy: no node, no rule.
    let kvm = sysfs::device_for_node(Path::new("/sys"), Path::new("/dev/kvm")).expect("kvm");
    match pt.attach(&ctr, &kvm, &AttachOptions::default()) {
        Err(Error::Denied { reason, .. }) => {
            assert!(reason.contains("kvm is reserved"), "{reason}")
        }
        other => panic!("kvm attach not denied: {other:?}"),
    }
    let (present, _) = c.sh("test -e /dev/kvm");
    assert!(!present);
    assert!(!devices_list(&c).contains("c 10:232 "));
}

#[test]
fn auto_attach_rule_follows_the_device() {
    let dir = TempDir::new("hp");
    let lp = LoopDev::new();
    let c = Container::start(&["sleep", "1000"]);
    let rule: Rule = serde_json::from_value(serde_json::json!({
        "name": "scratch-disk",
        "match": {"subsystem": "block", "devname": lp.name()},
        "container": c.id,
        "path": "/dev/scratch",
    }))
    .expect("rule");
    let auto = AutoAttach::new(vec![rule], c.runtime(), passthrough(&dir.0));
    let dev = sysfs::device_for_node(Path::new("/sys"), &lp.dev).expect("loop");
    let null = sysfs::device_for_node(Path::new("/sys"), Path::new("/dev/null")).expect("null");
    assert!(
        auto.device_added(&null).is_empty(),
        "rule matched /dev/null"
    );
    let done = auto.device_added(&dev);
    assert_eq!(done.len(), 1);
    assert!(done[0].is_ok(), "{:?}", done[0]);
    let (ok, out) = c.sh("test -b /dev/scratch && dd if=/dev/scratch bs=2 count=1 2>/dev/null");
    assert!(ok && out.starts_with("ZZ"), "{out}");
    let undone = auto.device_removed(&dev.syspath);
    assert_eq!(undone.len(), 1);
    assert!(undone[0].is_ok(), "{:?}", undone[0]);
    let (present, _) = c.sh("test -e /dev/scratch");
    assert!(!present);
}

#[test]
fn cli_attach_and_detach() {
    let dir = TempDir::new("hp");
    let policy = write_policy(&dir.0, POLICY);
    let c = Container::start(&["sleep", "1000"]);
    let kadcm = |verb: &str| {
        Command::new(env!("CARGO_BIN_EXE_kadcm"))
            .arg(verb)
            .arg("--runtime")
            .arg(kosrun())
            .arg("--runtime-root")
            .arg(&c.root.0)
            .args([
                "--container",
                &c.id,
                "--device",
                "/dev/fuse",
                "--mode",
                "0660",
                "--policy",
            ])
            .arg(&policy)
            .output()
            .expect("kadcm")
    };
    let out = kadcm("attach");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (ok, out) = c.sh("exec 3<>/dev/fuse && echo opened");
    assert!(ok && out.contains("opened"), "{out}");
    let out = kadcm("detach");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (present, _) = c.sh("test -e /dev/fuse");
    assert!(!present);
    // A container that does not exist: one clear line, non-zero exit.
    let out = Command::new(env!("CARGO_BIN_EXE_kadcm"))
        .arg("attach")
        .arg("--runtime")
        .arg(kosrun())
        .arg("--runtime-root")
        .arg(&c.root.0)
        .args([
            "--container",
            "no-such-ctr",
            "--device",
            "/dev/fuse",
            "--policy",
        ])
        .arg(&policy)
        .output()
        .expect("kadcm");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("kadcm: container no-such-ctr:"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
}

/// The v2 path (a device eBPF program rebuilt from the container's base rules plus what is
/// attached), exercised on the hybrid host's cgroup2 mount, where device programs apply on
/// top of the v1 devices controller: with v1 allowing fuse, the v2 program alone decides.
#[test]
fn v2_device_program_on_the_unified_hierarchy() {
    use kadcm::devcgroup::DeviceCgroup;
    use kos_cgroups::{Hierarchy, Layout, Manager};

    let unified = Path::new("/sys/fs/cgroup/unified");
    if !unified.join("cgroup.procs").exists() {
        return skip("no cgroup2 mount at /sys/fs/cgroup/unified (not a hybrid host)");
    }
    let dir = TempDir::new("hp");
    let c = Container::start(&["sleep", "1000"]);
    let ctr = c.runtime().container(&c.id).expect("container");
    let v2_path = std::fs::read_to_string(format!("/proc/{}/cgroup", ctr.pid))
        .expect("cgroup file")
        .lines()
        .find_map(|l| l.strip_prefix("0::").map(str::to_string))
        .expect("unified cgroup line");
    let hier = [Hierarchy {
        mount_point: unified.to_path_buf(),
        controllers: Vec::new(),
        v2: true,
    }];
    let v2 = DeviceCgroup::from_manager(
        Manager::new_at(Layout::V2, &hier, Some(&v2_path), &c.id).expect("v2 manager"),
    );
    assert!(v2.is_v2());

    // v1 allows fuse (and makes the node) ...
    let pt_v1 = passthrough(&dir.0);
    let fuse = sysfs::device_for_node(Path::new("/sys"), Path::new("/dev/fuse")).expect("fuse");
    let opts = AttachOptions {
        mode: Some(0o666),
        ..Default::default()
    };
    let node = pt_v1.attach(&ctr, &fuse, &opts).expect("v1 attach");
    let (ok, out) = c.sh("exec 3<>/dev/fuse && echo opened");
    assert!(ok, "{out}");

    // ... then a v2 program from the base rules alone takes fuse away, and keeps the defaults.
    let deny = kadcm::devcgroup::rule(false, kadcm::NodeType::Char, 10, 229, "rwm").expect("rule");
    match v2.set(deny, ctr.base_rules.clone()) {
        Ok(()) => {}
        Err(Error::Cgroup(e)) if e.to_string().contains("Operation not permitted") => {
            return skip(&format!(
                "cgroup device programs cannot be attached here: {e}"
            ));
        }
        Err(e) => panic!("v2 base program: {e}"),
    }
    let (ok, out) = c.sh("exec 3<>/dev/fuse && echo opened");
    assert!(!ok && out.contains("not permitted"), "{out}");
    let (ok, out) = c.sh("echo x >/dev/null && head -c 4 /dev/zero | wc -c");
    assert!(ok && out.trim() == "4", "defaults lost: {out}");

    // Attach through the v2 path: the program is rebuilt with fuse in it.
    let pt_v2 = passthrough(&dir.0);
    let node2 = pt_v2
        .attach_with(&ctr, &fuse, &opts, &v2)
        .expect("v2 attach");
    let (ok, out) = c.sh("exec 3<>/dev/fuse && echo opened");
    assert!(ok && out.contains("opened"), "{out}");

    // Detach through the v2 path: node gone; a node made again cannot be opened.
    pt_v2.detach_with(&ctr, &node2, &v2).expect("v2 detach");
    let (present, _) = c.sh("test -e /dev/fuse");
    assert!(!present);
    kadcm::node::make(ctr.pid, &node).expect("node again");
    let (ok, out) = c.sh("exec 3<>/dev/fuse && echo opened");
    assert!(!ok && out.contains("not permitted"), "{out}");
    let (ok, _) = c.sh("echo x >/dev/null");
    assert!(ok, "defaults lost after detach");
}
