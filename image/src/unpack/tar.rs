//! Streaming, root-confined extraction of one layer tarball.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use tracing::{debug, warn};

use super::compression::{self, Compression};
use super::safe_path::{self, cstr, lstat_at, openat, remove_all_at, Root};
use super::whiteout::{self, Kind};
use crate::digest::{Digest, Hashing};
use crate::error::{Error, Result};

/// How whiteouts in the layer are represented on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The layer goes into its own directory that overlayfs stacks: whiteouts
    /// become 0:0 character devices and opaque directories get
    /// `trusted.overlay.opaque=y`.
    Overlay,
    /// The layer is applied on top of a tree that already holds the lower
    /// layers: whiteouts delete, opaque markers empty the directory.
    Apply,
}

/// Bounds on what one layer may expand to.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Total bytes of file content.
    pub max_bytes: u64,
    /// Number of tar entries.
    pub max_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 64 << 30,
            max_entries: 4_000_000,
        }
    }
}

/// Options for [`unpack_layer`].
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    pub mode: Mode,
    pub limits: Limits,
    /// When set, the uncompressed stream must hash to this diff id.
    pub expected_diff_id: Option<Digest>,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        UnpackOptions {
            mode: Mode::Overlay,
            limits: Limits::default(),
            expected_diff_id: None,
        }
    }
}

/// What an unpack did.
#[derive(Debug, Clone)]
pub struct UnpackStats {
    /// sha256 of the uncompressed tar stream.
    pub diff_id: Digest,
    pub compression: Compression,
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

/// Unpacks a (possibly compressed) layer tar from `input` into `dest`.
///
/// Every path is resolved inside `dest`; nothing outside it is created,
/// changed or removed. On error `dest` may hold part of the layer: callers
/// unpack into a scratch directory and discard it on failure.
pub fn unpack_layer<R: Read + Send>(
    input: R,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackStats> {
    let root = Root::open(dest).map_err(|e| Error::path("opening unpack root", dest, e))?;
    let (compression, reader) = compression::decompress(input)?;
    let mut archive = tar::Archive::new(Hashing::new(reader));
    let mut ex = Extractor {
        root: &root,
        opts,
        entries: 0,
        bytes: 0,
        created: HashSet::new(),
        dir_times: Vec::new(),
        parent_cache: HashMap::new(),
        umask: current_umask(),
        // SAFETY: no arguments; cannot fail.
        ids: unsafe { (libc::geteuid(), libc::getegid()) },
        stale: false,
        buf: vec![0u8; 256 * 1024],
    };
    {
        let entries = archive
            .entries()
            .map_err(|e| Error::MalformedLayer(e.to_string()))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::MalformedLayer(e.to_string()))?;
            ex.entry(entry)?;
        }
    }
    ex.finish_dir_times();
    let (entries, bytes) = (ex.entries, ex.bytes);
    let mut hashing = archive.into_inner();
    // The diff id covers the whole stream, including the end-of-archive padding
    // the tar reader stops short of; reading to the end also makes the
    // decompressor check its trailer.
    compression::drain(&mut hashing)
        .map_err(|e| Error::MalformedLayer(format!("reading past end of archive: {e}")))?;
    let (diff_id, _, _) = hashing.finish();
    if let Some(expected) = &opts.expected_diff_id {
        if *expected != diff_id {
            return Err(Error::DigestMismatch {
                what: "layer diff id".into(),
                expected: expected.to_string(),
                actual: diff_id.to_string(),
            });
        }
    }
    Ok(UnpackStats {
        diff_id,
        compression,
        entries,
        bytes,
    })
}

struct Meta {
    uid: u64,
    gid: u64,
    mode: u32,
    mtime: i64,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

struct Extractor<'a> {
    root: &'a Root,
    opts: &'a UnpackOptions,
    entries: u64,
    bytes: u64,
    /// Paths this layer created, which an opaque marker must not remove (Apply mode).
    created: HashSet<PathBuf>,
    dir_times: Vec<(PathBuf, i64)>,
    /// Resolved parent directories (fd, is setgid). Cleared whenever a
    /// directory is removed or replaced, so no entry can outlive its path.
    parent_cache: HashMap<PathBuf, (OwnedFd, bool)>,
    umask: u32,
    ids: (u32, u32),
    stale: bool,
    buf: Vec<u8>,
}

