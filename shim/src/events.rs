//! Task events forwarded to the caller's event service (`TTRPC_ADDRESS`,
//! containerd.services.events.ttrpc.v1.Events/Forward). An event that cannot be delivered
//! (containerd restarting) is retried for a while, in order, then dropped with a warning:
//! the task's state stays queryable either way.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::net::UnixStream;
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

/// The Forward call of the queue's front event, on its own connection, waiting for the
/// answer in the poll loop rather than blocking it: the next request of the caller (Start
/// right after Create, Shutdown right after Delete) is served meanwhile.
struct InFlight {
    stream: UnixStream,
    wbuf: Vec<u8>,
    rbuf: Vec<u8>,
    deadline: Instant,
}

pub struct Publisher {
    address: Option<String>,
    namespace: String,
    queue: VecDeque<Queued>,
    next_try: Option<Instant>,
    inflight: Option<InFlight>,
}

impl Publisher {
    pub fn new(address: Option<String>, namespace: &str) -> Publisher {
        Publisher {
            address: address
                .filter(|a| !a.is_empty())
                .map(|a| a.trim_start_matches("unix://").to_string()),
            namespace: namespace.to_string(),
            queue: VecDeque::new(),
            next_try: None,
            inflight: None,
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
        // The front may be in flight: never drop that one.
        if self.queue.len() >= QUEUE_LIMIT {
            let at = usize::from(self.inflight.is_some());
            crate::log::warn("event queue full: dropping the oldest event");
            self.queue.remove(at);
        }
        self.queue.push_back(Queued {
            payload: req.write_to_bytes().unwrap_or_default(),
            topic,
            attempts: 0,
        });
    }

    /// When the poll loop should wake: to retry, or to give up on an unanswered call.
    pub fn deadline(&self) -> Option<Instant> {
        if let Some(f) = &self.inflight {
            return Some(f.deadline);
        }
        if self.queue.is_empty() {
            None
        } else {
            Some(self.next_try.unwrap_or_else(Instant::now))
        }
    }

    /// The in-flight call's connection and what to poll it for.
    pub fn interest(&self) -> Option<(RawFd, i16)> {
        self.inflight.as_ref().map(|f| {
            let ev = if f.wbuf.is_empty() {
                libc::POLLIN
            } else {
                libc::POLLIN | libc::POLLOUT
            };
            (f.stream.as_raw_fd(), ev)
        })
    }

    /// The in-flight call's connection is ready: send the rest, read the answer. The next
    /// event waits for `flush`, which the loop calls after the replies went out.
    pub fn ready(&mut self) {
        self.progress();
    }

    /// Moves the in-flight call on; true when it was answered OK (and its event is done).
    fn progress(&mut self) -> bool {
        let Some(f) = self.inflight.as_mut() else {
            return false;
        };
        match f.progress() {
            Ok(None) => false,
            Ok(Some(())) => {
                self.inflight = None;
                self.queue.pop_front();
                true
            }
            Err(e) => {
                self.failed(e);
                false
            }
        }
    }

    /// Sends the front event when nothing is in flight, it is not backing off, and there is
    /// one; gives up on a call that has gone unanswered too long. Events go one at a time,
    /// each after the previous one's answer, so the caller sees them in order.
    pub fn flush(&mut self) {
        let Some(addr) = self.address.clone() else {
            return;
        };
        if let Some(f) = &self.inflight {
            if f.deadline <= Instant::now() {
                self.failed(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no answer from the event service",
                ));
            }
            return;
        }
        loop {
            if self.next_try.is_some_and(|t| t > Instant::now()) {
                return;
            }
            self.next_try = None;
            let Some(q) = self.queue.front() else {
                return;
            };
            let frame = ttrpc::request_frame(1, SERVICE, "Forward", q.payload.clone());
            match InFlight::start(&addr, frame) {
                Ok(f) => self.inflight = Some(f),
                Err(e) => {
                    self.failed(e);
                    continue;
                }
            }
            // Sent; the answer is rarely there yet, then the poll loop waits for it.
            if !self.progress() {
                return;
            }
        }
    }

    /// At exit: what is left goes out synchronously, each call bounded, stopping at the
    /// first failure (the caller is leaving too, or gone).
    pub fn finish(&mut self) {
        let Some(addr) = self.address.clone() else {
            return;
        };
        if let Some(f) = self.inflight.take() {
            match f.wait() {
                Ok(()) => {
                    self.queue.pop_front();
                }
                Err(e) => {
                    crate::log::warn(&format!("event not confirmed at exit: {e}"));
                    return;
                }
            }
        }
        while let Some(q) = self.queue.pop_front() {
            if let Err(e) = ttrpc::call(&addr, SERVICE, "Forward", q.payload, CALL_TIMEOUT) {
                crate::log::warn(&format!("event {} not delivered at exit: {e}", q.topic));
                return;
            }
        }
    }

    fn failed(&mut self, e: io::Error) {
        self.inflight = None;
        let Some(q) = self.queue.front_mut() else {
            return;
        };
        q.attempts += 1;
        if q.attempts >= MAX_ATTEMPTS {
            crate::log::warn(&format!(
                "dropping event {} after {} attempts: {e}",
                q.topic, q.attempts
            ));
            self.queue.pop_front();
            return;
        }
        crate::log::debug(&format!("publishing {}: {e}", q.topic));
        let backoff = Duration::from_millis(250 << q.attempts.min(5));
        self.next_try = Some(Instant::now() + backoff);
    }
}

