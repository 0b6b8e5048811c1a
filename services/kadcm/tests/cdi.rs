//! CDI: kadcm's specs written from the real device list, read back with third-party specs,
//! resolved, applied to an OCI spec, and used by a real container.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use kadcm::cdi::{self, registry::Registry};
use support::*;

#[test]
fn write_read_resolve_apply() {
    let dir = TempDir::new("cdi");
    let etc = dir.0.join("etc-cdi");
    let run = dir.0.join("run-cdi");
    std::fs::create_dir_all(&etc).expect("dir");
    let devs = kadcm::sysfs::enumerate(Path::new("/sys")).expect("enumerate");
    let written = cdi::write::write_specs(&run, &devs).expect("write");
    for f in [
        "kos.dev-kvm.json",
        "kos.dev-fuse.json",
        "kos.dev-tun.json",
        "kos.dev-char.json",
        "kos.dev-block.json",
    ] {
        assert!(
            written.contains(&run.join(f)),
            "{f} not written: {written:?}"
        );
    }
    let kvm: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("kos.dev-kvm.json")).expect("read"))
            .expect("json");
    assert_eq!(kvm["cdiVersion"], "0.6.0");
    assert_eq!(kvm["kind"], "kos.dev/kvm");
    assert_eq!(kvm["devices"][0]["name"], "kvm");
    assert_eq!(
        kvm["devices"][0]["containerEdits"]["deviceNodes"][0]["path"],
        "/dev/kvm"
    );

    // A third party's spec in /etc/cdi, overridden for one device by /var/run/cdi.
    std::fs::write(
        etc.join("vendor.json"),
        r#"{"cdiVersion":"0.6.0","kind":"vendor.example/acc","containerEdits":{"env":["ACC_LIB=/opt/acc"],
        "mounts":[{"hostPath":"/usr/lib","containerPath":"/opt/acc","options":["ro","rbind"]}],
        "hooks":[{"hookName":"createContainer","path":"/bin/true","args":["true","acc"]}]},
        "devices":[{"name":"a0","containerEdits":{"deviceNodes":[{"path":"/dev/acc0","hostPath":"/dev/null"}],"env":["ACC=0"]}},
                   {"name":"a1","containerEdits":{"env":["ACC=old"]}}]}"#,
    )
    .expect("vendor spec");
    std::fs::write(
        run.join("vendor-override.json"),
        r#"{"cdiVersion":"0.6.0","kind":"vendor.example/acc","devices":[{"name":"a1","containerEdits":{"env":["ACC=new"]}}]}"#,
    )
    .expect("override");
    std::fs::write(run.join("broken.json"), "{not json").expect("broken");
    std::fs::write(
        run.join("bad-kind.json"),
        r#"{"cdiVersion":"0.6.0","kind":"nokind","devices":[]}"#,
    )
    .expect("bad");

    let (reg, broken) = Registry::load(&[etc.clone(), run.clone()]);
    assert_eq!(broken.len(), 2, "{broken:?}");
    assert!(reg.names().contains(&"kos.dev/fuse=fuse".to_string()));

    let e = reg.resolve(&["kos.dev/kvm=kvm"]).expect("resolve kvm");
    assert_eq!(e.device_nodes.len(), 1);
    assert_eq!(e.device_nodes[0].major, Some(10));
    assert_eq!(e.device_nodes[0].minor, Some(232));

    let e = reg
        .resolve(&["vendor.example/acc=a0", "vendor.example/acc=a1"])
        .expect("resolve vendor");
    assert!(e.env.contains(&"ACC_LIB=/opt/acc".to_string()));
    assert!(e.env.contains(&"ACC=new".to_string()), "{:?}", e.env);
    assert!(
        !e.env.iter().any(|v| v == "ACC=0" || v == "ACC=old"),
        "later device's ACC wins: {:?}",
        e.env
    );
    assert_eq!(e.hooks.len(), 1, "spec-level edits applied once");

    assert!(reg.resolve(&["kos.dev/kvm=nope"]).is_err());
    assert!(reg.resolve(&["kvm"]).is_err());

    // Applied to an OCI spec, the way kosd does for --device kos.dev/kvm=kvm.
    let mut spec = oci_spec::runtime::Spec::default();
    cdi::apply_devices(
        &mut spec,
        &["kos.dev/kvm=kvm", "vendor.example/acc=a0"],
        &[etc.clone(), run.clone()],
    )
    .expect("apply");
    let linux = spec.linux().as_ref().expect("linux");
    let devices = linux.devices().as_ref().expect("devices");
    let kvm = devices
        .iter()
        .find(|d| d.path() == Path::new("/dev/kvm"))
        .expect("kvm node");
    assert_eq!((kvm.major(), kvm.minor()), (10, 232));
    let acc = devices
        .iter()
        .find(|d| d.path() == Path::new("/dev/acc0"))
        .expect("acc node");
    assert_eq!(
        (acc.major(), acc.minor()),
        (1, 3),
        "major/minor taken from the host path"
    );
    let rules = linux
        .resources()
        .as_ref()
        .and_then(|r| r.devices().clone())
        .expect("rules");
    assert!(rules
        .iter()
        .any(|r| r.allow() && r.major() == Some(10) && r.minor() == Some(232)));
    let mounts = spec.mounts().as_ref().expect("mounts");
    assert!(mounts
        .iter()
        .any(|m| m.destination() == Path::new("/opt/acc")));
    let hooks = spec
        .hooks()
        .as_ref()
        .and_then(|h| h.create_container().clone())
        .expect("hooks");
    assert_eq!(hooks[0].path(), Path::new("/bin/true"));
    let env = spec
        .process()
        .as_ref()
        .and_then(|p| p.env().clone())
        .expect("env");
    assert!(env.contains(&"ACC=0".to_string()));

    // Conflicting definitions in one directory are refused.
    std::fs::write(
        run.join("dup.json"),
        r#"{"cdiVersion":"0.6.0","kind":"kos.dev/kvm","devices":[{"name":"kvm","containerEdits":{"env":["X=1"]}}]}"#,
    )
    .expect("dup");
    let (reg, _) = Registry::load(&[etc, run.clone()]);
    assert!(reg.resolve(&["kos.dev/kvm=kvm"]).is_err());
    std::fs::remove_file(run.join("dup.json")).expect("rm");

    // Rewriting with fewer classes removes kadcm's stale files, not third parties'.
    let only_null: Vec<_> = devs
        .iter()
        .filter(|d| d.devnode.as_deref() == Some(Path::new("/dev/null")))
        .cloned()
        .collect();
    cdi::write::write_specs(&run, &only_null).expect("rewrite");
    assert!(!run.join("kos.dev-kvm.json").exists());
    assert!(run.join("kos.dev-char.json").exists());
    assert!(run.join("vendor-override.json").exists());
}

