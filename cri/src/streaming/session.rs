//! Exec and attach sessions against a container's shim, whatever the transport: the
//! transport hands over channels for the client's stdin and terminal sizes and takes the
//! process's output, and learns how the session ended.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use k8s_cri::v1 as cri;
use kos_shim_client::{ShimClient, Stdio};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::logtail::{Follower, LogStream};
use super::status::Outcome;
use super::StreamRequest;
use crate::container::{exec_process, fifo, new_exec_id};
use crate::core::Core;
use crate::error::{Error, Result};
use crate::state::{ContainerRecord, ContainerState};

/// Output of a session, tagged with its stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Out {
    Stdout,
    Stderr,
}

pub type Chunk = (Out, Bytes);

/// The streams a session serves (from the CRI request; `tty` merges stderr into stdout).
#[derive(Debug, Clone, Copy, Default)]
pub struct Wants {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl Wants {
    pub fn of_exec(r: &cri::ExecRequest) -> Wants {
        Wants {
            stdin: r.stdin,
            stdout: r.stdout,
            stderr: r.stderr && !r.tty,
            tty: r.tty,
        }
    }

    pub fn of_attach(r: &cri::AttachRequest) -> Wants {
        Wants {
            stdin: r.stdin,
            stdout: r.stdout,
            stderr: r.stderr && !r.tty,
            tty: r.tty,
        }
    }
}

/// The transport's side of a session.
pub struct Session {
    /// The client's stdin; the channel closing is the end of input.
    pub stdin: mpsc::Receiver<Bytes>,
    /// Terminal sizes (width, height).
    pub resize: mpsc::Receiver<(u16, u16)>,
    pub out: mpsc::Sender<Chunk>,
    /// Completes (with an error) when the client's connection is gone.
    pub gone: oneshot::Receiver<()>,
    /// Attach: the container log, opened at its end when the request came (so what the
    /// container writes once the client has its answer is never missed).
    pub log: Option<Follower>,
}

/// Checks a request before its URL is handed out (what kubelet's server refuses early).
pub fn check(core: &Core, container_id: &str, w: Wants) -> Result<ContainerRecord> {
    let rec = core.container(container_id)?;
    if rec.state != ContainerState::Running {
        return Err(Error::FailedPrecondition(format!(
            "container {} is not running",
            rec.id
        )));
    }
    if !(w.stdin || w.stdout || w.stderr) {
        return Err(Error::InvalidArgument(
            "one of stdin, stdout or stderr must be requested".into(),
        ));
    }
    Ok(rec)
}

/// Copies a fifo's bytes into the session's output until its writer (the shim) closes.
fn pump_out(mut rx: pipe::Receiver, tag: Out, out: mpsc::Sender<Chunk>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match rx.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if out
                        .send((tag, Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    })
}

/// Copies the client's stdin into a fifo; returns when input ends (the write end closed).
async fn pump_in(mut input: mpsc::Receiver<Bytes>, w: &mut pipe::Sender) {
    while let Some(b) = input.recv().await {
        if w.write_all(&b).await.is_err() {
            return;
        }
    }
}

/// Waits (bounded) until the shim has read what was written into a stdin fifo, so closing
/// a terminal's input (which the shim holds read-write) loses nothing still in the pipe.
async fn drained(w: &pipe::Sender) {
    use std::os::fd::AsRawFd;
    for _ in 0..200 {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int; the descriptor is an open pipe we own.
        let r = unsafe { libc::ioctl(w.as_raw_fd(), libc::FIONREAD, &mut n) };
        if r < 0 || n == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(20)).await;
}

fn resizer(
    shim: ShimClient,
    id: String,
    exec_id: String,
    mut rx: mpsc::Receiver<(u16, u16)>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        while let Some((w, h)) = rx.recv().await {
            if let Err(e) = shim.resize_pty(&id, &exec_id, w as u32, h as u32).await {
                tracing::debug!(id, exec_id, error = %e, "resizing the terminal failed");
            }
        }
    })
}

/// Removes the exec's fifos when the session ends, however it ends.
struct FifoFiles(Vec<PathBuf>);