impl InFlight {
    fn start(addr: &str, frame: Vec<u8>) -> io::Result<InFlight> {
        // A unix socket connects at once or fails at once (nobody listening).
        let stream = UnixStream::connect(addr)?;
        stream.set_nonblocking(true)?;
        Ok(InFlight {
            stream,
            wbuf: frame,
            rbuf: Vec::new(),
            deadline: Instant::now() + CALL_TIMEOUT,
        })
    }

    /// Writes what it can, reads what is there: Some(()) once the answer is OK.
    fn progress(&mut self) -> io::Result<Option<()>> {
        while !self.wbuf.is_empty() {
            match self.stream.write(&self.wbuf) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => {
                    self.wbuf.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let mut buf = [0u8; 4096];
        loop {
            if let Some((h, body)) = ttrpc::take_frame(&mut self.rbuf)? {
                return ttrpc::parse_response(&h, &body, 1).map(|_| Some(()));
            }
            match self.stream.read(&mut buf) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
                Ok(n) => self.rbuf.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Blocks (until the deadline) for the answer.
    fn wait(mut self) -> io::Result<()> {
        loop {
            if self.progress()?.is_some() {
                return Ok(());
            }
            let left = self.deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no answer from the event service",
                ));
            }
            let mut pfd = libc::pollfd {
                fd: self.stream.as_raw_fd(),
                events: if self.wbuf.is_empty() {
                    libc::POLLIN
                } else {
                    libc::POLLOUT
                },
                revents: 0,
            };
            // SAFETY: one valid pollfd.
            unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(60_000) as i32) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::ttrpc::Request;
    use std::sync::{Arc, Mutex};

    /// An event service answering OK on fresh connections after `delay`, recording each
    /// event's topic.
    fn sink(path: &std::path::Path, delay: Duration) -> Arc<Mutex<Vec<String>>> {
        let l = std::os::unix::net::UnixListener::bind(path).expect("bind");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s = seen.clone();
        std::thread::spawn(move || {
            for c in l.incoming() {
                let Ok(mut c) = c else { return };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let (h, body) = loop {
                    if let Ok(Some(f)) = ttrpc::take_frame(&mut buf) {
                        break f;
                    }
                    match c.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                };
                let req = Request::parse_from_bytes(&body).expect("request");
                let fwd = ForwardRequest::parse_from_bytes(&req.payload).expect("forward");
                s.lock().expect("lock").push(fwd.envelope.topic.clone());
                std::thread::sleep(delay);
                let _ = c.write_all(&ttrpc::response_frame(h.stream_id, Ok(Vec::new())));
            }
        });
        seen
    }

    fn start_event(pid: u32) -> Event {
        let mut e = ev::TaskStart::new();
        e.pid = pid;
        Event::Start(e)
    }

    /// What the server loop does: poll the in-flight call, then flush.
    fn run_until_empty(p: &mut Publisher) {
        let until = Instant::now() + Duration::from_secs(5);
        while !p.queue.is_empty() {
            assert!(Instant::now() < until, "events not delivered");
            if let Some((fd, ev)) = p.interest() {
                let mut pfd = libc::pollfd {
                    fd,
                    events: ev,
                    revents: 0,
                };
                // SAFETY: one valid pollfd.
                unsafe { libc::poll(&mut pfd, 1, 100) };
                p.ready();
            }
            p.flush();
        }
    }

    #[test]
    fn events_go_out_in_order_without_blocking_and_the_rest_at_exit() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("events.sock");
        let seen = sink(&path, Duration::from_millis(200));
        let mut p = Publisher::new(Some(format!("unix://{}", path.display())), "ns");
        p.push(start_event(1));
        p.push(Event::Create(ev::TaskCreate::new()));
        p.push(Event::Delete(ev::TaskDelete::new()));
        let t = Instant::now();
        p.flush();
        // Sent without waiting for the answer; one call at a time, the others queued.
        assert!(
            t.elapsed() < Duration::from_millis(150),
            "{:?}",
            t.elapsed()
        );
        assert!(p.interest().is_some());
        assert_eq!(p.queue.len(), 3);
        run_until_empty(&mut p);
        assert_eq!(
            *seen.lock().expect("lock"),
            ["/tasks/start", "/tasks/create", "/tasks/delete"]
        );
        // At exit, what is queued (and in flight) is delivered before returning.
        p.push(Event::Paused(ev::TaskPaused::new()));
        p.push(Event::Resumed(ev::TaskResumed::new()));
        p.flush();
        p.finish();
        assert!(p.queue.is_empty() && p.inflight.is_none());
        assert_eq!(seen.lock().expect("lock").len(), 5);
        assert_eq!(seen.lock().expect("lock")[4], "/tasks/resumed");
    }

    #[test]
    fn nobody_listening_means_a_retry_later_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("late.sock");
        let mut p = Publisher::new(Some(path.to_string_lossy().into_owned()), "ns");
        p.push(start_event(1));
        p.push(start_event(2));
        p.flush();
        assert!(p.inflight.is_none());
        assert_eq!(p.queue.len(), 2);
        assert_eq!(p.queue[0].attempts, 1);
        let retry = p.deadline().expect("a retry is planned");
        assert!(retry > Instant::now());
        // The service comes up: after the backoff both go out, first one first.
        let seen = sink(&path, Duration::ZERO);
        std::thread::sleep(retry.saturating_duration_since(Instant::now()));
        run_until_empty(&mut p);
        assert_eq!(
            *seen.lock().expect("lock"),
            ["/tasks/start", "/tasks/start"]
        );
    }
}
