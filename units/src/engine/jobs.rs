//! Transactions and the job queue, with systemd's ordering rules: for two units ordered
//! `A After B`, starts run B then A, stops run A then B, and a stop runs before a start
//! whichever way they are ordered. Jobs whose predecessors are done run together.

use std::collections::{BTreeMap, BTreeSet};

use super::graph::get;
use super::unit::{Job, Phase};
use super::{Deferred, Manager, KEEP_JOB_RESULTS};
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::events::{EventSink, JobEvent};
use crate::loader::Loaded;
use crate::runtime::UnitRuntime;
use crate::state::{JobId, JobKind, JobResult, UnitResult};

type Tx = BTreeMap<String, JobKind>;

impl<R: UnitRuntime, S: EventSink, C: Clock> Manager<R, S, C> {
    /// Builds, checks and installs the jobs of one request. Returns the anchor's job id.
    pub(super) fn transaction(&mut self, anchor: &str, kind: JobKind) -> Result<JobId> {
        let mut tx = Tx::new();
        match kind {
            JobKind::Start => self.tx_start(anchor, anchor, &mut tx)?,
            JobKind::Stop => self.tx_stop(anchor, anchor, &mut tx)?,
            JobKind::Restart => self.tx_restart(anchor, anchor, &mut tx)?,
        }
        // Jobs of earlier transactions still queued are ordered against these too.
        let pending = self
            .units
            .iter()
            .filter(|(_, x)| x.job.is_some())
            .map(|(n, _)| n.clone());
        let nodes: BTreeSet<String> = tx.keys().cloned().chain(pending).collect();
        if let Some(cycle) = self.graph.find_cycle(&nodes) {
            return Err(Error::Cycle {
                anchor: anchor.to_string(),
                cycle,
            });
        }
        let mut anchor_id = 0;
        for (u, k) in tx {
            // Stopping what is already stopped is a no-op, not a job.
            let idle = self
                .units
                .get(&u)
                .is_none_or(|x| x.phase.is_inactive() && x.job.is_none());
            if k == JobKind::Stop && idle && u != anchor {
                continue;
            }
            let id = self.install_job(&u, k);
            if u == anchor {
                anchor_id = id;
            }
        }
        Ok(anchor_id)
    }

    fn tx_start(&self, u: &str, anchor: &str, tx: &mut Tx) -> Result<()> {
        match tx.get(u) {
            Some(JobKind::Stop) => {
                return Err(Error::Dependency {
                    anchor: anchor.into(),
                    unit: u.into(),
                    why: "both to be started and stopped (Conflicts=)".into(),
                })
            }
            Some(_) => return Ok(()),
            None => {}
        }
        let why = match self.set.units.get(u) {
            Some(Loaded::Ok(_)) => None,
            Some(Loaded::Error { msg, .. }) => Some(format!("not loaded: {msg}")),
            Some(Loaded::Masked { .. }) => Some("masked".to_string()),
            None => Some("not found".to_string()),
        };
        if let Some(why) = why {
            return Err(Error::Dependency {
                anchor: anchor.into(),
                unit: u.into(),
                why,
            });
        }
        tx.insert(u.to_string(), JobKind::Start);
        let required: Vec<String> = get(&self.graph.requires, u)
            .chain(get(&self.graph.binds_to, u))
            .cloned()
            .collect();
        for r in required {
            self.tx_start(&r, anchor, tx)?;
        }
        let wanted: Vec<String> = get(&self.graph.wants, u).cloned().collect();
        for w in wanted {
            let before = tx.clone();
            if let Err(e) = self.tx_start(&w, anchor, tx) {
                tracing::warn!("{u} wants {w}, not pulled in: {e}");
                *tx = before;
            }
        }
        let conflicts: Vec<String> = get(&self.graph.conflicts, u).cloned().collect();
        for c in conflicts {
            self.tx_stop(&c, anchor, tx)?;
        }
        Ok(())
    }

