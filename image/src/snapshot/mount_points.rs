//! A cached read-only layer with the mount targets an image lacks.
//!
//! A container's runtime mounts on /proc, /dev, /sys, /etc/hosts, ... and creates each
//! target the image lacks inside the rootfs first. In an overlay rootfs that is a new inode
//! in the container's upper directory at every start, on the start's critical path. This
//! layer holds exactly those missing targets (empty directories 0755, empty files 0644,
//! root-owned), is built once per (image layer chain, target list) and is mounted as the
//! topmost lower layer of every container of that image, so the targets already exist and
//! the runtime only opens them.
//!
//! It must never change what the image shows. Whether a target is missing is decided in the
//! image's merged view, found by looking the path up through the snapshot directories with
//! overlayfs's own rules ([`merged_view`]): no mount is needed (nothing to leak if we
//! crash), and it is a handful of `lstat`s once per image. A target that exists in any form
//! (a symlink too) is left out, and so is one below a component that is not a real
//! directory (`/etc -> usr/etc`, a file): the runtime then resolves and creates it as
//! before. A parent directory the image has is created in the layer with the image's mode,
//! owner, xattrs and times, since an overlay directory shows the attributes of its topmost
//! copy; a parent the image lacks is made 0755 root-owned, as the runtime would make it.
//!
//! Layers live in `<store>/mountpoints/<top chain id hex>-<key>`, where the top chain id
//! names the whole layer chain and the key is a digest of the sorted target list. `fs/` in
//! it is the layer; a published directory without `fs/` records that the image lacks none
//! of the targets. [`Store::gc`] removes a layer with its chain's snapshots: a container
//! that exists (running or stopped) holds a lease on the chain, so its layer stays; a layer
//! removed anyway is rebuilt by the next start that needs it.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use tracing::debug;

use super::merged_view::{self, Entry};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::store::{unique_name, RemoveOnDrop, Store};

/// Bumped when the rules for what a layer holds change, so older layers are not reused.
const FORMAT: &str = "kos-mountpoints-v2";

/// What the runtime mounts on a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MountKind {
    /// A directory (proc, sysfs, tmpfs, a bound directory).
    Dir,
    /// A file (a bound /etc/hosts).
    File,
}

/// A mount target inside the container's root: an absolute path of plain components.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MountPoint {
    path: PathBuf,
    kind: MountKind,
}

impl MountPoint {
    /// `path` must be absolute, not `/`, and made of plain names (no `.`, `..` or `//`
    /// spellings beyond what [`Path::components`] folds, no NUL).
    pub fn new(path: impl AsRef<Path>, kind: MountKind) -> Result<Self> {
        let path = path.as_ref();
        let bad = |reason: &str| Error::InvalidMountPoint {
            path: path.to_path_buf(),
            reason: reason.to_string(),
        };
        let mut comps = path.components();
        if comps.next() != Some(Component::RootDir) {
            return Err(bad("not an absolute path"));
        }
        let mut clean = PathBuf::from("/");
        for c in comps {
            match c {
                Component::Normal(n) if !n.as_bytes().contains(&0) => clean.push(n),
                Component::Normal(_) => return Err(bad("contains a NUL byte")),
                _ => return Err(bad("contains '.' or '..'")),
            }
        }
        if clean == Path::new("/") {
            return Err(bad("is the root itself"));
        }
        // Path::components folds "/./" away silently; a caller spelling it is confused.
        if path
            .as_os_str()
            .as_bytes()
            .split(|b| *b == b'/')
            .any(|seg| seg == b"." || seg == b"..")
        {
            return Err(bad("contains '.' or '..'"));
        }
        Ok(MountPoint { path: clean, kind })
    }

    pub fn dir(path: impl AsRef<Path>) -> Result<Self> {
        Self::new(path, MountKind::Dir)
    }

