//! OOM notifications of a container's memory cgroup, from the kernel rather than by polling.
//!
//! v1: an eventfd registered for memory.oom_control through cgroup.event_control. The kernel
//! signals it before the OOM killer picks its victim, once per OOM, so the eventfd's counter
//! is the number of OOMs; it is also signalled when the cgroup is removed, which is told
//! apart by cgroup.event_control being gone.
//!
//! v2: an inotify watch on memory.events, which the kernel marks modified after each change
//! of its counters; the `oom_kill` counter is compared with the value seen last.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::error::{Error, Result};
use crate::fsutil;
use crate::layout::Layout;
use crate::manager::Manager;

/// A pollable watch for OOM kills in one container's memory cgroup.
#[derive(Debug)]
pub struct OomWatch {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    V1 {
        efd: OwnedFd,
        // Registered with the eventfd: the kernel drops the registration when it closes.
        _ctl: File,
        event_control: PathBuf,
    },
    V2 {
        inotify: OwnedFd,
        events: PathBuf,
        last_kills: u64,
    },
}

impl OomWatch {
    /// None when the cgroup has no memory controller (v1 memory hierarchy absent / v2
    /// without memory). The cgroup must exist.
    pub fn open(manager: &Manager) -> Result<Option<OomWatch>> {
        let dirs = manager.dirs();
        if dirs.layout != Layout::V2 {
            if let Some(dir) = dirs.v1("memory") {
                return open_v1(dir).map(Some);
            }
        }
        match dirs.v2() {
            Some(dir) => open_v2(dir),
            None => Ok(None),
        }
    }

    /// Drains the descriptor; returns how many new OOM kills happened since the last call
    /// (0 on a spurious wake-up). Err(Error::Gone) once the cgroup is removed.
    pub fn read_events(&mut self) -> Result<u64> {
        match &mut self.kind {
            Kind::V1 {
                efd, event_control, ..
            } => {
                let n = drain_eventfd(efd)?;
                // The kernel also signals every registered eventfd when the cgroup goes.
                if !event_control.exists() {
                    return Err(Error::Gone {
                        path: parent_of(event_control),
                    });
                }
                Ok(n)
            }
            Kind::V2 {
                inotify,
                events,
                last_kills,
            } => {
                let removed = drain_inotify(inotify)?;
                let kills = match fsutil::read_keyed(events, "oom_kill") {
                    Ok(k) => k.unwrap_or(0),
                    Err(Error::Read { source, .. })
                        if removed || source.kind() == io::ErrorKind::NotFound =>
                    {
                        return Err(Error::Gone {
                            path: parent_of(events),
                        })
                    }
                    Err(e) => return Err(e),
                };
                // A counter that went down means a new cgroup of the same name: count afresh.
                let new = kills.checked_sub(*last_kills).unwrap_or(kills);
                *last_kills = kills;
                Ok(new)
            }
        }
    }
}

impl AsFd for OomWatch {
    /// Readable (POLLIN) when an OOM kill may have happened or the cgroup was removed.
    fn as_fd(&self) -> BorrowedFd<'_> {
        match &self.kind {
            Kind::V1 { efd, .. } => efd.as_fd(),
            Kind::V2 { inotify, .. } => inotify.as_fd(),
        }
    }
}

fn parent_of(p: &Path) -> PathBuf {
    p.parent().unwrap_or(p).to_path_buf()
}

fn sys(what: &str) -> Error {
    Error::Sys {
        what: what.to_string(),
        source: Errno::last(),
    }
}

fn open_v1(dir: &Path) -> Result<OomWatch> {
    let ctl_path = dir.join("memory.oom_control");
    let ctl = File::open(&ctl_path).map_err(|source| Error::Read {
        path: ctl_path.clone(),
        source,
    })?;
    // SAFETY: eventfd with valid flags; the result is checked before use.
    let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if raw < 0 {
        return Err(sys("eventfd"));
    }
    // SAFETY: a fresh descriptor owned by nothing else.
    let efd = unsafe { OwnedFd::from_raw_fd(raw) };
    let event_control = dir.join("cgroup.event_control");
    let line = format!("{} {}", efd.as_raw_fd(), ctl.as_raw_fd());
    fsutil::write_raw(&event_control, &line).map_err(|source| Error::Write {
        field: "cgroup.event_control".into(),
        path: event_control.clone(),
        value: line.clone(),
        source,
    })?;
    Ok(OomWatch {
        kind: Kind::V1 {
            efd,
            _ctl: ctl,
            event_control,
        },
    })
}

