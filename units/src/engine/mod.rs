//! The unit manager: systemd's job engine and service state machine over a
//! [`UnitRuntime`].
//!
//! The manager is single-threaded and event-driven, with no I/O loop of its own: the host
//! calls [`Manager::process_exited`] when a process the runtime started ends,
//! [`Manager::drain_notify`] when a unit's notify socket ([`Manager::notify_fds`]) is
//! readable, and [`Manager::tick`] when [`Manager::next_deadline`] has passed. Every call
//! runs the engine until nothing more can move. `runtime::process::drive` is such a loop
//! for plain processes.

mod graph;
mod jobs;
mod service;
mod unit;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::events::{EventSink, UnitEvent};
use crate::loader::{self, InstallChange, Loaded, UnitPaths, UnitSet};
use crate::runtime::UnitRuntime;
use crate::state::{ActiveState, ExitStatus, JobId, JobKind, JobResult, UnitResult};
use crate::status::UnitStatus;
use crate::unit_file::{UnitDef, UnitKind};

use graph::Graph;
use unit::{Phase, Unit};

/// Where the manager finds units and puts its sockets.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    pub paths: UnitPaths,
    /// Host directory under which each unit gets `<unit>/notify.sock`.
    pub notify_dir: PathBuf,
    /// Where the runtime binds the unit's notify directory inside its container
    /// (e.g. `/run/kos/notify`); `NOTIFY_SOCKET` then points there. None: the processes
    /// see the host's filesystem and `NOTIFY_SOCKET` is the host path.
    pub notify_dir_in_container: Option<PathBuf>,
}

/// Deferred work raised inside a state change, run once the change is complete.
#[derive(Debug)]
enum Deferred {
    /// OnFailure= activation.
    Start(String),
    /// BindsTo=: the bound unit went away.
    Stop(String),
}

/// Notify messages handled per unit and [`Manager::drain_notify`] call.
const MAX_NOTIFY_PER_DRAIN: usize = 64;

/// How many finished job results are kept for [`Manager::job_result`].
const KEEP_JOB_RESULTS: usize = 1024;

pub struct Manager<R: UnitRuntime, S: EventSink, C: Clock> {
    cfg: ManagerConfig,
    runtime: R,
    sink: S,
    clock: C,
    set: UnitSet,
    graph: Graph,
    units: BTreeMap<String, Unit>,
    /// Processes we wait for: pid -> (unit, is the init).
    pids: HashMap<u32, (String, bool)>,
    next_job: JobId,
    finished: VecDeque<(JobId, JobResult)>,
    deferred: VecDeque<Deferred>,
}

impl<R: UnitRuntime, S: EventSink, C: Clock> Manager<R, S, C> {
    /// Loads the units; nothing is started.
    pub fn new(cfg: ManagerConfig, runtime: R, sink: S, clock: C) -> Result<Self> {
        let set = loader::load(&cfg.paths)?;
        let graph = Graph::build(&set);
        let units = set.units.keys().map(|n| (n.clone(), Unit::new())).collect();
        Ok(Manager {
            cfg,
            runtime,
            sink,
            clock,
            set,
            graph,
            units,
            pids: HashMap::new(),
            next_job: 1,
            finished: VecDeque::new(),
            deferred: VecDeque::new(),
        })
    }

    pub fn runtime(&self) -> &R {
        &self.runtime
    }
    pub fn runtime_mut(&mut self) -> &mut R {
        &mut self.runtime
    }
    pub fn clock(&self) -> &C {
        &self.clock
    }
    pub fn sink(&self) -> &S {
        &self.sink
    }
    pub fn sink_mut(&mut self) -> &mut S {
        &mut self.sink
    }

    /// `kos-dns` -> `kos-dns.container` when that is the only unit of that stem.
    pub fn resolve(&self, name: &str) -> Result<String> {
        if self.units.contains_key(name) || self.set.units.contains_key(name) {
            return Ok(name.to_string());
        }
        if UnitKind::of_name(name).is_some() {
            return Err(Error::NotFound(name.to_string()));
        }
        let candidates: Vec<String> = [".container", ".target"]
            .iter()
            .map(|s| format!("{name}{s}"))
            .filter(|n| self.units.contains_key(n))
            .collect();
        match candidates.len() {
            0 if UnitKind::of_name(&format!("{name}.container")).is_none() => {
                Err(Error::BadName(name.to_string()))
            }
            0 => Err(Error::NotFound(name.to_string())),
            1 => Ok(candidates[0].clone()),
            _ => Err(Error::Ambiguous(name.to_string(), candidates.join(", "))),
        }
    }

