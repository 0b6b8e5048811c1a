//! Idmapped bind mounts (runtime-spec 1.2): a mount's own uidMappings/gidMappings,
//! and the bare "idmap" option taking the container's user namespace mappings.

mod support;

use std::os::unix::fs::MetadataExt;
use std::process::Command;

use serde_json::json;
use support::*;

/// A host directory with a root-owned file, bound at /data with `mount`.
fn run_with_data_mount(
    mount: serde_json::Value,
    tweak: impl FnOnce(&mut serde_json::Value),
) -> (String, String, bool, TempDir) {
    let data = TempDir::new("idmap-data");
    std::fs::write(data.0.join("f"), "kos").expect("file");
    std::os::unix::fs::chown(data.0.join("f"), Some(0), Some(0)).expect("chown");
    let work = TempDir::new("idmap");
    let bundle = work.0.join("bundle");
    let mut c = spec_config(
        &bundle,
        &[
            "sh",
            "-c",
            "ls -ln /data/f; grep ' /data ' /proc/self/mountinfo",
        ],
    );
    c["root"]["readonly"] = json!(false);
    // Made here: root of a user namespace cannot create it in a host-owned rootfs.
    std::fs::create_dir_all(bundle.join("rootfs/data")).expect("mount point");
    let mut m = mount;
    m["source"] = json!(data.0.to_string_lossy());
    c["mounts"].as_array_mut().expect("mounts").push(m);
    tweak(&mut c);
    write_config(&bundle, &c);
    let id = unique("idmap");
    let out = output_via_files(
        Command::new(kosrun())
            .arg("--root")
            .arg(work.0.join("state"))
            .args(["run", "-b"])
            .arg(&bundle)
            .arg(&id),
    );
    // The host file itself is never rewritten by the mapping.
    assert_eq!(std::fs::metadata(data.0.join("f")).expect("stat").uid(), 0);
    (
        text(&out.stdout),
        text(&out.stderr),
        out.status.success(),
        data,
    )
}

#[test]
fn mount_mappings_shift_ownership() {
    let (out, err, ok, _d) = run_with_data_mount(
        json!({"destination": "/data", "type": "bind", "options": ["rbind", "rw"],
               "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
               "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]}),
        |_| {},
    );
    assert!(ok, "{err}");
    let f: Vec<&str> = out
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        (f.get(2), f.get(3)),
        (Some(&"1000"), Some(&"1000")),
        "{out}"
    );
    assert!(out.contains("idmapped"), "mount is not idmapped: {out}");
}

#[test]
fn idmap_option_uses_the_container_mappings() {
    let (out, err, ok, _d) = run_with_data_mount(
        json!({"destination": "/data", "type": "bind", "options": ["rbind", "rw", "idmap"]}),
        |c| {
            c["linux"]["namespaces"]
                .as_array_mut()
                .expect("ns")
                .push(json!({"type": "user"}));
            c["linux"]["uidMappings"] =
                json!([{"containerID": 0, "hostID": 300000, "size": 65536}]);
            c["linux"]["gidMappings"] =
                json!([{"containerID": 0, "hostID": 300000, "size": 65536}]);
            // The rootfs stays host-owned; sysfs cannot be mounted from a user namespace
            // without its own network namespace being owned by it, so bind the host's.
            for m in c["mounts"].as_array_mut().expect("mounts") {
                if m["type"] == "sysfs" {
                    *m = json!({"destination": "/sys", "type": "none", "source": "/sys",
                                "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
                }
            }
            c["mounts"]
                .as_array_mut()
                .expect("mounts")
                .retain(|m| m["type"] != "cgroup");
        },
    );
    assert!(ok, "{err}");
    // On-disk 0 is the container's root: seen as 0 from inside its user namespace.
    let f: Vec<&str> = out
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!((f.get(2), f.get(3)), (Some(&"0"), Some(&"0")), "{out}");
    assert!(out.contains("idmapped"), "mount is not idmapped: {out}");
}

#[test]
fn idmap_without_any_mappings_is_refused() {
    let (_out, err, ok, _d) = run_with_data_mount(
        json!({"destination": "/data", "type": "bind", "options": ["rbind", "idmap"]}),
        |_| {},
    );
    assert!(!ok, "an idmap mount without mappings ran");
    assert!(err.contains("uidMappings and gidMappings"), "{err}");
}
