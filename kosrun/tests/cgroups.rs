//! The cgroup commands (pause, resume, update, events, ps) and linux.resources against real
//! containers run by the kosrun binary, on this host's layout (v1/hybrid/v2) and on a pure v2
//! view in a private mount namespace.

#![allow(clippy::unwrap_used)]

mod cgroups_common;
mod support;

use std::fs;
use std::path::Path;
use std::time::Duration;

use cgroups_common::{wait_for, Fixture, Stream};
use serde_json::{json, Value};

const LONG: Duration = Duration::from_secs(15);

fn has_v1(controller: &str) -> bool {
    Path::new("/sys/fs/cgroup")
        .join(controller)
        .join("cgroup.procs")
        .exists()
}

fn pure_v2() -> bool {
    Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
}

/// Whether the host can limit `controller` at all (v1 hierarchy or the v2 root offering it).
fn host_has(controller: &str) -> bool {
    has_v1(controller)
        || (pure_v2()
            && fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
                .unwrap_or_default()
                .split_whitespace()
                .any(|c| c == controller))
}

fn memory_limit_file() -> &'static str {
    if has_v1("memory") {
        "memory.limit_in_bytes"
    } else {
        "memory.max"
    }
}

#[test]
fn oom_kill_is_reported_by_events_until_the_container_stops() {
    if !host_has("memory") {
        support::skip("no memory controller on this host");
        return;
    }
    // dd's 64 MiB buffer is filled from /dev/zero, so it is really touched: over the
    // 32 MiB limit (swap included) the OOM killer takes dd, the shell survives.
    let mut fx = Fixture::new(
        "while [ ! -e /kos/go ]; do sleep 0.05; done; \
         dd if=/dev/zero of=/dev/null bs=64M count=1 2>/dev/null; echo dd=$? > /kos/dd; \
         exec sleep 1000",
    );
    let limit = 32 << 20;
    fx.resources()["memory"] = if has_v1("memory")
        && Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
    {
        json!({"limit": limit, "swap": limit})
    } else {
        json!({"limit": limit})
    };
    fx.run_detached();
    let mut ev = Stream::start(&fx, &["events", "--interval", "100ms", &fx.id]);
    // A first stats line means the OOM watch is registered (it is set up before the loop).
    ev.wait_line(LONG, "stats", |v| v["type"] == "stats");
    fs::write(fx.shared.join("go"), "").unwrap();
    let oom = ev.wait_line(LONG, "oom", |v| v["type"] == "oom");
    assert_eq!(oom, json!({"type": "oom", "id": fx.id}));
    assert_eq!(
        fx.wait_shared("dd", false).trim(),
        "dd=137",
        "dd was not SIGKILLed"
    );
    assert_eq!(fx.status(), "running", "the OOM kill took the init too");
    let s: Value = serde_json::from_str(&fx.ok(&["events", "--stats", &fx.id])).unwrap();
    assert!(
        s["data"]["memory"]["oomKill"].as_u64().unwrap_or(0) >= 1
            || s["data"]["memory"]["usage"]["failcnt"]
                .as_u64()
                .unwrap_or(0)
                >= 1,
        "stats show no trace of the OOM: {}",
        s["data"]["memory"]
    );
    // The stream ends by itself, successfully, once the container stops.
    fx.ok(&["kill", &fx.id, "KILL"]);
    let st = ev.wait_exit(LONG);
    assert!(st.success(), "kosrun events exited with {st}");
}

#[test]
fn fork_bomb_stops_at_the_pids_limit() {
    if !host_has("pids") {
        support::skip("no pids controller on this host");
        return;
    }
    // Forks in a subshell (a failed fork ends the shell that tried); the outer shell then
    // reports with builtins only and execs, so it needs no new pid.
    let mut fx = Fixture::new(
        "( i=0; while [ $i -lt 64 ]; do sleep 1000 & i=$((i+1)); done ) 2>/kos/fork.err; \
         echo alive > /kos/alive; exec sleep 1000",
    );
    fx.resources()["pids"] = json!({"limit": 10});
    fx.run_detached();
    fx.wait_shared("alive", false);
    assert_eq!(fx.read_cgroup("pids", "pids.max"), "10");
    let current: u64 = fx.read_cgroup("pids", "pids.current").parse().unwrap();
    assert!(
        (2..=10).contains(&current),
        "pids.current {current} under a limit of 10"
    );
    let err = fx.shared_file("fork.err");
    assert!(err.contains("fork"), "no fork failure reported: {err:?}");
    assert_eq!(fx.status(), "running");
    let pids: Vec<i32> = serde_json::from_str(&fx.ok(&["ps", "--format", "json", &fx.id])).unwrap();
    assert!(pids.len() <= 10, "{} processes: {pids:?}", pids.len());
    let s: Value = serde_json::from_str(&fx.ok(&["events", "--stats", &fx.id])).unwrap();
    assert_eq!(s["data"]["pids"]["limit"], 10);
    assert_eq!(s["data"]["pids"]["current"], current);
}

