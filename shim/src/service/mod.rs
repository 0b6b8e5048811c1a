//! The containerd.task.v2.Task methods over the shim's containers. Runs on the poll loop's
//! single thread; Wait is answered later, when the process exits.

use std::collections::BTreeMap;
use std::time::Duration;

use containerd_shim_protos::api;
use containerd_shim_protos::events::task as ev;
use containerd_shim_protos::types::task::ProcessInfo;
use containerd_shim_protos::types::task::Status as ApiStatus;
use protobuf::{Message, MessageField};

use crate::container::{Container, Process, Status};
use crate::events::{Event, Publisher};
use crate::mount;
use crate::runtime::RuntimeError;
use crate::stdio::uri::Target;
use crate::timefmt::Time;
use crate::ttrpc::{response_frame, RpcError};

mod early_delete;
mod launch;
mod logs;

use launch::{reap_now, start_exec, ExecEnv};
pub use logs::LOGS_SERVICE;

pub const TASK_SERVICE: &str = "containerd.task.v2.Task";
const CONSOLE_TIMEOUT: Duration = Duration::from_secs(10);

pub enum Reply {
    Now(Result<Vec<u8>, RpcError>),
    /// Answered later through `Service::take_replies` (Wait).
    Later,
}

struct Waiter {
    conn: u64,
    stream: u32,
    container: String,
    exec_id: String,
}

pub struct Service {
    namespace: String,
    pub containers: BTreeMap<String, Container>,
    pub events: Publisher,
    waiters: Vec<Waiter>,
    replies: Vec<(u64, Vec<u8>)>,
    pub shutdown: bool,
    seq: u64,
    /// Containers whose early delete may start once this round's events are out.
    delete_soon: Vec<String>,
}

type R<T> = Result<T, RpcError>;

fn rt_err(e: RuntimeError) -> RpcError {
    if e.not_found {
        RpcError::precondition(e.to_string())
    } else {
        RpcError::internal(e.to_string())
    }
}

/// Generic rather than `dyn MessageDyn`, which would load the reflection descriptors.
fn encode<M: Message>(m: &M) -> R<Vec<u8>> {
    m.write_to_bytes()
        .map_err(|e| RpcError::internal(format!("encoding the response: {e}")))
}

fn empty() -> R<Vec<u8>> {
    Ok(Vec::new())
}

fn status_of(s: Status) -> ApiStatus {
    match s {
        Status::Created => ApiStatus::CREATED,
        Status::Running => ApiStatus::RUNNING,
        Status::Paused => ApiStatus::PAUSED,
        Status::Stopped => ApiStatus::STOPPED,
    }
}

impl Service {
    pub fn new(namespace: &str, events: Publisher) -> Service {
        Service {
            namespace: namespace.to_string(),
            containers: BTreeMap::new(),
            events,
            waiters: Vec::new(),
            replies: Vec::new(),
            shutdown: false,
            seq: 0,
            delete_soon: Vec::new(),
        }
    }

    pub fn dispatch(&mut self, conn: u64, stream: u32, method: &str, payload: &[u8]) -> Reply {
        macro_rules! call {
            ($t:ty, $f:ident) => {
                match <$t>::parse_from_bytes(payload) {
                    Ok(req) => Reply::Now(self.$f(req)),
                    Err(e) => Reply::Now(Err(RpcError::invalid(format!(
                        "{method}: bad request: {e}"
                    )))),
                }
            };
        }
        match method {
            "Create" => call!(api::CreateTaskRequest, create),
            "Start" => call!(api::StartRequest, start),
            "State" => call!(api::StateRequest, state),
            "Delete" => call!(api::DeleteRequest, delete),
            "Pids" => call!(api::PidsRequest, pids),
            "Pause" => call!(api::PauseRequest, pause),
            "Resume" => call!(api::ResumeRequest, resume),
            "Checkpoint" => call!(api::CheckpointTaskRequest, checkpoint),
            "Kill" => call!(api::KillRequest, kill),
            "Exec" => call!(api::ExecProcessRequest, exec),
            "ResizePty" => call!(api::ResizePtyRequest, resize_pty),
            "CloseIO" => call!(api::CloseIORequest, close_io),
            "Update" => call!(api::UpdateTaskRequest, update),
            "Stats" => call!(api::StatsRequest, stats),
            "Connect" => call!(api::ConnectRequest, connect),
            "Shutdown" => call!(api::ShutdownRequest, shutdown),
            "Wait" => match api::WaitRequest::parse_from_bytes(payload) {
                Ok(req) => self.wait(conn, stream, req),
                Err(e) => Reply::Now(Err(RpcError::invalid(format!("Wait: bad request: {e}")))),
            },
            other => Reply::Now(Err(RpcError::new(
                containerd_shim_protos::ttrpc::Code::UNIMPLEMENTED,
                format!("{TASK_SERVICE} has no method {other:?}"),
            ))),
        }
    }

