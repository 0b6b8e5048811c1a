//! The v2 writers for controllers this host's v2 hierarchy lacks (cpu, cpuset, memory, io,
//! pids, rdma), and the v1 writers for hierarchies it does not mount (net_cls, net_prio, v1
//! hugetlb, rdma), run against a temporary cgroupfs-shaped tree of plain files. These check
//! the conversions and file formats; the kernel-facing behaviour is in host.rs and
//! v2_kernel.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;
use kos_cgroups::{Hierarchy, Layout, Manager};

/// A temporary directory removed on drop.
struct TempTree(PathBuf);

impl TempTree {
    fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(unique_path(tag).trim_start_matches('/'));
        fs::create_dir_all(&p).unwrap();
        TempTree(p)
    }
}

impl Drop for TempTree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn files(dir: &Path, list: &[(&str, &str)]) {
    fs::create_dir_all(dir).unwrap();
    for (name, content) in list {
        fs::write(dir.join(name), content).unwrap();
    }
}

const V2_FILES: &[(&str, &str)] = &[
    (
        "cgroup.controllers",
        "cpuset cpu io memory hugetlb pids rdma",
    ),
    ("cgroup.subtree_control", ""),
    ("cgroup.procs", ""),
    ("cpu.weight", "100"),
    ("cpu.max", "max 100000"),
    ("cpu.max.burst", "0"),
    ("cpu.idle", "0"),
    ("cpuset.cpus", ""),
    ("cpuset.mems", ""),
    ("memory.max", "max"),
    ("memory.low", "0"),
    ("memory.high", "max"),
    ("memory.swap.max", "max"),
    ("memory.current", "1000000"),
    ("pids.max", "max"),
    ("io.weight", "default 100"),
    ("io.max", ""),
    ("hugetlb.2MB.max", "max"),
    ("rdma.max", ""),
];

fn v2_manager(root: &Path, path: &str) -> Manager {
    files(
        root,
        &[
            (
                "cgroup.controllers",
                "cpuset cpu io memory hugetlb pids rdma",
            ),
            ("cgroup.subtree_control", ""),
        ],
    );
    Manager::new_at(
        Layout::V2,
        &[Hierarchy {
            mount_point: root.to_path_buf(),
            controllers: vec![],
            v2: true,
        }],
        Some(path),
        "kos-x",
    )
    .unwrap()
}

