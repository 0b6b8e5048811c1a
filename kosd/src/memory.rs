//! Heap hygiene for a long-lived daemon. glibc's malloc gives every thread that allocates
//! its own arena (up to eight per core) and keeps what is freed there: after a pull, a
//! burst of runs or a hundred removals, kosd would hold megabytes it no longer uses.

use std::sync::OnceLock;
use std::time::Duration;

use tokio::sync::Notify;

/// How often the trimmer looks when nothing told it about activity; it trims only when
/// the resident size changed (container exits and restarts happen without an API call).
const TRIM_EVERY: Duration = Duration::from_secs(10);

/// Quiet time after the last finished API connection before freed memory is given back:
/// a burst of requests (a `docker run` is several) trims once, after the burst.
const TRIM_AFTER_QUIET: Duration = Duration::from_millis(300);

/// At most two arenas: kosd's work is I/O-bound on two runtime threads, and every extra
/// arena keeps its own free memory. (A fixed 128 KiB mmap threshold was tried: it saved
/// nothing measurable after a pull and made `docker run --rm` on the bridge 10-15 ms
/// slower, each large buffer mapped, faulted in and unmapped again.)
pub fn configure() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets allocator parameters; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

fn resident_pages() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    s.split_whitespace().nth(1)?.parse().ok()
}

fn activity() -> &'static Notify {
    static ACTIVITY: OnceLock<Notify> = OnceLock::new();
    ACTIVITY.get_or_init(Notify::new)
}

/// An API connection ended: what it allocated (a pull's buffers, a container's spec) is
/// freed now, and is given back once the daemon has been quiet for a moment.
pub fn connection_done() {
    activity().notify_one();
}

/// Gives freed heap pages back to the kernel: soon after API activity ends, and when the
/// resident size moved since the last periodic look (an idle kosd only reads
/// `/proc/self/statm` every few seconds).
pub fn spawn_trimmer() {
    tokio::spawn(async {
        let mut last = None;
        loop {
            let woken = tokio::time::timeout(TRIM_EVERY, activity().notified())
                .await
                .is_ok();
            if woken {
                // Wait until no connection has ended for a while.
                while tokio::time::timeout(TRIM_AFTER_QUIET, activity().notified())
                    .await
                    .is_ok()
                {}
                trim();
            } else if resident_pages() != last {
                trim();
            }
            last = resident_pages();
        }
    });
}

fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory of the allocator's arenas.
    unsafe {
        libc::malloc_trim(0);
    }
}