    /// Queues a start transaction (Requires/Wants/BindsTo pulled in, Conflicts stopped).
    pub fn start(&mut self, name: &str) -> Result<JobId> {
        let name = self.resolve(name)?;
        let id = self.transaction(&name, JobKind::Start)?;
        self.settle();
        Ok(id)
    }

    /// Queues a stop transaction (units that require or are bound to it stop first).
    pub fn stop(&mut self, name: &str) -> Result<JobId> {
        let name = self.resolve(name)?;
        let id = self.transaction(&name, JobKind::Stop)?;
        self.settle();
        Ok(id)
    }

    /// Stop then start; units requiring it are restarted too. An inactive unit is started.
    pub fn restart(&mut self, name: &str) -> Result<JobId> {
        let name = self.resolve(name)?;
        let kind = if self.unit_ref(&name).is_some_and(|u| u.phase.is_inactive()) {
            JobKind::Start
        } else {
            JobKind::Restart
        };
        let id = self.transaction(&name, kind)?;
        self.settle();
        Ok(id)
    }

    /// Stops every unit that is not inactive, in reverse dependency order (kosd's shutdown).
    pub fn stop_all(&mut self) -> Result<()> {
        let up: Vec<String> = self
            .units
            .iter()
            .filter(|(_, u)| !u.phase.is_inactive())
            .map(|(n, _)| n.clone())
            .collect();
        for n in up {
            self.transaction(&n, JobKind::Stop)?;
        }
        self.settle();
        Ok(())
    }

    /// Clears a failed unit's result and its start-limit history.
    pub fn reset_failed(&mut self, name: &str) -> Result<()> {
        let name = self.resolve(name)?;
        let u = self.unit(&name);
        u.starts.clear();
        u.n_restarts = 0;
        if u.phase == Phase::Failed {
            u.result = UnitResult::Success;
            self.set_phase(&name, Phase::Dead);
        }
        Ok(())
    }

    /// The result of a finished job; None while it is pending (or long forgotten).
    pub fn job_result(&self, id: JobId) -> Option<JobResult> {
        self.finished
            .iter()
            .find(|(j, _)| *j == id)
            .map(|(_, r)| *r)
    }

    /// Whether a job is still queued or running.
    pub fn job_pending(&self, id: JobId) -> bool {
        self.units
            .values()
            .any(|u| u.job.is_some_and(|j| j.id == id))
    }

    /// Re-reads the unit files. Running units keep running with the definition they were
    /// started with; the new one applies at their next start. Units whose file is gone are
    /// forgotten once inactive.
    pub fn reload(&mut self) -> Result<()> {
        let set = loader::load(&self.cfg.paths)?;
        self.graph = Graph::build(&set);
        for n in set.units.keys() {
            self.units.entry(n.clone()).or_insert_with(Unit::new);
        }
        self.units.retain(|n, u| {
            set.units.contains_key(n) || !(u.phase.is_inactive() && u.job.is_none())
        });
        self.set = set;
        self.settle();
        Ok(())
    }

    /// Makes the `[Install]` links; takes effect at the next [`Manager::reload`].
    pub fn enable(&mut self, name: &str) -> Result<Vec<InstallChange>> {
        let name = self.resolve(name)?;
        let def = self.loaded_def(&name)?;
        loader::enable(&def, &self.cfg.paths.enable_dir)
    }

    pub fn disable(&mut self, name: &str) -> Result<Vec<InstallChange>> {
        let name = self.resolve(name)?;
        loader::disable(&name, &self.cfg.paths.enable_dir)
    }

    /// The loaded definition of a unit (None when it is not loaded, bad or masked).
    pub fn definition(&self, name: &str) -> Option<&UnitDef> {
        match self.set.units.get(name) {
            Some(Loaded::Ok(d)) => Some(d),
            _ => None,
        }
    }

    /// `systemctl cat`.
    pub fn cat(&self, name: &str) -> Result<String> {
        let name = self.resolve(name)?;
        let l = self
            .set
            .units
            .get(&name)
            .ok_or_else(|| Error::NotFound(name.clone()))?;
        loader::cat(l)
    }

