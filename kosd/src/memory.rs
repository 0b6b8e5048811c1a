//! Heap hygiene for a long-lived daemon. glibc's malloc gives every thread that allocates
//! its own arena (up to eight per core) and keeps what is freed there: after a pull, a
//! burst of runs or a hundred removals, kosd would hold megabytes it no longer uses.

use std::time::Duration;

/// How often the trimmer looks; it trims only when the resident size changed.
const TRIM_EVERY: Duration = Duration::from_secs(10);

/// At most two arenas: kosd's work is I/O-bound on two runtime threads, and every extra
/// arena keeps its own free memory.
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

/// Gives freed heap pages back to the kernel after activity (the resident size moved
/// since the last look); an idle kosd does nothing but read `/proc/self/statm`.
pub fn spawn_trimmer() {
    tokio::spawn(async {
        let mut last = None;
        loop {
            tokio::time::sleep(TRIM_EVERY).await;
            let now = resident_pages();
            if now != last {
                trim();
                last = resident_pages();
            }
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
