//! Task events forwarded to the caller's event service (`TTRPC_ADDRESS`,
//! containerd.services.events.ttrpc.v1.Events/Forward). An event that cannot be delivered
//! (containerd restarting) is retried for a while, in order, then dropped with a warning:
//! the task's state stays queryable either way.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use containerd_shim_protos::events::task as ev;
use containerd_shim_protos::shim::event::Envelope;
use containerd_shim_protos::shim::events::ForwardRequest;
use protobuf::well_known_types::any::Any;
use protobuf::Message;

use crate::timefmt::Time;
use crate::ttrpc;

const SERVICE: &str = "containerd.services.events.ttrpc.v1.Events";
const CALL_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_ATTEMPTS: u32 = 8;
const QUEUE_LIMIT: usize = 1024;

pub enum Event {
    Create(ev::TaskCreate),
    Start(ev::TaskStart),
    Exit(ev::TaskExit),
    Oom(ev::TaskOOM),
    ExecAdded(ev::TaskExecAdded),
    ExecStarted(ev::TaskExecStarted),
    Paused(ev::TaskPaused),
    Resumed(ev::TaskResumed),
    Delete(ev::TaskDelete),
}

impl Event {
    fn topic_and_any(&self) -> (&'static str, Any) {
        // Generic, not `dyn MessageDyn`: the dyn encoder loads protobuf reflection
        // descriptors, half a megabyte of heap an idle shim has no use for.
        fn any<M: Message>(name: &str, m: &M) -> Any {
            let mut a = Any::new();
            a.type_url = format!("containerd.events.{name}");
            a.value = m.write_to_bytes().unwrap_or_default();
            a
        }
        match self {
            Event::Create(m) => ("/tasks/create", any("TaskCreate", m)),
            Event::Start(m) => ("/tasks/start", any("TaskStart", m)),
            Event::Exit(m) => ("/tasks/exit", any("TaskExit", m)),
            Event::Oom(m) => ("/tasks/oom", any("TaskOOM", m)),
            Event::ExecAdded(m) => ("/tasks/exec-added", any("TaskExecAdded", m)),
            Event::ExecStarted(m) => ("/tasks/exec-started", any("TaskExecStarted", m)),
            Event::Paused(m) => ("/tasks/paused", any("TaskPaused", m)),
            Event::Resumed(m) => ("/tasks/resumed", any("TaskResumed", m)),
            Event::Delete(m) => ("/tasks/delete", any("TaskDelete", m)),
        }
    }
}

struct Queued {
    payload: Vec<u8>,
    topic: &'static str,
    attempts: u32,
}

pub struct Publisher {
    address: Option<String>,
    namespace: String,
    queue: VecDeque<Queued>,
    next_try: Option<Instant>,
}

impl Publisher {
    pub fn new(address: Option<String>, namespace: &str) -> Publisher {
        Publisher {
            address: address.filter(|a| !a.is_empty()),
            namespace: namespace.to_string(),
            queue: VecDeque::new(),
            next_try: None,
        }
    }

    pub fn push(&mut self, e: Event) {
        if self.address.is_none() {
            return;
        }
        let (topic, any) = e.topic_and_any();
        let mut env = Envelope::new();
        env.timestamp = protobuf::MessageField::some(Time::now().to_proto());
        env.namespace = self.namespace.clone();
        env.topic = topic.to_string();
        env.event = protobuf::MessageField::some(any);
        let mut req = ForwardRequest::new();
        req.envelope = protobuf::MessageField::some(env);
        if self.queue.len() >= QUEUE_LIMIT {
            crate::log::warn("event queue full: dropping the oldest event");
            self.queue.pop_front();
        }
        self.queue.push_back(Queued {
            payload: req.write_to_bytes().unwrap_or_default(),
            topic,
            attempts: 0,
        });
    }

    /// When the poll loop should wake to retry, if anything waits.
    pub fn deadline(&self) -> Option<Instant> {
        if self.queue.is_empty() {
            None
        } else {
            Some(self.next_try.unwrap_or_else(Instant::now))
        }
    }

    /// Delivers queued events in order; stops at the first failure and retries later.
    pub fn flush(&mut self) {
        let Some(addr) = self.address.clone() else {
            return;
        };
        if self.next_try.is_some_and(|t| t > Instant::now()) {
            return;
        }
        self.next_try = None;
        while let Some(q) = self.queue.front_mut() {
            match ttrpc::call(&addr, SERVICE, "Forward", q.payload.clone(), CALL_TIMEOUT) {
                Ok(_) => {
                    self.queue.pop_front();
                }
                Err(e) => {
                    q.attempts += 1;
                    if q.attempts >= MAX_ATTEMPTS {
                        crate::log::warn(&format!(
                            "dropping event {} after {} attempts: {e}",
                            q.topic, q.attempts
                        ));
                        self.queue.pop_front();
                        continue;
                    }
                    crate::log::debug(&format!("publishing {} to {addr}: {e}", q.topic));
                    let backoff = Duration::from_millis(250 << q.attempts.min(5));
                    self.next_try = Some(Instant::now() + backoff);
                    return;
                }
            }
        }
    }
}