    /// Takes over a unit whose container is already running (kosd's live-restore): the unit
    /// becomes active (running) with `init_pid` as its main process, without a start.
    pub fn adopt(&mut self, name: &str, init_pid: u32) -> Result<()> {
        let name = self.resolve(name)?;
        let def = self.loaded_def(&name)?;
        if !self.unit(&name).phase.is_inactive() {
            return Err(Error::BadUnit {
                unit: name,
                msg: "cannot adopt a unit that is not inactive".into(),
            });
        }
        self.prepare_notify(&name, &def)?;
        let now = self.clock.now();
        let u = self.unit(&name);
        u.run_def = Some(def);
        u.created = true;
        u.init_pid = Some(init_pid);
        u.main_pid = Some(init_pid);
        u.watchdog_deadline = u.watchdog_period().map(|p| now + p);
        self.pids.insert(init_pid, (name.clone(), true));
        self.set_phase(&name, Phase::Running);
        Ok(())
    }

    /// Reports that a process the runtime started (main or ExecStartPre/Post) ended.
    pub fn process_exited(&mut self, pid: u32, status: ExitStatus) {
        self.on_exit(pid, status);
        self.settle();
    }

    /// The notify sockets to poll for readability.
    pub fn notify_fds(&self) -> Vec<(String, RawFd)> {
        self.units
            .iter()
            .filter_map(|(n, u)| {
                u.notify
                    .as_ref()
                    .map(|s| (n.clone(), s.as_fd().as_raw_fd()))
            })
            .collect()
    }

    /// Reads and applies every queued message on `unit`'s notify socket.
    pub fn drain_notify(&mut self, unit: &str) {
        let mut msgs = Vec::new();
        if let Some(s) = self.units.get(unit).and_then(|u| u.notify.as_ref()) {
            // Bounded, so a unit flooding its socket cannot hold the manager; the rest stays
            // queued and the socket stays readable.
            while msgs.len() < MAX_NOTIFY_PER_DRAIN {
                let Some(m) = s.recv() else { break };
                msgs.push(m);
            }
        }
        for m in msgs {
            self.on_notify(unit, m);
        }
        self.settle();
    }

    /// Drains every unit's notify socket.
    pub fn drain_all_notify(&mut self) {
        let names: Vec<String> = self.notify_fds().into_iter().map(|(n, _)| n).collect();
        for n in names {
            self.drain_notify(&n);
        }
    }

    /// When [`Manager::tick`] must next be called (monotonic, as [`Clock::now`]).
    pub fn next_deadline(&self) -> Option<Duration> {
        self.units
            .values()
            .flat_map(|u| [u.timer.map(|(t, _)| t), u.watchdog_deadline])
            .flatten()
            .min()
    }

    /// Fires due timers: start/stop timeouts, restarts, watchdogs.
    pub fn tick(&mut self) {
        let now = self.clock.now();
        let names: Vec<String> = self.units.keys().cloned().collect();
        for n in names {
            let Some(u) = self.units.get_mut(&n) else {
                continue;
            };
            if let Some((at, t)) = u.timer {
                if at <= now {
                    u.timer = None;
                    self.on_timer(&n, t);
                }
            }
            let Some(u) = self.units.get_mut(&n) else {
                continue;
            };
            if u.watchdog_deadline.is_some_and(|d| d <= now) {
                u.watchdog_deadline = None;
                self.on_watchdog(&n);
            }
        }
        self.settle();
    }

    pub fn active_state(&self, name: &str) -> Option<ActiveState> {
        self.units.get(name).map(|u| u.phase.active_state())
    }