    pub fn file(path: impl AsRef<Path>) -> Result<Self> {
        Self::new(path, MountKind::File)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn kind(&self) -> MountKind {
        self.kind
    }

    /// The targets every Docker-style container mounts on: /proc, /dev, /sys and the
    /// engine's /etc/hostname, /etc/hosts, /etc/resolv.conf.
    pub fn container_defaults() -> Vec<MountPoint> {
        let d = |p: &str| MountPoint {
            path: PathBuf::from(p),
            kind: MountKind::Dir,
        };
        let f = |p: &str| MountPoint {
            path: PathBuf::from(p),
            kind: MountKind::File,
        };
        vec![
            d("/proc"),
            d("/dev"),
            d("/sys"),
            f("/etc/hostname"),
            f("/etc/hosts"),
            f("/etc/resolv.conf"),
        ]
    }

    /// The path below the root (no leading `/`).
    fn rel(&self) -> &Path {
        self.path.strip_prefix("/").unwrap_or(&self.path)
    }
}

/// Sorted, without duplicates; the same path asked as both kinds keeps the first kind in
/// sort order (a directory), which is then what the layer may hold.
fn normalize(targets: &[MountPoint]) -> Vec<MountPoint> {
    let mut v = targets.to_vec();
    v.sort();
    v.dedup_by(|a, b| a.path == b.path);
    v
}

/// The cache key of a target list.
fn key(targets: &[MountPoint]) -> String {
    let mut text = String::from(FORMAT);
    for t in targets {
        let k = match t.kind {
            MountKind::Dir => 'd',
            MountKind::File => 'f',
        };
        text.push('\n');
        text.push(k);
        text.push(' ');
        text.push_str(&t.path.to_string_lossy());
    }
    Digest::of(text.as_bytes()).hex()[..32].to_string()
}

/// Attributes of a directory the layer recreates.
struct DirAttrs {
    mode: u32,
    uid: u32,
    gid: u32,
    atime: (i64, i64),
    mtime: (i64, i64),
    /// The image's copy, whose xattrs are carried over.
    from: Option<PathBuf>,
}

impl DirAttrs {
    fn of_image(path: &Path, m: &std::fs::Metadata) -> Self {
        DirAttrs {
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            atime: (m.atime(), m.atime_nsec()),
            mtime: (m.mtime(), m.mtime_nsec()),
            from: Some(path.to_path_buf()),
        }
    }

    /// A directory the image lacks: as the runtime would make it.
    fn fresh() -> Self {
        DirAttrs {
            mode: 0o755,
            uid: 0,
            gid: 0,
            atime: (0, libc::UTIME_NOW),
            mtime: (0, libc::UTIME_NOW),
            from: None,
        }
    }
}

/// What the layer holds: directories (with attributes) and leaves, by path below the root.
#[derive(Default)]
struct Plan {
    dirs: BTreeMap<PathBuf, DirAttrs>,
    leaves: Vec<(PathBuf, MountKind)>,
}

/// Decides, per target, whether the layer may provide it (see the module docs).
fn plan(lowers: &[PathBuf], targets: &[MountPoint]) -> io::Result<Plan> {
    let mut plan = Plan::default();
    'targets: for t in targets {
        let rel = t.rel();
        let entries = merged_view::walk(lowers, rel)?;
        let n = rel.components().count();
        let mut parents: Vec<(PathBuf, DirAttrs)> = Vec::new();
        let mut prefix = PathBuf::new();
        for (i, comp) in rel.components().enumerate() {
            prefix.push(comp);
            let is_leaf = i + 1 == n;
            match entries.get(i) {
                // Past a missing component everything below is missing too.
                None | Some(Entry::Absent) => {
                    if !is_leaf {
                        parents.push((prefix.clone(), DirAttrs::fresh()));
                    }
                }
                Some(Entry::Dir { path, top }) if !is_leaf => {
                    parents.push((prefix.clone(), DirAttrs::of_image(path, top)));
                }
                // The image has the target, or a parent is not a real directory.
                Some(_) => continue 'targets,
            }
        }
        // A target below another target the layer creates as a file cannot be made.
        if plan
            .leaves
            .iter()
            .any(|(l, k)| *k == MountKind::File && rel.starts_with(l))
        {
            continue;
        }
        for (p, a) in parents {
            plan.dirs.entry(p).or_insert(a);
        }
        plan.leaves.push((rel.to_path_buf(), t.kind));
    }
    Ok(plan)
}

