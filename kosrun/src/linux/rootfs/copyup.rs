//! tmpcopyup: seed a fresh tmpfs with what the directory underneath held.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use kos_security::path::proc_fd_path;

/// Copy the tree under `src` (an open directory) into the mount at `dst` (an O_PATH fd).
pub fn copy_dir(src: &OwnedFd, dst: &OwnedFd) -> io::Result<()> {
    let dst_dir = reopen_dir(dst)?;
    copy_tree(src.as_raw_fd(), dst_dir.as_raw_fd(), 0)
}

fn reopen_dir(fd: &OwnedFd) -> io::Result<OwnedFd> {
    let p = CString::new(proc_fd_path(fd).to_string_lossy().as_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: valid path.
    let raw = unsafe {
        libc::open(
            p.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptor.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn copy_tree(src: i32, dst: i32, depth: u32) -> io::Result<()> {
    if depth > 64 {
        return Err(io::Error::other("directory tree too deep"));
    }
    let dup = check(unsafe { libc::fcntl(src, libc::F_DUPFD_CLOEXEC, 0) })?;
    // SAFETY: fdopendir takes ownership of dup.
    let dir = unsafe { libc::fdopendir(dup) };
    if dir.is_null() {
        unsafe { libc::close(dup) };
        return Err(io::Error::last_os_error());
    }
    let result = (|| {
        loop {
            // SAFETY: dir is a valid DIR*.
            let ent = unsafe { libc::readdir(dir) };
            if ent.is_null() {
                return Ok(());
            }
            // SAFETY: d_name is NUL-terminated.
            let name = unsafe { std::ffi::CStr::from_ptr((*ent).d_name.as_ptr()) };
            if name == c"." || name == c".." {
                continue;
            }
            copy_entry(src, dst, name, depth)?;
        }
    })();
    unsafe { libc::closedir(dir) };
    result
}

fn copy_entry(src: i32, dst: i32, name: &std::ffi::CStr, depth: u32) -> io::Result<()> {
    // SAFETY: zeroed stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    check(unsafe { libc::fstatat(src, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) })?;
    let mode = st.st_mode & 0o7777;
    match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => {
            check(unsafe { libc::mkdirat(dst, name.as_ptr(), mode) })?;
            let s = check(unsafe {
                libc::openat(
                    src,
                    name.as_ptr(),
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                )
            })?;
            let s = unsafe { OwnedFd::from_raw_fd(s) };
            let d = check(unsafe {
                libc::openat(
                    dst,
                    name.as_ptr(),
                    libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                )
            })?;
            let d = unsafe { OwnedFd::from_raw_fd(d) };
            copy_tree(s.as_raw_fd(), d.as_raw_fd(), depth + 1)?;
        }
        libc::S_IFREG => {
            let s = check(unsafe {
                libc::openat(
                    src,
                    name.as_ptr(),
                    libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                )
            })?;
            let s = unsafe { OwnedFd::from_raw_fd(s) };
            let d = check(unsafe {
                libc::openat(
                    dst,
                    name.as_ptr(),
                    libc::O_WRONLY
                        | libc::O_CREAT
                        | libc::O_EXCL
                        | libc::O_NOFOLLOW
                        | libc::O_CLOEXEC,
                    mode as libc::c_uint,
                )
            })?;
            let d = unsafe { OwnedFd::from_raw_fd(d) };
            copy_contents(&s, &d, st.st_size as usize)?;
        }
        libc::S_IFLNK => {
            let mut buf = vec![0u8; libc::PATH_MAX as usize];
            let n = unsafe {
                libc::readlinkat(src, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len() - 1)
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            buf.truncate(n as usize);
            buf.push(0);
            check(unsafe { libc::symlinkat(buf.as_ptr().cast(), dst, name.as_ptr()) })?;
        }
        _ => {
            check(unsafe { libc::mknodat(dst, name.as_ptr(), st.st_mode, st.st_rdev) })?;
        }
    }
    check(unsafe {
        libc::fchownat(
            dst,
            name.as_ptr(),
            st.st_uid,
            st.st_gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    })?;
    Ok(())
}

/// copy_file_range, or a plain read/write loop where the kernel will not copy between
/// these two filesystems (EXDEV across mounts on older kernels, EINVAL/EOPNOTSUPP for
/// filesystems without the operation).
fn copy_contents(s: &OwnedFd, d: &OwnedFd, size: usize) -> io::Result<()> {
    let mut left = size;
    while left > 0 {
        // SAFETY: two descriptors we own, no offsets (the file positions advance).
        let n = unsafe {
            libc::copy_file_range(
                s.as_raw_fd(),
                std::ptr::null_mut(),
                d.as_raw_fd(),
                std::ptr::null_mut(),
                left,
                0,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EXDEV | libc::EINVAL | libc::EOPNOTSUPP | libc::ENOSYS) => {
                    copy_by_reading(s, d)
                }
                _ => Err(e),
            };
        }
        if n == 0 {
            break;
        }
        left -= n as usize;
    }
    Ok(())
}

/// The rest of `s` (from its current position) appended to `d`.
fn copy_by_reading(s: &OwnedFd, d: &OwnedFd) -> io::Result<()> {
    let mut src = std::fs::File::from(s.try_clone()?);
    let mut dst = std::fs::File::from(d.try_clone()?);
    io::copy(&mut src, &mut dst).map(|_| ())
}