    /// Deferred answers (Wait) ready to go out, by connection.
    pub fn take_replies(&mut self) -> Vec<(u64, Vec<u8>)> {
        std::mem::take(&mut self.replies)
    }

    pub fn connection_closed(&mut self, conn: u64) {
        self.waiters.retain(|w| w.conn != conn);
    }

    fn container(&self, id: &str) -> R<&Container> {
        self.containers
            .get(id)
            .ok_or_else(|| RpcError::not_found(format!("container {id} not found")))
    }

    fn container_mut(&mut self, id: &str) -> R<&mut Container> {
        self.containers
            .get_mut(id)
            .ok_or_else(|| RpcError::not_found(format!("container {id} not found")))
    }

    fn process(&self, id: &str, exec_id: &str) -> R<&Process> {
        self.container(id)?
            .process(exec_id)
            .ok_or_else(|| RpcError::not_found(format!("exec {exec_id} of {id} not found")))
    }

    fn process_mut(&mut self, id: &str, exec_id: &str) -> R<&mut Process> {
        self.container_mut(id)?
            .process_mut(exec_id)
            .ok_or_else(|| RpcError::not_found(format!("exec {exec_id} of {id} not found")))
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    fn start(&mut self, r: api::StartRequest) -> R<Vec<u8>> {
        if r.exec_id.is_empty() {
            let c = self.container_mut(&r.id)?;
            if c.init.status != Status::Created {
                return Err(RpcError::precondition(format!(
                    "container {} is not in the created state",
                    r.id
                )));
            }
            // Started at create: the program runs already, Start only says so.
            if !c.awaiting_start {
                c.runtime.start(&r.id).map_err(rt_err)?;
            }
            if c.init.status == Status::Created {
                c.init.status = Status::Running;
            }
            let pid = c.init.pid;
            let mut e = ev::TaskStart::new();
            e.container_id = r.id.clone();
            e.pid = pid;
            self.events.push(Event::Start(e));
            // An exit held back for Start goes out after it (the reply comes first too).
            self.release_held_exit(&r.id);
            let mut resp = api::StartResponse::new();
            resp.pid = pid;
            return encode(&resp);
        }
        let seq = self.next_seq();
        let namespace = self.namespace.clone();
        let c = self.container_mut(&r.id)?;
        if c.init.exited() {
            return Err(RpcError::precondition(format!(
                "container {} is not running",
                r.id
            )));
        }
        let bundle = c.bundle.clone();
        let runtime = c.runtime.clone();
        let owner = c.io_owner;
        let awaiting_start = c.awaiting_start;
        let p = c.execs.get_mut(&r.exec_id).ok_or_else(|| {
            RpcError::not_found(format!("exec {} of {} not found", r.exec_id, r.id))
        })?;
        let Some(spec) = p.spec.take() else {
            return Err(RpcError::precondition(format!(
                "exec {} of {} was already started",
                r.exec_id, r.id
            )));
        };
        let env = ExecEnv {
            id: &r.id,
            namespace: &namespace,
            bundle: &bundle,
            runtime: &runtime,
            owner,
            seq,
        };
        // A created container takes no exec; one started at create is no different.
        let res = if awaiting_start {
            Err(RpcError::precondition(format!(
                "exec {}: container {} is not started",
                r.exec_id, r.id
            )))
        } else {
            start_exec(p, &env, &spec)
        };
        if let Err(e) = res {
            // Failed before running: it counts as exited so that Wait and Delete still work.
            p.set_exited(255);
            self.finish_process(&r.id, &r.exec_id, false);
            return Err(e);
        }
        let pid = p.pid;
        let mut e = ev::TaskExecStarted::new();
        e.container_id = r.id.clone();
        e.exec_id = r.exec_id.clone();
        e.pid = pid;
        self.events.push(Event::ExecStarted(e));
        let mut resp = api::StartResponse::new();
        resp.pid = pid;
        encode(&resp)
    }

    fn state(&mut self, r: api::StateRequest) -> R<Vec<u8>> {
        let c = self.container(&r.id)?;
        let p = self.process(&r.id, &r.exec_id)?;
        let mut s = api::StateResponse::new();
        s.id = if r.exec_id.is_empty() {
            r.id.clone()
        } else {
            r.exec_id.clone()
        };
        s.bundle = c.bundle.to_string_lossy().into_owned();
        s.pid = p.pid;
        s.status = status_of(p.status).into();
        s.stdin = p.stdin.clone();
        s.stdout = p.stdout.clone();
        s.stderr = p.stderr.clone();
        s.terminal = p.terminal;
        if let Some((code, at)) = p.exit {
            s.exit_status = code;
            s.exited_at = MessageField::some(at.to_proto());
        }
        s.exec_id = r.exec_id.clone();
        encode(&s)
    }

    fn delete(&mut self, r: api::DeleteRequest) -> R<Vec<u8>> {
        let mut resp = api::DeleteResponse::new();
        if !r.exec_id.is_empty() {
            let c = self.container_mut(&r.id)?;
            let p = c.execs.get(&r.exec_id).ok_or_else(|| {
                RpcError::not_found(format!("exec {} of {} not found", r.exec_id, r.id))
            })?;
            if matches!(p.status, Status::Running | Status::Paused) {
                return Err(RpcError::precondition(format!(
                    "cannot delete exec {} of {}: it is running",
                    r.exec_id, r.id
                )));
            }
            let Some(p) = c.execs.remove(&r.exec_id) else {
                return Err(RpcError::not_found(format!(
                    "exec {} of {} not found",
                    r.exec_id, r.id
                )));
            };
            resp.pid = p.pid;
            if let Some((code, at)) = p.exit {
                resp.exit_status = code;
                resp.exited_at = MessageField::some(at.to_proto());
            }
            self.answer_waiters(&r.id, &r.exec_id, true);
            return encode(&resp);
        }
        let c = self.container_mut(&r.id)?;
        match c.init.status {
            Status::Running | Status::Paused => {
                return Err(RpcError::precondition(format!(
                    "cannot delete container {}: it is running",
                    r.id
                )))
            }
            Status::Created => {
                // Never started: the runtime kills the waiting init (or the program started
                // at create); collect its status here, or take the one held back for Start.
                c.awaiting_start = false;
                c.runtime.delete(&r.id, true).map_err(rt_err)?;
                match c.held_exit.take() {
                    Some((code, at)) => {
                        c.init.status = Status::Stopped;
                        c.init.exit = Some((code, at));
                        c.init.io.drain();
                    }
                    None => {
                        let code = reap_now(c.init.pid);
                        c.init.set_exited(code);
                    }
                }
            }
            Status::Stopped => match early_delete::finish(c) {
                Some(true) => {}
                // The early delete failed: forced, as a failed plain delete is below.
                Some(false) => {
                    if let Err(e) = c.runtime.delete(&r.id, true) {
                        crate::log::warn(&format!("{}: early delete failed; forced: {e}", r.id));
                    }
                }
                None => {
                    if let Err(e) = c.runtime.delete(&r.id, false) {
                        if let Err(e2) = c.runtime.delete(&r.id, true) {
                            crate::log::warn(&format!("{}: delete: {e}; forced: {e2}", r.id));
                        }
                    }
                }
            },
        }
        let Some(mut c) = self.containers.remove(&r.id) else {
            return Err(RpcError::not_found(format!("container {} not found", r.id)));
        };
        if c.rootfs_mounted {
            mount::unmount_all(&c.rootfs());
        }
        let _ = std::fs::remove_file(c.bundle.join("init.pid"));
        for p in c.processes_mut() {
            p.io.drain();
        }
        resp.pid = c.init.pid;
        if let Some((code, at)) = c.init.exit {
            resp.exit_status = code;
            resp.exited_at = MessageField::some(at.to_proto());
        }
        let mut e = ev::TaskDelete::new();
        e.container_id = r.id.clone();
        e.id = r.id.clone();
        e.pid = resp.pid;
        e.exit_status = resp.exit_status;
        e.exited_at = resp.exited_at.clone();
        self.events.push(Event::Delete(e));
        // Anyone still waiting on this container's processes will never see an exit now.
        let execs: Vec<String> = c.execs.keys().cloned().collect();
        for x in execs {
            self.answer_waiters(&r.id, &x, true);
        }
        self.answer_waiters(&r.id, "", true);
        encode(&resp)
    }

    fn pids(&mut self, r: api::PidsRequest) -> R<Vec<u8>> {
        let c = self.container(&r.id)?;
        if early_delete::started(c) {
            // Everything in it is dead, and its cgroup removed (or going).
            return encode(&api::PidsResponse::new());
        }
        let m = kos_cgroups::Manager::new(c.cgroups_path.as_deref(), &r.id)
            .map_err(|e| RpcError::internal(format!("pids: cgroup of {}: {e}", r.id)))?;
        let pids = m
            .pids()
            .map_err(|e| RpcError::internal(format!("pids: {e}")))?;
        let mut resp = api::PidsResponse::new();
        for pid in pids {
            let mut pi = ProcessInfo::new();
            pi.pid = pid as u32;
            resp.processes.push(pi);
        }
        encode(&resp)
    }

    fn pause(&mut self, r: api::PauseRequest) -> R<Vec<u8>> {
        let c = self.container_mut(&r.id)?;
        if c.init.status != Status::Running {
            return Err(RpcError::precondition(format!(
                "container {} is not running",
                r.id
            )));
        }
        c.runtime.pause(&r.id).map_err(rt_err)?;
        c.init.status = Status::Paused;
        let mut e = ev::TaskPaused::new();
        e.container_id = r.id;
        self.events.push(Event::Paused(e));
        empty()
    }

    fn resume(&mut self, r: api::ResumeRequest) -> R<Vec<u8>> {
        let c = self.container_mut(&r.id)?;
        if c.init.status != Status::Paused {
            return Err(RpcError::precondition(format!(
                "container {} is not paused",
                r.id
            )));
        }
        c.runtime.resume(&r.id).map_err(rt_err)?;
        c.init.status = Status::Running;
        let mut e = ev::TaskResumed::new();
        e.container_id = r.id;
        self.events.push(Event::Resumed(e));
        empty()
    }

    fn checkpoint(&mut self, r: api::CheckpointTaskRequest) -> R<Vec<u8>> {
        let c = self.container(&r.id)?;
        if r.path.is_empty() {
            return Err(RpcError::invalid("checkpoint: no image path"));
        }
        if early_delete::started(c) {
            return Err(RpcError::precondition(format!(
                "checkpoint of {}: the container has exited",
                r.id
            )));
        }
        if c.runtime.is_kosrun() {
            // kosrun implements no checkpoint/restore at all: say so rather than pass on its
            // "unrecognized subcommand".
            return Err(RpcError::precondition(format!(
                "checkpoint of {}: kosrun has no checkpoint/restore (runc with CRIU has: choose \
                 it with the runtime options' BinaryName)",
                r.id
            )));
        }
        c.runtime.checkpoint(&r.id, &r.path, "").map_err(|e| {
            RpcError::precondition(format!(
                "checkpoint of {} failed (the runtime needs a working CRIU): {e}",
                r.id
            ))
        })?;
        empty()
    }

    fn kill(&mut self, r: api::KillRequest) -> R<Vec<u8>> {
        if r.exec_id.is_empty() && r.signal != 0 {
            // As for a created task: the exit this brings (or brought) is reported at once.
            self.release_held_exit(&r.id);
        }
        let c = self.container(&r.id)?;
        if r.exec_id.is_empty() {
            if c.init.exited() && !r.all {
                return Err(RpcError::not_found(format!(
                    "container {}: process already finished",
                    r.id
                )));
            }
            if let Some((pid, sig)) = direct_init_signal(c, r.signal, r.all) {
                return match nix::sys::signal::kill(pid, sig) {
                    // ESRCH: it exited between our look and the signal.
                    Ok(()) | Err(nix::errno::Errno::ESRCH) => empty(),
                    Err(e) => Err(RpcError::internal(format!("kill {}: {e}", r.id))),
                };
            }
            return match c.runtime.kill(&r.id, r.signal, r.all) {
                Ok(()) => empty(),
                // It exited between our look and the runtime's.
                Err(_) if r.all || c.init.exited() => empty(),
                Err(e) => Err(rt_err(e)),
            };
        }
        let p = self.process(&r.id, &r.exec_id)?;
        if p.exited() {
            return Err(RpcError::not_found(format!(
                "exec {} of {}: process already finished",
                r.exec_id, r.id
            )));
        }
        if p.pid == 0 {
            return Err(RpcError::precondition(format!(
                "exec {} of {} was not started",
                r.exec_id, r.id
            )));
        }
        let sig = nix::sys::signal::Signal::try_from(r.signal as i32)
            .map_err(|_| RpcError::invalid(format!("kill: bad signal {}", r.signal)))?;
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(p.pid as i32), sig)
            .map_err(|e| RpcError::internal(format!("kill exec {}: {e}", r.exec_id)))?;
        empty()
    }

