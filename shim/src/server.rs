//! The shim's single-threaded loop: one poll() over the ttrpc listener and connections, the
//! SIGCHLD signalfd, every process's stdio pumps and the OOM watches.

use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use containerd_shim_protos::ttrpc::Request;
use protobuf::Message;

use crate::idle::Idle;
use crate::reaper::Reaper;
use crate::service::{Reply, Service, LOGS_SERVICE, TASK_SERVICE};
use crate::ttrpc::{self, RpcError, TYPE_REQUEST};

struct Conn {
    id: u64,
    stream: UnixStream,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    closed: bool,
}

enum Token {
    Listener,
    Signal,
    Conn(usize),
    Io(String, String, usize),
    Oom(String),
    Events,
}

/// Quiet time after which the shim gives memory back (see `idle`).
const IDLE_AFTER: Duration = Duration::from_millis(100);

pub struct Server {
    /// The listener and the path it is bound to; None once withdrawn at shutdown.
    listener: Option<(UnixListener, PathBuf)>,
    conns: Vec<Conn>,
    next_conn: u64,
    reaper: Reaper,
    idle: Idle,
    pub service: Service,
}

impl Server {
    pub fn new(
        listener: UnixListener,
        socket: PathBuf,
        reaper: Reaper,
        service: Service,
    ) -> io::Result<Server> {
        listener.set_nonblocking(true)?;
        Ok(Server {
            listener: Some((listener, socket)),
            conns: Vec::new(),
            next_conn: 1,
            reaper,
            idle: Idle::new(),
            service,
        })
    }

    /// Serves until Shutdown with no containers left; the socket is gone when this returns.
    pub fn run(&mut self) {
        self.serve();
        self.withdraw();
    }

    /// Unlinks the socket and closes the listener. At Shutdown this happens before the reply
    /// is written: a caller that starts this container again once answered must not find
    /// (and join) a shim that is about to leave, nor have its new socket unlinked by it.
    fn withdraw(&mut self) {
        if let Some((listener, path)) = self.listener.take() {
            let _ = std::fs::remove_file(&path);
            drop(listener);
        }
    }

    fn serve(&mut self) {
        let mut fds: Vec<libc::pollfd> = Vec::new();
        let mut tokens: Vec<Token> = Vec::new();
        // When to give memory back: set by any activity, cleared once done.
        let mut release_at: Option<Instant> = None;
        loop {
            fds.clear();
            tokens.clear();
            let mut add = |fd: RawFd, ev: i16, t: Token| {
                fds.push(libc::pollfd {
                    fd,
                    events: ev,
                    revents: 0,
                });
                tokens.push(t);
            };
            if let Some((l, _)) = &self.listener {
                add(l.as_raw_fd(), libc::POLLIN, Token::Listener);
            }
            add(self.reaper.raw_fd(), libc::POLLIN, Token::Signal);
            for (i, c) in self.conns.iter().enumerate() {
                let ev = if c.wbuf.is_empty() {
                    libc::POLLIN
                } else {
                    libc::POLLIN | libc::POLLOUT
                };
                add(c.stream.as_raw_fd(), ev, Token::Conn(i));
            }
            for c in self.service.containers.values() {
                for p in std::iter::once(&c.init).chain(c.execs.values()) {
                    for (idx, fd, ev) in p.io.interests() {
                        add(fd, ev, Token::Io(c.id.clone(), p.exec_id.clone(), idx));
                    }
                }
                if let Some(w) = &c.oom {
                    add(
                        w.as_fd().as_raw_fd(),
                        libc::POLLIN,
                        Token::Oom(c.id.clone()),
                    );
                }
            }
            if let Some((fd, ev)) = self.service.events.interest() {
                add(fd, ev, Token::Events);
            }
            // Released right before poll(), so that hardly any code runs (and faults back in)
            // between giving the pages back and sleeping.
            let release_now = release_at.is_some_and(|t| t <= Instant::now());
            if release_now {
                release_at = None;
            }
            let deadline = match (self.service.events.deadline(), release_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let timeout = match deadline {
                None => -1,
                Some(t) => t
                    .saturating_duration_since(Instant::now())
                    .as_millis()
                    .min(60_000) as i32,
            };
            if release_now {
                self.idle.release();
            }
            // SAFETY: fds is a valid array of pollfd of the given length.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n < 0 {
                let e = io::Error::last_os_error();
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                crate::log::warn(&format!("poll: {e}"));
                return;
            }
            for (pfd, tok) in fds.iter().zip(tokens.iter()) {
                if pfd.revents == 0 {
                    continue;
                }
                match tok {
                    Token::Listener => self.accept(),
                    Token::Signal => {
                        for (pid, code) in self.reaper.reap() {
                            crate::log::debug(&format!("pid {pid} exited with {code}"));
                            self.service.process_exited(pid, code);
                        }
                    }
                    Token::Conn(i) => self.conn_ready(*i, pfd.revents),
                    Token::Io(id, exec_id, idx) => {
                        if let Some(p) = self
                            .service
                            .containers
                            .get_mut(id)
                            .and_then(|c| c.process_mut(exec_id))
                        {
                            p.io.ready(*idx);
                        }
                    }
                    Token::Oom(id) => self.service.oom_ready(id),
                    Token::Events => self.service.events.ready(),
                }
            }
            for c in self.service.containers.values_mut() {
                for p in c.processes_mut() {
                    p.io.tidy();
                }
            }
            self.deliver_replies();
            if self.service.shutdown {
                self.withdraw();
            }
            self.flush_conns();
            // The runtime's delete of containers whose processes are all gone: started once
            // the Wait answers are out, it runs while the caller handles them.
            self.service.run_early_deletes();
            for c in self.conns.iter().filter(|c| c.closed) {
                self.service.connection_closed(c.id);
            }
            self.conns.retain(|c| !c.closed);
            // Events go out after the answers, so a caller never sees an event for a
            // request it has no reply to yet.
            self.service.events.flush();
            if n > 0 {
                // Something happened: give back what it used once things are quiet again.
                release_at = Some(Instant::now() + IDLE_AFTER);
            }
            if self.service.shutdown && self.conns.iter().all(|c| c.wbuf.is_empty()) {
                // The last events (TaskDelete, TaskExit) still go out before the shim leaves.
                self.service.events.finish();
                return;
            }
        }
    }

