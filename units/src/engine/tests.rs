//! Engine tests against an in-memory runtime and a fake clock.

use std::collections::{HashMap, HashSet};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use nix::sys::signal::Signal;

use super::*;
use crate::clock::FakeClock;
use crate::error::RuntimeError;
use crate::events::EventLog;
use crate::spec::{ContainerSpec, ExecCommand};

#[derive(Default)]
struct Fake {
    next_pid: u32,
    /// "create X", "start X", "exec X argv0 (host)", "kill X SIG", "remove X", in order.
    calls: Vec<String>,
    specs: HashMap<String, ContainerSpec>,
    main: HashMap<String, u32>,
    fail_create: HashSet<String>,
    /// Extra pids reported as the unit's processes (the test process, so it may notify).
    extra_pids: Vec<u32>,
}

impl Fake {
    fn count(&self, prefix: &str) -> usize {
        self.calls.iter().filter(|c| c.starts_with(prefix)).count()
    }
    fn pos(&self, call: &str) -> usize {
        self.calls
            .iter()
            .position(|c| c == call)
            .unwrap_or_else(|| panic!("no call {call:?} in {:?}", self.calls))
    }
}

impl UnitRuntime for Fake {
    fn create(
        &mut self,
        unit: &str,
        spec: &ContainerSpec,
    ) -> std::result::Result<(), RuntimeError> {
        self.calls.push(format!("create {unit}"));
        if self.fail_create.contains(unit) {
            return Err(RuntimeError::new("image not found"));
        }
        self.specs.insert(unit.into(), spec.clone());
        Ok(())
    }
    fn start(&mut self, unit: &str) -> std::result::Result<u32, RuntimeError> {
        self.next_pid += 1;
        let pid = 100_000 + self.next_pid;
        self.calls.push(format!("start {unit}"));
        self.main.insert(unit.into(), pid);
        Ok(pid)
    }
    fn exec(&mut self, unit: &str, cmd: &ExecCommand) -> std::result::Result<u32, RuntimeError> {
        self.next_pid += 1;
        self.calls.push(format!(
            "exec {unit} {}{}",
            cmd.argv[0],
            if cmd.on_host { " host" } else { "" }
        ));
        Ok(100_000 + self.next_pid)
    }
    fn kill(&mut self, unit: &str, signal: Signal) -> std::result::Result<(), RuntimeError> {
        self.calls.push(format!("kill {unit} {}", signal.as_str()));
        Ok(())
    }
    fn remove(&mut self, unit: &str) -> std::result::Result<(), RuntimeError> {
        self.calls.push(format!("remove {unit}"));
        Ok(())
    }
    fn pids(&mut self, unit: &str) -> std::result::Result<Vec<u32>, RuntimeError> {
        Ok(self
            .main
            .get(unit)
            .copied()
            .into_iter()
            .chain(self.extra_pids.iter().copied())
            .collect())
    }
}

type M = Manager<Fake, EventLog, FakeClock>;

struct Env {
    _dir: tempfile::TempDir,
    m: M,
    clock: FakeClock,
}