    fn exec(&mut self, r: api::ExecProcessRequest) -> R<Vec<u8>> {
        let c = self.container_mut(&r.id)?;
        if r.exec_id.is_empty() {
            return Err(RpcError::invalid("exec: empty exec id"));
        }
        if c.init.exited() {
            return Err(RpcError::precondition(format!(
                "container {} is not running",
                r.id
            )));
        }
        if c.execs.contains_key(&r.exec_id) {
            return Err(RpcError::exists(format!(
                "exec {} of {}: already exists",
                r.exec_id, r.id
            )));
        }
        let spec = r
            .spec
            .as_ref()
            .map(|a| a.value.clone())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| RpcError::invalid(format!("exec {}: no process spec", r.exec_id)))?;
        serde_json::from_slice::<serde_json::Value>(&spec)
            .map_err(|e| RpcError::invalid(format!("exec {}: process spec: {e}", r.exec_id)))?;
        for s in [&r.stdout, &r.stderr] {
            Target::parse(s).map_err(|e| RpcError::invalid(format!("exec {}: {e}", r.exec_id)))?;
        }
        let mut p = Process::new(&r.exec_id, &r.stdin, &r.stdout, &r.stderr, r.terminal);
        p.spec = Some(spec);
        c.execs.insert(r.exec_id.clone(), p);
        let mut e = ev::TaskExecAdded::new();
        e.container_id = r.id;
        e.exec_id = r.exec_id;
        self.events.push(Event::ExecAdded(e));
        empty()
    }

    fn resize_pty(&mut self, r: api::ResizePtyRequest) -> R<Vec<u8>> {
        let p = self.process(&r.id, &r.exec_id)?;
        p.io.resize(r.width, r.height)
            .map_err(|e| RpcError::precondition(format!("resize {}: {e}", r.id)))?;
        empty()
    }

    fn close_io(&mut self, r: api::CloseIORequest) -> R<Vec<u8>> {
        let p = self.process_mut(&r.id, &r.exec_id)?;
        if r.stdin {
            p.io.close_stdin();
        }
        empty()
    }

    fn update(&mut self, r: api::UpdateTaskRequest) -> R<Vec<u8>> {
        let c = self.container(&r.id)?;
        let Some(res) = r.resources.as_ref() else {
            return Err(RpcError::invalid("update: no resources"));
        };
        serde_json::from_slice::<serde_json::Value>(&res.value)
            .map_err(|e| RpcError::invalid(format!("update: resources: {e}")))?;
        if early_delete::started(c) {
            return Err(RpcError::precondition(format!(
                "cannot update container {}: it has exited",
                r.id
            )));
        }
        c.runtime.update(&r.id, &res.value).map_err(rt_err)?;
        empty()
    }

    fn stats(&mut self, r: api::StatsRequest) -> R<Vec<u8>> {
        let c = self.container(&r.id)?;
        if early_delete::started(c) {
            return Err(RpcError::not_found(format!(
                "stats of {}: it has exited and its cgroup is removed",
                r.id
            )));
        }
        let m = kos_cgroups::Manager::new(c.cgroups_path.as_deref(), &r.id)
            .map_err(|e| RpcError::internal(format!("stats: cgroup of {}: {e}", r.id)))?;
        let s = m
            .stats()
            .map_err(|e| RpcError::internal(format!("stats of {}: {e}", r.id)))?;
        let any = crate::metrics::to_any(m.layout(), &s)
            .map_err(|e| RpcError::internal(format!("stats: {e}")))?;
        let mut resp = api::StatsResponse::new();
        resp.stats = MessageField::some(any);
        encode(&resp)
    }

    fn connect(&mut self, r: api::ConnectRequest) -> R<Vec<u8>> {
        let mut resp = api::ConnectResponse::new();
        resp.shim_pid = std::process::id();
        resp.version = concat!("kos-shim ", env!("CARGO_PKG_VERSION")).to_string();
        if let Some(c) = self.containers.get(&r.id) {
            resp.task_pid = c.init.pid;
        }
        encode(&resp)
    }

    fn shutdown(&mut self, _r: api::ShutdownRequest) -> R<Vec<u8>> {
        // A shim serving a pod stays while any of its containers does.
        if self.containers.is_empty() {
            self.shutdown = true;
        }
        empty()
    }

    fn wait(&mut self, conn: u64, stream: u32, r: api::WaitRequest) -> Reply {
        match self.process(&r.id, &r.exec_id) {
            Err(e) => Reply::Now(Err(e)),
            Ok(p) => match p.exit {
                Some((code, at)) => Reply::Now(wait_response(code, at)),
                None => {
                    self.waiters.push(Waiter {
                        conn,
                        stream,
                        container: r.id,
                        exec_id: r.exec_id,
                    });
                    Reply::Later
                }
            },
        }
    }

    /// Answers Wait calls on a process: with its exit, or NotFound when it went away.
    fn answer_waiters(&mut self, id: &str, exec_id: &str, gone: bool) {
        let exit = self
            .containers
            .get(id)
            .and_then(|c| c.process(exec_id))
            .and_then(|p| p.exit);
        let mut keep = Vec::new();
        for w in std::mem::take(&mut self.waiters) {
            if w.container != id || w.exec_id != exec_id {
                keep.push(w);
                continue;
            }
            let res = match exit {
                Some((code, at)) => wait_response(code, at),
                None if gone => Err(RpcError::not_found(format!(
                    "process {exec_id} of {id} was deleted"
                ))),
                None => {
                    keep.push(w);
                    continue;
                }
            };
            self.replies.push((w.conn, response_frame(w.stream, res)));
        }
        self.waiters = keep;
    }

    /// A child exited (from the reaper). Unknown pids (the runtime's helpers, a logging
    /// program) are ignored.
    pub fn process_exited(&mut self, pid: i32, code: u32) {
        if self.early_delete_exited(pid, code) {
            return;
        }
        let mut found = None;
        let mut held = None;
        for (id, c) in self.containers.iter_mut() {
            if c.awaiting_start && c.held_exit.is_none() && c.init.pid as i32 == pid {
                // Started at create, not yet by Start: the exit waits for it (its output
                // is read to the end now, as for any exit).
                c.held_exit = Some((code, Time::now()));
                c.init.io.drain();
                held = Some(id.clone());
                break;
            }
            for p in c.processes_mut() {
                if p.pid as i32 == pid && !p.exited() && p.spec.is_none() {
                    p.set_exited(code);
                    found = Some((id.clone(), p.exec_id.clone()));
                }
            }
        }
        if let Some(id) = held {
            self.kill_what_the_init_left(&id);
            return;
        }
        if let Some((id, exec_id)) = found {
            if exec_id.is_empty() {
                self.kill_what_the_init_left(&id);
            }
            self.finish_process(&id, &exec_id, true);
            self.consider_early_delete(&id);
        }
    }

    fn kill_what_the_init_left(&self, id: &str) {
        if let Some(c) = self.containers.get(id) {
            if c.kill_all_on_exit {
                // Through the cgroup rather than `runtime kill --all`, which a runtime may
                // refuse for a stopped container.
                let res = kos_cgroups::Manager::new(c.cgroups_path.as_deref(), id)
                    .and_then(|m| m.kill_all(libc::SIGKILL));
                if let Err(e) = res {
                    crate::log::warn(&format!("{id}: killing what the init left: {e}"));
                }
            }
        }
    }

    /// Ends the wait for Start of a task started at create: an exit held back meanwhile is
    /// recorded, published and answered now.
    fn release_held_exit(&mut self, id: &str) {
        let Some(c) = self.containers.get_mut(id) else {
            return;
        };
        c.awaiting_start = false;
        if let Some((code, at)) = c.held_exit.take() {
            c.init.status = Status::Stopped;
            c.init.exit = Some((code, at));
            self.finish_process(id, "", true);
            self.consider_early_delete(id);
        }
    }

    fn finish_process(&mut self, id: &str, exec_id: &str, publish: bool) {
        let Some(p) = self.containers.get(id).and_then(|c| c.process(exec_id)) else {
            return;
        };
        if publish {
            if let Some((code, at)) = p.exit {
                let mut e = ev::TaskExit::new();
                e.container_id = id.to_string();
                e.id = if exec_id.is_empty() {
                    id.to_string()
                } else {
                    exec_id.to_string()
                };
                e.pid = p.pid;
                e.exit_status = code;
                e.exited_at = MessageField::some(at.to_proto());
                self.events.push(Event::Exit(e));
            }
        }
        self.answer_waiters(id, exec_id, false);
    }

    /// An OOM watch of container `id` is readable.
    pub fn oom_ready(&mut self, id: &str) {
        let Some(c) = self.containers.get_mut(id) else {
            return;
        };
        let Some(w) = c.oom.as_mut() else {
            return;
        };
        match w.read_events() {
            Ok(0) => {}
            Ok(_) => {
                let mut e = ev::TaskOOM::new();
                e.container_id = id.to_string();
                self.events.push(Event::Oom(e));
            }
            Err(_) => c.oom = None,
        }
    }
}