    pub fn sub_state(&self, name: &str) -> Option<&'static str> {
        self.units.get(name).map(|u| u.phase.sub_state())
    }

    /// A snapshot for `status` and `list`.
    pub fn status(&self, name: &str) -> Result<UnitStatus> {
        let name = self.resolve(name)?;
        let u = self
            .units
            .get(&name)
            .ok_or_else(|| Error::NotFound(name.clone()))?;
        let loaded = self.set.units.get(&name);
        let (load_state, load_error, fragment, dropins, description) = match loaded {
            Some(Loaded::Ok(d)) => (
                "loaded",
                None,
                Some(d.fragment.clone()),
                d.dropins.clone(),
                d.description.clone(),
            ),
            Some(Loaded::Error { fragment, msg }) => (
                "bad-setting",
                Some(msg.clone()),
                Some(fragment.clone()),
                vec![],
                String::new(),
            ),
            Some(Loaded::Masked { fragment }) => (
                "masked",
                None,
                Some(fragment.clone()),
                vec![],
                String::new(),
            ),
            None => ("not-found", None, None, vec![], String::new()),
        };
        let description = u
            .run_def
            .as_ref()
            .map(|d| d.description.clone())
            .filter(|_| description.is_empty())
            .unwrap_or(description);
        Ok(UnitStatus {
            name: name.clone(),
            description,
            load_state,
            load_error,
            fragment,
            dropins,
            file_state: loader::file_state(&self.set, &name),
            preset: if self.set.preset_enabled(&name) {
                "enabled"
            } else {
                "disabled"
            },
            active_state: u.phase.active_state(),
            sub_state: u.phase.sub_state(),
            result: u.result,
            since: u.since,
            main_pid: u.main_pid,
            last_main: u.last_main,
            status_text: u.status_text.clone(),
            cgroup: if u.created {
                self.runtime.cgroup(&name)
            } else {
                None
            },
            job: u.job.map(|j| (j.id, j.kind)),
            n_restarts: u.n_restarts,
        })
    }

    /// Every known unit, sorted by name.
    pub fn list(&self) -> Vec<UnitStatus> {
        self.units
            .keys()
            .filter_map(|n| self.status(n).ok())
            .collect()
    }

    pub fn now_wall(&self) -> SystemTime {
        self.clock.wall()
    }

    // ---- internals shared by the engine's modules ----

    fn unit(&mut self, name: &str) -> &mut Unit {
        self.units.entry(name.to_string()).or_insert_with(Unit::new)
    }

    fn unit_ref(&self, name: &str) -> Option<&Unit> {
        self.units.get(name)
    }

    fn loaded_def(&self, name: &str) -> Result<Arc<UnitDef>> {
        match self.set.units.get(name) {
            Some(Loaded::Ok(d)) => Ok(Arc::new((**d).clone())),
            Some(Loaded::Error { msg, .. }) => Err(Error::BadUnit {
                unit: name.to_string(),
                msg: msg.clone(),
            }),
            Some(Loaded::Masked { .. }) => Err(Error::BadUnit {
                unit: name.to_string(),
                msg: "unit is masked".into(),
            }),
            None => Err(Error::NotFound(name.to_string())),
        }
    }

    fn set_phase(&mut self, name: &str, phase: Phase) {
        let wall = self.clock.wall();
        let u = self.unit(name);
        if u.phase.active_state() != phase.active_state() || u.since.is_none() {
            u.since = Some(wall);
        }
        u.phase = phase;
        self.emit(name);
    }

    fn emit(&mut self, name: &str) {
        let wall = self.clock.wall();
        let u = self.unit(name);
        let now = (
            u.phase.active_state(),
            u.phase.sub_state(),
            u.result,
            u.main_pid,
        );
        if u.last_emitted == Some(now) {
            return;
        }
        u.last_emitted = Some(now);
        let ev = UnitEvent {
            unit: name.to_string(),
            active_state: now.0,
            sub_state: now.1,
            result: now.2,
            main_pid: now.3,
            time: wall,
        };
        tracing::debug!(unit = name, state = %ev.active_state, sub = ev.sub_state, result = %ev.result, "unit state");
        self.sink.unit_changed(&ev);
    }

    /// Runs deferred work and queued jobs until nothing moves.
    fn settle(&mut self) {
        loop {
            let mut moved = self.dispatch();
            while let Some(d) = self.deferred.pop_front() {
                moved = true;
                match d {
                    Deferred::Start(n) => {
                        if let Err(e) = self.transaction(&n, JobKind::Start) {
                            tracing::warn!("OnFailure= activation of {n}: {e}");
                        }
                    }
                    Deferred::Stop(n) => {
                        let up = self
                            .units
                            .get(&n)
                            .is_some_and(|u| u.phase.is_up() && u.job.is_none());
                        if up {
                            if let Err(e) = self.transaction(&n, JobKind::Stop) {
                                tracing::warn!("BindsTo= stop of {n}: {e}");
                            }
                        }
                    }
                }
            }
            if !moved {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests;
