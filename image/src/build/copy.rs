//! COPY and ADD on the filesystem: sources resolved beneath their root (the
//! context or another stage's tree, never outside it), destinations resolved
//! inside the image's root (symlinks in the image cannot lead out), content
//! hashing for the build cache, and local tar extraction for ADD.

use std::ffi::{CString, OsStr};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::ignore::{clean, glob_match, has_meta};
use crate::unpack::safe_path::{openat2, Root};

const RESOLVE_BENEATH: u64 = 0x08;
const RESOLVE_NO_MAGICLINKS: u64 = 0x02;

/// Owner and mode applied to what is copied.
#[derive(Debug, Clone, Copy, Default)]
pub struct Attrs {
    pub uid: u32,
    pub gid: u32,
    pub chmod: Option<u32>,
}

/// One resolved source: its path inside the root and on the host.
#[derive(Debug, Clone)]
pub struct Source {
    pub rel: String,
    pub host: PathBuf,
}

fn cstr(b: &[u8]) -> io::Result<CString> {
    CString::new(b).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// Resolves one source word of COPY/ADD inside `root`. `what` names the
/// root in errors ("build context", "stage builder").
pub fn resolve(root: &Path, word: &str, what: &str) -> Result<Vec<Source>, String> {
    let rel = clean(word);
    if rel == ".." || rel.starts_with("../") {
        return Err(format!("forbidden path outside the {what}: {word}"));
    }
    if has_meta(&rel) {
        let pattern: Vec<&str> = rel.split('/').collect();
        let mut out = Vec::new();
        glob_walk(root, "", &pattern, &mut out).map_err(|e| format!("{word}: {e}"))?;
        out.sort();
        if out.is_empty() {
            return Err(format!(
                "no source files were specified: nothing in the {what} matches {word}"
            ));
        }
        return out
            .into_iter()
            .map(|r| beneath(root, &r, word, what).map(|host| Source { rel: r, host }))
            .collect();
    }
    let host = beneath(root, &rel, word, what)?;
    Ok(vec![Source { rel, host }])
}

fn glob_walk(root: &Path, prefix: &str, pattern: &[&str], out: &mut Vec<String>) -> io::Result<()> {
    let Some((first, rest)) = pattern.split_first() else {
        return Ok(());
    };
    let dir = root.join(prefix);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e)
            if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            return Ok(())
        }
        Err(e) => return Err(e),
    };
    for ent in rd {
        let ent = ent?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        let ok = glob_match(first, name)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e.to_string()))?;
        if !ok {
            continue;
        }
        let p = if prefix.is_empty() {
            name.to_string()
        } else {
            format!("{prefix}/{name}")
        };
        if rest.is_empty() {
            out.push(p);
        } else if ent.file_type()?.is_dir() {
            glob_walk(root, &p, rest, out)?;
        }
    }
    Ok(())
}

/// The host path of `rel` inside `root`, refusing symlinks that lead out.
fn beneath(root: &Path, rel: &str, word: &str, what: &str) -> Result<PathBuf, String> {
    if rel.is_empty() {
        return Ok(root.to_path_buf());
    }
    let dir = Root::open(root).map_err(|e| format!("opening the {what}: {e}"))?;
    match openat2(
        dir.fd(),
        Path::new(rel),
        libc::O_PATH | libc::O_CLOEXEC,
        RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS,
    ) {
        Ok(fd) => {
            // The real path of what was opened: symlinks inside the root resolved.
            std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd()))
                .map_err(|e| format!("{word}: {e}"))
        }
        Err(e)
            if e.raw_os_error() == Some(libc::EXDEV) || e.raw_os_error() == Some(libc::ELOOP) =>
        {
            Err(format!("{word}: a symlink leads outside the {what}"))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(format!(
            "file not found in {what}{}: {word}",
            if what == "build context" {
                " or excluded by .dockerignore"
            } else {
                ""
            }
        )),
        Err(e) => Err(format!("{word}: {e}")),
    }
}

