//! The unit manager over real processes: `sh` units in their own process groups, a real
//! NOTIFY_SOCKET per unit with the kernel's sender credentials, real signals and exits.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kos_units::runtime::process::{run_until, ProcessRuntime};
use kos_units::{
    ActiveState, EventLog, Manager, ManagerConfig, SystemClock, UnitPaths, UnitResult,
};

type M = Manager<ProcessRuntime, EventLog, SystemClock>;

const NOTIFY: &str = env!("CARGO_BIN_EXE_kos-notify");
const WAIT: Duration = Duration::from_secs(15);

struct Env {
    dir: tempfile::TempDir,
    m: M,
}

fn env(units: &[(&str, String)]) -> Env {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("units");
    std::fs::create_dir_all(&lib).unwrap();
    for (n, text) in units {
        std::fs::write(lib.join(n), text).unwrap();
    }
    let cfg = ManagerConfig {
        paths: UnitPaths {
            dirs: vec![lib],
            enable_dir: dir.path().join("enabled"),
        },
        notify_dir: dir.path().join("notify"),
        notify_dir_in_container: None,
    };
    let rt = ProcessRuntime::new(Some(dir.path().to_path_buf()));
    let m = Manager::new(cfg, rt, EventLog::default(), SystemClock::default()).unwrap();
    Env { dir, m }
}

/// A unit running `script` under sh, with `kos-notify` as $N and the test dir as $D.
fn unit(dir_hint: &Path, unit_section: &str, service: &str, script: &str) -> String {
    format!(
        "[Unit]\n{unit_section}\n[Container]\nImage=busybox\nEnvironment=N={NOTIFY} D={}\nExec=/bin/sh -c '{script}'\n[Service]\n{service}\n",
        dir_hint.display()
    )
}

impl Env {
    fn state(&self, u: &str) -> (ActiveState, &'static str) {
        (
            self.m.active_state(u).unwrap(),
            self.m.sub_state(u).unwrap(),
        )
    }
    fn wait_state(&mut self, u: &str, want: (ActiveState, &str)) {
        let ok = run_until(&mut self.m, WAIT, |m| {
            (m.active_state(u).unwrap(), m.sub_state(u).unwrap()) == want
        });
        assert!(
            ok,
            "{u} never reached {want:?}; is {:?}; log: {}; events: {:?}",
            self.state(u),
            self.log(u),
            self.m.sink().units
        );
    }
    fn log(&self, u: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{u}.log"))).unwrap_or_default()
    }
    fn main_pid(&self, u: &str) -> u32 {
        self.m.status(u).unwrap().main_pid.expect("main pid")
    }
    fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
        })
}

