//! A process's stdio: pipes (or a terminal) between the container and where its output goes
//! (containerd's fifos, files, a logging program, json-file or CRI logs), moved by pumps the
//! shim's poll loop drives without blocking.

pub mod binary;
pub mod console;
pub mod cri;
pub mod json_file;
pub mod line;
pub mod log_file;
pub mod uri;

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::rc::Rc;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};

use log_file::LogFile;
use uri::Target;

/// Where a pump delivers bytes.
pub trait Sink {
    /// Writes what it can now; WouldBlock when nothing fits.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize>;
    /// The descriptor to wait on (POLLOUT) when a write would block.
    fn poll_fd(&self) -> Option<RawFd> {
        None
    }
    /// End of the stream: flush what is buffered (a last partial line).
    fn finish(&mut self) {}
}

/// A non-blocking descriptor: fifo, pipe, terminal master or plain file.
pub struct FdSink(pub OwnedFd);

impl Sink for FdSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            match nix::unistd::write(&self.0, buf) {
                Ok(n) => return Ok(n),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }
    fn poll_fd(&self) -> Option<RawFd> {
        Some(self.0.as_raw_fd())
    }
}

/// Bytes beyond this wait in the pump only while the sink is blocked; past it the pump stops
/// reading, which blocks the writer in the container (backpressure, nothing dropped).
const PENDING_LIMIT: usize = 256 * 1024;
const CHUNK: usize = 32 * 1024;

/// Moves bytes from a source descriptor to a sink.
pub struct Pump {
    src: Option<OwnedFd>,
    sink: Box<dyn Sink>,
    pending: Vec<u8>,
    done: bool,
}

impl Pump {
    pub fn new(src: OwnedFd, sink: Box<dyn Sink>) -> Pump {
        Pump {
            src: Some(src),
            sink,
            pending: Vec::new(),
            done: false,
        }
    }

    pub fn is_done(&self) -> bool {
        self.done
    }

    /// The descriptor and events to poll for, None when finished.
    pub fn interest(&self) -> Option<(RawFd, i16)> {
        if self.done {
            return None;
        }
        if !self.pending.is_empty() {
            return self.sink.poll_fd().map(|fd| (fd, libc::POLLOUT));
        }
        self.src.as_ref().map(|s| (s.as_raw_fd(), libc::POLLIN))
    }

    /// Called when the polled descriptor is ready.
    pub fn ready(&mut self) {
        if !self.pending.is_empty() {
            self.flush();
            return;
        }
        self.read_some(1);
    }

    /// Reads everything available now (at exit, so no output is left behind).
    pub fn drain(&mut self) {
        self.flush();
        self.read_some(usize::MAX);
    }

    fn read_some(&mut self, mut rounds: usize) {
        let mut buf = [0u8; CHUNK];
        while rounds > 0 && !self.done && self.pending.len() < PENDING_LIMIT {
            rounds -= 1;
            let Some(src) = self.src.as_ref() else {
                return;
            };
            match nix::unistd::read(src, &mut buf) {
                Ok(0) => return self.eof(),
                Ok(n) => self.push(&buf[..n]),
                Err(Errno::EAGAIN) => return,
                Err(Errno::EINTR) => rounds += 1,
                // A terminal whose last user is gone reads EIO: the end of its output.
                Err(_) => return self.eof(),
            }
        }
    }

    fn push(&mut self, data: &[u8]) {
        if !self.pending.is_empty() {
            self.pending.extend_from_slice(data);
            return self.flush();
        }
        match self.sink.write(data) {
            Ok(n) if n == data.len() => {}
            Ok(n) => self.pending.extend_from_slice(&data[n..]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.pending.extend_from_slice(data),
            Err(_) => self.broken(),
        }
    }

    fn flush(&mut self) {
        while !self.pending.is_empty() {
            match self.sink.write(&self.pending) {
                Ok(0) => break,
                Ok(n) => {
                    self.pending.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return self.broken(),
            }
        }
        if self.pending.is_empty() {
            self.pending = Vec::new();
            if self.src.is_none() {
                self.sink.finish();
                self.done = true;
            }
        }
    }

    fn eof(&mut self) {
        self.src = None;
        if self.pending.is_empty() {
            self.sink.finish();
            self.done = true;
        }
    }

    /// The sink is gone (reader closed, process gone): nothing more can be delivered.
    fn broken(&mut self) {
        self.pending = Vec::new();
        self.src = None;
        self.done = true;
    }
}

pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(OFlag::O_CLOEXEC)?)
}