impl Drop for FifoFiles {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Runs `req.cmd` in the container with the client's streams; the exit code, or why it
/// could not run.
pub async fn exec(core: Arc<Core>, req: cri::ExecRequest, s: Session) -> Outcome {
    match exec_inner(core, req, s).await {
        Ok(code) => Outcome::Exited(code),
        Err(e) => Outcome::Failed(tonic::Status::from(e).message().to_string()),
    }
}

async fn exec_inner(core: Arc<Core>, req: cri::ExecRequest, s: Session) -> Result<i32> {
    let w = Wants::of_exec(&req);
    let rec = check(&core, &req.container_id, w)?;
    if req.cmd.is_empty() {
        return Err(Error::InvalidArgument("exec command is empty".into()));
    }
    let shim = core.shim(&rec).await?;
    let process = exec_process(&rec, &req.cmd, w.tty)?;
    let exec_id = new_exec_id()?;
    let dir = rec.bundle.join("exec");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
    let path = |what: &str| dir.join(format!("{exec_id}.{what}"));
    let mut files = FifoFiles(Vec::new());
    let mut fifo_for = |want: bool, what: &str| -> Result<String> {
        if !want {
            return Ok(String::new());
        }
        let p = path(what);
        fifo::make(&p)?;
        files.0.push(p.clone());
        Ok(p.to_string_lossy().into_owned())
    };
    let io = Stdio {
        stdin: fifo_for(w.stdin, "in")?,
        stdout: fifo_for(w.stdout, "out")?,
        stderr: fifo_for(w.stderr, "err")?,
        terminal: w.tty,
    };
    shim.exec(&rec.id, &exec_id, &process, &io)
        .await
        .map_err(|e| Error::shim("exec", e))?;
    // The shim opens its ends when the process starts. Ours are opened now, each with a
    // temporary opposite end (a keeper) so that neither open fails nor a read sees EOF
    // before the shim is there; the keepers go once it is (see `run_exec`).
    let opened = (|| -> std::io::Result<_> {
        let keeper = |p: &str, write: bool| -> std::io::Result<std::fs::File> {
            use std::os::unix::fs::OpenOptionsExt;
            // A write keeper is opened read-write: write-only would need a reader.
            std::fs::OpenOptions::new()
                .read(true)
                .write(write)
                .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(p)
        };
        let mut keepers = Vec::new();
        let mut rx = |want: bool, p: &str| -> std::io::Result<Option<pipe::Receiver>> {
            if !want {
                return Ok(None);
            }
            keepers.push(keeper(p, true)?);
            pipe::OpenOptions::new().open_receiver(p).map(Some)
        };
        let stdout = rx(w.stdout, &io.stdout)?;
        let stderr = rx(w.stderr, &io.stderr)?;
        let stdin = if w.stdin {
            keepers.push(keeper(&io.stdin, false)?);
            Some(pipe::OpenOptions::new().open_sender(&io.stdin)?)
        } else {
            None
        };
        Ok((
            Ends {
                stdout,
                stderr,
                stdin,
            },
            keepers,
        ))
    })();
    let (ends, keepers) = match opened {
        Ok(x) => x,
        Err(e) => {
            let _ = shim.delete(&rec.id, &exec_id).await;
            return Err(Error::io("opening the exec's fifos in", &dir, e));
        }
    };
    let result = run_exec(&shim, &rec.id, &exec_id, w, s, ends, keepers).await;
    let _ = shim.delete(&rec.id, &exec_id).await;
    drop(files);
    result
}

/// This server's ends of an exec's fifos.
struct Ends {
    stdout: Option<pipe::Receiver>,
    stderr: Option<pipe::Receiver>,
    stdin: Option<pipe::Sender>,
}

async fn run_exec(
    shim: &ShimClient,
    id: &str,
    exec_id: &str,
    w: Wants,
    s: Session,
    ends: Ends,
    keepers: Vec<std::fs::File>,
) -> Result<i32> {
    let Ends {
        stdout,
        stderr,
        stdin,
    } = ends;
    let Session {
        stdin: input,
        resize,
        out,
        mut gone,
        log: _,
    } = s;
    let mut pumps = Vec::new();
    if let Some(r) = stdout {
        pumps.push(pump_out(r, Out::Stdout, out.clone()));
    }
    if let Some(r) = stderr {
        pumps.push(pump_out(r, Out::Stderr, out.clone()));
    }
    drop(out);
    shim.start(id, exec_id)
        .await
        .map_err(|e| Error::shim("starting the exec process", e))?;
    // The shim holds its ends now: its close is the end of output.
    drop(keepers);
    let input_task = stdin.map(|mut wr| {
        let (shim, id, exec_id) = (shim.clone(), id.to_string(), exec_id.to_string());
        tokio::spawn(async move {
            pump_in(input, &mut wr).await;
            if w.tty {
                // The shim holds a terminal's stdin fifo read-write: only CloseIO ends it.
                drained(&wr).await;
                drop(wr);
                let _ = shim.close_stdin(&id, &exec_id).await;
            }
            // Otherwise dropping the only write end is the end of input the shim reads.
        })
    });
    let resize_task = resizer(shim.clone(), id.into(), exec_id.into(), resize);
    let code = tokio::select! {
        r = shim.wait(id, exec_id) => {
            let (code, _) = r.map_err(|e| Error::shim("waiting for the exec process", e))?;
            code as i32
        }
        _ = &mut gone => {
            // The client went away: the process is not left running unattended.
            let _ = shim.kill(id, exec_id, libc::SIGKILL as u32, false).await;
            let _ = shim.wait(id, exec_id).await;
            137
        }
    };
    resize_task.abort();
    if let Some(t) = input_task {
        t.abort();
    }
    // What the process wrote before it exited is delivered before the exit code.
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        for p in pumps.iter_mut() {
            let _ = p.await;
        }
    })
    .await;
    for p in &pumps {
        p.abort();
    }
    Ok(code)
}