/// Content hash of sources (names, types, modes, sizes, bytes, link
/// targets), for the build cache. File contents are hashed on all cores.
/// `known` gives digests already computed for files below a directory (the
/// context, hashed while it was unpacked).
pub fn hash_sources(
    sources: &[Source],
    known: Option<(&Path, &super::context::FileHashes)>,
) -> io::Result<String> {
    let mut items: Vec<HashItem> = Vec::new();
    for s in sources {
        items.push(HashItem {
            header: format!("{}\0", s.rel).into_bytes(),
            file: None,
        });
        hash_walk(&s.host, Path::new(""), true, &mut items)?;
    }
    let files: Vec<(usize, &Path)> = items
        .iter()
        .enumerate()
        .filter_map(|(i, it)| Some((i, it.file.as_deref()?)))
        .collect();
    let digests = parallel(&files, |(_, p)| {
        if let Some((root, map)) = known {
            if let Some(d) = p.strip_prefix(root).ok().and_then(|r| map.get(r)) {
                return Ok(*d);
            }
        }
        file_sha256(p)
    })?;
    let mut by_item = vec![None; items.len()];
    for ((i, _), d) in files.iter().zip(digests) {
        by_item[*i] = Some(d);
    }
    let mut h = Sha256::new();
    for (it, d) in items.iter().zip(by_item) {
        h.update(&it.header);
        if let Some(d) = d {
            h.update(d);
        }
    }
    Ok(hex::encode(h.finalize()))
}

struct HashItem {
    header: Vec<u8>,
    /// A regular file whose content is hashed.
    file: Option<PathBuf>,
}

fn hash_walk(path: &Path, rel: &Path, top: bool, items: &mut Vec<HashItem>) -> io::Result<()> {
    // The top of a source follows a symlink (it was resolved beneath the root).
    let meta = if top {
        std::fs::metadata(path)?
    } else {
        std::fs::symlink_metadata(path)?
    };
    hash_entry(path, rel, meta, items)
}

fn hash_entry(
    path: &Path,
    rel: &Path,
    meta: std::fs::Metadata,
    items: &mut Vec<HashItem>,
) -> io::Result<()> {
    let ft = meta.file_type();
    let mut header = rel.as_os_str().as_bytes().to_vec();
    header.extend_from_slice(format!("\0{:o}\0{}\0", meta.mode(), meta.len()).as_bytes());
    if ft.is_symlink() {
        header.extend_from_slice(std::fs::read_link(path)?.as_os_str().as_bytes());
    } else if !ft.is_file() && !ft.is_dir() {
        header.extend_from_slice(&meta.rdev().to_le_bytes());
    }
    header.push(0xff);
    items.push(HashItem {
        header,
        file: ft.is_file().then(|| path.to_path_buf()),
    });
    if ft.is_dir() {
        for (n, m) in sorted_entries(path)? {
            hash_entry(&path.join(&n), &rel.join(&n), m, items)?;
        }
    }
    Ok(())
}

/// A directory's entries by name with their metadata (not following
/// symlinks), read relative to the open directory rather than by a lookup
/// of each full path.
fn sorted_entries(dir: &Path) -> io::Result<Vec<(std::ffi::OsString, std::fs::Metadata)>> {
    let mut v: Vec<_> = std::fs::read_dir(dir)?
        .map(|e| e.and_then(|e| Ok((e.file_name(), e.metadata()?))))
        .collect::<io::Result<_>>()?;
    v.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(v)
}

fn file_sha256(p: &Path) -> io::Result<[u8; 32]> {
    let mut f = std::fs::File::open(p)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().into())
}

/// Maps `f` over `items` on all cores, keeping the order.
fn parallel<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&T) -> io::Result<R> + Sync,
) -> io::Result<Vec<R>> {
    // Asking is not free (it reads cgroup files): once per process.
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let threads = *THREADS.get_or_init(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .min(8)
    });
    if threads <= 1 || items.len() < 64 {
        return items.iter().map(&f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    std::thread::scope(|sc| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|part| sc.spawn(|| part.iter().map(&f).collect::<io::Result<Vec<R>>>()))
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for h in handles {
            out.extend(
                h.join()
                    .map_err(|_| io::Error::other("worker thread panicked"))??,
            );
        }
        Ok(out)
    })
}

/// Opens (creating with mode 0755) the directory `rel` inside the image root.
pub fn mkdir_in(root: &Root, rel: &str) -> io::Result<OwnedFd> {
    root.mkdir_all(Path::new(&clean(rel)))
}

