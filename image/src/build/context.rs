//! The build context: the client's tar stream unpacked into the build's
//! private directory, hashing every file while it is written (so the cache
//! key of a COPY needs no second read of the context).
//!
//! The context is hostile: entries are created only below the directory,
//! never through a symlink (every parent is opened with O_NOFOLLOW), `..`
//! and absolute names are refused, hard links must point at a file already
//! in the context, and the entry count and content bytes are bounded.

use std::collections::HashMap;
use std::ffi::CString;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::error::BuildError;
use crate::unpack::compression;

/// Content digests of the context's regular files, by their path inside it.
pub type FileHashes = HashMap<PathBuf, [u8; 32]>;

fn cstr(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in a name"))
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn open_dir_at(dirfd: RawFd, name: &CString) -> io::Result<OwnedFd> {
    // SAFETY: valid fd and C string.
    let fd = cvt(unsafe {
        libc::openat(
            dirfd,
            name.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The components of an entry name, or why it is refused.
fn components(raw: &Path) -> Result<Vec<CString>, String> {
    let mut out = Vec::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => out.push(cstr(n.as_bytes()).map_err(|e| e.to_string())?),
            Component::CurDir | Component::RootDir => {}
            Component::ParentDir => return Err("'..' in an entry name".into()),
            Component::Prefix(_) => return Err("a path prefix in an entry name".into()),
        }
    }
    Ok(out)
}

struct Extractor {
    root: OwnedFd,
    /// Open parent directories by path, so deep trees are not walked per entry.
    dirs: HashMap<PathBuf, OwnedFd>,
    /// Directory modes and times, applied at the end (children change mtimes).
    dir_meta: Vec<(PathBuf, u32, i64)>,
    hashes: FileHashes,
    bytes: u64,
    entries: u64,
    max_bytes: u64,
    max_entries: u64,
}

impl Extractor {
    /// Opens (creating) the directory `parts` below the root, never through a symlink.
    fn dir(&mut self, parts: &[CString]) -> io::Result<RawFd> {
        let key: PathBuf = parts
            .iter()
            .map(|c| std::ffi::OsStr::from_bytes(c.as_bytes()))
            .collect();
        if parts.is_empty() {
            return Ok(self.root.as_raw_fd());
        }
        if let Some(fd) = self.dirs.get(&key) {
            return Ok(fd.as_raw_fd());
        }
        let parent = self.dir(&parts[..parts.len() - 1])?;
        let name = &parts[parts.len() - 1];
        let fd = match open_dir_at(parent, name) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // SAFETY: valid fd and C string.
                let r = unsafe { libc::mkdirat(parent, name.as_ptr(), 0o755) };
                if r < 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::AlreadyExists {
                        return Err(e);
                    }
                }
                open_dir_at(parent, name)?
            }
            Err(e) => return Err(e),
        };
        let raw = fd.as_raw_fd();
        self.dirs.insert(key, fd);
        Ok(raw)
    }

    fn remove_existing(dirfd: RawFd, name: &CString) -> io::Result<()> {
        // SAFETY: valid fd and C string.
        let r = unsafe { libc::unlinkat(dirfd, name.as_ptr(), 0) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::NotFound {
                return Err(e);
            }
        }
        Ok(())
    }

    fn entry<R: Read>(&mut self, mut e: tar::Entry<'_, R>) -> Result<(), String> {
        self.entries += 1;
        if self.entries > self.max_entries {
            return Err(format!("more than {} entries", self.max_entries));
        }
        let path = e.path().map_err(|e| e.to_string())?.into_owned();
        let parts = components(&path).map_err(|m| format!("{}: {m}", path.display()))?;
        let Some((name, parents)) = parts.split_last() else {
            return Ok(());
        };
        let rel: PathBuf = parts
            .iter()
            .map(|c| std::ffi::OsStr::from_bytes(c.as_bytes()))
            .collect();
        let fail = |what: &str, err: io::Error| format!("{}: {what}: {err}", path.display());
        let h = e.header();
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let mtime = h.mtime().unwrap_or(0) as i64;
        let kind = h.entry_type();
        let dirfd = self
            .dir(parents)
            .map_err(|er| fail("creating its directory", er))?;
        match kind {
            tar::EntryType::Directory => {
                self.dir(&parts)
                    .map_err(|er| fail("creating directory", er))?;
                self.dir_meta.push((rel, mode, mtime));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                let create = || {
                    // SAFETY: valid fd and C string.
                    cvt(unsafe {
                        libc::openat(
                            dirfd,
                            name.as_ptr(),
                            libc::O_WRONLY
                                | libc::O_CREAT
                                | libc::O_EXCL
                                | libc::O_NOFOLLOW
                                | libc::O_CLOEXEC,
                            0o600,
                        )
                    })
                };
                // A name given twice replaces the first: only then is there
                // something to remove.
                let fd = match create() {
                    Err(er) if er.kind() == io::ErrorKind::AlreadyExists => {
                        Self::remove_existing(dirfd, name).map_err(|er| fail("replacing", er))?;
                        create()
                    }
                    other => other,
                }
                .map_err(|er| fail("creating", er))?;
                // SAFETY: fresh fd.
                let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
                let mut hasher = Sha256::new();
                let mut buf = [0u8; 64 * 1024];
                loop {
                    let n = e.read(&mut buf).map_err(|er| fail("reading", er))?;
                    if n == 0 {
                        break;
                    }
                    self.bytes += n as u64;
                    if self.bytes > self.max_bytes {
                        return Err(format!(
                            "more than {} bytes of file content",
                            self.max_bytes
                        ));
                    }
                    hasher.update(&buf[..n]);
                    f.write_all(&buf[..n]).map_err(|er| fail("writing", er))?;
                }
                // SAFETY: valid fd.
                cvt(unsafe { libc::fchmod(f.as_raw_fd(), mode) })
                    .map_err(|er| fail("chmod", er))?;
                set_mtime(f.as_raw_fd(), None, mtime).map_err(|er| fail("setting times", er))?;
                self.hashes.insert(rel, hasher.finalize().into());
            }
            tar::EntryType::Symlink => {
                let target = e
                    .link_name()
                    .map_err(|er| er.to_string())?
                    .ok_or_else(|| format!("{}: symlink without a target", path.display()))?;
                let t = cstr(target.as_os_str().as_bytes()).map_err(|er| er.to_string())?;
                Self::remove_existing(dirfd, name).map_err(|er| fail("replacing", er))?;
                // SAFETY: valid C strings and fd.
                cvt(unsafe { libc::symlinkat(t.as_ptr(), dirfd, name.as_ptr()) })
                    .map_err(|er| fail("creating symlink", er))?;
                set_mtime(dirfd, Some(name), mtime).map_err(|er| fail("setting times", er))?;
            }
            tar::EntryType::Link => {
                let target = e
                    .link_name()
                    .map_err(|er| er.to_string())?
                    .ok_or_else(|| format!("{}: hard link without a target", path.display()))?
                    .into_owned();
                let tparts = components(&target).map_err(|m| format!("{}: {m}", path.display()))?;
                let Some((tname, tparents)) = tparts.split_last() else {
                    return Err(format!("{}: hard link to the context root", path.display()));
                };
                let trel: PathBuf = tparts
                    .iter()
                    .map(|c| std::ffi::OsStr::from_bytes(c.as_bytes()))
                    .collect();
                let tdir = self
                    .dir(tparents)
                    .map_err(|er| fail("finding the link target", er))?;
                Self::remove_existing(dirfd, name).map_err(|er| fail("replacing", er))?;
                // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
                // SAFETY: valid fds and C strings.
                cvt(unsafe { libc::linkat(tdir, tname.as_ptr(), dirfd, name.as_ptr(), 0) })
                    .map_err(|er| fail("creating hard link", er))?;
                if let Some(hsh) = self.hashes.get(&trel).copied() {
                    self.hashes.insert(rel, hsh);
                }
            }
            // Devices, fifos and the like have no place in a build context.
            _ => {}
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), String> {
        for (rel, mode, mtime) in std::mem::take(&mut self.dir_meta).into_iter().rev() {
            let parts = components(&rel)?;
            let fd = self
                .dir(&parts)
                .map_err(|e| format!("{}: {e}", rel.display()))?;
            // SAFETY: valid fd.
            cvt(unsafe { libc::fchmod(fd, mode) })
                .map_err(|e| format!("{}: {e}", rel.display()))?;
            set_mtime(fd, None, mtime).map_err(|e| format!("{}: {e}", rel.display()))?;
        }
        Ok(())
    }
}

fn set_mtime(fd: RawFd, name: Option<&CString>, mtime: i64) -> io::Result<()> {
    let ts = [
        libc::timespec {
            tv_sec: mtime,
            tv_nsec: 0,
        },
        libc::timespec {
            tv_sec: mtime,
            tv_nsec: 0,
        },
    ];
    match name {
        // SAFETY: valid fd and times.
        None => cvt(unsafe { libc::futimens(fd, ts.as_ptr()) }).map(drop),
        // SAFETY: valid fd, C string and times.
        Some(n) => {
            cvt(unsafe { libc::utimensat(fd, n.as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) })
                .map(drop)
        }
    }
}

/// Unpacks the context tar (plain, gzip or zstd) into the empty directory `dest`.
pub fn extract(
    input: impl Read + Send,
    dest: &Path,
    max_bytes: u64,
    max_entries: u64,
) -> Result<FileHashes, BuildError> {
    let bad = |m: String| BuildError::Context(format!("reading the context tar: {m}"));
    let c = cstr(dest.as_os_str().as_bytes()).map_err(|e| bad(e.to_string()))?;
    // SAFETY: valid C string.
    let fd = cvt(unsafe {
        libc::open(
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    })
    .map_err(|e| bad(e.to_string()))?;
    let (_, reader) = compression::decompress(input).map_err(|e| bad(e.to_string()))?;
    let mut ex = Extractor {
        // SAFETY: fresh fd.
        root: unsafe { OwnedFd::from_raw_fd(fd) },
        dirs: HashMap::new(),
        dir_meta: Vec::new(),
        hashes: HashMap::new(),
        bytes: 0,
        entries: 0,
        max_bytes,
        max_entries,
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
        let entry = entry.map_err(|e| bad(e.to_string()))?;
        ex.entry(entry).map_err(bad)?;
    }
    ex.finish().map_err(bad)?;
    Ok(ex.hashes)
}
