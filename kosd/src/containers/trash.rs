//! Removed containers' files, deleted after the removal has answered. A removal moves the
//! container's directory into the trash in one rename; the unmount of its rootfs and the
//! deletion of its files (a rootfs's
//! upper layer, a copied rootfs, logs; on a filesystem mounted with `discard`, a discard for
//! each freed directory block) happens here, one directory at a time on one thread of the
//! lowest CPU priority, so it takes idle time instead of competing with the requests that
//! follow (a `docker rm -f` of many containers, or the next `docker run`).

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Mutex;

#[derive(Default)]
pub struct Trash {
    /// Started at the first deletion.
    queue: Mutex<Option<mpsc::Sender<PathBuf>>>,
}

impl Trash {
    /// Deletes `dir` (and everything below it) after the caller has moved on. Without a
    /// thread to do it, it is deleted here.
    pub fn delete_later(&self, dir: PathBuf) {
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if queue.is_none() {
            *queue = start();
        }
        let left = match queue.as_ref() {
            Some(q) => q.send(dir).err().map(|e| e.0),
            None => Some(dir),
        };
        drop(queue);
        if let Some(dir) = left {
            delete(&dir);
        }
    }
}

fn start() -> Option<mpsc::Sender<PathBuf>> {
    let (tx, rx) = mpsc::channel::<PathBuf>();
    let spawned = std::thread::Builder::new()
        .name("kosd-trash".into())
        .spawn(move || {
            lowest_priority();
            for dir in rx {
                delete(&dir);
            }
        });
    match spawned {
        Ok(_) => Some(tx),
        Err(e) => {
            tracing::warn!(error = %e, "no thread to empty the trash; deleting in place");
            None
        }
    }
}

/// Nice 19 for this thread alone (Linux keeps the nice value per thread). Not SCHED_IDLE:
/// a deletion holds directory locks, and on a host that is never idle it must still finish.
fn lowest_priority() {
    // SAFETY: gettid and setpriority take no pointers; they change this thread only.
    let r = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19)
    };
    if r != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "trash thread keeps its priority");
    }
}

/// The container's rootfs mount, if still there (a removal hands over its directory
/// without unmounting: the unmount waits for RCU grace periods, and for a sync of the
/// upper filesystem unless the overlay is volatile), goes first; the deletion never walks
/// into a mount.
fn delete(dir: &Path) {
    if let Err(e) = unmount_all(&dir.join("rootfs")) {
        tracing::warn!(dir = %dir.display(), error = %e, "a removed container's rootfs cannot be unmounted; its files stay in the trash until kosd starts again");
        return;
    }
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            tracing::warn!(dir = %dir.display(), error = %e, "deleting a removed container's files");
        }
        _ => {}
    }
}

/// Unmounts everything stacked on `target`, bind mounts of its own filesystem included (a
/// device comparison would not see those); nothing mounted is fine.
fn unmount_all(target: &Path) -> std::io::Result<()> {
    let c = std::ffi::CString::new(target.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    for _ in 0..16 {
        // SAFETY: a valid C string; umount2 takes no other pointer.
        if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH | libc::UMOUNT_NOFOLLOW) } < 0 {
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                // Not a mount point (any more), or no such path.
                Some(libc::EINVAL) | Some(libc::ENOENT) => Ok(()),
                _ => Err(e),
            };
        }
    }
    Err(std::io::Error::other("more than 16 mounts stacked"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn deletes_in_the_background_at_the_lowest_priority() {
        let root = tempfile::tempdir().unwrap();
        let trash = Trash::default();
        let mut dirs = Vec::new();
        for i in 0..3 {
            let d = root.path().join(format!("c{i}"));
            std::fs::create_dir_all(d.join("upper/etc")).unwrap();
            std::fs::write(d.join("upper/etc/hosts"), "x").unwrap();
            trash.delete_later(d.clone());
            dirs.push(d);
        }
        // A directory already gone is no error.
        trash.delete_later(root.path().join("missing"));
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while dirs.iter().any(|d| d.exists()) && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(dirs.iter().all(|d| !d.exists()));
        // The thread runs at nice 19.
        let tid = std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(|t| t.ok())
            .find(|t| {
                std::fs::read_to_string(t.path().join("comm")).unwrap_or_default() == "kosd-trash\n"
            })
            .unwrap();
        let stat = std::fs::read_to_string(tid.path().join("stat")).unwrap();
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        // Fields after the command: state is the first, nice the 17th.
        let nice: i32 = after_comm.split(' ').nth(16).unwrap().parse().unwrap();
        assert_eq!(nice, 19);
    }
}
