//! The service state machine (systemd's service.c in outline): start-pre, start, start-post,
//! running; stop with SIGTERM then SIGKILL after TimeoutStopSec; the watchdog's SIGABRT;
//! restart policies with back-off and start limits.

use std::sync::Arc;

use nix::sys::signal::Signal;

use super::unit::{KillStage, Phase, Timer};
use super::Manager;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::events::EventSink;
use crate::notify::{Message, NotifySocket, SOCKET_NAME};
use crate::runtime::UnitRuntime;
use crate::state::{ExitStatus, JobKind, JobResult, UnitResult};
use crate::timespan;
use crate::unit_file::{NotifyAccess, RestartPolicy, ServiceType, UnitDef, UnitKind};

/// Longest `STATUS=` text kept.
const MAX_STATUS: usize = 512;

/// Whether `policy` restarts after a run that ended with `result` (systemd.service(5),
/// table 2).
pub fn should_restart(policy: RestartPolicy, result: UnitResult) -> bool {
    use UnitResult as R;
    match policy {
        RestartPolicy::No => false,
        RestartPolicy::Always => true,
        RestartPolicy::OnSuccess => result == R::Success,
        RestartPolicy::OnFailure => result != R::Success,
        RestartPolicy::OnAbnormal => {
            matches!(result, R::Signal | R::CoreDump | R::Timeout | R::Watchdog)
        }
        RestartPolicy::OnAbort => matches!(result, R::Signal | R::CoreDump),
        RestartPolicy::OnWatchdog => result == R::Watchdog,
    }
}

impl<R: UnitRuntime, S: EventSink, C: Clock> Manager<R, S, C> {
    fn def_of(&self, u: &str) -> Option<Arc<UnitDef>> {
        self.units.get(u).and_then(|x| x.run_def.clone())
    }

    /// Binds the unit's notify socket unless it has one or does not take notifications.
    pub(super) fn prepare_notify(&mut self, u: &str, def: &UnitDef) -> Result<()> {
        if def.service.effective_notify_access() == NotifyAccess::None
            || self.unit(u).notify.is_some()
        {
            return Ok(());
        }
        let sock = NotifySocket::bind(u, &self.cfg.notify_dir.join(u))?;
        self.unit(u).notify = Some(sock);
        Ok(())
    }

