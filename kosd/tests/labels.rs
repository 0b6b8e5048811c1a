//! SELinux labels of containers as inspect shows them: a level of its own per container
//! (`s0:cX,cY`, never shared) where SELinux is enabled; empty labels, as dockerd shows,
//! where it is not (this machine), and none in the runtime config either.

mod common;

use std::collections::HashSet;

use common::*;

fn selinux_enabled() -> bool {
    std::fs::read_to_string("/proc/filesystems").is_ok_and(|s| s.contains("selinuxfs"))
        && std::path::Path::new("/sys/fs/selinux/enforce").exists()
}

#[test]
fn inspect_shows_the_container_labels() {
    let k = Kosd::start(&[]);
    let reg = Registry::start();
    let img = reg.image("labels:1");
    push_busybox(&img, &ImageSpec::default());
    k.docker_ok(&["pull", "-q", &img]);
    let mut levels = HashSet::new();
    for _ in 0..3 {
        let id = k
            .docker_ok(&["create", "--network", "none", &img, "true"])
            .trim()
            .to_string();
        let got = k.docker_ok(&["inspect", "-f", "{{.MountLabel}}|{{.ProcessLabel}}", &id]);
        let (mount, process) = got.trim().split_once('|').expect("two labels");
        if selinux_enabled() {
            let level = mount.rsplit_once(":s0:").map(|x| x.1).expect("level");
            assert!(
                mount.starts_with("system_u:object_r:container_file_t:s0:c"),
                "{mount}"
            );
            assert!(
                process.starts_with("system_u:system_r:container_t:s0:c"),
                "{process}"
            );
            assert!(process.ends_with(level), "{process} vs {mount}");
            assert!(
                levels.insert(level.to_string()),
                "level {level} given twice"
            );
        } else {
            assert_eq!((mount, process), ("", ""), "no SELinux, no labels");
        }
        k.docker_ok(&["start", "-a", &id]);
        // The bundle lives on the exec root while the container exists.
        let config =
            std::fs::read_to_string(k.exec_root().join("bundles").join(&id).join("config.json"))
                .unwrap_or_default();
        assert!(!config.is_empty(), "no config.json for {id}");
        if !selinux_enabled() {
            assert!(
                !config.contains("selinuxLabel") && !config.contains("mountLabel"),
                "{config}"
            );
        }
    }
    // label=disable: no labels even where SELinux is on.
    let id = k
        .docker_ok(&[
            "create",
            "--network",
            "none",
            "--security-opt",
            "label=disable",
            &img,
            "true",
        ])
        .trim()
        .to_string();
    let got = k.docker_ok(&["inspect", "-f", "{{.MountLabel}}|{{.ProcessLabel}}", &id]);
    assert_eq!(got.trim(), "|");
}