fn tmp_hint() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn notify_units_come_up_in_dependency_order_over_real_sockets() {
    let h = tmp_hint();
    let svc = "Type=notify\nTimeoutStartSec=10s";
    let b = unit(
        h.path(),
        "",
        svc,
        "sleep 0.2; $N READY=1 \"STATUS=b serving\"; exec sleep 60",
    );
    let a = unit(
        h.path(),
        "After=b.container\nRequires=b.container",
        svc,
        "$N READY=1; exec sleep 60",
    );
    let c = unit(h.path(), "", svc, "$N READY=1 STATUS=c; exec sleep 60");
    let mut e = env(&[
        (
            "t.target",
            "[Unit]\nDescription=T\nWants=a.container c.container\n".into(),
        ),
        ("a.container", a),
        ("b.container", b),
        ("c.container", c),
    ]);
    let started = Instant::now();
    let job = e.m.start("t").unwrap();
    e.wait_state("t.target", (ActiveState::Active, "active"));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(e.m.job_result(job), Some(kos_units::JobResult::Done));
    let ev = &e.m.sink().units;
    let idx = |u: &str, s: ActiveState| {
        ev.iter()
            .position(|x| x.unit == u && x.active_state == s)
            .unwrap()
    };
    // a only started once b was ready; c did not wait for anyone
    assert!(idx("a.container", ActiveState::Activating) > idx("b.container", ActiveState::Active));
    assert!(idx("c.container", ActiveState::Activating) < idx("b.container", ActiveState::Active));
    let st = e.m.status("b").unwrap();
    assert_eq!(st.status_text.as_deref(), Some("b serving"));
    let pid = st.main_pid.unwrap();
    assert!(alive(pid));
    let text = kos_units::status::render_status(&st, e.m.now_wall(), &[]);
    assert!(text.contains(&format!("   Main PID: {pid}\n")), "{text}");
    assert!(
        text.contains("     Active: active (running) since "),
        "{text}"
    );
    // stop everything: reverse order, all processes gone, sockets removed
    e.m.stop_all().unwrap();
    assert!(run_until(&mut e.m, WAIT, |m| [
        "a.container",
        "b.container",
        "c.container",
        "t.target"
    ]
    .iter()
    .all(|u| m.active_state(u) == Some(ActiveState::Inactive))));
    assert!(!alive(pid));
    let ev = &e.m.sink().units;
    let stop_a = ev
        .iter()
        .position(|x| x.unit == "a.container" && x.active_state == ActiveState::Inactive)
        .unwrap();
    let stop_b = ev
        .iter()
        .rposition(|x| x.unit == "b.container" && x.active_state == ActiveState::Deactivating)
        .unwrap();
    assert!(stop_a < stop_b, "a (after b) stops before b");
    assert_eq!(std::fs::read_dir(e.path("notify")).unwrap().count(), 0);
}

#[test]
fn notify_from_a_process_outside_the_unit_is_refused() {
    let h = tmp_hint();
    let go = h.path().join("go");
    let a = unit(
        h.path(),
        "",
        "Type=notify\nTimeoutStartSec=20s",
        "while [ ! -e $D/go ]; do sleep 0.02; done; $N READY=1; exec sleep 60",
    );
    let mut e = env(&[("a.container", a)]);
    e.m.start("a").unwrap();
    let sock = e.path("notify").join("a.container").join("notify.sock");
    assert!(run_until(&mut e.m, WAIT, |_| sock.exists()));
    // the test process is no process of the unit: its READY=1 is dropped (credentials from
    // the kernel, not from the message)
    let mut child = std::process::Command::new(NOTIFY)
        .arg("READY=1")
        .env("NOTIFY_SOCKET", &sock)
        .spawn()
        .unwrap();
    let mut status = None;
    assert!(run_until(&mut e.m, WAIT, |_| {
        status = child.try_wait().unwrap();
        status.is_some()
    }));
    assert!(status.unwrap().success(), "the barrier was released");
    run_until(&mut e.m, Duration::from_millis(300), |_| false);
    assert_eq!(e.state("a.container"), (ActiveState::Activating, "start"));
    std::fs::write(&go, "").unwrap();
    e.wait_state("a.container", (ActiveState::Active, "running"));
}

#[test]
fn watchdog_expiry_kills_and_restarts() {
    let h = tmp_hint();
    // pings for ~0.3s, then hangs without pinging
    let a = unit(
        h.path(),
        "",
        "Type=notify\nWatchdogSec=400ms\nRestart=on-watchdog\nRestartSec=100ms\nTimeoutStopSec=2s",
        "echo run >> $D/runs; $N READY=1; for i in 1 2 3; do $N WATCHDOG=1; sleep 0.1; done; exec sleep 60",
    );
    let mut e = env(&[("a.container", a)]);
    e.m.start("a").unwrap();
    e.wait_state("a.container", (ActiveState::Active, "running"));
    let first = e.main_pid("a.container");
    let runs = h.path().join("runs");
    let ok = run_until(&mut e.m, WAIT, |m| {
        std::fs::read_to_string(&runs)
            .unwrap_or_default()
            .lines()
            .count()
            >= 2
            && m.active_state("a.container") == Some(ActiveState::Active)
    });
    assert!(
        ok,
        "no restart; state {:?}; log {}",
        e.state("a.container"),
        e.log("a.container")
    );
    assert!(!alive(first), "the hung process was killed");
    let ev: Vec<_> =
        e.m.sink()
            .units
            .iter()
            .filter(|x| x.unit == "a.container")
            .collect();
    assert!(ev.iter().any(|x| x.sub_state == "stop-watchdog"), "{ev:?}");
    assert!(
        ev.iter()
            .any(|x| x.sub_state == "auto-restart" && x.result == UnitResult::Watchdog),
        "{ev:?}"
    );
    assert_ne!(e.main_pid("a.container"), first);
    // WATCHDOG_USEC reached the service
    let env_out = h.path().join("env");
    let b = unit(
        h.path(),
        "",
        "Type=notify\nWatchdogSec=3s",
        "echo $WATCHDOG_USEC > $D/env; $N READY=1; exec sleep 60",
    );
    let mut e2 = env(&[("b.container", b)]);
    e2.m.start("b").unwrap();
    e2.wait_state("b.container", (ActiveState::Active, "running"));
    assert_eq!(std::fs::read_to_string(env_out).unwrap().trim(), "3000000");
}

