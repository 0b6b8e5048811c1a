//! Cgroups of containers: the daemon's `--cgroup-parent` and a container's own
//! `--cgroup-parent`, devices, blkio limits in the v1 blkio controller, and OOM kills.

mod common;

use std::path::Path;

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