fn env(units: &[(&str, &str)]) -> Env {
    let dir = tempfile::tempdir().unwrap();
    let lib = dir.path().join("lib");
    std::fs::create_dir_all(&lib).unwrap();
    for (name, text) in units {
        let p = lib.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let cfg = ManagerConfig {
        paths: UnitPaths {
            dirs: vec![lib, dir.path().join("etc")],
            enable_dir: dir.path().join("etc"),
        },
        notify_dir: dir.path().join("notify"),
        notify_dir_in_container: Some("/run/kos/notify".into()),
    };
    let clock = FakeClock::new(UNIX_EPOCH + Duration::from_secs(1_796_028_667));
    let fake = Fake {
        extra_pids: vec![std::process::id()],
        ..Default::default()
    };
    let m = Manager::new(cfg, fake, EventLog::default(), clock.clone()).unwrap();
    Env {
        _dir: dir,
        m,
        clock,
    }
}

impl Env {
    fn state(&self, u: &str) -> (ActiveState, &'static str) {
        (
            self.m.active_state(u).unwrap(),
            self.m.sub_state(u).unwrap(),
        )
    }
    fn calls(&self) -> &[String] {
        &self.m.runtime().calls
    }
    fn main_pid(&self, u: &str) -> u32 {
        self.m
            .status(u)
            .unwrap()
            .main_pid
            .unwrap_or_else(|| panic!("{u} has no main pid"))
    }
    fn exit(&mut self, u: &str, st: ExitStatus) {
        let pid = self.main_pid(u);
        self.m.process_exited(pid, st);
    }
    fn notify(&mut self, u: &str, msg: &str) {
        let path = self.m.cfg.notify_dir.join(u).join("notify.sock");
        UnixDatagram::unbound()
            .unwrap()
            .send_to(msg.as_bytes(), path)
            .unwrap();
        self.m.drain_notify(u);
    }
    fn advance(&mut self, d: Duration) {
        self.clock.advance(d);
        self.m.tick();
    }
    fn results(&self, u: &str) -> Vec<UnitResult> {
        self.m
            .sink()
            .units
            .iter()
            .filter(|e| e.unit == u)
            .map(|e| e.result)
            .collect()
    }
}

const SIMPLE: &str = "[Container]\nImage=x\nExec=/bin/run\n";
fn notify_unit(extra: &str) -> String {
    format!("[Unit]\n{extra}\n[Container]\nImage=x\n[Service]\nType=notify\n")
}
fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

#[test]
fn ordering_follows_after_and_independent_units_start_together() {
    let b = notify_unit("");
    let a = notify_unit("After=b.container");
    let mut e = env(&[
        (
            "t.target",
            "[Unit]\nWants=a.container b.container c.container d.container\n",
        ),
        ("a.container", &a),
        ("b.container", &b),
        ("c.container", SIMPLE),
        ("d.container", SIMPLE),
    ]);
    let job = e.m.start("t").unwrap();
    // b, c, d have nothing before them: all created in the same pass; a waits for b.
    assert_eq!(e.m.runtime().count("create"), 3, "{:?}", e.calls());
    assert_eq!(e.state("a.container"), (ActiveState::Inactive, "dead"));
    assert_eq!(e.state("b.container"), (ActiveState::Activating, "start"));
    assert_eq!(e.state("c.container"), (ActiveState::Active, "running"));
    assert_eq!(
        e.state("t.target"),
        (ActiveState::Inactive, "dead"),
        "the target waits for what it wants"
    );
    e.notify("b.container", "READY=1\nSTATUS=b is up");
    assert_eq!(e.state("b.container"), (ActiveState::Active, "running"));
    assert_eq!(
        e.m.status("b").unwrap().status_text.as_deref(),
        Some("b is up")
    );
    assert_eq!(e.state("a.container"), (ActiveState::Activating, "start"));
    assert!(e.m.runtime().pos("create a.container") > e.m.runtime().pos("start b.container"));
    assert!(e.m.job_pending(job));
    e.notify("a.container", "READY=1");
    assert_eq!(e.state("t.target"), (ActiveState::Active, "active"));
    assert_eq!(e.m.job_result(job), Some(JobResult::Done));
    // the container was told where its notify socket is, inside the container
    let spec = &e.m.runtime().specs["a.container"];
    assert!(spec
        .env
        .contains(&"NOTIFY_SOCKET=/run/kos/notify/notify.sock".to_string()));
    assert_eq!(
        spec.kos.notify_dir.as_deref(),
        Some(e.m.cfg.notify_dir.join("a.container").as_path())
    );
}

#[test]
fn cycles_are_refused_and_named() {
    let mut e = env(&[
        ("t.target", "[Unit]\nRequires=a.container\n"),
        (
            "a.container",
            "[Unit]\nAfter=b.container\nRequires=b.container\n[Container]\nImage=x\n",
        ),
        (
            "b.container",
            "[Unit]\nAfter=c.container\nWants=c.container\n[Container]\nImage=x\n",
        ),
        (
            "c.container",
            "[Unit]\nAfter=a.container\n[Container]\nImage=x\n",
        ),
    ]);
    let err = e.m.start("t.target").unwrap_err();
    assert_eq!(
        err.to_string(),
        "transaction for t.target refused: ordering cycle a.container -> b.container -> c.container -> a.container"
    );
    assert!(e.calls().is_empty(), "nothing started: {:?}", e.calls());
    assert_eq!(e.state("a.container").0, ActiveState::Inactive);
}

#[test]
fn required_unit_failing_fails_the_dependent_start_job() {
    let mut e = env(&[
        (
            "a.container",
            "[Unit]\nRequires=b.container\nAfter=b.container\n[Container]\nImage=x\n",
        ),
        ("b.container", SIMPLE),
        (
            "c.container",
            "[Unit]\nRequires=b.container\n[Container]\nImage=x\n",
        ),
    ]);
    e.m.runtime_mut().fail_create.insert("b.container".into());
    let ja = e.m.start("a").unwrap();
    assert_eq!(e.m.job_result(ja), Some(JobResult::Dependency));
    assert_eq!(e.state("b.container"), (ActiveState::Failed, "failed"));
    assert_eq!(e.m.status("b").unwrap().result, UnitResult::Resources);
    assert_eq!(e.state("a.container"), (ActiveState::Inactive, "dead"));
    assert_eq!(e.m.runtime().count("create a.container"), 0);
    // Requires= without After=: both start together, the dependent is not held back.
    let jc = e.m.start("c").unwrap();
    assert_eq!(e.m.job_result(jc), Some(JobResult::Done));
    assert_eq!(e.state("c.container"), (ActiveState::Active, "running"));
    // A missing required unit refuses the transaction; a missing wanted one is skipped.
    let mut e = env(&[
        (
            "a.container",
            "[Unit]\nRequires=gone.container\n[Container]\nImage=x\n",
        ),
        (
            "w.container",
            "[Unit]\nWants=gone.container\n[Container]\nImage=x\n",
        ),
    ]);
    assert_eq!(
        e.m.start("a").unwrap_err().to_string(),
        "transaction for a.container refused: gone.container is not found"
    );
    e.m.start("w").unwrap();
    assert_eq!(e.state("w.container").0, ActiveState::Active);
}

#[test]
fn binds_to_stops_the_dependent_when_the_bound_unit_goes() {
    let mut e = env(&[
        (
            "a.container",
            "[Unit]\nBindsTo=b.container\nAfter=b.container\n[Container]\nImage=x\n",
        ),
        ("b.container", SIMPLE),
    ]);
    e.m.start("a").unwrap();
    assert_eq!(e.state("a.container").0, ActiveState::Active);
    assert_eq!(e.state("b.container").0, ActiveState::Active);
    e.exit("b.container", ExitStatus::Exited(0));
    assert_eq!(e.state("b.container"), (ActiveState::Inactive, "dead"));
    assert_eq!(
        e.state("a.container"),
        (ActiveState::Deactivating, "stop-sigterm")
    );
    assert!(e.calls().contains(&"kill a.container SIGTERM".to_string()));
    e.exit(
        "a.container",
        ExitStatus::Signaled {
            signal: libc::SIGTERM,
            core_dumped: false,
        },
    );
    assert_eq!(e.state("a.container"), (ActiveState::Inactive, "dead"));
    assert_eq!(e.m.runtime().count("remove a.container"), 1);
}

#[test]
fn stopping_a_required_unit_stops_dependents_first_in_reverse_order() {
    let mut e = env(&[
        (
            "a.container",
            "[Unit]\nRequires=b.container\nAfter=b.container\n[Container]\nImage=x\n",
        ),
        ("b.container", SIMPLE),
    ]);
    e.m.start("a").unwrap();
    let job = e.m.stop("b").unwrap();
    assert_eq!(
        e.m.runtime().count("kill"),
        1,
        "only a is signalled first: {:?}",
        e.calls()
    );
    assert!(e.calls().contains(&"kill a.container SIGTERM".to_string()));
    e.exit(
        "a.container",
        ExitStatus::Signaled {
            signal: libc::SIGTERM,
            core_dumped: false,
        },
    );
    assert!(e.calls().contains(&"kill b.container SIGTERM".to_string()));
    assert!(e.m.job_pending(job));
    e.exit("b.container", ExitStatus::Exited(0));
    assert_eq!(e.m.job_result(job), Some(JobResult::Done));
    assert_eq!(e.state("a.container").0, ActiveState::Inactive);
    assert_eq!(e.state("b.container").0, ActiveState::Inactive);
}

#[test]
fn conflicts_stop_the_other_unit() {
    let mut e = env(&[
        (
            "a.container",
            "[Unit]\nConflicts=b.container\n[Container]\nImage=x\n",
        ),
        ("b.container", SIMPLE),
    ]);
    e.m.start("b").unwrap();
    e.m.start("a").unwrap();
    assert!(e.calls().contains(&"kill b.container SIGTERM".to_string()));
    assert_eq!(e.state("a.container").0, ActiveState::Active);
    e.exit(
        "b.container",
        ExitStatus::Signaled {
            signal: libc::SIGTERM,
            core_dumped: false,
        },
    );
    assert_eq!(e.state("b.container"), (ActiveState::Inactive, "dead"));
    // and the other way round (Conflicts= is symmetric)
    e.m.start("b").unwrap();
    assert!(e.calls().contains(&"kill a.container SIGTERM".to_string()));
}

#[test]
fn on_failure_units_are_started() {
    let mut e = env(&[
        (
            "a.container",
            "[Unit]\nOnFailure=h.container\n[Container]\nImage=x\n",
        ),
        ("h.container", SIMPLE),
    ]);
    e.m.start("a").unwrap();
    e.exit("a.container", ExitStatus::Exited(3));
    assert_eq!(e.state("a.container"), (ActiveState::Failed, "failed"));
    assert_eq!(e.m.status("a").unwrap().result, UnitResult::ExitCode);
    assert_eq!(e.state("h.container"), (ActiveState::Active, "running"));
}

#[test]
fn restart_backoff_grows_to_the_maximum() {
    let mut e = env(&[(
        "a.container",
        "[Unit]\nStartLimitIntervalSec=0\n[Container]\nImage=x\n[Service]\nRestart=always\nRestartSec=1s\nRestartSteps=3\nRestartMaxDelaySec=8s\n",
    )]);
    e.m.start("a").unwrap();
    let mut delays = Vec::new();
    for n in 0..5 {
        e.exit(
            "a.container",
            ExitStatus::Signaled {
                signal: libc::SIGKILL,
                core_dumped: false,
            },
        );
        assert_eq!(
            e.state("a.container"),
            (ActiveState::Activating, "auto-restart")
        );
        assert_eq!(e.m.status("a").unwrap().result, UnitResult::Signal);
        let created = e.m.runtime().count("create");
        let mut waited = Duration::ZERO;
        while e.m.runtime().count("create") == created {
            e.advance(ms(250));
            waited += ms(250);
            assert!(waited < Duration::from_secs(20), "restart {n} never came");
        }
        // the timer fires exactly at its deadline
        let d = e.m.runtime().calls.len();
        assert!(d > 0);
        delays.push(waited.as_millis());
        assert_eq!(e.state("a.container"), (ActiveState::Active, "running"));
        assert_eq!(e.m.status("a").unwrap().n_restarts, n + 1);
    }
    assert_eq!(delays, [1000, 2000, 4000, 8000, 8000]);
}

#[test]
fn restart_timer_is_exact() {
    let mut e = env(&[(
        "a.container",
        "[Container]\nImage=x\n[Service]\nRestart=on-failure\nRestartSec=1500ms\n",
    )]);
    e.m.start("a").unwrap();
    e.exit("a.container", ExitStatus::Exited(1));
    assert_eq!(e.m.next_deadline(), Some(ms(1500)));
    e.advance(ms(1499));
    assert_eq!(e.m.runtime().count("create"), 1);
    e.advance(ms(1));
    assert_eq!(e.m.runtime().count("create"), 2);
    // on-failure does not restart after a clean exit
    e.exit("a.container", ExitStatus::Exited(0));
    assert_eq!(e.state("a.container"), (ActiveState::Inactive, "dead"));
    assert_eq!(e.m.next_deadline(), None);
}

#[test]
fn start_limit_hit_fails_the_unit() {
    let mut e = env(&[(
        "a.container",
        "[Unit]\nStartLimitIntervalSec=10s\nStartLimitBurst=3\nOnFailure=h.target\n[Container]\nImage=x\n[Service]\nRestart=always\nRestartSec=100ms\n",
    ), ("h.target", "[Unit]\nDescription=on failure\n")]);
    let job = e.m.start("a").unwrap();
    assert_eq!(e.m.job_result(job), Some(JobResult::Done));
    for _ in 0..2 {
        e.exit("a.container", ExitStatus::Exited(1));
        e.advance(ms(100));
        assert_eq!(e.state("a.container"), (ActiveState::Active, "running"));
    }
    e.exit("a.container", ExitStatus::Exited(1));
    e.advance(ms(100));
    assert_eq!(e.state("a.container"), (ActiveState::Failed, "failed"));
    assert_eq!(e.m.status("a").unwrap().result, UnitResult::StartLimitHit);
    assert_eq!(e.m.runtime().count("create"), 3);
    assert_eq!(e.state("h.target").0, ActiveState::Active, "OnFailure= ran");
    // a manual start is refused too until the interval passed or reset-failed
    let j = e.m.start("a").unwrap();
    assert_eq!(e.m.job_result(j), Some(JobResult::Failed));
    e.m.reset_failed("a").unwrap();
    let j = e.m.start("a").unwrap();
    assert_eq!(e.m.job_result(j), Some(JobResult::Done));
    assert!(e
        .results("a.container")
        .contains(&UnitResult::StartLimitHit));
}

#[test]
fn start_timeout_terms_then_kills() {
    let mut e = env(&[(
        "a.container",
        "[Container]\nImage=x\n[Service]\nType=notify\nTimeoutStartSec=5s\nTimeoutStopSec=3s\n",
    )]);
    let job = e.m.start("a").unwrap();
    e.advance(ms(4999));
    assert_eq!(e.state("a.container"), (ActiveState::Activating, "start"));
    e.advance(ms(1));
    assert_eq!(
        e.state("a.container"),
        (ActiveState::Deactivating, "final-sigterm")
    );
    assert!(e
        .calls()
        .ends_with(&["kill a.container SIGTERM".to_string()]));
    e.advance(Duration::from_secs(3));
    assert_eq!(
        e.state("a.container"),
        (ActiveState::Deactivating, "final-sigkill")
    );
    assert!(e
        .calls()
        .ends_with(&["kill a.container SIGKILL".to_string()]));
    e.exit(
        "a.container",
        ExitStatus::Signaled {
            signal: libc::SIGKILL,
            core_dumped: false,
        },
    );
    assert_eq!(e.state("a.container"), (ActiveState::Failed, "failed"));
    assert_eq!(e.m.status("a").unwrap().result, UnitResult::Timeout);
    assert_eq!(e.m.job_result(job), Some(JobResult::Failed));
}

#[test]
fn stop_timeout_escalates_to_sigkill() {
    let mut e = env(&[(
        "a.container",
        "[Container]\nImage=x\n[Service]\nTimeoutStopSec=2s\nRestart=always\n",
    )]);
    e.m.start("a").unwrap();
    let job = e.m.stop("a").unwrap();
    assert_eq!(
        e.state("a.container"),
        (ActiveState::Deactivating, "stop-sigterm")
    );
    e.advance(Duration::from_secs(2));
    assert_eq!(
        e.state("a.container"),
        (ActiveState::Deactivating, "stop-sigkill")
    );
    e.exit(
        "a.container",
        ExitStatus::Signaled {
            signal: libc::SIGKILL,
            core_dumped: false,
        },
    );
    assert_eq!(e.state("a.container"), (ActiveState::Failed, "failed"));
    assert_eq!(e.m.status("a").unwrap().result, UnitResult::Timeout);
    assert_eq!(e.m.job_result(job), Some(JobResult::Done));
    assert_eq!(
        e.m.next_deadline(),
        None,
        "a stop is never followed by a restart"
    );
}

#[test]
fn watchdog_expiry_aborts_and_restarts() {
    let mut e = env(&[(
        "a.container",
        "[Container]\nImage=x\n[Service]\nType=notify\nWatchdogSec=2s\nRestart=on-watchdog\nRestartSec=1s\nTimeoutStopSec=5s\n",
    )]);
    e.m.start("a").unwrap();
    assert!(e.m.runtime().specs["a.container"]
        .env
        .contains(&"WATCHDOG_USEC=2000000".to_string()));
    e.notify("a.container", "READY=1");
    for _ in 0..4 {
        e.advance(ms(1500));
        e.notify("a.container", "WATCHDOG=1");
    }
    assert_eq!(e.state("a.container"), (ActiveState::Active, "running"));
    e.advance(ms(1999));
    assert_eq!(e.state("a.container"), (ActiveState::Active, "running"));
    e.advance(ms(1));
    assert_eq!(
        e.state("a.container"),
        (ActiveState::Deactivating, "stop-watchdog")
    );
    assert!(e
        .calls()
        .ends_with(&["kill a.container SIGABRT".to_string()]));
    // ignores SIGABRT: SIGKILL after TimeoutAbortSec (= TimeoutStopSec)
    e.advance(Duration::from_secs(5));
    assert!(e
        .calls()
        .ends_with(&["kill a.container SIGKILL".to_string()]));
    e.exit(
        "a.container",
        ExitStatus::Signaled {
            signal: libc::SIGKILL,
            core_dumped: false,
        },
    );
    assert_eq!(
        e.state("a.container"),
        (ActiveState::Activating, "auto-restart")
    );
    assert_eq!(e.m.status("a").unwrap().result, UnitResult::Watchdog);
    e.advance(Duration::from_secs(1));
    assert_eq!(e.state("a.container"), (ActiveState::Activating, "start"));
    assert_eq!(e.m.runtime().count("create"), 2);
    // WATCHDOG_USEC= from the service changes the period
    e.notify("a.container", "READY=1\nWATCHDOG_USEC=500000");
    e.advance(ms(500));
    assert_eq!(
        e.state("a.container"),
        (ActiveState::Deactivating, "stop-watchdog")
    );
}

#[test]
fn oneshot_is_active_after_exit_and_orders_its_dependents() {
    let mut e = env(&[
        (
            "init.container",
            "[Container]\nImage=x\n[Service]\nType=oneshot\nRemainAfterExit=yes\n",
        ),
        (
            "once.container",
            "[Container]\nImage=x\n[Service]\nType=oneshot\n",
        ),
        (
            "app.container",
            "[Unit]\nAfter=init.container\nRequires=init.container\n[Container]\nImage=x\n",
        ),
    ]);
    e.m.start("app").unwrap();
    assert_eq!(
        e.state("init.container"),
        (ActiveState::Activating, "start")
    );
    assert_eq!(e.m.runtime().count("create app"), 0);
    e.exit("init.container", ExitStatus::Exited(0));
    assert_eq!(e.state("init.container"), (ActiveState::Active, "exited"));
    assert_eq!(e.state("app.container"), (ActiveState::Active, "running"));
    let j = e.m.start("once").unwrap();
    e.exit("once.container", ExitStatus::Exited(0));
    assert_eq!(e.state("once.container"), (ActiveState::Inactive, "dead"));
    assert_eq!(e.m.job_result(j), Some(JobResult::Done));
    let j = e.m.start("once").unwrap();
    e.exit("once.container", ExitStatus::Exited(2));
    assert_eq!(e.state("once.container"), (ActiveState::Failed, "failed"));
    assert_eq!(e.m.job_result(j), Some(JobResult::Failed));
}

#[test]
fn notify_from_a_foreign_pid_is_refused() {
    let mut e = env(&[("a.container", &notify_unit(""))]);
    e.m.runtime_mut().extra_pids.clear();
    e.m.start("a").unwrap();
    e.notify("a.container", "READY=1");
    assert_eq!(e.state("a.container"), (ActiveState::Activating, "start"));
    // MAINPID from a process that is not the main one is ignored
    e.m.runtime_mut().extra_pids.push(std::process::id());
    e.notify("a.container", "MAINPID=1\nREADY=1");
    assert_eq!(e.state("a.container"), (ActiveState::Active, "running"));
    assert_ne!(e.m.status("a").unwrap().main_pid, Some(1));
    // NotifyAccess=main: only the main pid may notify
    let mut e = env(&[(
        "a.container",
        "[Container]\nImage=x\n[Service]\nType=notify\nNotifyAccess=main\n",
    )]);
    e.m.start("a").unwrap();
    e.notify("a.container", "READY=1");
    assert_eq!(e.state("a.container"), (ActiveState::Activating, "start"));
}

#[test]
fn notify_unit_exiting_before_ready_and_stopping() {
    let mut e = env(&[("a.container", &notify_unit(""))]);
    let j = e.m.start("a").unwrap();
    e.exit("a.container", ExitStatus::Exited(0));
    assert_eq!(e.m.status("a").unwrap().result, UnitResult::Protocol);
    assert_eq!(e.m.job_result(j), Some(JobResult::Failed));
    e.m.start("a").unwrap();
    e.notify("a.container", "READY=1");
    e.notify("a.container", "STOPPING=1");
    assert_eq!(
        e.state("a.container"),
        (ActiveState::Deactivating, "stop-sigterm")
    );
    e.exit("a.container", ExitStatus::Exited(0));
    assert_eq!(e.state("a.container"), (ActiveState::Inactive, "dead"));
}

#[test]
fn exec_start_pre_and_post() {
    let mut e = env(&[(
        "a.container",
        "[Container]\nImage=x\n[Service]\nType=notify\nExecStartPre=host:/bin/prep\nExecStartPre=-/bin/may-fail\nExecStartPost=/bin/post\n",
    ), ("b.container", "[Container]\nImage=x\n[Service]\nExecStartPre=/bin/false\n")]);
    e.m.start("a").unwrap();
    assert_eq!(
        e.state("a.container"),
        (ActiveState::Activating, "start-pre")
    );
    // control pids are 100_000 + n in call order
    e.m.process_exited(100_001, ExitStatus::Exited(0));
    e.m.process_exited(100_002, ExitStatus::Exited(1)); // '-' prefix: ignored
    assert_eq!(e.state("a.container"), (ActiveState::Activating, "start"));
    e.notify("a.container", "READY=1");
    assert_eq!(
        e.state("a.container"),
        (ActiveState::Activating, "start-post")
    );
    e.m.process_exited(100_004, ExitStatus::Exited(0));
    assert_eq!(e.state("a.container"), (ActiveState::Active, "running"));
    let c = e.calls();
    assert_eq!(
        &c[..5],
        [
            "create a.container",
            "exec a.container /bin/prep host",
            "exec a.container /bin/may-fail",
            "start a.container",
            "exec a.container /bin/post"
        ]
    );
    e.m.start("b").unwrap();
    e.m.process_exited(100_005, ExitStatus::Exited(1));
    assert_eq!(e.state("b.container"), (ActiveState::Failed, "failed"));
    assert_eq!(e.m.status("b").unwrap().result, UnitResult::ExitCode);
    assert_eq!(e.m.runtime().count("start b"), 0);
}

#[test]
fn restart_job_stops_then_starts_dependents_too() {
    let mut e = env(&[
        (
            "a.container",
            "[Unit]\nRequires=b.container\nAfter=b.container\n[Container]\nImage=x\n",
        ),
        ("b.container", SIMPLE),
    ]);
    e.m.start("a").unwrap();
    let job = e.m.restart("b").unwrap();
    assert!(e
        .calls()
        .ends_with(&["kill a.container SIGTERM".to_string()]));
    e.exit(
        "a.container",
        ExitStatus::Signaled {
            signal: libc::SIGTERM,
            core_dumped: false,
        },
    );
    e.exit(
        "b.container",
        ExitStatus::Signaled {
            signal: libc::SIGTERM,
            core_dumped: false,
        },
    );
    assert_eq!(e.m.job_result(job), Some(JobResult::Done));
    assert_eq!(e.m.runtime().count("create b"), 2);
    assert_eq!(e.m.runtime().count("create a"), 2);
    assert!(e.m.runtime().pos("start b.container") < e.m.runtime().pos("create a.container"));
    assert_eq!(e.state("a.container").0, ActiveState::Active);
}

#[test]
fn enabled_units_are_pulled_in_and_reload_keeps_running_units() {
    let mut e = env(&[
        ("kos-system.target", "[Unit]\nDescription=KOS system\n"),
        (
            "a.container",
            "[Unit]\nDescription=A\n[Container]\nImage=x\n[Install]\nWantedBy=kos-system.target\n",
        ),
    ]);
    let ch = e.m.enable("a").unwrap();
    assert_eq!(ch.len(), 1);
    e.m.reload().unwrap();
    e.m.start("kos-system.target").unwrap();
    assert_eq!(e.state("a.container").0, ActiveState::Active);
    let st = e.m.status("a").unwrap();
    assert_eq!((st.file_state, st.load_state), ("enabled", "loaded"));
    let pid = st.main_pid;
    let lib = e.m.cfg.paths.dirs[0].clone();
    std::fs::write(
        lib.join("a.container"),
        "[Unit]\nDescription=A2\n[Container]\nImage=y\n",
    )
    .unwrap();
    std::fs::write(lib.join("n.container"), SIMPLE).unwrap();
    e.m.reload().unwrap();
    assert_eq!(e.m.status("a").unwrap().main_pid, pid, "still the same run");
    assert_eq!(e.m.status("a").unwrap().description, "A2");
    assert_eq!(e.state("n.container").0, ActiveState::Inactive);
    e.m.restart("a").unwrap();
    e.exit("a.container", ExitStatus::Exited(0));
    assert_eq!(e.m.runtime().specs["a.container"].image, "y");
    // status text, cat
    let text = crate::status::render_status(&e.m.status("a").unwrap(), e.m.now_wall(), &[]);
    assert!(
        text.starts_with("● a.container - A2\n     Loaded: loaded ("),
        "{text}"
    );
    assert!(text.contains("; enabled; preset: enabled)"), "{text}");
    assert!(e
        .m
        .cat("a")
        .unwrap()
        .starts_with(&format!("# {}\n", lib.join("a.container").display())));
    assert!(matches!(e.m.resolve("nope"), Err(Error::NotFound(_))));
    assert!(matches!(e.m.resolve("../x"), Err(Error::BadName(_))));
}

#[test]
fn events_trace_the_states() {
    let mut e = env(&[("a.container", SIMPLE)]);
    e.m.start("a").unwrap();
    e.exit("a.container", ExitStatus::Exited(1));
    let ev: Vec<(ActiveState, &str, UnitResult)> =
        e.m.sink()
            .units
            .iter()
            .map(|x| (x.active_state, x.sub_state, x.result))
            .collect();
    assert_eq!(
        ev,
        [
            (ActiveState::Activating, "start", UnitResult::Success),
            (ActiveState::Active, "running", UnitResult::Success),
            (ActiveState::Failed, "failed", UnitResult::ExitCode),
        ]
    );
    assert!(e.m.sink().units[1].main_pid.is_some());
    assert_eq!(e.m.sink().jobs[0].result, JobResult::Done);
    // the notify socket is gone with the run
    assert!(!Path::new(&e.m.cfg.notify_dir.join("a.container")).exists());
}

#[test]
fn shipped_targets_come_up_network_first() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("shipped");
    let read = |n: &str| std::fs::read_to_string(shipped.join(n)).unwrap();
    let sys = read("kos-system.target");
    let net = read("kos-network.target");
    let dns = "[Unit]\nDescription=DNS\n[Container]\nImage=kos-dns\n[Service]\nType=notify\n[Install]\nWantedBy=kos-network.target\n";
    let mut e = env(&[
        ("kos-system.target", &sys),
        ("kos-network.target", &net),
        ("kos-dns.container", dns),
    ]);
    e.m.enable("kos-dns").unwrap();
    e.m.reload().unwrap();
    let job = e.m.start("kos-system.target").unwrap();
    assert_eq!(
        e.state("kos-network.target").0,
        ActiveState::Inactive,
        "waits for kos-dns"
    );
    assert_eq!(
        e.state("kos-dns.container"),
        (ActiveState::Activating, "start")
    );
    e.notify("kos-dns.container", "READY=1");
    assert_eq!(
        e.state("kos-network.target"),
        (ActiveState::Active, "active")
    );
    assert_eq!(
        e.state("kos-system.target"),
        (ActiveState::Active, "active")
    );
    assert_eq!(e.m.job_result(job), Some(JobResult::Done));
    let ev: Vec<&str> =
        e.m.sink()
            .units
            .iter()
            .filter(|x| x.active_state == ActiveState::Active)
            .map(|x| x.unit.as_str())
            .collect();
    assert_eq!(
        ev,
        [
            "kos-dns.container",
            "kos-network.target",
            "kos-system.target"
        ]
    );
}