pub fn set_nonblocking(fd: &OwnedFd) -> io::Result<()> {
    let fl = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    fcntl(fd, FcntlArg::F_SETFL(fl | OFlag::O_NONBLOCK))?;
    Ok(())
}

fn dev_null(write: bool) -> io::Result<OwnedFd> {
    let f = OpenOptions::new()
        .read(!write)
        .write(write)
        .open("/dev/null")?;
    Ok(f.into())
}

/// Opens a fifo someone else made, read-write: the shim never sees EOF or EPIPE when the
/// peer (containerd, kosd) goes away and comes back, and open never blocks.
fn open_fifo(path: &std::path::Path, what: &str) -> Result<OwnedFd, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("{what} {}: {e}", path.display()))?;
    if !meta.file_type().is_fifo() && !meta.file_type().is_char_device() && !meta.is_file() {
        return Err(format!("{what} {}: not a fifo", path.display()));
    }
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("{what} {}: {e}", path.display()))?;
    Ok(f.into())
}

/// Opens the stdin fifo read-only: when the client closes its end the shim reads EOF and
/// closes the process's stdin, as containerd's own shims do. (Until a writer first opens
/// it, a read-only fifo polls as neither readable nor hung up.) A terminal's stdin is
/// opened read-write instead: a client that detaches leaves it open for the next attach,
/// as Docker does; only CloseIO closes it.
fn open_stdin_fifo(path: &std::path::Path, terminal: bool) -> Result<OwnedFd, String> {
    let meta = std::fs::metadata(path).map_err(|e| format!("stdin {}: {e}", path.display()))?;
    if !meta.file_type().is_fifo() {
        return Err(format!("stdin {}: not a fifo", path.display()));
    }
    let f = OpenOptions::new()
        .read(true)
        .write(terminal)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| format!("stdin {}: {e}", path.display()))?;
    Ok(f.into())
}

/// What the process is given for stdout or stderr, and what the shim keeps.
enum Out {
    Null,
    /// Bytes go through a pump into this sink.
    Pump(Box<dyn Sink>),
    /// The process writes straight into this descriptor (a logging program's pipe).
    Direct(OwnedFd),
}

/// Descriptors handed to the runtime as the process's stdin, stdout and stderr.
pub struct ChildStdio {
    pub stdin: OwnedFd,
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
}

/// The shim's side of one process's stdio.
#[derive(Default)]
pub struct ProcessIo {
    pub outputs: Vec<Pump>,
    pub stdin: Option<Pump>,
    /// The terminal's master, for resizing.
    pub console: Option<OwnedFd>,
    /// Waiting for the terminal: where its output and input go once it arrives.
    await_console: Option<(Out, Option<OwnedFd>)>,
    /// The json-file and CRI log files its output goes to (once each when shared).
    logs: Vec<LogFile>,
}

pub struct IoRequest<'a> {
    pub stdin: &'a str,
    pub stdout: &'a str,
    pub stderr: &'a str,
    pub terminal: bool,
    pub container_id: &'a str,
    pub namespace: &'a str,
    /// uid and gid to own the process's ends of the pipes.
    pub owner: Option<(u32, u32)>,
}

fn chown_to(fd: &OwnedFd, owner: Option<(u32, u32)>, what: &str) -> Result<(), String> {
    if let Some((u, g)) = owner {
        nix::unistd::fchown(
            fd,
            Some(nix::unistd::Uid::from_raw(u)),
            Some(nix::unistd::Gid::from_raw(g)),
        )
        .map_err(|e| format!("{what} pipe: chown to {u}:{g}: {e}"))?;
    }
    Ok(())
}

