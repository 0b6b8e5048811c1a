//! The manager's thread: boot (images, adoption, kos-system.target), then one loop of
//! mailbox messages, notify sockets and deadlines until shutdown.

use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{self, TryRecvError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kos_units::{ActiveState, Clock, JobId, Manager, SystemClock};
use tokio::sync::oneshot;

use super::runtime::KosdRuntime;
use super::sink::EventsSink;
use super::{JobOutcome, Msg};
use crate::engine::Engine;
use crate::error::Result;

pub const SYSTEM_TARGET: &str = "kos-system.target";

/// How long kosd's shutdown waits for the units to stop (each also has its own
/// TimeoutStopSec, after which it is killed).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

type Waiter = (
    JobId,
    String,
    &'static str,
    oneshot::Sender<Result<JobOutcome>>,
);

/// What the calls from the API get to work with.
pub struct Host {
    pub m: Manager<KosdRuntime, EventsSink, SystemClock>,
    pub e: Arc<Engine>,
    waiters: Vec<Waiter>,
}

impl Host {
    /// Answers `tx` once job `id` (of `unit`, asked as `kind`) has finished.
    pub fn wait_job(
        &mut self,
        id: JobId,
        unit: String,
        kind: &'static str,
        tx: oneshot::Sender<Result<JobOutcome>>,
    ) {
        self.waiters.push((id, unit, kind, tx));
        self.answer_waiters();
    }

    fn answer_waiters(&mut self) {
        let mut i = 0;
        while i < self.waiters.len() {
            let id = self.waiters[i].0;
            let result = match self.m.job_result(id) {
                Some(r) => Some(r.as_str()),
                // Nothing to do (already in the wanted state): no job was queued.
                None if !self.m.job_pending(id) => Some("done"),
                None => None,
            };
            match result {
                Some(result) => {
                    let (id, unit, kind, tx) = self.waiters.swap_remove(i);
                    let _ = tx.send(Ok(JobOutcome {
                        id,
                        unit,
                        kind,
                        result,
                    }));
                }
                None => i += 1,
            }
        }
    }

    fn all_down(&self) -> bool {
        self.m.list().iter().all(|s| {
            s.job.is_none() && matches!(s.active_state, ActiveState::Inactive | ActiveState::Failed)
        })
    }

    /// Images first (units need them), then the units that survived an earlier kosd, then
    /// the system target.
    fn boot(&mut self) {
        super::images::load_missing(&self.e);
        self.m.runtime().remove_stale_pre_containers();
        for (unit, id, pid) in self.m.runtime().survivors() {
            if self.m.definition(&unit).is_none() {
                tracing::warn!(%unit, container = %id, "a unit container is running but its unit is not loaded; leaving it alone");
                continue;
            }
            match self.m.adopt(&unit, pid) {
                Ok(()) => {
                    self.m.runtime_mut().track(&unit, &id, pid);
                    tracing::info!(%unit, container = %id, pid, "unit adopted");
                }
                Err(err) => tracing::warn!(%unit, error = %err, "adopting unit"),
            }
        }
        if self.m.definition(SYSTEM_TARGET).is_none() {
            tracing::info!("no {SYSTEM_TARGET} in the unit directories: no units started");
            return;
        }
        match self.m.start(SYSTEM_TARGET) {
            Ok(job) => tracing::info!(job, "starting {SYSTEM_TARGET}"),
            Err(err) => tracing::error!(error = %err, "starting {SYSTEM_TARGET}"),
        }
    }
}

/// The thread's body.
pub fn run(
    e: Arc<Engine>,
    m: Manager<KosdRuntime, EventsSink, SystemClock>,
    rx: mpsc::Receiver<Msg>,
    mut wake: UnixStream,
) {
    let mut h = Host {
        m,
        e,
        waiters: Vec::new(),
    };
    h.boot();
    let mut stopping: Option<Instant> = None;
    loop {
        loop {
            match rx.try_recv() {
                Ok(Msg::Exited { pid, status }) => h.m.process_exited(pid, status),
                Ok(Msg::Call(f)) => f(&mut h),
                Ok(Msg::Shutdown { stop_units: false }) => {
                    tracing::info!("units left running (live-restore)");
                    return;
                }
                Ok(Msg::Shutdown { stop_units: true }) => {
                    if let Err(err) = h.m.stop_all() {
                        tracing::warn!(error = %err, "stopping units");
                    }
                    stopping = Some(Instant::now() + SHUTDOWN_GRACE);
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        h.answer_waiters();
        if let Some(deadline) = stopping {
            if h.all_down() {
                tracing::info!("units stopped");
                return;
            }
            if Instant::now() > deadline {
                tracing::warn!("units still stopping at shutdown; leaving them to kosd");
                return;
            }
        }
        let notify = h.m.notify_fds();
        let mut fds: Vec<libc::pollfd> = std::iter::once(wake.as_raw_fd())
            .chain(notify.iter().map(|(_, fd)| *fd))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let timeout = match h.m.next_deadline() {
            Some(d) => {
                let left = d.saturating_sub(h.m.clock().now());
                // Rounded up, so the tick finds the deadline passed.
                i32::try_from(left.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
            }
            None => -1,
        };
        // During shutdown, come back to check the grace period.
        let timeout = if stopping.is_some() && !(0..=100).contains(&timeout) {
            100
        } else {
            timeout
        };
        // SAFETY: `fds` is a valid array of pollfd for the duration of the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                tracing::error!(error = %err, "unit manager poll failed");
                std::thread::sleep(Duration::from_millis(100));
            }
            continue;
        }
        if fds[0].revents != 0 {
            let mut buf = [0u8; 256];
            while matches!(wake.read(&mut buf), Ok(n) if n > 0) {}
        }
        for (pfd, (unit, _)) in fds[1..].iter().zip(&notify) {
            if pfd.revents != 0 {
                h.m.drain_notify(unit);
            }
        }
        if h.m.next_deadline().is_some_and(|d| d <= h.m.clock().now()) {
            h.m.tick();
        }
    }
}