fn open_v2(dir: &Path) -> Result<Option<OomWatch>> {
    let events = dir.join("memory.events");
    // The watch is set before the first read, so no kill falls between the two.
    // SAFETY: inotify_init1 with valid flags; checked before use.
    let raw = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
    if raw < 0 {
        return Err(sys("inotify_init1"));
    }
    // SAFETY: a fresh descriptor owned by nothing else.
    let inotify = unsafe { OwnedFd::from_raw_fd(raw) };
    let c =
        std::ffi::CString::new(events.as_os_str().as_encoded_bytes()).map_err(|_| Error::Path {
            path: events.display().to_string(),
            reason: "contains a NUL byte".into(),
        })?;
    // SAFETY: a valid inotify descriptor and a NUL-terminated path.
    let wd = unsafe { libc::inotify_add_watch(inotify.as_raw_fd(), c.as_ptr(), libc::IN_MODIFY) };
    if wd < 0 {
        let e = Errno::last();
        // No memory.events: the memory controller is not enabled for this cgroup.
        if e == Errno::ENOENT && dir.is_dir() {
            return Ok(None);
        }
        return Err(Error::Sys {
            what: format!("inotify_add_watch {}", events.display()),
            source: e,
        });
    }
    let last_kills = fsutil::read_keyed(&events, "oom_kill")?.unwrap_or(0);
    Ok(Some(OomWatch {
        kind: Kind::V2 {
            inotify,
            events,
            last_kills,
        },
    }))
}

/// Reads and resets the eventfd's counter (0 when nothing was pending).
fn drain_eventfd(efd: &OwnedFd) -> Result<u64> {
    let mut buf = [0u8; 8];
    loop {
        // SAFETY: reading 8 bytes into an 8-byte buffer from our eventfd.
        let n = unsafe { libc::read(efd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n == 8 {
            return Ok(u64::from_ne_bytes(buf));
        }
        return match Errno::last() {
            Errno::EINTR => continue,
            Errno::EAGAIN => Ok(0),
            e => Err(Error::Sys {
                what: "read eventfd".into(),
                source: e,
            }),
        };
    }
}

/// Consumes every pending inotify event; true when the watch was dropped (the file went).
fn drain_inotify(fd: &OwnedFd) -> Result<bool> {
    let mut removed = false;
    let mut buf = [0u8; 4096];
    loop {
        // SAFETY: reading into a buffer of the given size from our inotify descriptor.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            return match Errno::last() {
                Errno::EAGAIN => Ok(removed),
                Errno::EINTR => continue,
                e => Err(Error::Sys {
                    what: "read inotify".into(),
                    source: e,
                }),
            };
        }
        if n == 0 {
            return Ok(removed);
        }
        removed |= has_ignored(&buf[..n as usize]);
    }
}

/// Whether a buffer of inotify events holds IN_IGNORED (the kernel removed the watch).
fn has_ignored(mut buf: &[u8]) -> bool {
    const HEADER: usize = std::mem::size_of::<libc::inotify_event>();
    let mut seen = false;
    while buf.len() >= HEADER {
        let mask = u32::from_ne_bytes([buf[4], buf[5], buf[6], buf[7]]);
        let len = u32::from_ne_bytes([buf[12], buf[13], buf[14], buf[15]]) as usize;
        seen |= mask & libc::IN_IGNORED != 0;
        buf = buf.get(HEADER + len..).unwrap_or(&[]);
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(mask: u32, name_len: u32) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&1i32.to_ne_bytes());
        v.extend_from_slice(&mask.to_ne_bytes());
        v.extend_from_slice(&0u32.to_ne_bytes());
        v.extend_from_slice(&name_len.to_ne_bytes());
        v.extend(std::iter::repeat_n(0u8, name_len as usize));
        v
    }

    #[test]
    fn ignored_event_found_after_others() {
        let mut b = event(libc::IN_MODIFY, 16);
        assert!(!has_ignored(&b));
        b.extend(event(libc::IN_IGNORED, 0));
        assert!(has_ignored(&b));
        assert!(!has_ignored(&[]));
    }
}