    /// Starts a run of `u` (from a start job or a restart timer).
    pub(super) fn begin_start(&mut self, u: &str) {
        let def = match self.loaded_def(u) {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("{e}");
                self.finish_job(u, JobResult::Failed);
                return;
            }
        };
        let now = self.clock.now();
        {
            let x = self.unit(u);
            let s = &def.service;
            while x
                .starts
                .front()
                .is_some_and(|t| now.saturating_sub(*t) >= s.start_limit_interval)
            {
                x.starts.pop_front();
            }
            if !s.start_limit_interval.is_zero()
                && s.start_limit_burst > 0
                && x.starts.len() >= s.start_limit_burst as usize
            {
                tracing::warn!("{u}: start request repeated too quickly");
                x.run_def = Some(def);
                self.enter_dead(u, UnitResult::StartLimitHit, false);
                return;
            }
            x.starts.push_back(now);
            x.run_def = Some(def.clone());
            x.result = UnitResult::Success;
            x.stop_result = UnitResult::Success;
            x.status_text = None;
            x.watchdog_override = None;
            x.last_main = None;
        }
        if def.kind == UnitKind::Target {
            self.set_phase(u, Phase::TargetActive);
            self.finish_start_job(u);
            return;
        }
        if let Err(e) = self.prepare_notify(u, &def) {
            tracing::warn!("{e}");
            self.enter_dead(u, UnitResult::Resources, true);
            return;
        }
        let mut spec = def.container.clone();
        if let Some(sock) = &self.unit(u).notify {
            let dir = sock.dir().to_path_buf();
            let inside = match &self.cfg.notify_dir_in_container {
                Some(p) => p.join(SOCKET_NAME),
                None => dir.join(SOCKET_NAME),
            };
            spec.env.push(format!("NOTIFY_SOCKET={}", inside.display()));
            spec.kos.notify_dir = Some(dir);
            spec.kos.notify_dir_in_container = self.cfg.notify_dir_in_container.clone();
        }
        if let Some(w) = def.service.watchdog {
            spec.env.push(format!("WATCHDOG_USEC={}", w.as_micros()));
        }
        if let Err(e) = self.runtime.create(u, &spec) {
            tracing::warn!(
                "{}",
                Error::Runtime {
                    unit: u.into(),
                    step: "create",
                    source: e
                }
            );
            self.enter_dead(u, UnitResult::Resources, true);
            return;
        }
        let x = self.unit(u);
        x.created = true;
        x.timer = def
            .service
            .timeout_start
            .map(|t| (now + t, Timer::StartTimeout));
        self.run_pre(u, 0);
    }

    fn run_pre(&mut self, u: &str, i: usize) {
        let Some(def) = self.def_of(u) else { return };
        let Some(cmd) = def.service.exec_start_pre.get(i) else {
            self.start_main(u);
            return;
        };
        match self.runtime.exec(u, cmd) {
            Ok(pid) => {
                self.unit(u).control = Some(pid);
                self.pids.insert(pid, (u.to_string(), false));
                self.set_phase(u, Phase::StartPre(i));
            }
            Err(e) => {
                tracing::warn!(
                    "{}",
                    Error::Runtime {
                        unit: u.into(),
                        step: "ExecStartPre",
                        source: e
                    }
                );
                self.enter_stop_final(u, UnitResult::Resources);
            }
        }
    }

    fn start_main(&mut self, u: &str) {
        let Some(def) = self.def_of(u) else { return };
        match self.runtime.start(u) {
            Ok(pid) => {
                let now = self.clock.now();
                let x = self.unit(u);
                x.init_pid = Some(pid);
                x.main_pid = Some(pid);
                x.watchdog_deadline = x.watchdog_period().map(|p| now + p);
                self.pids.insert(pid, (u.to_string(), true));
                self.set_phase(u, Phase::Start);
                if def.service.service_type == ServiceType::Simple {
                    self.run_post(u, 0);
                }
            }
            Err(e) => {
                tracing::warn!(
                    "{}",
                    Error::Runtime {
                        unit: u.into(),
                        step: "start",
                        source: e
                    }
                );
                self.enter_stop_final(u, UnitResult::Resources);
            }
        }
    }

    fn run_post(&mut self, u: &str, i: usize) {
        let Some(def) = self.def_of(u) else { return };
        let Some(cmd) = def.service.exec_start_post.get(i) else {
            self.enter_running(u);
            return;
        };
        match self.runtime.exec(u, cmd) {
            Ok(pid) => {
                self.unit(u).control = Some(pid);
                self.pids.insert(pid, (u.to_string(), false));
                self.set_phase(u, Phase::StartPost(i));
            }
            Err(e) => {
                tracing::warn!(
                    "{}",
                    Error::Runtime {
                        unit: u.into(),
                        step: "ExecStartPost",
                        source: e
                    }
                );
                self.enter_stop_final(u, UnitResult::Resources);
            }
        }
    }

    fn enter_running(&mut self, u: &str) {
        let Some(def) = self.def_of(u) else { return };
        self.unit(u).timer = None;
        if def.service.service_type == ServiceType::Oneshot {
            if def.service.remain_after_exit {
                self.set_phase(u, Phase::Exited);
                self.finish_start_job(u);
            } else {
                self.enter_dead(u, UnitResult::Success, true);
            }
            return;
        }
        self.set_phase(u, Phase::Running);
        self.finish_start_job(u);
    }

    fn finish_start_job(&mut self, u: &str) {
        if self
            .unit(u)
            .job
            .is_some_and(|j| j.kind == JobKind::Start && j.running)
        {
            self.finish_job(u, JobResult::Done);
        }
    }

    fn send_signal(&mut self, u: &str, sig: Signal) {
        if let Err(e) = self.runtime.kill(u, sig) {
            tracing::warn!(
                "{}",
                Error::Runtime {
                    unit: u.into(),
                    step: "kill",
                    source: e
                }
            );
        }
    }

    fn kill_and_wait(&mut self, u: &str, stage: KillStage, final_: bool) {
        let Some(def) = self.def_of(u) else { return };
        let sig = match stage {
            KillStage::Term => Signal::SIGTERM,
            KillStage::Abort => Signal::SIGABRT,
            KillStage::Kill => Signal::SIGKILL,
        };
        let wait = if stage == KillStage::Abort {
            def.service.abort_timeout()
        } else {
            def.service.timeout_stop
        };
        let now = self.clock.now();
        let x = self.unit(u);
        x.watchdog_deadline = None;
        x.timer = wait.map(|w| (now + w, Timer::StopTimeout));
        self.send_signal(u, sig);
        self.set_phase(u, Phase::Stopping { stage, final_ });
    }

    /// A requested stop.
    pub(super) fn begin_stop(&mut self, u: &str) {
        let x = self.unit(u);
        x.stop_result = UnitResult::Success;
        x.allow_restart = false;
        if x.init_pid.is_none() && x.control.is_none() {
            self.enter_dead(u, UnitResult::Success, false);
            return;
        }
        self.kill_and_wait(u, KillStage::Term, false);
    }

    /// Tear-down after a failure; the unit may restart afterwards.
    fn enter_stop_final(&mut self, u: &str, result: UnitResult) {
        let x = self.unit(u);
        x.stop_result = result;
        x.allow_restart = true;
        if x.init_pid.is_none() && x.control.is_none() {
            self.enter_dead(u, result, true);
            return;
        }
        self.kill_and_wait(u, KillStage::Term, true);
    }

    /// Nothing of the run is left: clean up, then restart, or go inactive/failed.
    pub(super) fn enter_dead(&mut self, u: &str, result: UnitResult, allow_restart: bool) {
        let created = {
            let x = self.unit(u);
            x.timer = None;
            x.watchdog_deadline = None;
            x.result = result;
            x.main_pid = None;
            std::mem::take(&mut x.created)
        };
        let stale: Vec<u32> = self
            .pids
            .iter()
            .filter(|(_, (n, _))| n == u)
            .map(|(p, _)| *p)
            .collect();
        for p in stale {
            self.pids.remove(&p);
        }
        let x = self.unit(u);
        x.init_pid = None;
        x.control = None;
        if created {
            if let Err(e) = self.runtime.remove(u) {
                tracing::warn!(
                    "{}",
                    Error::Runtime {
                        unit: u.into(),
                        step: "remove",
                        source: e
                    }
                );
            }
        }
        let def = self.def_of(u);
        let stopping = self.unit(u).job.is_some_and(|j| j.stop_like());
        if let Some(def) =
            def.filter(|_| allow_restart && !stopping && result != UnitResult::StartLimitHit)
        {
            if should_restart(def.service.restart, result) {
                let now = self.clock.now();
                let x = self.unit(u);
                let delay = def.service.restart_delay(x.n_restarts + 1);
                x.timer = Some((now + delay, Timer::Restart));
                tracing::info!(
                    "{u}: scheduled restart in {}",
                    timespan::format(Some(delay))
                );
                self.set_phase(u, Phase::AutoRestart);
                return;
            }
        }
        self.unit(u).notify = None;
        let failed = result != UnitResult::Success;
        self.set_phase(u, if failed { Phase::Failed } else { Phase::Dead });
        match self.unit(u).job {
            Some(j) if j.kind == JobKind::Start && j.running => self.finish_job(
                u,
                if failed {
                    JobResult::Failed
                } else {
                    JobResult::Done
                },
            ),
            Some(j) if j.stop_like() && j.running => self.stop_done(u),
            _ => {}
        }
        if failed {
            self.queue_on_failure(u);
        }
        self.queue_bound_stops(u);
    }

    pub(super) fn on_exit(&mut self, pid: u32, status: ExitStatus) {
        let Some((u, is_init)) = self.pids.remove(&pid) else {
            return;
        };
        let Some(def) = self.def_of(&u) else { return };
        let x = self.unit(&u);
        if is_init {
            if x.init_pid != Some(pid) {
                return;
            }
            x.init_pid = None;
            x.main_pid = None;
            x.last_main = Some((pid, status));
        } else {
            if x.control != Some(pid) {
                return;
            }
            x.control = None;
        }
        let phase = x.phase;
        let ok = matches!(status, ExitStatus::Exited(0));
        match phase {
            Phase::Stopping { .. } => {
                let x = self.unit(&u);
                if is_init
                    && x.stop_result == UnitResult::Success
                    && matches!(status, ExitStatus::Exited(c) if c != 0)
                {
                    x.stop_result = UnitResult::ExitCode;
                }
                if x.init_pid.is_none() && x.control.is_none() {
                    let (r, a) = (x.stop_result, x.allow_restart);
                    self.enter_dead(&u, r, a);
                }
            }
            Phase::StartPre(i) if !is_init => {
                let ignore = def
                    .service
                    .exec_start_pre
                    .get(i)
                    .is_some_and(|c| c.ignore_failure);
                if ok || ignore {
                    self.run_pre(&u, i + 1);
                } else {
                    tracing::warn!("{u}: ExecStartPre {} failed: {}", i + 1, status.describe());
                    self.enter_stop_final(&u, UnitResult::ExitCode);
                }
            }
            Phase::StartPost(i) if !is_init => {
                let ignore = def
                    .service
                    .exec_start_post
                    .get(i)
                    .is_some_and(|c| c.ignore_failure);
                if ok || ignore {
                    self.run_post(&u, i + 1);
                } else {
                    tracing::warn!("{u}: ExecStartPost {} failed: {}", i + 1, status.describe());
                    self.enter_stop_final(&u, UnitResult::ExitCode);
                }
            }
            Phase::Start if is_init && def.service.service_type == ServiceType::Oneshot => {
                if status.result() == UnitResult::Success {
                    self.run_post(&u, 0);
                } else {
                    self.enter_dead(&u, status.result(), true);
                }
            }
            Phase::Start | Phase::StartPost(_) | Phase::Running if is_init => {
                let mut r = status.result();
                if phase == Phase::Start
                    && def.service.service_type == ServiceType::Notify
                    && r == UnitResult::Success
                {
                    // exited cleanly without ever saying READY=1
                    r = UnitResult::Protocol;
                }
                if self.unit(&u).control.is_some() {
                    self.enter_stop_final(&u, r);
                } else {
                    self.enter_dead(&u, r, true);
                }
            }
            _ => {}
        }
    }

    pub(super) fn on_timer(&mut self, u: &str, t: super::unit::Timer) {
        let phase = self.unit(u).phase;
        match t {
            Timer::StartTimeout => {
                tracing::warn!("{u}: start operation timed out, terminating");
                self.enter_stop_final(u, UnitResult::Timeout);
            }
            Timer::StopTimeout => match phase {
                Phase::Stopping {
                    stage: KillStage::Kill,
                    ..
                } => {
                    tracing::warn!("{u}: processes still around after SIGKILL, giving up on them");
                    let x = self.unit(u);
                    let (r, a) = (x.stop_result, x.allow_restart);
                    self.enter_dead(u, r, a);
                }
                Phase::Stopping { final_, .. } => {
                    tracing::warn!("{u}: stop timed out, killing");
                    let x = self.unit(u);
                    if x.stop_result == UnitResult::Success {
                        x.stop_result = UnitResult::Timeout;
                    }
                    self.kill_and_wait(u, KillStage::Kill, final_);
                }
                _ => {}
            },
            Timer::Restart => {
                if phase == Phase::AutoRestart {
                    self.unit(u).n_restarts += 1;
                    self.begin_start(u);
                }
            }
        }
    }

    pub(super) fn on_watchdog(&mut self, u: &str) {
        let x = self.unit(u);
        if !matches!(x.phase, Phase::Start | Phase::StartPost(_) | Phase::Running)
            || x.init_pid.is_none()
        {
            return;
        }
        tracing::warn!("{u}: watchdog timeout, killing with SIGABRT");
        x.stop_result = UnitResult::Watchdog;
        x.allow_restart = true;
        self.kill_and_wait(u, KillStage::Abort, false);
    }

    pub(super) fn on_notify(&mut self, u: &str, m: Message) {
        let Some(def) = self.def_of(u) else { return };
        let x = self.unit(u);
        if !x.phase.is_up() || x.init_pid.is_none() {
            tracing::debug!("{u}: notify message while not running, ignored");
            return;
        }
        // A bare BARRIER=1 asks for nothing: no need to check who sent it.
        if m.fields.iter().all(|(k, _)| k == "BARRIER") {
            return;
        }
        let from_main = m.pid != 0 && x.main_pid == Some(m.pid);
        let allowed = m.pid != 0
            && match def.service.effective_notify_access() {
                NotifyAccess::None => false,
                NotifyAccess::Main => from_main,
                NotifyAccess::All => from_main || self.runtime.owns_pid(u, m.pid),
            };
        if !allowed {
            tracing::warn!(
                "{u}: notify message from pid {} refused: not a process of the unit",
                m.pid
            );
            return;
        }
        for (k, v) in m.fields {
            match (k.as_str(), v.as_str()) {
                ("READY", "1")
                    if self.unit(u).phase == Phase::Start
                        && def.service.service_type == ServiceType::Notify =>
                {
                    self.run_post(u, 0);
                }
                ("STATUS", text) => {
                    let mut t = text.to_string();
                    if t.len() > MAX_STATUS {
                        let mut cut = MAX_STATUS;
                        while !t.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        t.truncate(cut);
                    }
                    self.unit(u).status_text = Some(t);
                }
                ("WATCHDOG", "1") => {
                    let now = self.clock.now();
                    let x = self.unit(u);
                    if x.watchdog_deadline.is_some() {
                        x.watchdog_deadline = x.watchdog_period().map(|p| now + p);
                    }
                }
                ("WATCHDOG", "trigger") => self.on_watchdog(u),
                ("WATCHDOG_USEC", n) => {
                    if let Ok(Some(p)) = timespan::parse_with_default_unit(n, 1_000) {
                        if !p.is_zero() {
                            let now = self.clock.now();
                            let x = self.unit(u);
                            x.watchdog_override = Some(p);
                            x.watchdog_deadline = Some(now + p);
                        }
                    }
                }
                ("MAINPID", n) => {
                    let pid = n.parse::<u32>().ok().filter(|p| *p > 0);
                    let trusted = from_main && pid.is_some_and(|p| self.runtime.owns_pid(u, p));
                    if trusted {
                        self.unit(u).main_pid = pid;
                        self.emit(u);
                    } else {
                        tracing::warn!("{u}: MAINPID={n} from pid {} ignored (not trusted)", m.pid);
                    }
                }
                ("STOPPING", "1") => {
                    if matches!(
                        self.unit(u).phase,
                        Phase::Start | Phase::StartPost(_) | Phase::Running
                    ) {
                        let now = self.clock.now();
                        let x = self.unit(u);
                        x.stop_result = UnitResult::Success;
                        x.allow_restart = true;
                        x.watchdog_deadline = None;
                        x.timer = def
                            .service
                            .timeout_stop
                            .map(|w| (now + w, Timer::StopTimeout));
                        self.set_phase(
                            u,
                            Phase::Stopping {
                                stage: KillStage::Term,
                                final_: false,
                            },
                        );
                    }
                }
                _ => {}
            }
        }
    }
}