    fn accept(&mut self) {
        let Some((listener, _)) = &self.listener else {
            return;
        };
        loop {
            match listener.accept() {
                Ok((s, _)) => {
                    if s.set_nonblocking(true).is_err() {
                        continue;
                    }
                    self.conns.push(Conn {
                        id: self.next_conn,
                        stream: s,
                        rbuf: Vec::new(),
                        wbuf: Vec::new(),
                        closed: false,
                    });
                    self.next_conn += 1;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    crate::log::warn(&format!("accept: {e}"));
                    return;
                }
            }
        }
    }

    fn conn_ready(&mut self, i: usize, revents: i16) {
        if revents & libc::POLLOUT != 0 {
            flush(&mut self.conns[i]);
        }
        if revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) == 0 {
            return;
        }
        let mut buf = [0u8; 16 * 1024];
        loop {
            let c = &mut self.conns[i];
            match c.stream.read(&mut buf) {
                Ok(0) => {
                    c.closed = true;
                    break;
                }
                Ok(n) => {
                    c.rbuf.extend_from_slice(&buf[..n]);
                    if c.rbuf.len() > ttrpc::MAX_MESSAGE + ttrpc::HEADER_LEN {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    c.closed = true;
                    break;
                }
            }
        }
        loop {
            let frame = match ttrpc::take_frame(&mut self.conns[i].rbuf) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(e) => {
                    crate::log::warn(&format!("ttrpc connection dropped: {e}"));
                    self.conns[i].closed = true;
                    break;
                }
            };
            let (h, body) = frame;
            if h.kind != TYPE_REQUEST {
                continue;
            }
            let conn_id = self.conns[i].id;
            let reply = match Request::parse_from_bytes(&body) {
                Err(e) => Reply::Now(Err(RpcError::invalid(format!("bad ttrpc request: {e}")))),
                Ok(req) if req.service == LOGS_SERVICE => {
                    self.service.dispatch_logs(&req.method, &req.payload)
                }
                Ok(req) if req.service != TASK_SERVICE => Reply::Now(Err(RpcError::new(
                    containerd_shim_protos::ttrpc::Code::UNIMPLEMENTED,
                    format!("service {} is not served here", req.service),
                ))),
                Ok(req) => {
                    let started = Instant::now();
                    let r = self
                        .service
                        .dispatch(conn_id, h.stream_id, &req.method, &req.payload);
                    crate::log::debug(&format!(
                        "request {}: {} us",
                        req.method,
                        started.elapsed().as_micros()
                    ));
                    r
                }
            };
            if let Reply::Now(res) = reply {
                if let Err(e) = &res {
                    crate::log::debug(&format!("request failed: {e}"));
                }
                let frame = ttrpc::response_frame(h.stream_id, res);
                self.conns[i].wbuf.extend_from_slice(&frame);
            }
        }
    }

    fn deliver_replies(&mut self) {
        for (conn, frame) in self.service.take_replies() {
            if let Some(c) = self.conns.iter_mut().find(|c| c.id == conn && !c.closed) {
                c.wbuf.extend_from_slice(&frame);
            }
        }
    }

    fn flush_conns(&mut self) {
        for c in &mut self.conns {
            flush(c);
        }
    }
}

fn flush(c: &mut Conn) {
    while !c.wbuf.is_empty() && !c.closed {
        match c.stream.write(&c.wbuf) {
            Ok(0) => c.closed = true,
            Ok(n) => {
                c.wbuf.drain(..n);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => c.closed = true,
        }
    }
    if c.wbuf.is_empty() && c.wbuf.capacity() > 64 * 1024 {
        c.wbuf = Vec::new();
    }
}
