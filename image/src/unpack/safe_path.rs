//! Path resolution that cannot leave a root directory.
//!
//! Every entry of a layer is created relative to a directory fd obtained with
//! openat2(RESOLVE_IN_ROOT): `..` and symlinks (absolute or relative) in the
//! parent path are resolved as if the root were `/`, so they can never reach
//! outside it. The final component is always handled with *at calls that do
//! not follow symlinks.

use std::ffi::{CString, OsStr};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// `struct open_how` of openat2(2).
#[repr(C)]
struct OpenHow {
    flags: u64,
    mode: u64,
    resolve: u64,
}

const RESOLVE_NO_MAGICLINKS: u64 = 0x02;
const RESOLVE_NO_XDEV: u64 = 0x01;
const RESOLVE_IN_ROOT: u64 = 0x10;

fn cvt(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

pub(crate) fn cstr(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL byte in path"))
}

/// Normalises an entry path lexically: leading `/` dropped, `.` removed,
/// `..` pops but never above the root. Returns `None` for the root itself.
pub fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    if out.as_os_str().is_empty() {
        None
    } else {
        Some(out)
    }
}

/// openat2 relative to `dirfd` with the given resolve flags.
pub(crate) fn openat2(dirfd: RawFd, path: &Path, flags: i32, resolve: u64) -> io::Result<OwnedFd> {
    let c = cstr(path.as_os_str())?;
    let how = OpenHow {
        flags: (flags | libc::O_CLOEXEC) as u64,
        mode: 0,
        resolve,
    };
    loop {
        // SAFETY: `c` is a valid C string and `how` a properly sized open_how.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd,
                c.as_ptr(),
                &how as *const OpenHow,
                std::mem::size_of::<OpenHow>(),
            )
        };
        if ret >= 0 {
            // SAFETY: the kernel returned a fresh fd that we now own.
            return Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) });
        }
        let err = io::Error::last_os_error();
        // EAGAIN happens when a concurrent rename races the lookup: retry.
        if err.raw_os_error() != Some(libc::EAGAIN) {
            return Err(err);
        }
    }
}

/// openat(2) of a single name that never follows a final symlink.
pub(crate) fn openat(dirfd: RawFd, name: &OsStr, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    // SAFETY: valid C string; the returned fd is owned below.
    let fd = cvt(unsafe {
        libc::openat(
            dirfd,
            c.as_ptr(),
            flags | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            mode,
        )
    })?;
    // SAFETY: fresh fd from the kernel.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A directory that paths are resolved inside of.
pub struct Root {
    fd: OwnedFd,
    path: PathBuf,
}

impl Root {
    pub fn open(path: &Path) -> io::Result<Self> {
        let c = cstr(path.as_os_str())?;
        // SAFETY: valid C string.
        let fd = cvt(unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        })?;
        Ok(Root {
            // SAFETY: fresh fd from the kernel.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            path: path.to_path_buf(),
        })
    }

    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens a path inside the root, following symlinks only within it.
    pub fn open_in(&self, rel: &Path, flags: i32) -> io::Result<OwnedFd> {
        if rel.as_os_str().is_empty() {
            return openat2(self.fd(), Path::new("."), flags, RESOLVE_IN_ROOT);
        }
        openat2(
            self.fd(),
            rel,
            flags,
            RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV,
        )
    }

    /// Opens (creating missing directories with mode 0755) the directory
    /// `rel` inside the root and returns an O_PATH fd to it.
    pub fn mkdir_all(&self, rel: &Path) -> io::Result<OwnedFd> {
        let flags = libc::O_PATH | libc::O_DIRECTORY;
        match self.open_in(rel, flags) {
            Ok(fd) => return Ok(fd),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e),
        }
        let mut cur = self.open_in(Path::new(""), flags)?;
        let mut prefix = PathBuf::new();
        for comp in rel.components() {
            let Component::Normal(name) = comp else {
                continue;
            };
            prefix.push(name);
            match self.open_in(&prefix, flags) {
                Ok(fd) => cur = fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    let c = cstr(name)?;
                    // SAFETY: valid fd and C string.
                    let r = unsafe { libc::mkdirat(cur.as_raw_fd(), c.as_ptr(), 0o755) };
                    if r < 0 {
                        let err = io::Error::last_os_error();
                        if err.raw_os_error() != Some(libc::EEXIST) {
                            return Err(err);
                        }
                    }
                    cur = self.open_in(&prefix, flags)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(cur)
    }
}

/// lstat of `name` in `dirfd`; `None` when it does not exist.
pub(crate) fn lstat_at(dirfd: RawFd, name: &OsStr) -> io::Result<Option<libc::stat>> {
    let c = cstr(name)?;
    // SAFETY: zeroed stat is a valid out-buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd, C string and buffer.
    let r = unsafe { libc::fstatat(dirfd, c.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOENT) {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(st))
}

/// Removes `name` in `dirfd`, recursively for directories, never following symlinks.
pub(crate) fn remove_all_at(dirfd: RawFd, name: &OsStr) -> io::Result<()> {
    let Some(st) = lstat_at(dirfd, name)? else {
        return Ok(());
    };
    let c = cstr(name)?;
    if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
        let sub = openat(dirfd, name, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        clear_dir(sub.as_raw_fd(), &|_| false)?;
        // SAFETY: valid fd and C string.
        cvt(unsafe { libc::unlinkat(dirfd, c.as_ptr(), libc::AT_REMOVEDIR) })?;
    } else {
        // SAFETY: valid fd and C string.
        cvt(unsafe { libc::unlinkat(dirfd, c.as_ptr(), 0) })?;
    }
    Ok(())
}

/// Removes every child of the directory `dirfd` for which `keep` is false.
pub(crate) fn clear_dir(dirfd: RawFd, keep: &dyn Fn(&OsStr) -> bool) -> io::Result<()> {
    for name in list_dir(dirfd)? {
        if !keep(&name) {
            remove_all_at(dirfd, &name)?;
        }
    }
    Ok(())
}

/// Names in a directory given by fd (not `.` and `..`).
pub(crate) fn list_dir(dirfd: RawFd) -> io::Result<Vec<std::ffi::OsString>> {
    // The /proc magic link refers to exactly this fd, not to a path that could be swapped.
    let mut out = Vec::new();
    for ent in std::fs::read_dir(format!("/proc/self/fd/{dirfd}"))? {
        out.push(ent?.file_name());
    }
    Ok(out)
}