/// Reopens an O_PATH directory fd for use with *at calls.
fn dir_fd(fd: &OwnedFd) -> io::Result<OwnedFd> {
    let p = cstr(format!("/proc/self/fd/{}", fd.as_raw_fd()).as_bytes())?;
    // SAFETY: valid C string.
    let r = cvt(unsafe {
        libc::open(
            p.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: fresh fd.
    Ok(unsafe { OwnedFd::from_raw_fd(r) })
}

/// What exists at `name` in `dirfd` (not following a symlink).
fn lstat_at(dirfd: RawFd, name: &CString) -> io::Result<Option<libc::stat>> {
    // SAFETY: zeroed stat is a valid out-buffer.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd, C string and buffer.
    let r = unsafe { libc::fstatat(dirfd, name.as_ptr(), &mut st, libc::AT_SYMLINK_NOFOLLOW) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::NotFound {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(st))
}

fn remove_at(dirfd: RawFd, name: &CString, is_dir: bool) -> io::Result<()> {
    if is_dir {
        let sub = openat2(
            dirfd,
            Path::new(OsStr::from_bytes(name.as_bytes())),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            RESOLVE_BENEATH,
        )?;
        for n in std::fs::read_dir(format!("/proc/self/fd/{}", sub.as_raw_fd()))? {
            let n = n?;
            let c = cstr(n.file_name().as_bytes())?;
            let d = n.file_type()?.is_dir();
            remove_at(sub.as_raw_fd(), &c, d)?;
        }
        // SAFETY: valid fd and C string.
        cvt(unsafe { libc::unlinkat(dirfd, name.as_ptr(), libc::AT_REMOVEDIR) })?;
    } else {
        // SAFETY: valid fd and C string.
        cvt(unsafe { libc::unlinkat(dirfd, name.as_ptr(), 0) })?;
    }
    Ok(())
}

fn set_times(dirfd: RawFd, name: &CString, meta: &std::fs::Metadata) -> io::Result<()> {
    let ts = [
        libc::timespec {
            tv_sec: meta.atime(),
            tv_nsec: meta.atime_nsec(),
        },
        libc::timespec {
            tv_sec: meta.mtime(),
            tv_nsec: meta.mtime_nsec(),
        },
    ];
    // SAFETY: valid fd, C string and times.
    cvt(unsafe { libc::utimensat(dirfd, name.as_ptr(), ts.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) })?;
    Ok(())
}

/// A regular file still to copy: source, destination directory and name.
struct FileJob {
    src: PathBuf,
    dirfd: RawFd,
    name: CString,
    meta: std::fs::Metadata,
}

/// A directory whose owner, mode and times are set once its content is in.
struct DirDone {
    parent: RawFd,
    name: CString,
    fd: RawFd,
    meta: std::fs::Metadata,
}

#[derive(Default)]
struct Plan {
    files: Vec<FileJob>,
    dirs: Vec<DirDone>,
    /// Directory fds the jobs refer to, kept open until the copy is done.
    fds: Vec<OwnedFd>,
    count: u64,
}

/// Copies host entries to names in the directory `dirfd`: `(source, name,
/// follow)` where `follow` follows a source that is itself a symlink (a
/// top-level source). A directory's contents are merged into an existing
/// directory there. Directories, links and nodes are made first; file
/// contents are then copied on all cores.
pub fn copy_entries(
    items: &[(PathBuf, std::ffi::OsString, bool)],
    dirfd: RawFd,
    attrs: &Attrs,
) -> io::Result<u64> {
    let mut plan = Plan::default();
    for (src, name, follow) in items {
        let meta = if *follow {
            std::fs::metadata(src)?
        } else {
            std::fs::symlink_metadata(src)?
        };
        plan_entry(src, meta, dirfd, name, attrs, false, &mut plan)?;
    }
    parallel(&plan.files, |j| copy_file(j, attrs))?;
    // Deepest first, so a parent's times are set after its children changed it.
    for d in plan.dirs.iter().rev() {
        let mode = attrs.chmod.unwrap_or(d.meta.mode() & 0o7777);
        // SAFETY: valid fd.
        cvt(unsafe { libc::fchown(d.fd, attrs.uid, attrs.gid) })?;
        // SAFETY: valid fd.
        cvt(unsafe { libc::fchmod(d.fd, mode) })?;
        set_times(d.parent, &d.name, &d.meta)?;
    }
    Ok(plan.count)
}

/// `fresh`: `dirfd` is a directory this copy just made, so nothing in it
/// exists yet and there is nothing to look up or replace.
fn plan_entry(
    src: &Path,
    meta: std::fs::Metadata,
    dirfd: RawFd,
    name: &OsStr,
    attrs: &Attrs,
    fresh: bool,
    plan: &mut Plan,
) -> io::Result<()> {
    let cname = cstr(name.as_bytes())?;
    let ft = meta.file_type();
    let existing = if fresh {
        None
    } else {
        lstat_at(dirfd, &cname)?
    };
    let existing_dir = existing.is_some_and(|st| st.st_mode & libc::S_IFMT == libc::S_IFDIR);
    let mode = attrs.chmod.unwrap_or(meta.mode() & 0o7777);
    plan.count += 1;
    if ft.is_dir() {
        if existing.is_some() && !existing_dir {
            remove_at(dirfd, &cname, false)?;
        }
        if !existing_dir {
            // SAFETY: valid fd and C string.
            cvt(unsafe { libc::mkdirat(dirfd, cname.as_ptr(), 0o700) })?;
        }
        let sub = openat2(
            dirfd,
            Path::new(name),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            RESOLVE_BENEATH,
        )?;
        let subfd = sub.as_raw_fd();
        plan.fds.push(sub);
        for (n, m) in sorted_entries(src)? {
            plan_entry(&src.join(&n), m, subfd, &n, attrs, !existing_dir, plan)?;
        }
        plan.dirs.push(DirDone {
            parent: dirfd,
            name: cname,
            fd: subfd,
            meta,
        });
        return Ok(());
    }
    if let Some(st) = existing {
        remove_at(dirfd, &cname, st.st_mode & libc::S_IFMT == libc::S_IFDIR)?;
    }
    if ft.is_file() {
        plan.files.push(FileJob {
            src: src.to_path_buf(),
            dirfd,
            name: cname,
            meta,
        });
    } else if ft.is_symlink() {
        let target = cstr(std::fs::read_link(src)?.as_os_str().as_bytes())?;
        // SAFETY: valid C strings and fd.
        cvt(unsafe { libc::symlinkat(target.as_ptr(), dirfd, cname.as_ptr()) })?;
        // SAFETY: valid fd and C string.
        cvt(unsafe {
            libc::fchownat(
                dirfd,
                cname.as_ptr(),
                attrs.uid,
                attrs.gid,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })?;
        set_times(dirfd, &cname, &meta)?;
    } else if ft.is_fifo() || ft.is_char_device() || ft.is_block_device() {
        if ft.is_char_device() && meta.rdev() == 0 {
            // A whiteout of a single-layer stage tree: nothing to copy.
            plan.count -= 1;
            return Ok(());
        }
        let kind = if ft.is_fifo() {
            libc::S_IFIFO
        } else if ft.is_char_device() {
            libc::S_IFCHR
        } else {
            libc::S_IFBLK
        };
        // SAFETY: valid fd and C string.
        cvt(unsafe { libc::mknodat(dirfd, cname.as_ptr(), kind | mode, meta.rdev()) })?;
        // SAFETY: valid fd and C string.
        cvt(unsafe {
            libc::fchownat(
                dirfd,
                cname.as_ptr(),
                attrs.uid,
                attrs.gid,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })?;
    } else {
        plan.count -= 1;
    }
    Ok(())
}

fn copy_file(j: &FileJob, attrs: &Attrs) -> io::Result<()> {
    let mut from = std::fs::File::open(&j.src)?;
    // SAFETY: valid fd and C string.
    let fd = cvt(unsafe {
        libc::openat(
            j.dirfd,
            j.name.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600,
        )
    })?;
    // SAFETY: fresh fd.
    let mut to = unsafe { std::fs::File::from_raw_fd(fd) };
    io::copy(&mut from, &mut to)?;
    // SAFETY: valid fd.
    cvt(unsafe { libc::fchown(to.as_raw_fd(), attrs.uid, attrs.gid) })?;
    let mode = attrs.chmod.unwrap_or(j.meta.mode() & 0o7777);
    // SAFETY: valid fd.
    cvt(unsafe { libc::fchmod(to.as_raw_fd(), mode) })?;
    let ts = [
        libc::timespec {
            tv_sec: j.meta.atime(),
            tv_nsec: j.meta.atime_nsec(),
        },
        libc::timespec {
            tv_sec: j.meta.mtime(),
            tv_nsec: j.meta.mtime_nsec(),
        },
    ];
    // SAFETY: valid fd and times.
    cvt(unsafe { libc::futimens(to.as_raw_fd(), ts.as_ptr()) })?;
    Ok(())
}

/// Writes `content` as the file `name` in the directory `dirfd` (heredoc COPY).
pub fn write_file(dirfd: RawFd, name: &OsStr, content: &[u8], attrs: &Attrs) -> io::Result<()> {
    let cname = cstr(name.as_bytes())?;
    if let Some(st) = lstat_at(dirfd, &cname)? {
        remove_at(dirfd, &cname, st.st_mode & libc::S_IFMT == libc::S_IFDIR)?;
    }
    // SAFETY: valid fd and C string.
    let fd = cvt(unsafe {
        libc::openat(
            dirfd,
            cname.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600,
        )
    })?;
    // SAFETY: fresh fd.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    io::Write::write_all(&mut f, content)?;
    // SAFETY: valid fd.
    cvt(unsafe { libc::fchown(f.as_raw_fd(), attrs.uid, attrs.gid) })?;
    // SAFETY: valid fd.
    cvt(unsafe { libc::fchmod(f.as_raw_fd(), attrs.chmod.unwrap_or(0o644)) })?;
    Ok(())
}

/// Where a source lands: the directory to write in and the entry name there.
pub enum Dest {
    /// Into this directory, keeping the source's own name (or merging a directory's contents).
    Into(OwnedFd),
    /// As this name in this directory.
    As(OwnedFd, std::ffi::OsString),
}

/// Resolves the destination of a COPY/ADD inside the image root.
/// `dest` is absolute (WORKDIR already applied); `many` is true when several
/// sources (or a wildcard) are copied, which requires a directory.
pub fn dest_for(root: &Root, dest: &str, src_is_dir: bool, many: bool) -> io::Result<Dest> {
    let rel = clean(dest);
    let ends_with_slash = dest.ends_with('/') || dest.ends_with("/.") || rel.is_empty();
    if ends_with_slash || many || src_is_dir {
        let fd = mkdir_in(root, &rel)?;
        return Ok(Dest::Into(dir_fd(&fd)?));
    }
    // An existing directory at the destination takes the file inside it.
    if let Ok(fd) = root.open_in(Path::new(&rel), libc::O_PATH | libc::O_DIRECTORY) {
        return Ok(Dest::Into(dir_fd(&fd)?));
    }
    let (parent, name) = match rel.rsplit_once('/') {
        Some((p, n)) => (p.to_string(), n.to_string()),
        None => (String::new(), rel.clone()),
    };
    let fd = mkdir_in(root, &parent)?;
    Ok(Dest::As(dir_fd(&fd)?, std::ffi::OsString::from(name)))
}

/// The host path of an O_PATH/dir fd, for APIs that take a path (tar extraction).
pub fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Looks a user (and optional group) up in the image's /etc/passwd and
/// /etc/group: `name`, `uid`, `name:group`, `uid:gid`.
pub fn resolve_owner(root: &Root, spec: &str) -> Result<(u32, u32), String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let passwd = read_small(root, "etc/passwd");
    let (uid, primary_gid) = match user.parse::<u32>() {
        Ok(n) => (n, lookup(&passwd, user, 2, 3).map(|(_, g)| g).unwrap_or(n)),
        Err(_) => lookup(&passwd, user, 2, 3).ok_or_else(|| {
            format!("unable to find user {user}: no matching entries in passwd file")
        })?,
    };
    let gid = match group {
        None => primary_gid,
        Some(g) => match g.parse::<u32>() {
            Ok(n) => n,
            Err(_) => {
                let groups = read_small(root, "etc/group");
                lookup(&groups, g, 2, 2).map(|(id, _)| id).ok_or_else(|| {
                    format!("unable to find group {g}: no matching entries in group file")
                })?
            }
        },
    };
    Ok((uid, gid))
}

fn read_small(root: &Root, rel: &str) -> String {
    let Ok(fd) = root.open_in(Path::new(rel), libc::O_RDONLY | libc::O_CLOEXEC) else {
        return String::new();
    };
    let mut s = String::new();
    let _ = std::fs::File::from(fd).take(4 << 20).read_to_string(&mut s);
    s
}

/// Finds `name` in a colon-separated account file: (field a, field b) as numbers.
fn lookup(text: &str, name: &str, a: usize, b: usize) -> Option<(u32, u32)> {
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.first() != Some(&name) {
            return None;
        }
        Some((f.get(a)?.parse().ok()?, f.get(b)?.parse().ok()?))
    })
}