impl ProcessIo {
    /// Opens every target before anything runs, so a bad path fails the request cleanly.
    pub fn open(req: &IoRequest<'_>) -> Result<(ProcessIo, ChildStdio), String> {
        let out_t = Target::parse(req.stdout)?;
        let err_t = Target::parse(req.stderr)?;
        let stdin_fifo = if req.stdin.is_empty() {
            None
        } else {
            Some(open_stdin_fifo(
                std::path::Path::new(req.stdin),
                req.terminal,
            )?)
        };
        let mut io = ProcessIo::default();
        let (out, err) = outputs(&out_t, &err_t, req, &mut io.logs)?;
        let null = |w| dev_null(w).map_err(|e| format!("/dev/null: {e}"));
        if req.terminal {
            io.await_console = Some((out, stdin_fifo));
            let child = ChildStdio {
                stdin: null(false)?,
                stdout: null(true)?,
                stderr: null(true)?,
            };
            return Ok((io, child));
        }
        let stdin = match stdin_fifo {
            Some(fifo) => {
                let (r, w) = pipe().map_err(|e| format!("stdin pipe: {e}"))?;
                set_nonblocking(&w).map_err(|e| format!("stdin pipe: {e}"))?;
                chown_to(&r, req.owner, "stdin")?;
                io.stdin = Some(Pump::new(fifo, Box::new(FdSink(w))));
                r
            }
            None => null(false)?,
        };
        let mut child_end = |o: Out, what: &str| -> Result<OwnedFd, String> {
            match o {
                Out::Null => null(true),
                Out::Direct(fd) => Ok(fd),
                Out::Pump(sink) => {
                    let (r, w) = pipe().map_err(|e| format!("{what} pipe: {e}"))?;
                    set_nonblocking(&r).map_err(|e| format!("{what} pipe: {e}"))?;
                    chown_to(&w, req.owner, what)?;
                    io.outputs.push(Pump::new(r, sink));
                    Ok(w)
                }
            }
        };
        let stdout = child_end(out, "stdout")?;
        let stderr = child_end(err, "stderr")?;
        Ok((
            io,
            ChildStdio {
                stdin,
                stdout,
                stderr,
            },
        ))
    }

    /// The terminal arrived: its output goes where stdout was to go, stdin into it.
    pub fn attach_console(&mut self, master: OwnedFd) -> io::Result<()> {
        set_nonblocking(&master)?;
        if let Some((out, stdin_fifo)) = self.await_console.take() {
            let sink: Box<dyn Sink> = match out {
                Out::Null => Box::new(Discard),
                Out::Pump(s) => s,
                Out::Direct(fd) => {
                    set_nonblocking(&fd)?;
                    Box::new(FdSink(fd))
                }
            };
            self.outputs.push(Pump::new(master.try_clone()?, sink));
            if let Some(fifo) = stdin_fifo {
                self.stdin = Some(Pump::new(fifo, Box::new(FdSink(master.try_clone()?))));
            }
        }
        self.console = Some(master);
        Ok(())
    }