#[test]
fn v2_create_enables_controllers_and_apply_converts() {
    let t = TempTree::new("tree2");
    let m = v2_manager(&t.0, "/kos-c1");
    m.create().unwrap();
    let d = v2_dir(&m).unwrap();
    assert_eq!(d, t.0.join("kos-c1"));
    assert_eq!(
        read(t.0.join("cgroup.subtree_control")),
        "+cpuset +cpu +io +memory +hugetlb +pids +rdma"
    );
    files(&d, V2_FILES);
    let r = resources(
        r#"{"cpu": {"shares": 1024, "quota": 50000, "period": 100000, "burst": 2000, "idle": 1,
                    "cpus": "0-1", "mems": "0"},
            "memory": {"limit": 67108864, "reservation": 33554432, "swap": 134217728,
                       "kernel": 1, "kernelTCP": 1, "swappiness": 5},
            "pids": {"limit": 50},
            "blockIO": {"weight": 500,
                        "weightDevice": [{"major": 8, "minor": 0, "weight": 1000}],
                        "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                        "throttleWriteBpsDevice": [{"major": 8, "minor": 0, "rate": 2097152}],
                        "throttleReadIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}],
                        "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 0}]},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 2097152}],
            "rdma": {"mlx5_0": {"hcaHandles": 3, "hcaObjects": 100}},
            "unified": {"memory.high": "50000000"}}"#,
    );
    m.apply(&r).unwrap();
    assert_eq!(read(d.join("cpu.weight")), "39");
    assert_eq!(read(d.join("cpu.max")), "50000 100000");
    assert_eq!(read(d.join("cpu.max.burst")), "2000");
    assert_eq!(read(d.join("cpu.idle")), "1");
    assert_eq!(read(d.join("cpuset.cpus")), "0-1");
    assert_eq!(read(d.join("cpuset.mems")), "0");
    assert_eq!(read(d.join("memory.max")), "67108864");
    assert_eq!(read(d.join("memory.low")), "33554432");
    assert_eq!(
        read(d.join("memory.swap.max")),
        "67108864",
        "swap.max is swap minus limit"
    );
    assert_eq!(read(d.join("memory.high")), "50000000");
    assert_eq!(read(d.join("pids.max")), "50");
    // The last write to io.weight is the per-device one; one io.max line per device.
    assert_eq!(read(d.join("io.weight")), "8:0 10000");
    assert_eq!(
        read(d.join("io.max")),
        "8:0 rbps=1048576 wbps=2097152 riops=100 wiops=max"
    );
    assert_eq!(read(d.join("hugetlb.2MB.max")), "2097152");
    assert_eq!(
        read(d.join("rdma.max")),
        "mlx5_0 hca_handle=3 hca_object=100"
    );

    let r = resources(
        r#"{"blockIO": {"weight": 500}, "cpu": {"quota": -1}, "memory": {"limit": -1, "swap": -1}, "pids": {"limit": -1}}"#,
    );
    m.apply(&r).unwrap();
    assert_eq!(read(d.join("io.weight")), "default 4950");
    assert_eq!(read(d.join("cpu.max")), "max");
    assert_eq!(read(d.join("memory.max")), "max");
    assert_eq!(read(d.join("memory.swap.max")), "max");
    assert_eq!(read(d.join("pids.max")), "max");

    // A period alone keeps the quota in force.
    fs::write(d.join("cpu.max"), "30000 100000").unwrap();
    m.apply(&resources(r#"{"cpu": {"period": 200000}}"#))
        .unwrap();
    assert_eq!(read(d.join("cpu.max")), "30000 200000");

    // Zero values are "not set" and leave the files alone; swap alone counts against the
    // limit in force.
    fs::write(d.join("memory.max"), "1000000").unwrap();
    m.apply(&resources(
        r#"{"memory": {"limit": 0, "reservation": 0, "swap": 3000000}, "cpu": {"quota": 0, "shares": 0, "period": 0}}"#,
    ))
    .unwrap();
    assert_eq!(read(d.join("memory.max")), "1000000");
    assert_eq!(read(d.join("memory.swap.max")), "2000000");
    assert_eq!(read(d.join("cpu.max")), "30000 200000");

    // BFQ takes the v1 weight range unconverted.
    fs::write(d.join("io.bfq.weight"), "100").unwrap();
    m.apply(&resources(r#"{"blockIO": {"weight": 500}}"#))
        .unwrap();
    assert_eq!(read(d.join("io.bfq.weight")), "500");
}

#[test]
fn v2_update_checks_usage_and_rolls_back() {
    let t = TempTree::new("tree2u");
    let m = v2_manager(&t.0, "/kos-c2");
    m.create().unwrap();
    let d = v2_dir(&m).unwrap();
    files(&d, V2_FILES);
    fs::write(d.join("memory.current"), "100000000").unwrap();
    let e = m
        .update(&resources(
            r#"{"memory": {"limit": 67108864, "checkBeforeUpdate": true}}"#,
        ))
        .unwrap_err()
        .to_string();
    assert!(e.contains("memory.limit") && e.contains("100000000"), "{e}");
    assert_eq!(read(d.join("memory.max")), "max");
    m.update(&resources(
        r#"{"memory": {"limit": 167108864, "checkBeforeUpdate": true}}"#,
    ))
    .unwrap();
    assert_eq!(read(d.join("memory.max")), "167108864");

    // A malformed unified key is refused before the memory limit beside it is written.
    let e = m
        .update(&resources(
            r#"{"memory": {"limit": 5000000}, "unified": {"memory.high/..": "1"}}"#,
        ))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("linux.resources.unified[\"memory.high/..\"]"),
        "{e}"
    );
    assert_eq!(read(d.join("memory.max")), "167108864");

    // A pids.max the write cannot go to: memory and cpu were written first and must be
    // restored.
    fs::remove_file(d.join("pids.max")).unwrap();
    fs::create_dir(d.join("pids.max")).unwrap();
    let e = m
        .update(&resources(
            r#"{"cpu": {"shares": 2048}, "memory": {"limit": 1000000}, "pids": {"limit": 5}}"#,
        ))
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("linux.resources.pids.limit"), "{e}");
    assert_eq!(read(d.join("memory.max")), "167108864");
    assert_eq!(read(d.join("cpu.weight")), "100");
}

#[test]
fn v2_stats_from_files() {
    let t = TempTree::new("tree2s");
    let m = v2_manager(&t.0, "/kos-c3");
    m.create().unwrap();
    let d = v2_dir(&m).unwrap();
    files(
        &d,
        &[
            ("cpu.stat", "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 10\nnr_throttled 2\nthrottled_usec 30\n"),
            ("memory.current", "4096000"),
            ("memory.peak", "8192000"),
            ("memory.max", "max"),
            ("memory.swap.current", "0"),
            ("memory.swap.max", "max"),
            ("memory.stat", "anon 1000\nfile 2000\nkernel 300\nsock 0\n"),
            ("memory.events", "low 0\nhigh 0\nmax 4\noom 2\noom_kill 1\n"),
            ("pids.current", "3"),
            ("pids.max", "max"),
            ("io.stat", "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n"),
        ],
    );
    let s = m.stats().unwrap();
    assert_eq!(s.cpu.usage.total, 1_500_000);
    assert_eq!(s.cpu.usage.user, 1_000_000);
    assert_eq!(s.cpu.usage.kernel, 500_000);
    assert_eq!(s.cpu.throttling.throttled_periods, 2);
    assert_eq!(s.cpu.throttling.throttled_time, 30_000);
    assert_eq!(s.memory.usage.usage, 4_096_000);
    assert_eq!(s.memory.usage.max, 8_192_000);
    assert_eq!(s.memory.usage.limit, u64::MAX);
    assert_eq!(s.memory.usage.failcnt, 4);
    assert_eq!(s.memory.rss, 1000);
    assert_eq!(s.memory.cache, 2000);
    assert_eq!(s.memory.oom_events, 2);
    assert_eq!(s.memory.oom_kill, 1);
    assert_eq!(s.pids.current, 3);
    assert_eq!(s.pids.limit, 0);
    assert_eq!(s.blkio.io_service_bytes_recursive.len(), 2);
    let v = serde_json::to_value(&s).unwrap();
    assert_eq!(v["memory"]["usage"]["usage"], 4_096_000);
    assert_eq!(v["blkio"]["ioServiceBytesRecursive"][1]["op"], "Write");
}

#[test]
fn v1_writers_for_hierarchies_this_host_lacks() {
    let t = TempTree::new("tree1");
    let h = |name: &str, ctl: &[&str]| Hierarchy {
        mount_point: t.0.join(name),
        controllers: ctl.iter().map(|s| s.to_string()).collect(),
        v2: false,
    };
    let hs = [
        h("net_cls,net_prio", &["net_cls", "net_prio"]),
        h("hugetlb", &["hugetlb"]),
        h("rdma", &["rdma"]),
    ];
    for x in &hs {
        fs::create_dir_all(&x.mount_point).unwrap();
    }
    let m = Manager::new_at(Layout::V1, &hs, Some("/kos/c1"), "kos-x").unwrap();
    m.create().unwrap();
    let net = v1_dir(&m, "net_prio").unwrap();
    assert_eq!(v1_dir(&m, "net_cls").unwrap(), net.as_path());
    files(
        &net,
        &[("net_cls.classid", "0"), ("net_prio.ifpriomap", "")],
    );
    let huge = v1_dir(&m, "hugetlb").unwrap();
    files(&huge, &[("hugetlb.2MB.limit_in_bytes", "0")]);
    let rdma = v1_dir(&m, "rdma").unwrap();
    files(&rdma, &[("rdma.max", "")]);
    let r = resources(
        r#"{"network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5}]},
            "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
            "rdma": {"mlx4_0": {"hcaHandles": 2}}}"#,
    );
    m.apply(&r).unwrap();
    assert_eq!(read(net.join("net_cls.classid")), "1048577");
    assert_eq!(read(net.join("net_prio.ifpriomap")), "eth0 5");
    assert_eq!(read(huge.join("hugetlb.2MB.limit_in_bytes")), "4194304");
    assert_eq!(read(rdma.join("rdma.max")), "mlx4_0 hca_handle=2");
    let e = m
        .apply(&resources(
            r#"{"hugepageLimits": [{"pageSize": "1GB", "limit": 1}]}"#,
        ))
        .unwrap_err()
        .to_string();
    assert!(e.contains("pageSize") && e.contains("1GB"), "{e}");
    let names: Vec<String> = m.mount_sources().into_iter().map(|s| s.name).collect();
    assert_eq!(names, vec!["net_cls,net_prio", "hugetlb", "rdma"]);
    // Pure v1 has nowhere for unified keys.
    let e = m
        .apply(&resources(r#"{"unified": {"memory.high": "1"}}"#))
        .unwrap_err()
        .to_string();
    assert!(e.contains("linux.resources.unified"), "{e}");
}

/// The v2 OOM counting on a plain file standing in for memory.events: the kernel-side test
/// in v2_kernel.rs needs a memory controller on cgroup2, which this host binds to v1.
#[test]
fn v2_oom_watch_counts_oom_kill_changes() {
    use std::os::fd::AsFd;
    let t = TempTree::new("tree-oom");
    let m = v2_manager(&t.0, "/kos-oom");
    m.create().unwrap();
    let d = v2_dir(&m).unwrap();
    // No memory.events: the memory controller is not enabled there.
    assert!(kos_cgroups::OomWatch::open(&m).unwrap().is_none());
    let events = d.join("memory.events");
    fs::write(&events, "low 0\nhigh 0\nmax 2\noom 1\noom_kill 1\n").unwrap();
    let mut w = kos_cgroups::OomWatch::open(&m).unwrap().unwrap();
    // Kills from before the watch do not count.
    assert_eq!(w.read_events().unwrap(), 0);
    fs::write(&events, "low 0\nhigh 0\nmax 5\noom 2\noom_kill 1\n").unwrap();
    assert!(readable(w.as_fd(), 2000));
    assert_eq!(w.read_events().unwrap(), 0, "an OOM without a kill");
    fs::write(&events, "low 0\nhigh 0\nmax 9\noom 4\noom_kill 3\n").unwrap();
    assert!(readable(w.as_fd(), 2000));
    assert_eq!(w.read_events().unwrap(), 2);
    assert!(!readable(w.as_fd(), 0), "drained");
    fs::remove_dir_all(&d).unwrap();
    assert!(readable(w.as_fd(), 2000));
    assert!(matches!(
        w.read_events(),
        Err(kos_cgroups::Error::Gone { .. })
    ));
}