#[test]
fn sigkilled_unit_is_restarted_per_policy() {
    let h = tmp_hint();
    let always = unit(
        h.path(),
        "",
        "Type=notify\nRestart=always\nRestartSec=50ms",
        "$N READY=1; exec sleep 60",
    );
    let on_success = unit(h.path(), "", "Restart=on-success", "exec sleep 60");
    let mut e = env(&[("a.container", always), ("b.container", on_success)]);
    e.m.start("a").unwrap();
    e.m.start("b").unwrap();
    e.wait_state("a.container", (ActiveState::Active, "running"));
    e.wait_state("b.container", (ActiveState::Active, "running"));
    let (pa, pb) = (e.main_pid("a.container"), e.main_pid("b.container"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pa as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pb as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let ok = run_until(&mut e.m, WAIT, |m| {
        m.status("a").unwrap().main_pid.is_some_and(|p| p != pa)
            && m.active_state("a.container") == Some(ActiveState::Active)
    });
    assert!(ok, "a not restarted: {:?}", e.state("a.container"));
    assert_eq!(e.m.status("a").unwrap().n_restarts, 1);
    e.wait_state("b.container", (ActiveState::Failed, "failed"));
    let st = e.m.status("b").unwrap();
    assert_eq!(st.result, UnitResult::Signal);
    let text = kos_units::status::render_status(&st, e.m.now_wall(), &[]);
    assert!(
        text.contains(&format!("Main PID: {pb} (code=killed, signal=KILL)")),
        "{text}"
    );
    assert!(
        text.contains("Active: failed (failed) (Result: signal) since "),
        "{text}"
    );
}

#[test]
fn stop_escalates_to_sigkill_and_leaves_no_process() {
    let h = tmp_hint();
    let a = unit(
        h.path(),
        "",
        "Type=notify\nTimeoutStopSec=300ms",
        "trap \"\" TERM; sleep 60 & echo $! > $D/child; $N READY=1; while true; do sleep 0.05; done",
    );
    let mut e = env(&[("a.container", a)]);
    e.m.start("a").unwrap();
    e.wait_state("a.container", (ActiveState::Active, "running"));
    let main = e.main_pid("a.container");
    let child: u32 = std::fs::read_to_string(h.path().join("child"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(alive(child));
    let t = Instant::now();
    e.m.stop("a").unwrap();
    e.wait_state("a.container", (ActiveState::Failed, "failed"));
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert_eq!(e.m.status("a").unwrap().result, UnitResult::Timeout);
    assert!(e
        .m
        .sink()
        .units
        .iter()
        .any(|x| x.sub_state == "stop-sigkill"));
    assert!(!alive(main));
    assert!(
        run_until(&mut e.m, Duration::from_secs(2), |_| !alive(child)),
        "the whole group was killed"
    );
}

#[test]
fn oneshot_with_host_pre_command() {
    let h = tmp_hint();
    let a = format!(
        "[Container]\nImage=busybox\nEnvironment=D={}\nExec=/bin/sh -c 'cat $D/pre > $D/out'\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStartPre=host:/bin/sh -c 'echo from-pre > $D/pre'\nExecStartPost=-/bin/false\n",
        h.path().display()
    );
    let mut e = env(&[("a.container", a)]);
    let job = e.m.start("a").unwrap();
    e.wait_state("a.container", (ActiveState::Active, "exited"));
    assert_eq!(e.m.job_result(job), Some(kos_units::JobResult::Done));
    assert_eq!(
        std::fs::read_to_string(h.path().join("out")).unwrap(),
        "from-pre\n"
    );
    e.m.stop("a").unwrap();
    e.wait_state("a.container", (ActiveState::Inactive, "dead"));
}

#[test]
fn failures_propagate_along_requires_and_binds_to() {
    let h = tmp_hint();
    let b = unit(
        h.path(),
        "OnFailure=h.container",
        "Type=notify",
        "echo b >> $D/ran; exit 3",
    );
    let a = unit(
        h.path(),
        "Requires=b.container\nAfter=b.container",
        "",
        "echo a >> $D/ran; exec sleep 60",
    );
    let hh = unit(h.path(), "", "", "echo h >> $D/ran; exec sleep 60");
    let d = unit(h.path(), "", "", "exec sleep 60");
    let c = unit(
        h.path(),
        "BindsTo=d.container\nAfter=d.container",
        "",
        "exec sleep 60",
    );
    let mut e = env(&[
        ("a.container", a),
        ("b.container", b),
        ("h.container", hh),
        ("c.container", c),
        ("d.container", d),
    ]);
    let job = e.m.start("a").unwrap();
    assert!(run_until(&mut e.m, WAIT, |m| m.job_result(job).is_some()));
    assert_eq!(e.m.job_result(job), Some(kos_units::JobResult::Dependency));
    assert_eq!(e.state("b.container"), (ActiveState::Failed, "failed"));
    assert_eq!(e.m.status("b").unwrap().result, UnitResult::ExitCode);
    assert_eq!(e.state("a.container"), (ActiveState::Inactive, "dead"));
    e.wait_state("h.container", (ActiveState::Active, "running"));
    // h is active (simple) once spawned; its line follows shortly
    let ran_file = h.path().join("ran");
    let read = || std::fs::read_to_string(&ran_file).unwrap_or_default();
    assert!(
        run_until(&mut e.m, WAIT, |_| read().contains('h')),
        "{:?}",
        read()
    );
    assert!(!read().contains('a'), "a never ran: {:?}", read());

    e.m.start("c").unwrap();
    e.wait_state("c.container", (ActiveState::Active, "running"));
    let (pc, pd) = (e.main_pid("c.container"), e.main_pid("d.container"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pd as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    e.wait_state("c.container", (ActiveState::Inactive, "dead"));
    assert_eq!(e.state("d.container"), (ActiveState::Failed, "failed"));
    assert!(!alive(pc), "the bound unit's process was stopped");
}

#[test]
fn no_manager_descriptor_reaches_a_unit() {
    let h = tmp_hint();
    // While the manager holds notify sockets and pidfds, a unit's process lists what it got
    // (ls's own directory descriptor is 3).
    let a = "[Container]\nImage=busybox\nExec=/bin/ls /proc/self/fd\n[Service]\nType=oneshot\nRemainAfterExit=yes\nWatchdogSec=10s\n".to_string();
    let b = unit(h.path(), "", "Type=notify", "$N READY=1; exec sleep 60");
    let mut e = env(&[("a.container", a), ("b.container", b)]);
    e.m.start("b").unwrap();
    e.wait_state("b.container", (ActiveState::Active, "running"));
    e.m.start("a").unwrap();
    e.wait_state("a.container", (ActiveState::Active, "exited"));
    let fds: Vec<String> = e
        .log("a.container")
        .split_whitespace()
        .map(String::from)
        .collect();
    assert_eq!(fds, ["0", "1", "2", "3"]);
}