    pub fn resize(&self, width: u32, height: u32) -> io::Result<()> {
        let Some(m) = &self.console else {
            return Err(io::Error::other("the process has no terminal"));
        };
        let ws = libc::winsize {
            ws_row: height.min(u16::MAX as u32) as u16,
            ws_col: width.min(u16::MAX as u32) as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which is valid here.
        if unsafe { libc::ioctl(m.as_raw_fd(), libc::TIOCSWINSZ, &ws) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Everything the process wrote so far, delivered (called when it exits).
    pub fn drain(&mut self) {
        for p in &mut self.outputs {
            p.drain();
        }
        // Finished pumps go in `tidy`, after the poll round whose indexes name them.
        // Nobody reads the process's stdin any more.
        self.stdin = None;
    }

    /// Opens every log file of the process again at its path (see `log_file`); returns how
    /// many there are, 0 when its output goes to no log file.
    pub fn reopen_logs(&self) -> Result<usize, String> {
        for l in &self.logs {
            l.reopen()?;
        }
        Ok(self.logs.len())
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    pub fn interests(&self) -> impl Iterator<Item = (usize, RawFd, i16)> + '_ {
        let outs = self
            .outputs
            .iter()
            .enumerate()
            .filter_map(|(i, p)| p.interest().map(|(fd, ev)| (i, fd, ev)));
        let inp = self
            .stdin
            .iter()
            .filter_map(|p| p.interest().map(|(fd, ev)| (usize::MAX, fd, ev)));
        outs.chain(inp)
    }

    /// The pump `idx` from `interests` is ready.
    pub fn ready(&mut self, idx: usize) {
        if idx == usize::MAX {
            if let Some(p) = &mut self.stdin {
                p.ready();
                if p.is_done() {
                    self.stdin = None;
                }
            }
        } else if let Some(p) = self.outputs.get_mut(idx) {
            // Finished pumps stay until `tidy`: indexes from `interests` must stay valid for
            // the whole poll round.
            p.ready();
        }
    }

    pub fn tidy(&mut self) {
        self.outputs.retain(|p| !p.is_done());
    }
}

struct Discard;

impl Sink for Discard {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
}

/// stdout and stderr targets; the same json-file or CRI path on both shares one writer.
/// Every json-file or CRI file opened goes into `logs`.
fn outputs(
    out_t: &Target,
    err_t: &Target,
    req: &IoRequest<'_>,
    logs: &mut Vec<LogFile>,
) -> Result<(Out, Out), String> {
    match (out_t, err_t) {
        (
            Target::JsonFile {
                path,
                max_size,
                max_file,
            },
            Target::JsonFile { path: p2, .. },
        ) if path == p2 => {
            let f = Rc::new(RefCell::new(
                json_file::JsonFile::open(path, *max_size, *max_file)
                    .map_err(|e| format!("json-file log {}: {e}", path.display()))?,
            ));
            logs.push(LogFile::Json(f.clone()));
            Ok((
                Out::Pump(Box::new(
                    json_file::JsonFileSink::new(f.clone(), "stdout").for_terminal(req.terminal),
                )),
                Out::Pump(Box::new(
                    json_file::JsonFileSink::new(f, "stderr").for_terminal(req.terminal),
                )),
            ))
        }
        (Target::CriLog(path), Target::CriLog(p2)) if path == p2 => {
            let f = Rc::new(RefCell::new(
                cri::CriFile::open(path).map_err(|e| format!("cri log {}: {e}", path.display()))?,
            ));
            logs.push(LogFile::Cri(f.clone()));
            Ok((
                Out::Pump(Box::new(cri::CriSink::new(f.clone(), "stdout"))),
                Out::Pump(Box::new(cri::CriSink::new(f, "stderr"))),
            ))
        }
        (Target::Binary { path, args }, _) | (_, Target::Binary { path, args }) => {
            // One logging program reads both streams.
            let (o, e) = binary::spawn(path, args, req.container_id, req.namespace)
                .map_err(|e| format!("binary log: {e}"))?;
            Ok((Out::Direct(o), Out::Direct(e)))
        }
        _ => Ok((
            output(out_t, "stdout", req.terminal, logs)?,
            output(err_t, "stderr", req.terminal, logs)?,
        )),
    }
}

fn output(
    t: &Target,
    stream: &'static str,
    terminal: bool,
    logs: &mut Vec<LogFile>,
) -> Result<Out, String> {
    let what = stream;
    Ok(match t {
        Target::Null => Out::Null,
        Target::Fifo(p) => Out::Pump(Box::new(FdSink(open_fifo(p, what)?))),
        Target::File(p) => {
            let f: File = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o640)
                .open(p)
                .map_err(|e| format!("{what} file {}: {e}", p.display()))?;
            Out::Pump(Box::new(FdSink(f.into())))
        }
        Target::JsonFile {
            path,
            max_size,
            max_file,
        } => {
            let f = Rc::new(RefCell::new(
                json_file::JsonFile::open(path, *max_size, *max_file)
                    .map_err(|e| format!("json-file log {}: {e}", path.display()))?,
            ));
            logs.push(LogFile::Json(f.clone()));
            Out::Pump(Box::new(
                json_file::JsonFileSink::new(f, stream).for_terminal(terminal),
            ))
        }
        Target::CriLog(path) => {
            let f = Rc::new(RefCell::new(
                cri::CriFile::open(path).map_err(|e| format!("cri log {}: {e}", path.display()))?,
            ));
            logs.push(LogFile::Cri(f.clone()));
            Out::Pump(Box::new(cri::CriSink::new(f, stream)))
        }
        Target::Binary { .. } => Out::Null,
    })
}