#[test]
fn restart_policy_table() {
    use super::service::should_restart;
    use crate::unit_file::RestartPolicy as P;
    use UnitResult as R;
    let cases = [
        (R::Success, [false, true, true, false, false, false, false]),
        (R::ExitCode, [false, true, false, true, false, false, false]),
        (R::Signal, [false, true, false, true, true, true, false]),
        (R::CoreDump, [false, true, false, true, true, true, false]),
        (R::Timeout, [false, true, false, true, true, false, false]),
        (R::Watchdog, [false, true, false, true, true, false, true]),
    ];
    let policies = [
        P::No,
        P::Always,
        P::OnSuccess,
        P::OnFailure,
        P::OnAbnormal,
        P::OnAbort,
        P::OnWatchdog,
    ];
    for (r, want) in cases {
        for (p, w) in policies.iter().zip(want) {
            assert_eq!(should_restart(*p, r), w, "{p:?} after {r:?}");
        }
    }
}

#[test]
fn a_new_job_replaces_the_pending_one() {
    let mut e = env(&[(
        "a.container",
        "[Container]\nImage=x\n[Service]\nTimeoutStopSec=10s\n",
    )]);
    e.m.start("a").unwrap();
    let stop = e.m.stop("a").unwrap();
    assert_eq!(
        e.state("a.container"),
        (ActiveState::Deactivating, "stop-sigterm")
    );
    let start = e.m.start("a").unwrap();
    assert_eq!(e.m.job_result(stop), Some(JobResult::Canceled));
    assert!(e.m.job_pending(start), "waits for the stop to finish");
    e.exit(
        "a.container",
        ExitStatus::Signaled {
            signal: libc::SIGTERM,
            core_dumped: false,
        },
    );
    assert_eq!(e.m.job_result(start), Some(JobResult::Done));
    assert_eq!(e.state("a.container"), (ActiveState::Active, "running"));
    assert_eq!(e.m.runtime().count("create"), 2);
}