fn entry_err(path: &Path, what: &str, e: io::Error) -> Error {
    Error::unsafe_entry(path.display().to_string(), format!("{what}: {e}"))
}

impl Extractor<'_> {
    fn parent_fd(&mut self, parent: &Path) -> io::Result<RawFd> {
        if let Some((fd, _)) = self.parent_cache.get(parent) {
            return Ok(fd.as_raw_fd());
        }
        if self.parent_cache.len() >= 256 {
            self.parent_cache.clear();
        }
        let fd = self.root.mkdir_all(parent)?;
        // SAFETY: zeroed stat is a valid out-buffer; fd is open.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        let setgid =
            unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } == 0 && st.st_mode & libc::S_ISGID != 0;
        let raw = fd.as_raw_fd();
        self.parent_cache.insert(parent.to_path_buf(), (fd, setgid));
        Ok(raw)
    }

    /// Whether a new file in `parent` already has the owner and mode `meta`
    /// asks for, so the fchown/fchmod calls can be skipped.
    fn creation_matches(&self, parent: &Path, meta: &Meta) -> (bool, bool) {
        let setgid = self.parent_cache.get(parent).is_none_or(|(_, s)| *s);
        let owner_ok = !setgid && meta.uid == self.ids.0 as u64 && meta.gid == self.ids.1 as u64;
        let mode_ok = meta.mode & 0o7000 == 0 && meta.mode & 0o777 & self.umask == 0;
        (owner_ok, mode_ok)
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<()> {
        self.entries += 1;
        if self.entries > self.opts.limits.max_entries {
            return Err(Error::LimitExceeded {
                limit: self.opts.limits.max_entries,
                unit: "entries",
            });
        }
        let raw = entry.path_bytes().into_owned();
        let raw_path = Path::new(OsStr::from_bytes(&raw)).to_path_buf();
        let Some(path) = safe_path::normalize(&raw_path) else {
            debug!(path = %raw_path.display(), "skipping layer root entry");
            return Ok(());
        };
        let name = path
            .file_name()
            .map(OsStr::to_os_string)
            .unwrap_or_default();
        let parent = path.parent().unwrap_or(Path::new("")).to_path_buf();
        let meta = read_meta(&mut entry).map_err(|e| entry_err(&path, "reading header", e))?;
        let etype = entry.header().entry_type();

        match whiteout::classify(&name) {
            Kind::Plain => {}
            Kind::Internal => return Ok(()),
            Kind::Opaque => {
                return self
                    .opaque(&parent)
                    .map_err(|e| entry_err(&path, "opaque whiteout", e))
            }
            Kind::Remove(target) => {
                let target = target.to_os_string();
                return self
                    .whiteout(&parent, &target)
                    .map_err(|e| entry_err(&path, "whiteout", e));
            }
        }

        let result = match etype {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                let size = entry.size();
                if self.bytes.saturating_add(size) > self.opts.limits.max_bytes {
                    return Err(Error::LimitExceeded {
                        limit: self.opts.limits.max_bytes,
                        unit: "bytes",
                    });
                }
                self.file(&parent, &name, &meta, &mut entry)
            }
            tar::EntryType::Directory => self.dir(&path, &parent, &name, &meta),
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| b.into_owned())
                    .ok_or_else(|| {
                        Error::MalformedLayer(format!("symlink {} has no target", path.display()))
                    })?;
                self.symlink(&parent, &name, &target, &meta)
            }
            tar::EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .map(|b| b.into_owned())
                    .ok_or_else(|| {
                        Error::MalformedLayer(format!("hard link {} has no target", path.display()))
                    })?;
                let target = safe_path::normalize(Path::new(OsStr::from_bytes(&target)))
                    .ok_or_else(|| {
                        Error::unsafe_entry(
                            path.display().to_string(),
                            "hard link to the layer root",
                        )
                    })?;
                self.hardlink(&parent, &name, &target)
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let major = entry.header().device_major().ok().flatten().unwrap_or(0);
                let minor = entry.header().device_minor().ok().flatten().unwrap_or(0);
                let kind = match etype {
                    tar::EntryType::Char => libc::S_IFCHR,
                    tar::EntryType::Block => libc::S_IFBLK,
                    _ => libc::S_IFIFO,
                };
                self.node(&parent, &name, kind, major, minor, &meta)
            }
            other => {
                warn!(path = %path.display(), kind = ?other, "skipping unsupported tar entry type");
                return Ok(());
            }
        };
        if self.stale {
            self.parent_cache.clear();
            self.stale = false;
        }
        result.map_err(|e| match e {
            ExtractError::Io(io) => entry_err(&path, "extracting", io),
            ExtractError::Crate(err) => err,
        })?;
        if self.opts.mode == Mode::Apply {
            self.created.insert(path);
        }
        Ok(())
    }

    /// Creates `name` in `dirfd` with `create`, replacing whatever non-directory
    /// (or, unless `keep_dir`, directory) is in the way.
    fn replace_existing(&mut self, dirfd: RawFd, name: &OsStr, keep_dir: bool) -> io::Result<bool> {
        match lstat_at(dirfd, name)? {
            None => Ok(false),
            Some(st) if keep_dir && st.st_mode & libc::S_IFMT == libc::S_IFDIR => Ok(true),
            Some(st) => {
                if st.st_mode & libc::S_IFMT == libc::S_IFDIR {
                    // The cached parent may lie below what is being removed;
                    // drop it once this entry no longer uses `dirfd`.
                    self.stale = true;
                }
                remove_all_at(dirfd, name)?;
                Ok(false)
            }
        }
    }

    fn file<R: Read>(
        &mut self,
        parent: &Path,
        name: &OsStr,
        meta: &Meta,
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<(), ExtractError> {
        let dirfd = self.parent_fd(parent)?;
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL;
        let create_mode = meta.mode & 0o777;
        let fd = match openat(dirfd, name, flags, create_mode) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {
                self.replace_existing(dirfd, name, false)?;
                let dirfd = self.parent_fd(parent)?;
                openat(dirfd, name, flags, create_mode)?
            }
            Err(e) => return Err(e.into()),
        };
        let mut file = std::fs::File::from(fd);
        let expected = entry.size();
        let mut written = 0u64;
        loop {
            let n = entry.read(&mut self.buf).map_err(|e| {
                ExtractError::Crate(Error::MalformedLayer(format!("reading file data: {e}")))
            })?;
            if n == 0 {
                break;
            }
            file.write_all(&self.buf[..n])?;
            written += n as u64;
        }
        if written != expected {
            return Err(ExtractError::Crate(Error::MalformedLayer(format!(
                "truncated file data: {written} of {expected} bytes"
            ))));
        }
        self.bytes += written;
        let fd = file.as_raw_fd();
        match self.creation_matches(parent, meta) {
            (true, true) => {}
            (true, false) => {
                // SAFETY: fd is open.
                if unsafe { libc::fchmod(fd, meta.mode & 0o7777) } < 0 {
                    return Err(io::Error::last_os_error().into());
                }
            }
            _ => set_owner_mode_fd(fd, meta)?,
        }
        set_xattrs_fd(fd, &meta.xattrs);
        set_times_fd(fd, meta.mtime)?;
        Ok(())
    }

    fn dir(
        &mut self,
        path: &Path,
        parent: &Path,
        name: &OsStr,
        meta: &Meta,
    ) -> Result<(), ExtractError> {
        let dirfd = self.parent_fd(parent)?;
        let exists = self.replace_existing(dirfd, name, true)?;
        let dirfd = self.parent_fd(parent)?;
        if !exists {
            let c = cstr(name)?;
            // SAFETY: valid fd and C string.
            if unsafe { libc::mkdirat(dirfd, c.as_ptr(), 0o700) } < 0 {
                return Err(io::Error::last_os_error().into());
            }
        }
        let fd = openat(dirfd, name, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
        set_owner_mode_fd(fd.as_raw_fd(), meta)?;
        set_xattrs_fd(fd.as_raw_fd(), &meta.xattrs);
        self.dir_times.push((path.to_path_buf(), meta.mtime));
        Ok(())
    }

    fn symlink(
        &mut self,
        parent: &Path,
        name: &OsStr,
        target: &[u8],
        meta: &Meta,
    ) -> Result<(), ExtractError> {
        let dirfd = self.parent_fd(parent)?;
        self.replace_existing(dirfd, name, false)?;
        let dirfd = self.parent_fd(parent)?;
        let t = cstr(OsStr::from_bytes(target))?;
        let c = cstr(name)?;
        // SAFETY: valid fd and C strings. The target is stored verbatim; it is
        // only ever resolved later inside the root.
        if unsafe { libc::symlinkat(t.as_ptr(), dirfd, c.as_ptr()) } < 0 {
            return Err(io::Error::last_os_error().into());
        }
        // SAFETY: valid fd and C string; NOFOLLOW acts on the link itself.
        if unsafe {
            libc::fchownat(
                dirfd,
                c.as_ptr(),
                meta.uid as u32,
                meta.gid as u32,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        } < 0
        {
            return Err(io::Error::last_os_error().into());
        }
        set_times_at(dirfd, &c, meta.mtime)?;
        Ok(())
    }

    fn hardlink(&mut self, parent: &Path, name: &OsStr, target: &Path) -> Result<(), ExtractError> {
        let tname = target.file_name().unwrap_or_default().to_os_string();
        let tparent = target.parent().unwrap_or(Path::new(""));
        let tdir = self
            .root
            .open_in(tparent, libc::O_PATH | libc::O_DIRECTORY)?;
        match lstat_at(tdir.as_raw_fd(), &tname)? {
            None => {
                return Err(ExtractError::Crate(Error::unsafe_entry(
                    target.display().to_string(),
                    "hard link target does not exist in the layer",
                )))
            }
            Some(st) if st.st_mode & libc::S_IFMT == libc::S_IFDIR => {
                return Err(ExtractError::Crate(Error::unsafe_entry(
                    target.display().to_string(),
                    "hard link to a directory",
                )))
            }
            Some(_) => {}
        }
        let dirfd = self.parent_fd(parent)?;
        if same_entry(tdir.as_raw_fd(), &tname, dirfd, name)? {
            return Ok(());
        }
        self.replace_existing(dirfd, name, false)?;
        let dirfd = self.parent_fd(parent)?;
        let (tc, c) = (cstr(&tname)?, cstr(name)?);
        // SAFETY: valid fds and C strings; flags 0 links a symlink itself, never its target.
        if unsafe { libc::linkat(tdir.as_raw_fd(), tc.as_ptr(), dirfd, c.as_ptr(), 0) } < 0 {
            return Err(io::Error::last_os_error().into());
        }
        Ok(())
    }

    fn node(
        &mut self,
        parent: &Path,
        name: &OsStr,
        kind: libc::mode_t,
        major: u32,
        minor: u32,
        meta: &Meta,
    ) -> Result<(), ExtractError> {
        let dirfd = self.parent_fd(parent)?;
        self.replace_existing(dirfd, name, false)?;
        let dirfd = self.parent_fd(parent)?;
        let c = cstr(name)?;
        let dev = libc::makedev(major, minor);
        // SAFETY: valid fd and C string.
        if unsafe { libc::mknodat(dirfd, c.as_ptr(), kind | 0o600, dev) } < 0 {
            return Err(io::Error::last_os_error().into());
        }
        let fd = openat(dirfd, name, libc::O_PATH, 0)?;
        // fchown/fchmod do not take O_PATH fds; the /proc link names exactly this inode.
        let proc = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        let pc = cstr(proc.as_os_str())?;
        // SAFETY: valid C string.
        if unsafe { libc::chown(pc.as_ptr(), meta.uid as u32, meta.gid as u32) } < 0 {
            return Err(io::Error::last_os_error().into());
        }
        // SAFETY: valid C string.
        if unsafe { libc::chmod(pc.as_ptr(), meta.mode & 0o7777) } < 0 {
            return Err(io::Error::last_os_error().into());
        }
        set_xattrs_path(&pc, &meta.xattrs);
        set_times_at(dirfd, &c, meta.mtime)?;
        Ok(())
    }

    fn whiteout(&mut self, parent: &Path, target: &OsStr) -> io::Result<()> {
        self.parent_cache.clear();
        match self.opts.mode {
            Mode::Apply => {
                let dir = match self.root.open_in(parent, libc::O_PATH | libc::O_DIRECTORY) {
                    Ok(fd) => fd,
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
                    Err(e) => return Err(e),
                };
                remove_all_at(dir.as_raw_fd(), target)
            }
            Mode::Overlay => {
                let dirfd = self.parent_fd(parent)?;
                self.replace_existing(dirfd, target, false)?;
                let dirfd = self.parent_fd(parent)?;
                let c = cstr(target)?;
                // SAFETY: valid fd and C string; 0:0 char device is overlayfs's whiteout.
                if unsafe { libc::mknodat(dirfd, c.as_ptr(), libc::S_IFCHR, libc::makedev(0, 0)) }
                    < 0
                {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            }
        }
    }

    fn opaque(&mut self, parent: &Path) -> io::Result<()> {
        let dirfd = self.parent_fd(parent)?;
        match self.opts.mode {
            Mode::Apply => {
                self.parent_cache.clear();
                let fd = self
                    .root
                    .open_in(parent, libc::O_RDONLY | libc::O_DIRECTORY)?;
                let created = &self.created;
                safe_path::clear_dir(fd.as_raw_fd(), &|n| created.contains(&parent.join(n)))
            }
            Mode::Overlay => {
                let proc = format!("/proc/self/fd/{dirfd}");
                let pc = cstr(OsStr::new(&proc))?;
                let name = cstr(OsStr::new(whiteout::OVERLAY_OPAQUE_XATTR))?;
                // SAFETY: valid C strings and a 1-byte value.
                if unsafe { libc::setxattr(pc.as_ptr(), name.as_ptr(), b"y".as_ptr().cast(), 1, 0) }
                    < 0
                {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            }
        }
    }

    fn finish_dir_times(&mut self) {
        self.parent_cache.clear();
        for (path, mtime) in self.dir_times.iter().rev() {
            match self
                .root
                .open_in(path, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW)
            {
                Ok(fd) => {
                    if let Err(e) = set_times_fd(fd.as_raw_fd(), *mtime) {
                        debug!(path = %path.display(), error = %e, "cannot set directory mtime");
                    }
                }
                // Replaced by a later entry: nothing to restore.
                Err(e) => {
                    debug!(path = %path.display(), error = %e, "directory gone before mtime restore")
                }
            }
        }
    }
}

enum ExtractError {
    Io(io::Error),
    Crate(Error),
}

impl From<io::Error> for ExtractError {
    fn from(e: io::Error) -> Self {
        ExtractError::Io(e)
    }
}

fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Meta> {
    let h = entry.header();
    let mut meta = Meta {
        uid: h.uid().unwrap_or(0),
        gid: h.gid().unwrap_or(0),
        mode: h.mode().unwrap_or(0o644),
        mtime: h.mtime().unwrap_or(0) as i64,
        xattrs: Vec::new(),
    };
    if let Some(pax) = entry.pax_extensions()? {
        for ext in pax {
            let ext = ext?;
            let key = ext.key_bytes();
            let value = ext.value_bytes();
            let num = || {
                std::str::from_utf8(value)
                    .ok()
                    .and_then(|s| s.split('.').next()?.parse::<i64>().ok())
            };
            match key {
                b"uid" => meta.uid = num().unwrap_or(meta.uid as i64) as u64,
                b"gid" => meta.gid = num().unwrap_or(meta.gid as i64) as u64,
                b"mtime" => meta.mtime = num().unwrap_or(meta.mtime),
                _ => {
                    if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                        if xattr_allowed(name) {
                            meta.xattrs
                                .push((OsStr::from_bytes(name).to_os_string(), value.to_vec()));
                        } else {
                            warn!(xattr = %String::from_utf8_lossy(name), "dropping xattr a layer may not set");
                        }
                    }
                }
            }
        }
    }
    if meta.uid > u32::MAX as u64 - 1 || meta.gid > u32::MAX as u64 - 1 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "uid or gid out of range",
        ));
    }
    Ok(meta)
}

