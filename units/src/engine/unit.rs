//! A unit's runtime record and the phases of its state machine.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::notify::NotifySocket;
use crate::state::{ActiveState, ExitStatus, JobId, JobKind, UnitResult};
use crate::unit_file::UnitDef;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KillStage {
    /// SIGTERM sent (or STOPPING=1 announced).
    Term,
    /// The watchdog's SIGABRT sent.
    Abort,
    Kill,
}

/// Where a unit is; each maps onto systemd's active state and sub-state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    Dead,
    Failed,
    StartPre(usize),
    Start,
    StartPost(usize),
    Running,
    /// Oneshot with RemainAfterExit=yes, after its process exited.
    Exited,
    /// `final_`: stopping because the unit failed, not because it was asked to stop.
    Stopping {
        stage: KillStage,
        final_: bool,
    },
    AutoRestart,
    /// A target that was reached.
    TargetActive,
}

impl Phase {
    pub fn active_state(self) -> ActiveState {
        match self {
            Phase::Dead => ActiveState::Inactive,
            Phase::Failed => ActiveState::Failed,
            Phase::StartPre(_) | Phase::Start | Phase::StartPost(_) | Phase::AutoRestart => {
                ActiveState::Activating
            }
            Phase::Running | Phase::Exited | Phase::TargetActive => ActiveState::Active,
            Phase::Stopping { .. } => ActiveState::Deactivating,
        }
    }

    pub fn sub_state(self) -> &'static str {
        match self {
            Phase::Dead => "dead",
            Phase::Failed => "failed",
            Phase::StartPre(_) => "start-pre",
            Phase::Start => "start",
            Phase::StartPost(_) => "start-post",
            Phase::Running => "running",
            Phase::Exited => "exited",
            Phase::TargetActive => "active",
            Phase::AutoRestart => "auto-restart",
            Phase::Stopping { stage, final_ } => match (stage, final_) {
                (KillStage::Term, false) => "stop-sigterm",
                (KillStage::Kill, false) => "stop-sigkill",
                (KillStage::Abort, false) => "stop-watchdog",
                (KillStage::Term, true) => "final-sigterm",
                (KillStage::Kill, true) => "final-sigkill",
                (KillStage::Abort, true) => "final-watchdog",
            },
        }
    }

    pub fn is_inactive(self) -> bool {
        matches!(self, Phase::Dead | Phase::Failed)
    }

    /// Something runs or is being started/stopped (not inactive, not waiting to restart).
    pub fn is_up(self) -> bool {
        !matches!(self, Phase::Dead | Phase::Failed | Phase::AutoRestart)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    StartTimeout,
    StopTimeout,
    Restart,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Job {
    pub id: JobId,
    pub kind: JobKind,
    /// The job has acted on the unit and waits for it to get there.
    pub running: bool,
}

impl Job {
    pub fn stop_like(&self) -> bool {
        matches!(self.kind, JobKind::Stop | JobKind::Restart)
    }
}

type Emitted = (ActiveState, &'static str, UnitResult, Option<u32>);

#[derive(Debug)]
pub(crate) struct Unit {
    pub phase: Phase,
    pub result: UnitResult,
    /// When the active state last changed.
    pub since: Option<SystemTime>,
    /// The process whose exit ends the unit (the container's init, as `start` returned).
    pub init_pid: Option<u32>,
    /// The main pid shown and trusted for NotifyAccess=main: `init_pid`, or what a trusted
    /// MAINPID= said.
    pub main_pid: Option<u32>,
    pub last_main: Option<(u32, ExitStatus)>,
    pub control: Option<u32>,
    pub status_text: Option<String>,
    pub job: Option<Job>,
    pub timer: Option<(Duration, Timer)>,
    pub watchdog_deadline: Option<Duration>,
    pub watchdog_override: Option<Duration>,
    pub n_restarts: u32,
    pub starts: VecDeque<Duration>,
    pub notify: Option<NotifySocket>,
    /// The definition of the current run (a reload applies at the next start).
    pub run_def: Option<Arc<UnitDef>>,
    pub stop_result: UnitResult,
    pub allow_restart: bool,
    pub created: bool,
    pub last_emitted: Option<Emitted>,
}

impl Unit {
    pub fn new() -> Unit {
        Unit {
            phase: Phase::Dead,
            result: UnitResult::Success,
            since: None,
            init_pid: None,
            main_pid: None,
            last_main: None,
            control: None,
            status_text: None,
            job: None,
            timer: None,
            watchdog_deadline: None,
            watchdog_override: None,
            n_restarts: 0,
            starts: VecDeque::new(),
            notify: None,
            run_def: None,
            stop_result: UnitResult::Success,
            allow_restart: false,
            created: false,
            last_emitted: None,
        }
    }

    pub fn watchdog_period(&self) -> Option<Duration> {
        self.watchdog_override
            .or_else(|| self.run_def.as_ref().and_then(|d| d.service.watchdog))
    }
}