fn cstr(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

/// Copies the xattrs of `from` (but overlayfs's own markers) onto `to`.
fn copy_xattrs(from: &Path, to: &Path) -> io::Result<()> {
    let (f, t) = (cstr(from)?, cstr(to)?);
    let mut names = vec![0u8; 64 * 1024];
    // SAFETY: valid C string and buffer of the given length.
    let n = unsafe { libc::llistxattr(f.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENOTSUP) => Ok(()),
            _ => Err(e),
        };
    }
    names.truncate(n as usize);
    let mut value = vec![0u8; 64 * 1024];
    for name in names.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        if name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay.") {
            continue;
        }
        let cname = CString::new(name)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "NUL in xattr name"))?;
        // SAFETY: valid C strings and buffer of the given length.
        let len = unsafe {
            libc::lgetxattr(
                f.as_ptr(),
                cname.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if len < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: valid C strings and a value of `len` bytes.
        let r = unsafe {
            libc::lsetxattr(
                t.as_ptr(),
                cname.as_ptr(),
                value.as_ptr().cast(),
                len as usize,
                0,
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Gives a directory (or leaf) of the layer its owner, xattrs, mode and times, in an
/// order where none undoes another (chown may clear set-id bits; an ACL sets mode bits).
fn apply(path: &Path, a: &DirAttrs) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(a.uid), Some(a.gid))?;
    if let Some(from) = &a.from {
        copy_xattrs(from, path)?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(a.mode))?;
    let c = cstr(path)?;
    let times = [
        libc::timespec {
            tv_sec: a.atime.0 as libc::time_t,
            tv_nsec: a.atime.1 as _,
        },
        libc::timespec {
            tv_sec: a.mtime.0 as libc::time_t,
            tv_nsec: a.mtime.1 as _,
        },
    ];
    // SAFETY: valid C string and two timespecs.
    if unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the planned tree under `fs` and syncs it, so a published layer is whole even
/// after a crash.
fn build(fs: &Path, plan: &Plan) -> io::Result<()> {
    std::fs::create_dir(fs)?;
    std::fs::set_permissions(fs, std::fs::Permissions::from_mode(0o755))?;
    for d in plan.dirs.keys() {
        std::fs::create_dir(fs.join(d))?;
    }
    for (leaf, kind) in &plan.leaves {
        let p = fs.join(leaf);
        let mode = match kind {
            // Also the parent of a deeper target: made with the directories.
            MountKind::Dir if plan.dirs.contains_key(leaf) => continue,
            MountKind::Dir => {
                std::fs::create_dir(&p)?;
                0o755
            }
            // 0755 as dockerd's init layer makes its files: what shows where nothing is
            // mounted on one (Docker's /.dockerenv).
            MountKind::File => {
                std::fs::File::create_new(&p)?.sync_all()?;
                0o755
            }
        };
        std::os::unix::fs::lchown(&p, Some(0), Some(0))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
    }
    // Deepest first: setting a parent's times must come after its children are made.
    for (d, attrs) in plan.dirs.iter().rev() {
        apply(&fs.join(d), attrs)?;
    }
    let mut sync: Vec<PathBuf> = plan.dirs.keys().map(|d| fs.join(d)).collect();
    sync.extend(
        plan.leaves
            .iter()
            .filter(|(_, k)| *k == MountKind::Dir)
            .map(|(l, _)| fs.join(l)),
    );
    sync.push(fs.to_path_buf());
    for p in sync {
        std::fs::File::open(&p)?.sync_all()?;
    }
    Ok(())
}

impl Store {
    /// The mount-point layer for the chain ending at `top` (whose snapshot directories are
    /// `lowers`, top first) and `targets`, built on first use. None when the image lacks
    /// none of the targets.
    pub fn mount_point_layer(
        &self,
        top: &Digest,
        lowers: &[PathBuf],
        targets: &[MountPoint],
    ) -> Result<Option<PathBuf>> {
        let targets = normalize(targets);
        if targets.is_empty() {
            return Ok(None);
        }
        let base = self.mount_point_layers_dir();
        let published = base.join(crate::store::mount_point_layer_name(top, &key(&targets)));
        if let Some(found) = lookup(&published)? {
            return Ok(found);
        }
        // Shared hold: gc (exclusive) never removes a layer, or its snapshots, mid-build.
        let _lock = self.lock(false)?;
        if let Some(found) = lookup(&published)? {
            return Ok(found);
        }
        std::fs::create_dir_all(&base)
            .map_err(|e| Error::path("creating mount-point layer directory", &base, e))?;
        let scratch = base.join(unique_name("tmp"));
        std::fs::create_dir(&scratch)
            .map_err(|e| Error::path("creating mount-point layer scratch", &scratch, e))?;
        let guard = RemoveOnDrop(Some(scratch.clone()));
        let plan = plan(lowers, &targets)
            .map_err(|e| Error::io(format!("looking up mount targets in image {top}"), e))?;
        if !plan.leaves.is_empty() {
            let fs = scratch.join("fs");
            build(&fs, &plan).map_err(|e| Error::path("building mount-point layer", &fs, e))?;
        }
        match std::fs::rename(&scratch, &published) {
            Ok(()) => {
                crate::store::blobs::fsync_dir(&base)?;
                debug!(layer = %published.display(), targets = plan.leaves.len(), "mount-point layer built");
            }
            // Another start built the same layer first; theirs is the same. (Renaming
            // over an existing empty "nothing needed" directory succeeds: equally fine.)
            Err(e) if published.is_dir() => {
                debug!(layer = %published.display(), error = %e, "mount-point layer already built");
            }
            Err(e) => return Err(Error::path("publishing mount-point layer", &published, e)),
        }
        drop(guard);
        lookup(&published)?.ok_or_else(|| {
            Error::path(
                "reading published mount-point layer",
                &published,
                io::Error::from(io::ErrorKind::NotFound),
            )
        })
    }
}

/// A published layer: Some(Some(fs)) to mount, Some(None) when nothing is needed, None when
/// it is not built yet.
fn lookup(published: &Path) -> Result<Option<Option<PathBuf>>> {
    let fs = published.join("fs");
    match std::fs::symlink_metadata(&fs) {
        Ok(m) if m.is_dir() => return Ok(Some(Some(fs))),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::path("looking up mount-point layer", &fs, e)),
    }
    match std::fs::symlink_metadata(published) {
        Ok(m) if m.is_dir() => Ok(Some(None)),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::path("looking up mount-point layer", published, e)),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn mount_points_are_absolute_and_clean() {
        assert_eq!(MountPoint::dir("/proc").unwrap().path(), Path::new("/proc"));
        assert_eq!(
            MountPoint::file("/etc//hosts/").unwrap().path(),
            Path::new("/etc/hosts")
        );
        for bad in [
            "proc",
            "/",
            "//",
            "/etc/../x",
            "/./etc",
            "/etc/.",
            "",
            "/a/./b",
            "/a\0b",
        ] {
            assert!(MountPoint::dir(bad).is_err(), "{bad:?} accepted");
        }
        assert!(MountPoint::file("/.dockerenv").is_ok());
        let e = MountPoint::dir("/a/../b").unwrap_err().to_string();
        assert!(e.contains("/a/../b") && e.contains(".."), "{e}");
    }

    #[test]
    fn nested_targets_share_directories_and_nothing_goes_below_a_file() {
        let tmp = std::env::temp_dir().join(unique_name("kos-mp-plan"));
        let lower = tmp.join("lower");
        std::fs::create_dir_all(lower.join("etc")).unwrap();
        struct Cleanup(PathBuf);
        impl Drop for Cleanup {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let _cleanup = Cleanup(tmp.clone());
        let targets = normalize(&[
            MountPoint::dir("/dev/shm").unwrap(),
            MountPoint::dir("/dev").unwrap(),
            MountPoint::file("/etc/hosts").unwrap(),
            MountPoint::dir("/etc/hosts/x").unwrap(),
            MountPoint::file("/run/secrets/a").unwrap(),
        ]);
        let plan = plan(std::slice::from_ref(&lower), &targets).unwrap();
        let dirs: Vec<_> = plan.dirs.keys().map(|p| p.display().to_string()).collect();
        assert_eq!(dirs, ["dev", "etc", "run", "run/secrets"]);
        let leaves: Vec<_> = plan
            .leaves
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect();
        assert_eq!(leaves, ["dev", "dev/shm", "etc/hosts", "run/secrets/a"]);
        let fs = tmp.join("fs");
        build(&fs, &plan).unwrap();
        assert!(fs.join("dev/shm").is_dir());
        assert!(fs.join("etc/hosts").is_file());
        let m = std::fs::metadata(fs.join("etc/hosts")).unwrap();
        assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o755, 0, 0));
        assert!(fs.join("run/secrets/a").is_file());
        let m = std::fs::metadata(fs.join("run/secrets")).unwrap();
        assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o755, 0, 0));
    }

    #[test]
    fn key_ignores_order_and_duplicates_but_not_kinds() {
        let a = normalize(&MountPoint::container_defaults());
        let mut rev = MountPoint::container_defaults();
        rev.reverse();
        rev.push(MountPoint::dir("/proc").unwrap());
        assert_eq!(key(&a), key(&normalize(&rev)));
        let other = normalize(&[MountPoint::dir("/etc/hosts").unwrap()]);
        let file = normalize(&[MountPoint::file("/etc/hosts").unwrap()]);
        assert_ne!(key(&other), key(&file));
    }
}
