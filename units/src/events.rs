//! Unit state changes for kosd's `/events` stream.
//!
//! kosd turns each [`UnitEvent`] into a Docker-shaped event message:
//! `{"Type":"unit","Action":"<active_state>","Actor":{"ID":"<unit>","Attributes":
//! {"sub":"<sub_state>","result":"<result>","mainPid":"<pid>"}},"time":...,"timeNano":...}`,
//! and each [`JobEvent`] into `{"Type":"unit","Action":"job-<kind>-<result>",...}`.

use std::time::SystemTime;

use crate::state::{ActiveState, JobId, JobKind, JobResult, UnitResult};

/// A unit changed its active state, sub-state, result or main pid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnitEvent {
    pub unit: String,
    pub active_state: ActiveState,
    pub sub_state: &'static str,
    pub result: UnitResult,
    pub main_pid: Option<u32>,
    pub time: SystemTime,
}

/// A job finished.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobEvent {
    pub id: JobId,
    pub unit: String,
    pub kind: JobKind,
    pub result: JobResult,
    pub time: SystemTime,
}

/// Where the manager reports changes. Called synchronously from the manager: keep it quick
/// (kosd: push into the broadcast channel of `/events`).
pub trait EventSink {
    fn unit_changed(&mut self, ev: &UnitEvent);
    fn job_finished(&mut self, _ev: &JobEvent) {}
}

/// Collects everything (tests, or a caller that drains after each call).
#[derive(Debug, Default, Clone)]
pub struct EventLog {
    pub units: Vec<UnitEvent>,
    pub jobs: Vec<JobEvent>,
}

impl EventSink for EventLog {
    fn unit_changed(&mut self, ev: &UnitEvent) {
        self.units.push(ev.clone());
    }
    fn job_finished(&mut self, ev: &JobEvent) {
        self.jobs.push(ev.clone());
    }
}

impl EventSink for std::sync::mpsc::Sender<UnitEvent> {
    fn unit_changed(&mut self, ev: &UnitEvent) {
        // A gone receiver only means nobody listens any more.
        let _ = self.send(ev.clone());
    }
}