/// Runs the exec or attach session a request asked for to its end, whichever transport
/// carries it (port forwarding has no session of this kind).
pub async fn run(core: Arc<Core>, req: StreamRequest, s: Session) -> Outcome {
    match req {
        StreamRequest::Exec(r) => exec(core, r, s).await,
        StreamRequest::Attach(r) => attach(core, r, s).await,
        StreamRequest::PortForward(_) => Outcome::Exited(0),
    }
}

/// Attaches to the container's main process: its output from the CRI log (which the shim
/// writes) from now on, its stdin through the stdin fifo, its terminal's size.
pub async fn attach(core: Arc<Core>, req: cri::AttachRequest, s: Session) -> Outcome {
    match attach_inner(core, req, s).await {
        Ok(()) => Outcome::Exited(0),
        Err(e) => Outcome::Failed(tonic::Status::from(e).message().to_string()),
    }
}

/// Checks of an attach beyond [`check`]: what the container was created with.
pub fn check_attach(rec: &ContainerRecord, w: Wants) -> Result<()> {
    if w.stdin && !rec.config.stdin {
        return Err(Error::InvalidArgument(format!(
            "container {} was not created with stdin",
            rec.id
        )));
    }
    if (w.stdout || w.stderr) && rec.log_path.is_empty() {
        return Err(Error::FailedPrecondition(format!(
            "container {} has no log path: its output cannot be attached",
            rec.id
        )));
    }
    Ok(())
}

/// The container's CRI log, to be followed from its current end.
pub fn open_log(rec: &ContainerRecord) -> Result<Follower> {
    Follower::open_at_end(std::path::Path::new(&rec.log_path))
        .map_err(|e| Error::io("opening the container log", &rec.log_path, e))
}

/// How often the log is read while following it.
const LOG_POLL: Duration = Duration::from_millis(50);

async fn follow(
    mut f: Follower,
    out: mpsc::Sender<Chunk>,
    w: Wants,
    tty: bool,
    mut stop: oneshot::Receiver<()>,
) {
    let mut stopping = false;
    loop {
        let records = match f.poll() {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, "following the container log failed");
                return;
            }
        };
        for (stream, data) in records {
            let tag = match stream {
                LogStream::Stdout if w.stdout => Out::Stdout,
                LogStream::Stderr if tty && w.stdout => Out::Stdout,
                LogStream::Stderr if w.stderr => Out::Stderr,
                _ => continue,
            };
            if out.send((tag, Bytes::from(data))).await.is_err() {
                return;
            }
        }
        if stopping {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(LOG_POLL) => {}
            _ = &mut stop => stopping = true,
        }
    }
}

async fn attach_inner(core: Arc<Core>, req: cri::AttachRequest, s: Session) -> Result<()> {
    let w = Wants::of_attach(&req);
    let rec = check(&core, &req.container_id, w)?;
    check_attach(&rec, w)?;
    let shim = core.shim(&rec).await?;
    let Session {
        stdin: input,
        resize,
        out,
        mut gone,
        log,
    } = s;
    let tty = rec.config.tty;
    let (stop_tx, stop_rx) = oneshot::channel();
    let follower = if w.stdout || w.stderr {
        let f = match log {
            Some(f) => f,
            None => open_log(&rec)?,
        };
        Some(tokio::spawn(follow(f, out, w, tty, stop_rx)))
    } else {
        drop(out);
        None
    };
    let input_task = if w.stdin {
        let p = rec.bundle.join("stdin");
        let mut wr = pipe::OpenOptions::new()
            .open_sender(&p)
            .map_err(|e| Error::io("opening the container's stdin", &p, e))?;
        let (shim, id, once) = (shim.clone(), rec.id.clone(), rec.config.stdin_once);
        Some(tokio::spawn(async move {
            pump_in(input, &mut wr).await;
            if once && tty {
                drained(&wr).await;
                drop(wr);
                let _ = shim.close_stdin(&id, "").await;
            }
            // Without a terminal, the end of the last write end is the process's EOF
            // (with `stdin_once` there is no other; otherwise the server holds one).
        }))
    } else {
        None
    };
    let resize_task = resizer(shim.clone(), rec.id.clone(), String::new(), resize);
    tokio::select! {
        _ = shim.wait(&rec.id, "") => {}
        _ = &mut gone => {}
    }
    resize_task.abort();
    // Input the client sent before it left still reaches the process.
    if let Some(t) = input_task {
        let _ = tokio::time::timeout(Duration::from_secs(2), t).await;
    }
    let _ = stop_tx.send(());
    if let Some(f) = follower {
        let _ = tokio::time::timeout(Duration::from_secs(5), f).await;
    }
    Ok(())
}
