//! Host veth ends deleted after the caller has its answer. Deleting a link waits for an RCU
//! barrier in the kernel (about 20 ms here), which a container's exit or removal need not wait
//! for: the link is set down at once (out of its bridge's forwarding, its learned MACs
//! flushed, so its address and MAC can go to the next container) and deleted here, on one
//! background thread. A name still being deleted stays reserved: making a link of that name
//! (a restarted container's veth) waits for it. A crash in between leaves a down veth in a KOS
//! bridge with no record, which reconcile deletes.

use std::collections::HashMap;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::netlink::Netlink;

/// How long a new link of a pending name waits before trying anyway (its creation then fails
/// with a clear EEXIST rather than hanging).
const NAME_WAIT: Duration = Duration::from_secs(10);

/// Names whose deletion is queued or running, with how many times.
#[derive(Default)]
struct Pending {
    names: Mutex<HashMap<String, u32>>,
    done: Condvar,
}

impl Pending {
    fn names(&self) -> MutexGuard<'_, HashMap<String, u32>> {
        self.names.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn start(&self, name: &str) {
        *self.names().entry(name.to_string()).or_default() += 1;
    }

    fn finish(&self, name: &str) {
        let mut names = self.names();
        if let Some(n) = names.get_mut(name) {
            *n -= 1;
            if *n == 0 {
                names.remove(name);
            }
        }
        drop(names);
        self.done.notify_all();
    }
}

struct Worker {
    queue: mpsc::Sender<(u32, String)>,
    thread: JoinHandle<()>,
}

#[derive(Default)]
pub(crate) struct LinkReaper {
    pending: Arc<Pending>,
    /// Started at the first deletion: a process that never defers one has no thread.
    worker: Mutex<Option<Worker>>,
}

impl LinkReaper {
    /// Queues the deletion of link `index`, called `name` (already set down). Without a thread
    /// to run it, the link is deleted here and now.
    pub(crate) fn delete(&self, index: u32, name: &str) {
        self.pending.start(name);
        let mut worker = self.worker.lock().unwrap_or_else(|p| p.into_inner());
        if worker.is_none() {
            *worker = self.start();
        }
        let queued = worker
            .as_ref()
            .is_some_and(|w| w.queue.send((index, name.to_string())).is_ok());
        drop(worker);
        if !queued {
            delete_now(index, name);
            self.pending.finish(name);
        }
    }

    fn start(&self) -> Option<Worker> {
        let (queue, jobs) = mpsc::channel::<(u32, String)>();
        let pending = self.pending.clone();
        let thread = std::thread::Builder::new()
            .name("kos-link-reaper".into())
            .spawn(move || {
                for (index, name) in jobs {
                    delete_now(index, &name);
                    pending.finish(&name);
                }
            });
        match thread {
            Ok(thread) => Some(Worker { queue, thread }),
            Err(e) => {
                tracing::warn!(error = %e, "no thread for deferred link deletions; deleting in place");
                None
            }
        }
    }

    /// Waits until no deletion of a link called `name` is pending (at most [`NAME_WAIT`]).
    pub(crate) fn wait_for(&self, name: &str) {
        self.wait_until(|names| !names.contains_key(name), NAME_WAIT);
    }

    /// Waits until every queued deletion is done (at most `limit`); true if they are.
    pub(crate) fn wait_all(&self, limit: Duration) -> bool {
        self.wait_until(|names| names.is_empty(), limit)
    }

    fn wait_until(&self, done: impl Fn(&HashMap<String, u32>) -> bool, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut names = self.pending.names();
        while !done(&names) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            names = match self.pending.done.wait_timeout(names, left) {
                Ok((g, _)) => g,
                Err(p) => p.into_inner().0,
            };
        }
        true
    }
}

impl Drop for LinkReaper {
    /// Lets the queue drain: links queued by this process are gone when it is.
    fn drop(&mut self) {
        let worker = self
            .worker
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(Worker { queue, thread }) = worker {
            drop(queue);
            let _ = thread.join();
        }
    }
}

/// Deletes one link; one already gone (its namespace took it, or reconcile) is fine.
fn delete_now(index: u32, name: &str) {
    let deleted = Netlink::open().and_then(|mut nl| nl.delete_link(index));
    if let Err(e) = deleted {
        tracing::warn!(link = %name, index, error = %e, "deleting a veth after its container left; reconcile will remove it");
    }
}