/// Layer content must not steer overlayfs (redirects, metacopy, opacity)
/// through its own xattrs: those are only ever set by the unpacker.
fn xattr_allowed(name: &[u8]) -> bool {
    !(name.starts_with(b"trusted.overlay.") || name.starts_with(b"user.overlay."))
        && (name.starts_with(b"user.")
            || name.starts_with(b"security.")
            || name.starts_with(b"trusted."))
}

fn same_entry(d1: RawFd, n1: &OsStr, d2: RawFd, n2: &OsStr) -> io::Result<bool> {
    match (lstat_at(d1, n1)?, lstat_at(d2, n2)?) {
        (Some(a), Some(b)) => Ok(a.st_dev == b.st_dev && a.st_ino == b.st_ino),
        _ => Ok(false),
    }
}

fn set_owner_mode_fd(fd: RawFd, meta: &Meta) -> io::Result<()> {
    // SAFETY: fd is open. chown first: it clears setuid/setgid bits that fchmod then sets.
    if unsafe { libc::fchown(fd, meta.uid as u32, meta.gid as u32) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd is open.
    if unsafe { libc::fchmod(fd, meta.mode & 0o7777) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_xattrs_fd(fd: RawFd, xattrs: &[(OsString, Vec<u8>)]) {
    for (name, value) in xattrs {
        let Ok(c) = cstr(name) else { continue };
        // SAFETY: valid fd, C string and buffer.
        if unsafe { libc::fsetxattr(fd, c.as_ptr(), value.as_ptr().cast(), value.len(), 0) } < 0 {
            warn!(xattr = ?name, error = %io::Error::last_os_error(), "cannot set xattr");
        }
    }
}

fn set_xattrs_path(path: &std::ffi::CStr, xattrs: &[(OsString, Vec<u8>)]) {
    for (name, value) in xattrs {
        let Ok(c) = cstr(name) else { continue };
        // SAFETY: valid C strings and buffer.
        if unsafe {
            libc::setxattr(
                path.as_ptr(),
                c.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        } < 0
        {
            warn!(xattr = ?name, error = %io::Error::last_os_error(), "cannot set xattr");
        }
    }
}

fn timespecs(mtime: i64) -> [libc::timespec; 2] {
    let ts = libc::timespec {
        tv_sec: mtime as libc::time_t,
        tv_nsec: 0,
    };
    [ts, ts]
}

fn set_times_fd(fd: RawFd, mtime: i64) -> io::Result<()> {
    let ts = timespecs(mtime);
    // SAFETY: valid fd and a two-element timespec array.
    if unsafe { libc::futimens(fd, ts.as_ptr()) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_times_at(dirfd: RawFd, name: &std::ffi::CStr, mtime: i64) -> io::Result<()> {
    let ts = timespecs(mtime);
    // SAFETY: valid fd, C string and timespec array.
    if unsafe { libc::utimensat(dirfd, name.as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) } < 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The process umask, read without changing it (umask(2) cannot query
/// without setting, which would race other threads creating files).
fn current_umask() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Umask:"))
                .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        })
        // Unknown: assume every bit may be masked, so modes are always set explicitly.
        .unwrap_or(0o777)
}
