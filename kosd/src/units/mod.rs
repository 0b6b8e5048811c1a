//! The unit manager hosted in kosd: KOS's own components (kos-system.target) run as kosd
//! containers with systemd's semantics (kos-units' `Manager`).
//!
//! The manager is synchronous and single-threaded, so it lives on its own thread
//! ([`host`]), which sleeps in `poll()` on the units' notify sockets and a wake-up socket,
//! with the manager's next deadline as timeout. Everything else reaches it through its
//! [`Mailbox`]: process exits (from watcher tasks on kosd's tokio runtime) and calls from
//! the API handlers, which get their answer back on a oneshot channel.

mod host;
pub mod images;
pub mod runtime;
mod sink;
pub mod spec;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use kos_units::{ExitStatus, JobId, ManagerConfig, UnitPaths};

use crate::engine::Engine;
use crate::error::{ApiError, Result};

pub use host::Host;

/// Where a unit's notify directory appears inside its container.
pub const NOTIFY_DIR_IN_CONTAINER: &str = "/run/kos-notify";

/// A closure run on the manager's thread.
pub type Call = Box<dyn FnOnce(&mut Host) + Send>;

pub enum Msg {
    /// A process the runtime started (a container's init, an exec, a host command) ended.
    Exited {
        pid: u32,
        status: ExitStatus,
    },
    Call(Call),
    /// Stop every unit first (`stop_units`), or leave them running (live-restore); then
    /// end the thread.
    Shutdown {
        stop_units: bool,
    },
}

/// The way into the manager's thread: a queue plus a socket that wakes its `poll()`.
#[derive(Clone)]
pub struct Mailbox {
    tx: mpsc::Sender<Msg>,
    wake: Arc<UnixStream>,
}

impl Mailbox {
    pub fn send(&self, m: Msg) {
        if self.tx.send(m).is_ok() {
            // A full socket buffer already means "awake": the byte is not needed.
            let _ = (&*self.wake).write(&[1]);
        }
    }
}

/// kosd's handle on the unit manager.
pub struct Units {
    mail: Mailbox,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// How a job ended, as the API reports it.
#[derive(Debug, Clone)]
pub struct JobOutcome {
    pub id: JobId,
    pub unit: String,
    pub kind: &'static str,
    pub result: &'static str,
}

impl Units {
    /// Loads the units, loads missing unit images, adopts unit containers that outlived an
    /// earlier kosd, and starts `kos-system.target` (when it exists) on the manager's own
    /// thread; returns at once.
    pub fn start(e: &Arc<Engine>) -> anyhow::Result<Arc<Units>> {
        let c = &e.config;
        let cfg = ManagerConfig {
            paths: unit_paths(c),
            notify_dir: c.exec_root.join("units").join("notify"),
            notify_dir_in_container: Some(NOTIFY_DIR_IN_CONTAINER.into()),
        };
        let (tx, rx) = mpsc::channel();
        let (wake_rx, wake_tx) = UnixStream::pair()?;
        wake_rx.set_nonblocking(true)?;
        wake_tx.set_nonblocking(true)?;
        let mail = Mailbox {
            tx,
            wake: Arc::new(wake_tx),
        };
        let rt =
            runtime::KosdRuntime::new(e.clone(), tokio::runtime::Handle::current(), mail.clone());
        let sink = sink::EventsSink::new(e.clone());
        let manager = kos_units::Manager::new(cfg, rt, sink, kos_units::SystemClock::default())
            .map_err(|err| anyhow::anyhow!("loading units: {err}"))?;
        let engine = e.clone();
        let thread = std::thread::Builder::new()
            .name("kosd-units".into())
            .spawn(move || host::run(engine, manager, rx, wake_rx))?;
        Ok(Arc::new(Units {
            mail,
            thread: Mutex::new(Some(thread)),
        }))
    }

    /// Runs `f` on the manager's thread and returns what it returns.
    pub async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Host) -> T + Send + 'static,
    ) -> Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.mail.send(Msg::Call(Box::new(move |h: &mut Host| {
            let _ = tx.send(f(h));
        })));
        rx.await
            .map_err(|_| ApiError::Internal("the unit manager has stopped".into()))
    }

    /// Queues a job with `f` (which returns its id, unit and kind) and waits until it has
    /// finished.
    pub async fn job(
        &self,
        f: impl FnOnce(&mut Host) -> kos_units::Result<(JobId, String, &'static str)> + Send + 'static,
    ) -> Result<JobOutcome> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.mail
            .send(Msg::Call(Box::new(move |h: &mut Host| match f(h) {
                Ok((id, unit, kind)) => h.wait_job(id, unit, kind, tx),
                Err(err) => {
                    let _ = tx.send(Err(err.into()));
                }
            })));
        rx.await
            .map_err(|_| ApiError::Internal("the unit manager has stopped".into()))?
    }

    /// kosd's shutdown: units stopped in reverse dependency order (or left running for
    /// live-restore), then the manager's thread ends.
    pub async fn shutdown(&self, stop_units: bool) {
        self.mail.send(Msg::Shutdown { stop_units });
        let t = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = t {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
    }
}

/// kosd's unit directories; `enable` links go into the last one (the admin's).
pub fn unit_paths(c: &crate::config::Config) -> UnitPaths {
    let dirs = c.unit_dirs.clone();
    UnitPaths {
        enable_dir: dirs
            .last()
            .cloned()
            .unwrap_or_else(|| "/etc/kos/units".into()),
        dirs,
    }
}

/// Starts the unit manager unless disabled; a failure to load is logged, not fatal: kosd
/// serves its API without units rather than not at all.
pub fn start_if_enabled(e: &Arc<Engine>) -> Option<Arc<Units>> {
    if !e.config.units {
        tracing::info!("unit manager disabled");
        return None;
    }
    match Units::start(e) {
        Ok(u) => Some(u),
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "unit manager not started");
            None
        }
    }
}
