//! Path lookups in the merged view of a stack of snapshot directories, as overlayfs
//! resolves them, without mounting anything.
//!
//! Snapshots hold overlayfs's own on-disk forms (unpack's `Mode::Overlay`): a whiteout is a
//! 0:0 character device and an opaque directory carries `trusted.overlay.opaque=y`. Layers
//! never carry other `trusted.overlay.*` markers (redirects, xattr whiteouts): the unpacker
//! drops every such xattr a layer asks for. A lookup therefore follows the kernel's rules:
//! the topmost layer with an entry decides what it is; a directory merges with the
//! directories of the same name below it until an opaque one, or a non-directory, ends it.

use std::fs::Metadata;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Component, Path, PathBuf};

use crate::unpack::whiteout::OVERLAY_OPAQUE_XATTR;

/// What one path is in the merged view.
#[derive(Debug)]
pub enum Entry {
    /// Nothing there (never was, or whited out).
    Absent,
    /// A directory; `top` is the topmost layer's copy, whose attributes the merged
    /// directory shows, `path` that copy's location.
    Dir { path: PathBuf, top: Box<Metadata> },
    /// Anything else: file, symlink, device, fifo, socket.
    Other,
}

/// The merged-view entries of `rel`'s leading components in `layers` (top first): one per
/// component, up to and including the first that is not a directory. `rel` is relative and
/// made of normal components only (callers validate it).
pub fn walk(layers: &[PathBuf], rel: &Path) -> io::Result<Vec<Entry>> {
    let mut active: Vec<PathBuf> = layers.to_vec();
    let mut out = Vec::new();
    for comp in rel.components() {
        let Component::Normal(name) = comp else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a plain relative path", rel.display()),
            ));
        };
        let (entry, below) = step(&active, name.as_ref())?;
        let is_dir = matches!(entry, Entry::Dir { .. });
        out.push(entry);
        if !is_dir {
            break;
        }
        active = below;
    }
    Ok(out)
}

/// Looks `name` up in the merged directory made of `dirs` (top first). Returns the entry
/// and, for a directory, the layer copies that make it up (top first).
fn step(dirs: &[PathBuf], name: &Path) -> io::Result<(Entry, Vec<PathBuf>)> {
    let mut merged: Vec<PathBuf> = Vec::new();
    let mut top: Option<Metadata> = None;
    for d in dirs {
        let p = d.join(name);
        let meta = match std::fs::symlink_metadata(&p) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let ft = meta.file_type();
        if ft.is_char_device() && meta.rdev() == 0 {
            // A whiteout hides this name in every layer below.
            break;
        }
        if !ft.is_dir() {
            if top.is_none() {
                return Ok((Entry::Other, Vec::new()));
            }
            // A non-directory below a directory ends the merge.
            break;
        }
        let opaque = is_opaque(&p)?;
        if top.is_none() {
            top = Some(meta);
        }
        merged.push(p);
        if opaque {
            break;
        }
    }
    match top {
        None => Ok((Entry::Absent, Vec::new())),
        Some(meta) => Ok((
            Entry::Dir {
                path: merged[0].clone(),
                top: Box::new(meta),
            },
            merged,
        )),
    }
}

/// Whether the directory `p` is marked opaque (`trusted.overlay.opaque=y`).
fn is_opaque(p: &Path) -> io::Result<bool> {
    let path = std::ffi::CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))?;
    let name = std::ffi::CString::new(OVERLAY_OPAQUE_XATTR)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in xattr name"))?;
    let mut buf = [0u8; 4];
    // SAFETY: valid C strings and a buffer of the given length.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENODATA) | Some(libc::ENOTSUP) | Some(libc::ERANGE) => Ok(false),
            _ => Err(e),
        };
    }
    Ok(n == 1 && buf[0] == b'y')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    struct Tmp(PathBuf);
    impl Drop for Tmp {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn tmp(tag: &str) -> Tmp {
        let p = std::env::temp_dir().join(crate::store::unique_name(&format!("kos-mv-{tag}")));
        std::fs::create_dir_all(&p).unwrap();
        Tmp(p)
    }

    fn whiteout(p: &Path) {
        let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
        // SAFETY: valid C string.
        let r = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o600, 0) };
        assert_eq!(r, 0, "mknod whiteout: {}", io::Error::last_os_error());
    }

    fn kinds(v: &[Entry]) -> Vec<&'static str> {
        v.iter()
            .map(|e| match e {
                Entry::Absent => "absent",
                Entry::Dir { .. } => "dir",
                Entry::Other => "other",
            })
            .collect()
    }

    #[test]
    fn topmost_entry_decides_and_whiteouts_hide() {
        let t = tmp("wo");
        let (top, bottom) = (t.0.join("top"), t.0.join("bottom"));
        std::fs::create_dir_all(bottom.join("etc")).unwrap();
        std::fs::write(bottom.join("etc/hosts"), b"x").unwrap();
        std::fs::create_dir_all(bottom.join("gone")).unwrap();
        std::fs::create_dir_all(top.join("etc")).unwrap();
        whiteout(&top.join("gone"));
        let layers = vec![top.clone(), bottom.clone()];
        assert_eq!(
            kinds(&walk(&layers, Path::new("etc/hosts")).unwrap()),
            ["dir", "other"]
        );
        assert_eq!(
            kinds(&walk(&layers, Path::new("gone/x")).unwrap()),
            ["absent"]
        );
        // The directory's attributes are the top copy's.
        let v = walk(&layers, Path::new("etc")).unwrap();
        let Entry::Dir { path, .. } = &v[0] else {
            panic!("etc is a dir")
        };
        assert_eq!(path, &top.join("etc"));
        // A whiteout of the file in the top layer hides the lower file.
        whiteout(&top.join("etc/hosts"));
        assert_eq!(
            kinds(&walk(&layers, Path::new("etc/hosts")).unwrap()),
            ["dir", "absent"]
        );
    }

    #[test]
    fn opaque_dirs_and_non_dirs_end_the_merge() {
        let t = tmp("opq");
        let (top, bottom) = (t.0.join("top"), t.0.join("bottom"));
        std::fs::create_dir_all(bottom.join("etc")).unwrap();
        std::fs::write(bottom.join("etc/hosts"), b"x").unwrap();
        std::fs::create_dir_all(&top).unwrap();
        // A symlink on top shadows the lower directory: not a directory in the view.
        std::os::unix::fs::symlink("usr/etc", top.join("etc")).unwrap();
        let layers = vec![top.clone(), bottom.clone()];
        assert_eq!(
            kinds(&walk(&layers, Path::new("etc/hosts")).unwrap()),
            ["other"]
        );
        std::fs::remove_file(top.join("etc")).unwrap();
        std::fs::create_dir(top.join("etc")).unwrap();
        let c = std::ffi::CString::new(top.join("etc").as_os_str().as_bytes()).unwrap();
        let n = std::ffi::CString::new(OVERLAY_OPAQUE_XATTR).unwrap();
        // SAFETY: valid C strings, 1-byte value.
        let r = unsafe { libc::setxattr(c.as_ptr(), n.as_ptr(), b"y".as_ptr().cast(), 1, 0) };
        assert_eq!(r, 0, "set opaque: {}", io::Error::last_os_error());
        assert_eq!(
            kinds(&walk(&layers, Path::new("etc/hosts")).unwrap()),
            ["dir", "absent"]
        );
    }
}
