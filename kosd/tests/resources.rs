//! Cgroups of containers: the daemon's `--cgroup-parent` and a container's own
//! `--cgroup-parent`, devices, blkio limits in the v1 blkio controller, and OOM kills.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;

fn setup(tag: &str) -> (Kosd, Registry, String) {
    let k = Kosd::start(&[]);
    let reg = Registry::start();
    let img = reg.image(&format!("{tag}:1"));
    push_busybox(&img, &ImageSpec::default());
    k.docker_ok(&["pull", "-q", &img]);
    (k, reg, img)
}

fn inspect(k: &Kosd, fmt: &str, name: &str) -> String {
    k.docker_ok(&["inspect", "-f", fmt, name])
        .trim()
        .to_string()
}

#[test]
fn cgroup_parent_of_the_daemon_and_of_a_container() {
    let (k, _reg, img) = setup("cgp");
    let id = k
        .docker_ok(&["run", "-d", "--network", "none", &img, "sleep", "60"])
        .trim()
        .to_string();
    // The container's cgroup is below this daemon's parent, not below a shared `kos`.
    let mem = k.v1_cgroup("memory", &id);
    assert!(mem.is_dir(), "no cgroup {}", mem.display());
    let pid = inspect(&k, "{{.State.Pid}}", &id);
    let procs = std::fs::read_to_string(mem.join("cgroup.procs")).expect("cgroup.procs");
    assert!(
        procs.lines().any(|l| l.trim() == pid),
        "{pid} not in {procs}"
    );
    // A container's own --cgroup-parent (here below the daemon's, so the test removes it).
    let own = format!("{}/sub", k.cgroup_parent);
    let id2 = k
        .docker_ok(&[
            "run",
            "-d",
            "--network",
            "none",
            "--cgroup-parent",
            &format!("/{own}"),
            &img,
            "sleep",
            "60",
        ])
        .trim()
        .to_string();
    let dir2 = Path::new("/sys/fs/cgroup/pids").join(&own).join(&id2);
    assert!(dir2.is_dir(), "no cgroup {}", dir2.display());
    let cg = k.docker_ok(&["exec", &id2, "cat", "/proc/1/cgroup"]);
    assert!(cg.contains(&format!("/{own}/{id2}")), "{cg}");
    // A bad parent is refused at create, and nothing is made.
    let o = k.docker(&[
        "create",
        "--network",
        "none",
        "--cgroup-parent",
        "../escape",
        &img,
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("CgroupParent"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    k.docker_ok(&["rm", "-f", &id, &id2]);
    assert!(!mem.exists(), "cgroup left after rm: {}", mem.display());
    assert!(!dir2.exists(), "cgroup left after rm: {}", dir2.display());
    // The parent itself goes with the test's daemon.
    let parents = k.cgroup_dirs();
    assert!(!parents.is_empty());
    drop(k);
    for p in parents {
        assert!(!p.exists(), "cgroup parent left: {}", p.display());
    }
}

#[test]
fn device_mapped_read_only() {
    let (k, _reg, img) = setup("dev");
    // /dev/null under a new name, read-only: the node is there (c 1, 3) without write
    // bits, reads work, and the container's users cannot write it.
    let out = k.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--user",
        "1000",
        "--device",
        "/dev/null:/dev/xnull:r",
        &img,
        "sh",
        "-c",
        "ls -l /dev/xnull; cat /dev/xnull && echo read-ok; \
         if echo x > /dev/xnull; then echo write-ok; else echo write-refused; fi",
    ]);
    let first = out.lines().next().unwrap_or("");
    assert!(first.starts_with("cr--r--r--"), "{out}");
    assert!(first.contains("1,") && first.contains(" 3 "), "{out}");
    assert!(out.contains("read-ok"), "{out}");
    assert!(
        out.contains("write-refused") && !out.contains("write-ok"),
        "{out}"
    );
    // Without the mapping there is no /dev/xnull.
    let o = k.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        &img,
        "test",
        "-e",
        "/dev/xnull",
    ]);
    assert_eq!(o.status.code(), Some(1));
}