#[test]
fn paused_container_makes_no_progress_until_resumed() {
    let fx = Fixture::new("i=0; while :; do i=$((i+1)); echo $i > /kos/count; sleep 0.02; done");
    fx.run_detached();
    fx.wait_shared("count", false);
    fx.ok(&["pause", &fx.id]);
    assert_eq!(fx.status(), "paused");
    let a = fx.shared_file("count");
    std::thread::sleep(Duration::from_millis(400));
    let b = fx.shared_file("count");
    assert_eq!(a, b, "the counter advanced while paused");
    // Reading a paused container works.
    let pids: Vec<i32> = serde_json::from_str(&fx.ok(&["ps", "--format", "json", &fx.id])).unwrap();
    assert!(pids.contains(&fx.pid()));
    let e = fx.fails(&["pause", &fx.id]);
    assert!(e.contains("container not running"), "{e}");
    fx.ok(&["resume", &fx.id]);
    assert_eq!(fx.status(), "running");
    wait_for(LONG, "the counter to advance after resume", || {
        (fx.shared_file("count") != b).then_some(())
    });
    let e = fx.fails(&["resume", &fx.id]);
    assert!(e.contains("container not paused"), "{e}");
}

#[test]
fn pause_and_resume_of_a_stopped_container_are_refused() {
    let fx = Fixture::new("true");
    fx.run_detached();
    wait_for(LONG, "the container to stop", || {
        (fx.status() == "stopped").then_some(())
    });
    let e = fx.fails(&["pause", &fx.id]);
    assert!(e.contains("container not running"), "{e}");
    let e = fx.fails(&["resume", &fx.id]);
    assert!(e.contains("container not paused"), "{e}");
    let e = fx.fails(&["update", "--pids-limit", "5", &fx.id]);
    assert!(e.contains("container not running"), "{e}");
    let e = fx.fails(&["events", "--stats", &fx.id]);
    assert!(e.contains("container not running"), "{e}");
    let e = fx.fails(&["pause", "kostest-cg-no-such"]);
    assert!(e.contains("does not exist"), "{e}");
}

/// A created container is not paused (its init would be frozen under `start`); update
/// works on it, as runc's does.
#[test]
fn created_container_is_not_paused_but_can_be_updated() {
    let fx = Fixture::new("exec sleep 1000");
    fx.create();
    assert_eq!(fx.status(), "created");
    let e = fx.fails(&["pause", &fx.id]);
    assert!(e.contains("container not running"), "{e}");
    let e = fx.fails(&["resume", &fx.id]);
    assert!(e.contains("container not paused"), "{e}");
    if host_has("pids") {
        fx.ok(&["update", "--pids-limit", "42", &fx.id]);
        assert_eq!(fx.read_cgroup("pids", "pids.max"), "42");
    }
    fx.ok(&["start", &fx.id]);
    assert_eq!(fx.status(), "running");
    fx.ok(&["pause", &fx.id]);
    assert_eq!(fx.status(), "paused");
    fx.ok(&["resume", &fx.id]);
    assert_eq!(fx.status(), "running");
}

const DEVICE_PROBE: &str = "\
    if (exec 3</kosdev/tun) 2>/dev/null; then echo tun=ok; else echo tun=denied; fi > /kos/out; \
    if (exec 3</kosdev/fuse) 2>/kos/fuse.err; then echo fuse=ok; else echo fuse=denied; fi >> /kos/out; \
    if (exec 3</dev/null); then echo null=ok; else echo null=denied; fi >> /kos/out; \
    echo done >> /kos/out; \
    i=0; while :; do i=$((i+1)); echo $i > /kos/count; sleep 0.02; done";

