//! Network namespaces pinned as bind-mounted files, so that a namespace exists before the
//! container's first process and after its last one.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

use crate::error::{Error, Result};
use crate::names::check_container_id;

/// The directory holding the pins (default `/run/kos/netns`).
#[derive(Debug, Clone)]
pub struct NetnsDir {
    dir: PathBuf,
}

impl NetnsDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        NetnsDir { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of the pin called `name` (a container id).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// Creates a new, empty network namespace pinned at `dir/name` (only loopback, down).
    pub fn create(&self, name: &str) -> Result<PathBuf> {
        check_container_id(name)?;
        fs::create_dir_all(&self.dir).map_err(|e| Error::file("create netns dir", &self.dir, e))?;
        let path = self.path(name);
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(&path)
            .map_err(|e| Error::Netns {
                step: "create pin file",
                path: path.clone(),
                source: e,
            })?;
        // unshare() moves only the calling thread; a short-lived thread makes the namespace,
        // pins it, and takes it away with it when it exits.
        let pinned = std::thread::scope(|scope| {
            scope
                .spawn(|| -> io::Result<()> {
                    unshare(CloneFlags::CLONE_NEWNET)?;
                    mount(
                        Some("/proc/thread-self/ns/net"),
                        &path,
                        None::<&str>,
                        MsFlags::MS_BIND,
                        None::<&str>,
                    )?;
                    Ok(())
                })
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("netns thread panicked")))
        });
        if let Err(e) = pinned {
            let _ = fs::remove_file(&path);
            return Err(Error::Netns {
                step: "unshare and bind-mount",
                path,
                source: e,
            });
        }
        tracing::debug!(path = %path.display(), "pinned network namespace");
        Ok(path)
    }

    /// Removes the pin `name`; a pin that is already gone is not an error.
    pub fn remove(&self, name: &str) -> Result<()> {
        check_container_id(name)?;
        remove_pin(&self.path(name))
    }

    /// Names of all pins in the directory.
    pub fn list(&self) -> Result<Vec<String>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::file("list netns pins", &self.dir, e)),
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::file("list netns pins", &self.dir, e))?;
            if let Some(name) = entry.file_name().to_str() {
                if check_container_id(name).is_ok() {
                    names.push(name.to_string());
                }
            }
        }
        Ok(names)
    }
}

/// Unmounts and deletes a pin; idempotent.
pub fn remove_pin(path: &Path) -> Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) => {}
        // EINVAL: not a mount point (already unmounted); ENOENT: no file.
        Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => {
            return Err(Error::Netns {
                step: "unmount pin",
                path: path.to_path_buf(),
                source: e.into(),
            })
        }
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::Netns {
            step: "remove pin file",
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

/// Opens a namespace file (a pin or /proc/PID/ns/net) for setns or netlink.
pub fn open(path: &Path) -> Result<OwnedFd> {
    File::options()
        .read(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map(OwnedFd::from)
        .map_err(|e| Error::Netns {
            step: "open",
            path: path.to_path_buf(),
            source: e,
        })
}