    fn tx_stop(&self, u: &str, anchor: &str, tx: &mut Tx) -> Result<()> {
        match tx.get(u) {
            Some(JobKind::Start) => {
                return Err(Error::Dependency {
                    anchor: anchor.into(),
                    unit: u.into(),
                    why: "both to be started and stopped (Conflicts=)".into(),
                })
            }
            Some(_) => return Ok(()),
            None => {}
        }
        tx.insert(u.to_string(), JobKind::Stop);
        let dependents: Vec<String> = get(&self.graph.required_by, u)
            .chain(get(&self.graph.bound_by, u))
            .cloned()
            .collect();
        for d in dependents {
            self.tx_stop(&d, anchor, tx)?;
        }
        Ok(())
    }

    fn tx_restart(&self, u: &str, anchor: &str, tx: &mut Tx) -> Result<()> {
        if tx.contains_key(u) {
            return Ok(());
        }
        if !matches!(self.set.units.get(u), Some(Loaded::Ok(_))) {
            return Err(Error::Dependency {
                anchor: anchor.into(),
                unit: u.into(),
                why: "not loaded".into(),
            });
        }
        tx.insert(u.to_string(), JobKind::Restart);
        let dependents: Vec<String> = get(&self.graph.required_by, u)
            .chain(get(&self.graph.bound_by, u))
            .cloned()
            .collect();
        for d in dependents {
            if self.units.get(&d).is_some_and(|x| x.phase.is_up()) {
                self.tx_restart(&d, anchor, tx)?;
            }
        }
        let required: Vec<String> = get(&self.graph.requires, u)
            .chain(get(&self.graph.binds_to, u))
            .cloned()
            .collect();
        for r in required {
            self.tx_start(&r, anchor, tx)?;
        }
        Ok(())
    }

    /// Puts a job on a unit, merging with or replacing the one it has.
    fn install_job(&mut self, u: &str, kind: JobKind) -> JobId {
        if let Some(j) = self.unit(u).job {
            if j.kind == kind || (j.kind == JobKind::Restart && kind == JobKind::Start) {
                return j.id;
            }
            self.finish_job(u, JobResult::Canceled);
        }
        let id = self.next_job;
        self.next_job += 1;
        self.unit(u).job = Some(Job {
            id,
            kind,
            running: false,
        });
        id
    }

    /// Whether `u`'s waiting job may run now.
    fn runnable(&self, u: &str) -> bool {
        let Some(job) = self.units.get(u).and_then(|x| x.job) else {
            return false;
        };
        let job_of = |n: &String| self.units.get(n).and_then(|x| x.job);
        if job.kind == JobKind::Start && get(&self.graph.after, u).any(|v| job_of(v).is_some()) {
            return false;
        }
        !get(&self.graph.before, u).any(|w| job_of(w).is_some_and(|j| j.stop_like()))
    }

    /// Runs every job that may run; true when something happened.
    pub(super) fn dispatch(&mut self) -> bool {
        let mut any = false;
        loop {
            let waiting: Vec<String> = self
                .units
                .iter()
                .filter(|(_, x)| x.job.is_some_and(|j| !j.running))
                .map(|(n, _)| n.clone())
                .collect();
            let mut moved = false;
            for n in waiting {
                if self
                    .units
                    .get(&n)
                    .and_then(|x| x.job)
                    .is_some_and(|j| !j.running)
                    && self.runnable(&n)
                    && self.run_job(&n)
                {
                    moved = true;
                }
            }
            if !moved {
                return any;
            }
            any = true;
        }
    }

    fn mark_running(&mut self, u: &str) {
        if let Some(j) = self.unit(u).job.as_mut() {
            j.running = true;
        }
    }