fn wait_response(code: u32, at: Time) -> R<Vec<u8>> {
    let mut w = api::WaitResponse::new();
    w.exit_status = code;
    w.exited_at = MessageField::some(at.to_proto());
    encode(&w)
}

/// The init's pid and the signal, when the shim can deliver a Kill to the container itself
/// instead of through the runtime's `kill` (one process spawn fewer per stop, kill and
/// `rm -f`). The shim is the init's parent (subreaper) and reaps it on this same thread, so
/// an init not yet seen to exit is alive or an unreaped zombie: its pid cannot have been
/// reused. Signalling only the init is all the runtime does without `all`; with `all`, a
/// SIGKILL to the init of a container with its own pid namespace ends every process in it
/// (the kernel kills a pid namespace whose init dies), as runc also relies on. A paused
/// container stays with the runtime, which thaws around its signals where it must.
fn direct_init_signal(
    c: &Container,
    signal: u32,
    all: bool,
) -> Option<(nix::unistd::Pid, nix::sys::signal::Signal)> {
    let sig = nix::sys::signal::Signal::try_from(i32::try_from(signal).ok()?).ok()?;
    let whole_namespace = sig == nix::sys::signal::Signal::SIGKILL && !c.kill_all_on_exit;
    let usable = c.init.pid != 0
        && matches!(c.init.status, Status::Created | Status::Running)
        && (!all || whole_namespace);
    usable.then(|| (nix::unistd::Pid::from_raw(c.init.pid as i32), sig))
}
