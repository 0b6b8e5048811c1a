//! Extended attributes a layer carries: what a step set on its files
//! (`user.*`, file capabilities, `trusted.*`), never overlayfs's own
//! bookkeeping in the upper directory nor the host's SELinux labels.

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// The kernel's limit on one value and on a name list (XATTR_SIZE_MAX, XATTR_LIST_MAX).
const MAX: usize = 64 * 1024;

/// Whether a layer records the attribute `name`.
pub fn recorded(name: &str) -> bool {
    let ours =
        name.starts_with("user.") || name.starts_with("security.") || name.starts_with("trusted.");
    // The overlay's markers (opaque, origin, redirect...) become whiteouts or
    // nothing; a label is the host's policy, applied again where it runs.
    ours && !name.starts_with("trusted.overlay.")
        && !name.starts_with("user.overlay.")
        && name != "security.selinux"
}

/// Where attributes are read from: a path (not following a symlink) or an
/// open file, which spares a lookup of its path.
#[derive(Clone, Copy)]
enum Source<'a> {
    Path(&'a CString),
    Fd(RawFd),
}

impl Source<'_> {
    fn list(self, buf: &mut [u8]) -> isize {
        match self {
            // SAFETY: valid C string and buffer of the given length.
            Source::Path(p) => unsafe {
                libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
            },
            // SAFETY: an open fd and a buffer of the given length.
            Source::Fd(fd) => unsafe { libc::flistxattr(fd, buf.as_mut_ptr().cast(), buf.len()) },
        }
    }

    fn get(self, name: &CString, buf: &mut [u8]) -> isize {
        match self {
            // SAFETY: valid C strings and buffer of the given length.
            Source::Path(p) => unsafe {
                libc::lgetxattr(
                    p.as_ptr(),
                    name.as_ptr(),
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                )
            },
            // SAFETY: an open fd, a valid C string and a buffer of the given length.
            Source::Fd(fd) => unsafe {
                libc::fgetxattr(fd, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
            },
        }
    }
}

/// The attributes of `path` (not following a symlink) that a layer records,
/// sorted by name so the same tree always gives the same tar.
pub fn read(path: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let p = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    read_from(Source::Path(&p))
}

/// [`read`] of an open file.
pub fn read_fd(fd: RawFd) -> io::Result<Vec<(String, Vec<u8>)>> {
    read_from(Source::Fd(fd))
}

fn read_from(src: Source<'_>) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut names = vec![0u8; 1024];
    let n = loop {
        let n = src.list(&mut names);
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENOTSUP) => return Ok(Vec::new()),
            Some(libc::ERANGE) if names.len() < MAX => names.resize(MAX, 0),
            _ => return Err(e),
        }
    };
    let mut out = Vec::new();
    for raw in names[..n].split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let Ok(name) = std::str::from_utf8(raw) else {
            continue;
        };
        if !recorded(name) {
            continue;
        }
        if let Some(v) = value(src, raw)? {
            out.push((name.to_string(), v));
        }
    }
    out.sort();
    Ok(out)
}

/// One attribute's value; `None` when it vanished since the listing.
fn value(src: Source<'_>, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let cname = CString::new(name)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in xattr name"))?;
    let mut buf = vec![0u8; 256];
    loop {
        let n = src.get(&cname, &mut buf);
        if n >= 0 {
            buf.truncate(n as usize);
            return Ok(Some(buf));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENODATA) => return Ok(None),
            Some(libc::ERANGE) if buf.len() < MAX => buf.resize(MAX, 0),
            _ => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_layer_records() {
        assert!(recorded("user.mime"));
        assert!(recorded("security.capability"));
        assert!(recorded("trusted.app"));
        assert!(!recorded("trusted.overlay.opaque"));
        assert!(!recorded("trusted.overlay.origin"));
        assert!(!recorded("user.overlay.redirect"));
        assert!(!recorded("security.selinux"));
        assert!(!recorded("system.posix_acl_access"));
    }
}
