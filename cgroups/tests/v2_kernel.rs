//! Pure cgroup v2 against the kernel: each test re-runs this binary in a private mount
//! namespace with cgroup2 mounted on /sys/fs/cgroup, and the `inner_*` test does the work
//! there. On this hybrid host the v2 hierarchy only offers the controllers not bound to v1
//! (hugetlb), so these cover what v2 does without controllers — placement, freezing,
//! cgroup.kill, eBPF device control, removal — plus hugetlb and unified keys. The cpu,
//! memory, io and pids writers run against a cgroupfs-shaped tree in v2_tree.rs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use common::*;
use kos_cgroups::{detect_layout, Layout, Manager};
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

const INNER_ENV: &str = "KOS_CGROUPS_V2_INNER";

/// Runs the ignored test `inner` in a fresh process inside a private mount namespace whose
/// /sys/fs/cgroup is a cgroup2 mount.
fn run_in_v2_namespace(inner: &str) {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([
        "--exact",
        inner,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .env(INNER_ENV, "1");
    // SAFETY: only unshare and mount, both async-signal-safe syscalls, run between fork and
    // exec; the paths are short literals nix passes without allocating.
    unsafe {
        cmd.pre_exec(|| {
            unshare(CloneFlags::CLONE_NEWNS)?;
            mount(
                None::<&str>,
                "/",
                None::<&str>,
                MsFlags::MS_REC | MsFlags::MS_PRIVATE,
                None::<&str>,
            )?;
            mount(
                Some("cgroup2"),
                "/sys/fs/cgroup",
                Some("cgroup2"),
                MsFlags::empty(),
                None::<&str>,
            )?;
            Ok(())
        });
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{inner} failed:\n{text}");
    assert!(
        text.contains(&format!("test {inner} ... ok")),
        "{inner} did not run:\n{text}"
    );
}

/// The inner half only makes sense inside the namespace the outer half sets up.
fn inner() -> bool {
    if std::env::var_os(INNER_ENV).is_none() {
        eprintln!("not run: the outer test runs this inside a private mount namespace");
        return false;
    }
    assert_eq!(detect_layout().unwrap(), Layout::V2);
    true
}

fn new_cg(tag: &str) -> CgGuard {
    CgGuard(Manager::new(Some(&unique_path(tag)), "kos-test").unwrap())
}

fn offered(c: &str) -> bool {
    std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
        .unwrap()
        .split_whitespace()
        .any(|x| x == c)
}

#[test]
fn v2_lifecycle() {
    run_in_v2_namespace("inner_v2_lifecycle");
}

#[test]
#[ignore = "run inside a private mount namespace by v2_lifecycle"]
fn inner_v2_lifecycle() {
    if !inner() {
        return;
    }
    let cg = new_cg("v2life");
    cg.create().unwrap();
    let dir = v2_dir(&cg).unwrap();
    assert!(dir.is_dir());
    assert_eq!(cg.mount_sources().len(), 1);
    let mut kids = vec![sleeper(), sleeper()];
    for k in &kids {
        cg.add_process(k.pid()).unwrap();
    }
    let mut pids = cg.pids().unwrap();
    pids.sort();
    let mut want: Vec<i32> = kids.iter().map(|k| k.pid()).collect();
    want.sort();
    assert_eq!(pids, want);
    cg.freeze().unwrap();
    assert!(cg.is_frozen().unwrap());
    assert!(read(dir.join("cgroup.events")).contains("frozen 1"));
    assert_eq!(read(dir.join("cgroup.freeze")), "1");
    cg.thaw().unwrap();
    assert!(read(dir.join("cgroup.events")).contains("frozen 0"));
    assert!(!cg.is_frozen().unwrap());
    // Freezing stops the processes: a frozen sleeper cannot be woken by SIGCONT handling,
    // but SIGKILL through cgroup.kill still ends it.
    cg.freeze().unwrap();
    cg.kill_all(libc::SIGKILL).unwrap();
    for k in kids.iter_mut() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(k.0.wait().unwrap().signal(), Some(libc::SIGKILL));
    }
    // cgroup.kill leaves the freeze setting as it was.
    assert!(cg.is_frozen().unwrap());
    cg.thaw().unwrap();
    {
        // A frozen process really stops, and runs again once thawed.
        let mut c = Counter::spawn("freeze");
        cg.add_process(c.child.pid()).unwrap();
        assert!(wait_until(|| c.value() > 0));
        cg.freeze().unwrap();
        assert!(!c.moving(200), "still counting while frozen");
        cg.thaw().unwrap();
        let before = c.value();
        assert!(
            wait_until(|| c.value() != before),
            "not counting after thaw"
        );
        let st = cg.stats().unwrap();
        assert!(st.cpu.usage.total > 0, "{:?}", st.cpu);
        // Any signal reaches every process.
        cg.kill_all(libc::SIGTERM).unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(c.child.0.wait().unwrap().signal(), Some(libc::SIGTERM));
    }
    assert!(wait_until(|| cg.pids().unwrap().is_empty()));
    std::fs::create_dir(dir.join("kos-sub")).unwrap();
    cg.remove().unwrap();
    assert!(!dir.exists());
}

#[test]
fn v2_kill_forking_workload() {
    run_in_v2_namespace("inner_v2_kill_forking_workload");
}

#[test]
#[ignore = "run inside a private mount namespace by v2_kill_forking_workload"]
fn inner_v2_kill_forking_workload() {
    if !inner() {
        return;
    }
    let cg = new_cg("v2fork");
    cg.create().unwrap();
    let mut kid = Command::new("/bin/busybox")
        .args(["sh", "-c", "read x; while true; do busybox sleep 5 & done"])
        .stdin(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    cg.add_process(kid.id() as i32).unwrap();
    kid.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let _g = ChildGuard(kid);
    assert!(wait_until(|| cg.pids().unwrap().len() > 10));
    // SIGTERM goes process by process (the shell ignores nothing here and dies).
    cg.kill_all(libc::SIGKILL).unwrap();
    assert!(
        wait_until(|| cg.pids().unwrap().is_empty()),
        "{:?}",
        cg.pids()
    );
    cg.remove().unwrap();
}

#[test]
fn v2_device_program() {
    run_in_v2_namespace("inner_v2_device_program");
}

/// Runs a shell in the cgroup that reports which device operations succeeded.
fn probe_devices(cg: &Manager) -> String {
    let node = std::env::temp_dir().join(format!("kos-v2dev-{}", std::process::id()));
    let script = format!(
        "read x; busybox head -c 1 /dev/zero >/dev/zero && echo zero-ok; \
         busybox cat /dev/null 2>/dev/null && echo null-ok; \
         busybox mknod {} c 1 3 2>/dev/null && echo mknod-ok; true",
        node.display()
    );
    let mut kid = Command::new("/bin/busybox")
        .args(["sh", "-c", &script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    cg.add_process(kid.id() as i32).unwrap();
    kid.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let out = kid.wait_with_output().unwrap();
    let _ = std::fs::remove_file(&node);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "run inside a private mount namespace by v2_device_program"]
fn inner_v2_device_program() {
    if !inner() {
        return;
    }
    let cg = new_cg("v2dev");
    let r = resources(
        r#"{"devices": [{"allow": false, "access": "rwm"},
                        {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"}]}"#,
    );
    cg.create_with_resources(&r).unwrap();
    let out = probe_devices(&cg);
    assert!(out.contains("zero-ok"), "{out}");
    assert!(!out.contains("null-ok"), "{out}");
    assert!(!out.contains("mknod-ok"), "{out}");

    // The update replaces the program: if the old one stayed attached next to the new one,
    // /dev/null would still be refused.
    let r2 = resources(
        r#"{"devices": [{"allow": false, "access": "rwm"},
                        {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"},
                        {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rw"}]}"#,
    );
    cg.update(&r2).unwrap();
    let out = probe_devices(&cg);
    assert!(out.contains("zero-ok"), "{out}");
    assert!(out.contains("null-ok"), "{out}");
    assert!(!out.contains("mknod-ok"), "mknod needs m: {out}");
    // A second update still leaves one program in force.
    cg.update(&r).unwrap();
    let out = probe_devices(&cg);
    assert!(!out.contains("null-ok"), "{out}");
}

#[test]
fn v2_hugetlb_unified_and_errors() {
    run_in_v2_namespace("inner_v2_hugetlb_unified_and_errors");
}

#[test]
#[ignore = "run inside a private mount namespace by v2_hugetlb_unified_and_errors"]
fn inner_v2_hugetlb_unified_and_errors() {
    if !inner() {
        return;
    }
    if offered("hugetlb")
        && std::path::Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists()
    {
        let cg = new_cg("v2huge");
        let r = resources(r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]}"#);
        cg.create_with_resources(&r).unwrap();
        let d = v2_dir(&cg).unwrap();
        assert_eq!(read(d.join("hugetlb.2MB.max")), "4194304");
        cg.update(&resources(r#"{"unified": {"hugetlb.2MB.max": "2097152"}}"#))
            .unwrap();
        assert_eq!(read(d.join("hugetlb.2MB.max")), "2097152");
        let st = cg.stats().unwrap();
        assert!(st.hugetlb.contains_key("2MB"), "{st:?}");
        let e = cg
            .update(&resources(
                r#"{"unified": {"hugetlb.2MB.max": "not-a-number"}}"#,
            ))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("hugetlb.2MB.max") && e.contains("Invalid argument"),
            "{e}"
        );
        assert_eq!(read(d.join("hugetlb.2MB.max")), "2097152");
    } else {
        skip("no hugetlb controller in this cgroup2 hierarchy (hugetlb part)");
    }
    let cases = [
        (r#"{"unified": {"memory/../../x": "1"}}"#, "unified"),
        (r#"{"unified": {"cgroup.procs": "1"}}"#, "cgroup.procs"),
        (
            r#"{"cpu": {"realtimeRuntime": 1000}}"#,
            "cpu.realtimeRuntime",
        ),
        (r#"{"network": {"classID": 1}}"#, "network.classID"),
        (
            r#"{"devices": [{"allow": true, "type": "u", "access": "r"}]}"#,
            "devices[0].type",
        ),
    ];
    let mut cases: Vec<(&str, &str)> = cases.to_vec();
    if !offered("pids") {
        cases.push((r#"{"pids": {"limit": 10}}"#, "pids.limit"));
    }
    if !offered("memory") {
        cases.push((r#"{"unified": {"memory.high": "100000"}}"#, "memory.high"));
    }
    for (json, field) in cases {
        let cg = new_cg("v2bad");
        let e = cg
            .create_with_resources(&resources(json))
            .unwrap_err()
            .to_string();
        assert!(e.contains(field), "{json}: {e}");
        assert!(!v2_dir(&cg).unwrap().exists(), "{json}: cgroup left behind");
    }
}

#[test]
fn v2_oom_kill_reported_by_memory_events() {
    run_in_v2_namespace("inner_v2_oom_kill_reported_by_memory_events");
}

#[test]
#[ignore = "run inside a private mount namespace by v2_oom_kill_reported_by_memory_events"]
fn inner_v2_oom_kill_reported_by_memory_events() {
    if !inner() {
        return;
    }
    if !offered("memory") {
        // Without the controller there is nothing to watch, and the watch says so.
        let cg = new_cg("v2nomem");
        cg.create().unwrap();
        assert!(kos_cgroups::OomWatch::open(&cg).unwrap().is_none());
        skip("the kernel binds the memory controller to a v1 hierarchy, so cgroup2 lacks it");
        return;
    }
    let cg = new_cg("v2oom");
    cg.create_with_resources(&resources(r#"{"memory": {"limit": 16777216}}"#))
        .unwrap();
    check_oom_watch(&cg);
}