#[test]
fn cli_resolve() {
    let dir = TempDir::new("cdicli");
    let out = Command::new(env!("CARGO_BIN_EXE_kadcm"))
        .arg("cdi-write")
        .arg("--dir")
        .arg(&dir.0)
        .output()
        .expect("cdi-write");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_kadcm"))
        .arg("cdi-resolve")
        .arg("--cdi-dir")
        .arg(&dir.0)
        .arg("kos.dev/fuse=fuse")
        .output()
        .expect("cdi-resolve");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["deviceNodes"][0]["path"], "/dev/fuse");
    let out = Command::new(env!("CARGO_BIN_EXE_kadcm"))
        .arg("cdi-resolve")
        .arg("--cdi-dir")
        .arg(&dir.0)
        .arg("kos.dev/fuse=nothere")
        .output()
        .expect("cdi-resolve");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.starts_with("kadcm: CDI device \"kos.dev/fuse=nothere\""),
        "{err}"
    );
}

/// A container created from a spec with `kos.dev/fuse=fuse` applied sees and opens /dev/fuse.
#[test]
fn cdi_device_in_a_real_container() {
    let dir = TempDir::new("cdictr");
    let cdi_dir: PathBuf = dir.0.join("cdi");
    let devs = kadcm::sysfs::enumerate(Path::new("/sys")).expect("enumerate");
    cdi::write::write_specs(&cdi_dir, &devs).expect("write");
    let c = Container::start(&["sleep", "1000"]);
    // The running container has no fuse; a second one gets it through CDI.
    let (ok, _) = c.sh("test -c /dev/fuse");
    assert!(!ok, "fuse present without CDI");
    drop(c);

    let c2 = support::Container::start_with(&["sleep", "1000"], |spec| {
        cdi::apply_devices(spec, &["kos.dev/fuse=fuse"], std::slice::from_ref(&cdi_dir))
            .expect("apply");
    });
    let (ok, out) = c2.sh("test -c /dev/fuse && exec 3<>/dev/fuse && echo opened");
    assert!(ok && out.contains("opened"), "{out}");
}