    /// Acts on `u`'s job; false when it has to wait for the unit (still stopping).
    fn run_job(&mut self, u: &str) -> bool {
        let Some(job) = self.unit(u).job else {
            return false;
        };
        let phase = self.unit(u).phase;
        if job.kind == JobKind::Start {
            if !matches!(self.set.units.get(u), Some(Loaded::Ok(_))) {
                self.finish_job(u, JobResult::Failed);
                return true;
            }
            match phase {
                Phase::Running | Phase::Exited | Phase::TargetActive => {
                    self.finish_job(u, JobResult::Done)
                }
                Phase::Dead | Phase::Failed => {
                    self.unit(u).n_restarts = 0;
                    self.mark_running(u);
                    self.begin_start(u);
                }
                Phase::AutoRestart => {
                    self.unit(u).timer = None;
                    self.mark_running(u);
                    self.begin_start(u);
                }
                Phase::StartPre(_) | Phase::Start | Phase::StartPost(_) => self.mark_running(u),
                Phase::Stopping { .. } => return false,
            }
            return true;
        }
        match phase {
            Phase::Dead | Phase::Failed => self.stop_done(u),
            Phase::TargetActive => {
                self.unit(u).result = UnitResult::Success;
                self.set_phase(u, Phase::Dead);
                self.stop_done(u);
            }
            Phase::AutoRestart => {
                let x = self.unit(u);
                x.timer = None;
                x.notify = None;
                let failed = x.result != UnitResult::Success;
                self.set_phase(u, if failed { Phase::Failed } else { Phase::Dead });
                self.stop_done(u);
            }
            Phase::Stopping { .. } => {
                self.unit(u).allow_restart = false;
                self.mark_running(u);
            }
            _ => {
                self.mark_running(u);
                self.begin_stop(u);
            }
        }
        true
    }

    /// A stop (or the stop half of a restart) reached inactive.
    pub(super) fn stop_done(&mut self, u: &str) {
        let Some(job) = self.unit(u).job else { return };
        if job.kind == JobKind::Restart {
            self.unit(u).job = Some(Job {
                id: job.id,
                kind: JobKind::Start,
                running: false,
            });
        } else {
            self.finish_job(u, JobResult::Done);
        }
    }

    /// Ends `u`'s job. A failed start fails the waiting start jobs of the units that
    /// require or are bound to it and are ordered after it (result `dependency`); without
    /// After= they start anyway, as in systemd.
    pub(super) fn finish_job(&mut self, u: &str, result: JobResult) {
        let Some(job) = self.unit(u).job.take() else {
            return;
        };
        tracing::debug!(
            unit = u,
            job = job.id,
            kind = job.kind.as_str(),
            result = result.as_str(),
            "job finished"
        );
        self.finished.push_back((job.id, result));
        if self.finished.len() > KEEP_JOB_RESULTS {
            self.finished.pop_front();
        }
        let ev = JobEvent {
            id: job.id,
            unit: u.to_string(),
            kind: job.kind,
            result,
            time: self.clock.wall(),
        };
        self.sink.job_finished(&ev);
        if job.kind == JobKind::Start && matches!(result, JobResult::Failed | JobResult::Dependency)
        {
            let dependents: Vec<String> = get(&self.graph.required_by, u)
                .chain(get(&self.graph.bound_by, u))
                .cloned()
                .collect();
            for d in dependents {
                let ordered = self.graph.after.get(&d).is_some_and(|s| s.contains(u));
                let waiting = ordered
                    && self
                        .units
                        .get(&d)
                        .and_then(|x| x.job)
                        .is_some_and(|j| j.kind == JobKind::Start && !j.running);
                if waiting {
                    tracing::info!("{d}: dependency {u} failed to start");
                    self.finish_job(&d, JobResult::Dependency);
                }
            }
        }
    }

    /// OnFailure= units of a unit that just failed.
    pub(super) fn queue_on_failure(&mut self, u: &str) {
        let targets: Vec<String> = get(&self.graph.on_failure, u).cloned().collect();
        for t in targets {
            self.deferred.push_back(Deferred::Start(t));
        }
    }

    /// BindsTo=: the units bound to `u` stop when it goes inactive.
    pub(super) fn queue_bound_stops(&mut self, u: &str) {
        let bound: Vec<String> = get(&self.graph.bound_by, u).cloned().collect();
        for b in bound {
            self.deferred.push_back(Deferred::Stop(b));
        }
    }
}
