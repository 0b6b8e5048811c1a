//! Unit state changes and finished jobs into kosd's `/events` stream (`Type` `unit`).

use std::sync::Arc;

use kos_units::{EventSink, JobEvent, UnitEvent};

use crate::engine::Engine;

pub struct EventsSink {
    e: Arc<Engine>,
}

impl EventsSink {
    pub fn new(e: Arc<Engine>) -> EventsSink {
        EventsSink { e }
    }
}

impl EventSink for EventsSink {
    fn unit_changed(&mut self, ev: &UnitEvent) {
        let pid = ev.main_pid.unwrap_or(0).to_string();
        self.e.event(
            "unit",
            ev.active_state.as_str(),
            &ev.unit,
            &[
                ("sub", ev.sub_state),
                ("result", ev.result.as_str()),
                ("mainPid", &pid),
            ],
        );
    }

    fn job_finished(&mut self, ev: &JobEvent) {
        let id = ev.id.to_string();
        self.e.event(
            "unit",
            &format!("job-{}-{}", ev.kind.as_str(), ev.result.as_str()),
            &ev.unit,
            &[("job", &id), ("result", ev.result.as_str())],
        );
    }
}