#[test]
fn cycles_across_transactions_are_refused_too() {
    let mut e = env(&[
        (
            "a.container",
            &notify_unit("After=b.container\nWants=b.container"),
        ),
        ("b.container", &notify_unit("")),
        (
            "c.container",
            &notify_unit("After=a.container\nBefore=b.container"),
        ),
    ]);
    e.m.start("a").unwrap();
    // b is activating (running job), a waits for it; c is ordered between them the other way
    let err = e.m.start("c").unwrap_err();
    assert!(matches!(err, Error::Cycle { .. }), "{err}");
}

#[test]
fn adopt_takes_over_a_running_unit() {
    let mut e = env(&[(
        "a.container",
        "[Container]\nImage=x\n[Service]\nType=notify\nWatchdogSec=1s\nRestart=always\n",
    )]);
    e.m.adopt("a", 4242).unwrap();
    assert_eq!(e.state("a.container"), (ActiveState::Active, "running"));
    assert_eq!(e.m.status("a").unwrap().main_pid, Some(4242));
    assert!(
        e.m.adopt("a", 1).is_err(),
        "only inactive units are adopted"
    );
    assert!(e.m.cfg.notify_dir.join("a.container/notify.sock").exists());
    e.advance(Duration::from_secs(1));
    assert_eq!(
        e.state("a.container"),
        (ActiveState::Deactivating, "stop-watchdog")
    );
    e.m.process_exited(
        4242,
        ExitStatus::Signaled {
            signal: libc::SIGABRT,
            core_dumped: true,
        },
    );
    assert_eq!(
        e.state("a.container"),
        (ActiveState::Activating, "auto-restart")
    );
}

#[test]
fn names_resolve_by_stem() {
    let e = env(&[
        ("a.container", SIMPLE),
        ("a.target", ""),
        ("b.target", "[Unit]\n"),
    ]);
    assert!(matches!(e.m.resolve("a"), Err(Error::Ambiguous(..))));
    assert_eq!(e.m.resolve("b").unwrap(), "b.target");
    assert_eq!(e.m.resolve("a.target").unwrap(), "a.target");
    assert!(matches!(e.m.resolve("x y"), Err(Error::BadName(_))));
}

#[test]
fn oneshot_has_no_start_timeout_by_default() {
    let mut e = env(&[(
        "o.container",
        "[Container]\nImage=x\n[Service]\nType=oneshot\n",
    )]);
    e.m.start("o").unwrap();
    assert_eq!(e.m.next_deadline(), None);
    e.advance(Duration::from_secs(3600));
    assert_eq!(e.state("o.container"), (ActiveState::Activating, "start"));
}

#[test]
fn the_manager_can_move_to_another_thread() {
    fn send<T: Send>(_: &T) {}
    let e = env(&[("a.container", SIMPLE)]);
    send(&e.m);
}