/// The first real (non-loop, non-zram) block device of the host, as (path, "major:minor").
fn block_device() -> Option<(String, String)> {
    let mut names: Vec<String> = std::fs::read_dir("/sys/block")
        .ok()?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("loop") && !n.starts_with("zram") && !n.starts_with("ram"))
        .collect();
    names.sort();
    let n = names
        .into_iter()
        .find(|n| Path::new("/dev").join(n).exists())?;
    let dev = std::fs::read_to_string(format!("/sys/block/{n}/dev")).ok()?;
    Some((format!("/dev/{n}"), dev.trim().to_string()))
}

#[test]
fn blkio_weight_and_read_bps_in_the_v1_blkio_cgroup() {
    if !Path::new("/sys/fs/cgroup/blkio").is_dir() {
        skip("no v1 blkio controller on this kernel");
        return;
    }
    let Some((dev, majmin)) = block_device() else {
        skip("no block device besides loop/zram");
        return;
    };
    let (k, _reg, img) = setup("blkio");
    let id = k
        .docker_ok(&[
            "run",
            "-d",
            "--network",
            "none",
            "--blkio-weight",
            "300",
            "--device-read-bps",
            &format!("{dev}:1mb"),
            "--device-write-iops",
            &format!("{dev}:77"),
            &img,
            "sleep",
            "60",
        ])
        .trim()
        .to_string();
    let dir = k.v1_cgroup("blkio", &id);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    assert!(
        read("blkio.throttle.read_bps_device")
            .lines()
            .any(|l| l.trim() == format!("{majmin} 1048576")),
        "{}",
        read("blkio.throttle.read_bps_device")
    );
    assert!(
        read("blkio.throttle.write_iops_device")
            .lines()
            .any(|l| l.trim() == format!("{majmin} 77")),
        "{}",
        read("blkio.throttle.write_iops_device")
    );
    // The weight: CFQ's file where the kernel has it, else BFQ's.
    let weight = if dir.join("blkio.weight").exists() {
        read("blkio.weight")
    } else {
        read("blkio.bfq.weight")
    };
    assert!(
        weight.split_whitespace().any(|w| w == "300"),
        "weight {weight:?}"
    );
    k.docker_ok(&["rm", "-f", &id]);
}

#[test]
fn memory_hog_is_oom_killed() {
    let (k, _reg, img) = setup("oom");
    let name = unique("oomhog");
    // A shell string that doubles until the 8 MiB limit (and its swap) is gone.
    let o = k.docker(&[
        "run",
        "--name",
        &name,
        "--network",
        "none",
        "--memory",
        "8m",
        &img,
        "sh",
        "-c",
        "a=xxxxxxxxxxxxxxxx; while true; do a=\"$a$a\"; done",
    ]);
    assert_eq!(
        o.status.code(),
        Some(137),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let st = inspect(
        &k,
        "{{.State.OOMKilled}} {{.State.ExitCode}} {{.State.Status}}",
        &name,
    );
    assert_eq!(st, "true 137 exited");
    // `--until 0s` is the client's clock in whole seconds: let this second pass.
    std::thread::sleep(Duration::from_millis(1100));
    let ev = k.docker_ok(&[
        "events",
        "--since",
        "0",
        "--until",
        "0s",
        "--filter",
        &format!("container={name}"),
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}}",
    ]);
    let ooms: Vec<&str> = ev.lines().filter(|l| l.starts_with("oom ")).collect();
    assert_eq!(ooms, [format!("oom {name}")], "{ev}");
    // A container within its limit is not marked.
    let ok = unique("oomok");
    k.docker_ok(&[
        "run",
        "--name",
        &ok,
        "--network",
        "none",
        "--memory",
        "8m",
        &img,
        "true",
    ]);
    assert_eq!(inspect(&k, "{{.State.OOMKilled}}", &ok), "false");
    k.docker_ok(&["rm", "-f", &name, &ok]);
}