fn device_fixture() -> Option<Fixture> {
    if !Path::new("/dev/net/tun").exists() || !Path::new("/dev/fuse").exists() {
        support::skip("the host has no /dev/net/tun or /dev/fuse to bind");
        return None;
    }
    let mut fx = Fixture::new(DEVICE_PROBE);
    fx.bind_device("/dev/net/tun", "tun");
    fx.bind_device("/dev/fuse", "fuse");
    fx.resources()["devices"] = json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 10, "minor": 200, "access": "rw"},
        {"allow": false, "type": "c", "major": 10, "minor": 229, "access": "rwm"}
    ]);
    Some(fx)
}

fn assert_device_rules(fx: &Fixture) {
    let out = fx.wait_shared("out", true);
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l, ["tun=ok", "fuse=denied", "null=ok", "done"], "{out}");
    let err = fx.shared_file("fuse.err");
    assert!(err.contains("Operation not permitted"), "{err:?}");
}

/// linux.resources.devices: the allowed node opens, the denied one does not (EPERM from the
/// device controller, though the node is bound in and root owns it), defaults still work.
#[test]
fn device_rules_deny_what_they_deny() {
    let Some(fx) = device_fixture() else { return };
    fx.run_detached();
    assert_device_rules(&fx);
}

#[test]
fn update_changes_the_kernel_limits_and_the_saved_state() {
    if !host_has("memory") || !host_has("pids") {
        support::skip("no memory or pids controller on this host");
        return;
    }
    let memsw =
        has_v1("memory") && Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists();
    let mut fx = Fixture::new("exec sleep 1000");
    fx.resources()["memory"] = if memsw {
        json!({"limit": 64 << 20, "swap": 64 << 20})
    } else {
        json!({"limit": 64 << 20})
    };
    fx.run_detached();
    let id = fx.id.clone();
    let mem = memory_limit_file();
    let saved_mem = |fx: &Fixture| fx.saved()["config"]["linux"]["resources"]["memory"].clone();

    if memsw {
        // Raising memory alone over memory+swap would be a bare EINVAL from the kernel.
        let e = fx.fails(&["update", "--memory", "128m", &id]);
        assert!(
            e.contains("memory+swap") && e.contains("--memory-swap"),
            "{e}"
        );
        assert_eq!(fx.read_cgroup("memory", mem), (64u64 << 20).to_string());
        fx.ok(&["update", "--memory", "128m", "--memory-swap", "256m", &id]);
        assert_eq!(
            fx.read_cgroup("memory", "memory.memsw.limit_in_bytes"),
            (256u64 << 20).to_string()
        );
        assert_eq!(saved_mem(&fx)["swap"], 256 << 20);
    } else {
        fx.ok(&["update", "--memory", "128m", &id]);
    }
    assert_eq!(fx.read_cgroup("memory", mem), (128u64 << 20).to_string());
    assert_eq!(saved_mem(&fx)["limit"], 128 << 20);

    // A later update keeps the earlier one in the state.
    fx.ok(&["update", "--pids-limit", "20", &id]);
    assert_eq!(fx.read_cgroup("pids", "pids.max"), "20");
    let r = fx.saved()["config"]["linux"]["resources"].clone();
    assert_eq!(r["pids"]["limit"], 20);
    assert_eq!(r["memory"]["limit"], 128 << 20);

    // The JSON document, from stdin and from a file.
    let out = fx.kosrun_stdin(
        &["update", "-r", "-", &id],
        r#"{"memory": {"limit": 100663296}, "cpu": {"shares": 512}}"#,
    );
    assert!(out.status.success(), "{out:?}");
    assert_eq!(fx.read_cgroup("memory", mem), "100663296");
    if has_v1("cpu") {
        assert_eq!(fx.read_cgroup("cpu", "cpu.shares"), "512");
    }
    let f = fx.base.join("res.json");
    fs::write(&f, r#"{"pids": {"limit": 25}}"#).unwrap();
    fx.ok(&["update", "--resources", f.to_str().unwrap(), &id]);
    assert_eq!(fx.read_cgroup("pids", "pids.max"), "25");
    let r = fx.saved()["config"]["linux"]["resources"].clone();
    assert_eq!(r["memory"]["limit"], 100663296);
    assert_eq!(r["cpu"]["shares"], 512);
    assert_eq!(r["pids"]["limit"], 25);

    // Bad input: one clear line, nothing changed anywhere.
    let before = fx.saved();
    let e = fx.fails(&["update", "--memory", "12x", &id]);
    assert!(e.contains("--memory") && e.contains("12x"), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    let e = fx.fails(&["update", "--l3-cache-schema", "L3:0=ff", &id]);
    assert!(e.contains("not supported"), "{e}");
    let e = fx.fails(&["update", "--blkio-weight", "5", &id]);
    assert!(e.contains("blkio") || e.contains("weight"), "{e}");
    fs::write(&f, "{\"memory\": ").unwrap();
    let e = fx.fails(&["update", "-r", f.to_str().unwrap(), &id]);
    assert!(e.contains("not valid JSON"), "{e}");
    assert_eq!(
        fx.saved()["config"]["linux"]["resources"],
        before["config"]["linux"]["resources"],
        "a refused update changed the saved resources"
    );
    assert_eq!(fx.read_cgroup("memory", mem), "100663296");
    assert_eq!(fx.read_cgroup("pids", "pids.max"), "25");
}

#[test]
fn ps_lists_the_container_processes() {
    let fx = Fixture::new("sleep 1000 & sleep 1001 & exec sleep 1002");
    fx.run_detached();
    let init = fx.pid();
    let pids = wait_for(LONG, "three processes", || {
        let p: Vec<i32> =
            serde_json::from_str(&fx.ok(&["ps", "--format", "json", &fx.id])).unwrap();
        (p.len() == 3).then_some(p)
    });
    assert!(pids.contains(&init), "{pids:?} lacks the init {init}");
    for p in &pids {
        let cg = fs::read_to_string(format!("/proc/{p}/cgroup")).unwrap();
        assert!(cg.contains(&fx.id), "pid {p} is not in the container: {cg}");
    }
    let table = fx.ok(&["ps", &fx.id]);
    let l: Vec<&str> = table.lines().collect();
    assert!(l[0].split_whitespace().any(|h| h == "PID"), "{table}");
    assert_eq!(l.len(), 4, "{table}");
    assert!(table.contains("sleep 1001"), "{table}");
    let table = fx.ok(&["ps", &fx.id, "--", "-o", "pid,comm"]);
    let rows: Vec<i32> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(rows.len(), 3, "{table}");
    assert!(rows.iter().all(|p| pids.contains(p)), "{table}");
    let e = fx.fails(&["ps", "--format", "xml", &fx.id]);
    assert!(e.contains("xml"), "{e}");
}

#[test]
fn events_stats_prints_one_runc_shaped_line() {
    let mut fx = Fixture::new("exec sleep 1000");
    let mut res = json!({"cpu": {"shares": 512}});
    if host_has("memory") {
        res["memory"] = json!({"limit": 64 << 20});
    }
    if host_has("pids") {
        res["pids"] = json!({"limit": 50});
    }
    *fx.resources() = res;
    fx.run_detached();
    let out = fx.ok(&["events", "--stats", &fx.id]);
    assert_eq!(out.lines().count(), 1, "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["type"], "stats");
    assert_eq!(v["id"], fx.id.as_str());
    let d = &v["data"];
    assert!(d["cpu"]["usage"]["kernel"].is_u64(), "{}", d["cpu"]);
    assert!(d["cpu"]["usage"]["user"].is_u64(), "{}", d["cpu"]);
    assert!(d["cpu"]["throttling"].is_object(), "{}", d["cpu"]);
    if host_has("memory") {
        assert_eq!(d["memory"]["usage"]["limit"], 64 << 20);
        assert!(d["memory"]["usage"]["usage"].as_u64().unwrap_or(0) > 0);
    }
    if host_has("pids") {
        assert_eq!(d["pids"]["current"], 1);
        assert_eq!(d["pids"]["limit"], 50);
    }
    let e = fx.fails(&["events", "--interval", "0s", &fx.id]);
    assert!(e.contains("interval"), "{e}");
    let e = fx.fails(&["events", "--interval", "5x", &fx.id]);
    assert!(e.contains("5x"), "{e}");
}

/// The whole flow on a pure cgroup v2 view: a thread of this test enters a private mount
/// namespace with cgroup2 on /sys/fs/cgroup, and every kosrun it starts inherits it. On this
/// class of host that hierarchy only offers hugetlb (maybe pids/misc), so memory and cpu
/// limits (and OOM events) cannot be shown there: the test checks freezing, ps, stats, the
/// eBPF device rules and hugetlb updates, and that limits the hierarchy lacks are refused.
#[test]
fn pure_v2_flow_in_a_private_mount_namespace() {
    if pure_v2() {
        support::skip("the host is pure v2 already; the other tests cover it");
        return;
    }
    let h = std::thread::spawn(|| {
        use nix::mount::{mount, MsFlags};
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).unwrap();
        mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .unwrap();
        if let Err(e) = mount(
            Some("cgroup2"),
            "/sys/fs/cgroup",
            Some("cgroup2"),
            MsFlags::empty(),
            None::<&str>,
        ) {
            support::skip(&format!("cannot mount cgroup2 in a private namespace: {e}"));
            return;
        }
        v2_flow();
    });
    if let Err(p) = h.join() {
        std::panic::resume_unwind(p);
    }
}

fn v2_flow() {
    let ctrls = fs::read_to_string("/sys/fs/cgroup/cgroup.controllers").unwrap();
    let has = |c: &str| ctrls.split_whitespace().any(|x| x == c);
    eprintln!("pure v2 view offers controllers: {:?}", ctrls.trim());
    let Some(mut fx) = device_fixture() else {
        return;
    };
    let huge = has("hugetlb") && Path::new("/sys/kernel/mm/hugepages/hugepages-2048kB").exists();
    if huge {
        fx.resources()["hugepageLimits"] = json!([{"pageSize": "2MB", "limit": 2 << 20}]);
    }
    fx.run_detached();
    let dir = Path::new("/sys/fs/cgroup").join(&fx.id);
    assert!(
        dir.join("cgroup.procs").exists(),
        "no v2 cgroup {}",
        dir.display()
    );
    let init = fx.pid();
    let own = fs::read_to_string(format!("/proc/{init}/cgroup")).unwrap();
    assert!(own.contains(&format!("0::/{}", fx.id)), "{own}");

    // Device rules through the eBPF program.
    assert_device_rules(&fx);

    // Freezing through cgroup.freeze.
    fx.ok(&["pause", &fx.id]);
    assert_eq!(fx.status(), "paused");
    assert_eq!(
        fs::read_to_string(dir.join("cgroup.freeze"))
            .unwrap()
            .trim(),
        "1"
    );
    let a = fx.shared_file("count");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(a, fx.shared_file("count"), "counter advanced while paused");
    fx.ok(&["resume", &fx.id]);
    assert_eq!(fx.status(), "running");
    wait_for(LONG, "the counter after resume", || {
        (fx.shared_file("count") != a).then_some(())
    });

    let pids: Vec<i32> = serde_json::from_str(&fx.ok(&["ps", "--format", "json", &fx.id])).unwrap();
    assert!(pids.contains(&init), "{pids:?}");
    let s: Value = serde_json::from_str(&fx.ok(&["events", "--stats", &fx.id])).unwrap();
    assert_eq!(s["type"], "stats");

    if huge {
        assert_eq!(
            fs::read_to_string(dir.join("hugetlb.2MB.max"))
                .unwrap()
                .trim(),
            (2u64 << 20).to_string()
        );
        let out = fx.kosrun_stdin(
            &["update", "-r", "-", &fx.id],
            r#"{"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]}"#,
        );
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            fs::read_to_string(dir.join("hugetlb.2MB.max"))
                .unwrap()
                .trim(),
            "4194304"
        );
        assert_eq!(
            fx.saved()["config"]["linux"]["resources"]["hugepageLimits"],
            json!([{"pageSize": "2MB", "limit": 4194304}])
        );
    }
    if has("pids") {
        fx.ok(&["update", "--pids-limit", "30", &fx.id]);
        assert_eq!(
            fs::read_to_string(dir.join("pids.max")).unwrap().trim(),
            "30"
        );
    } else {
        let e = fx.fails(&["update", "--pids-limit", "30", &fx.id]);
        assert!(e.contains("pids"), "{e}");
    }
    if !has("memory") {
        let before = fx.saved();
        let e = fx.fails(&["update", "--memory", "64m", &fx.id]);
        assert!(e.contains("memory"), "{e}");
        assert_eq!(
            fx.saved()["config"]["linux"]["resources"],
            before["config"]["linux"]["resources"],
            "a refused update changed the saved resources"
        );
    }
    fx.ok(&["delete", "--force", &fx.id]);
    assert!(!dir.exists(), "{} left behind", dir.display());
}
