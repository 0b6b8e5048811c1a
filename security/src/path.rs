//! Safe path resolution inside a root directory.
//!
//! A container's rootfs is untrusted: any component of a path inside it may be a symlink that
//! points at `/etc`, `../../..` or `/proc/self/root`, and a path naïvely joined onto the rootfs
//! and handed to `mount(2)` lets the container redirect the mount onto the host
//! (CVE-2021-30465 and its relatives). Everything here resolves a path *as if `root` were `/`*:
//! absolute symlinks restart at `root`, `..` never climbs above it, and the result is a file
//! descriptor, not a string, so a later rename cannot move what we resolved.
//!
//! The fast path is `openat2(2)` with `RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS`. When the kernel
//! lacks it (before 5.6, or a seccomp filter denies it) a component-by-component walk does the
//! same with `O_PATH | O_NOFOLLOW` opens and symlinks read and expanded by hand. The creating
//! variants ([`mkdir_all_in_root`], [`create_file_in_root`]) first try one `openat2` for a
//! target that already exists (the common case), and walk when something is missing, because
//! they must act on each missing component.
//!
//! To mount onto a resolved object, pass [`proc_fd_path`] of the returned fd to `mount(2)`: the
//! kernel then follows the magic link to exactly the inode we resolved.

use std::collections::VecDeque;
use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, OFlag};
use nix::sys::stat::{fstat, mkdirat, FileStat, Mode, SFlag};

/// The most symlinks followed in one resolution, as the kernel's own limit (`MAXSYMLINKS` is 40;
/// 255 matches what container runtimes allow for deep but legitimate link farms).
pub const MAX_SYMLINK_HOPS: u32 = 255;

/// How often `openat2` is retried when it reports `EAGAIN` (a concurrent rename or mount made
/// the kernel unable to prove the walk stayed inside the root).
const OPENAT2_RETRIES: u32 = 32;

/// Bound on re-examining a component that changed under us while creating it.
const CREATE_RACE_RETRIES: u32 = 64;

/// Why a path could not be resolved inside its root.
#[derive(Debug, thiserror::Error)]
pub enum PathError {
    /// The root itself could not be opened.
    #[error("cannot open root {root}: {source}")]
    OpenRoot {
        /// The root directory.
        root: PathBuf,
        /// The kernel's error.
        source: Errno,
    },
    /// A system call failed while resolving `path` inside the root.
    #[error("{op} {path} (inside root): {source}")]
    Sys {
        /// What was being done (e.g. "open", "mkdir").
        op: &'static str,
        /// The path as given by the caller.
        path: PathBuf,
        /// The kernel's error.
        source: Errno,
    },
    /// More than [`MAX_SYMLINK_HOPS`] symlinks were followed.
    #[error("too many levels of symbolic links resolving {path} (inside root)")]
    TooManySymlinks {
        /// The path as given by the caller.
        path: PathBuf,
    },
    /// A non-final component is neither a directory nor a symlink.
    #[error("{path} (inside root): component {component:?} is not a directory")]
    NotADirectory {
        /// The path as given by the caller.
        path: PathBuf,
        /// The offending component.
        component: OsString,
    },
    /// The object at the path exists but is not what the caller needs.
    #[error("{path} (inside root) exists but is {found}, expected {expected}")]
    WrongType {
        /// The path as given by the caller.
        path: PathBuf,
        /// What the caller needed.
        expected: &'static str,
        /// What was found there.
        found: &'static str,
    },
    /// The object changed between two steps of the resolution (a concurrent rename or swap).
    #[error("{path} (inside root) changed while being resolved")]
    Raced {
        /// The path as given by the caller.
        path: PathBuf,
    },
}

impl PathError {
    /// The underlying errno, for callers that branch on e.g. `ENOENT`.
    pub fn errno(&self) -> Errno {
        match self {
            PathError::OpenRoot { source, .. } | PathError::Sys { source, .. } => *source,
            PathError::TooManySymlinks { .. } => Errno::ELOOP,
            PathError::NotADirectory { .. } => Errno::ENOTDIR,
            PathError::WrongType { expected, .. } => {
                if *expected == "a directory" {
                    Errno::ENOTDIR
                } else {
                    Errno::EISDIR
                }
            }
            PathError::Raced { .. } => Errno::EAGAIN,
        }
    }

    /// True when the error means "nothing exists at that path".
    pub fn is_not_found(&self) -> bool {
        self.errno() == Errno::ENOENT
    }
}

/// `/proc/self/fd/N` for `fd`: the path to hand to `mount(2)` (or any path-taking call) so the
/// kernel acts on exactly the object behind the descriptor.
pub fn proc_fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Open `root` itself. The root path is trusted (chosen by the runtime, not the container), so
/// symlinks in it are followed normally.
pub fn open_root(root: &Path) -> Result<OwnedFd, PathError> {
    nix::fcntl::open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| PathError::OpenRoot {
        root: root.to_path_buf(),
        source,
    })
}

/// Open `unsafe_path` as if `root` were `/`.
///
/// `flags` are `open(2)` flags, e.g. `O_PATH | O_CLOEXEC` (add `O_DIRECTORY` to require a
/// directory, `O_NOFOLLOW` to open a final symlink itself). `O_CREAT` is not supported here: use
/// [`create_file_in_root`] or [`mkdir_all_in_root`].
pub fn open_in_root(root: &Path, unsafe_path: &Path, flags: i32) -> Result<OwnedFd, PathError> {
    let root_fd = open_root(root)?;
    open_in_root_fd(root_fd.as_fd(), unsafe_path, flags)
}

/// [`open_in_root`] with an already-open root directory (any fd type; `O_PATH` is fine).
pub fn open_in_root_fd(
    root: BorrowedFd<'_>,
    unsafe_path: &Path,
    flags: i32,
) -> Result<OwnedFd, PathError> {
    if flags & libc::O_CREAT != 0 || flags & libc::O_TMPFILE == libc::O_TMPFILE {
        return Err(PathError::Sys {
            op: "open (O_CREAT is not supported; use create_file_in_root)",
            path: unsafe_path.to_path_buf(),
            source: Errno::EINVAL,
        });
    }
    if OPENAT2_USABLE.load(Ordering::Relaxed) {
        match openat2_in_root(root, unsafe_path, flags) {
            Ok(fd) => return Ok(fd),
            // ENOSYS: kernel before 5.6. EPERM: a seccomp profile that predates openat2 denies
            // it. E2BIG/EINVAL on the *flags* would be a kernel that does not know a RESOLVE_
            // flag; EINVAL is also what a bad user flag gives, so only the first two disable
            // openat2 for good.
            Err(Errno::ENOSYS) | Err(Errno::EPERM) | Err(Errno::E2BIG) => {
                tracing::debug!("openat2 unavailable, falling back to a component walk");
                OPENAT2_USABLE.store(false, Ordering::Relaxed);
            }
            Err(source) => {
                return Err(PathError::Sys {
                    op: "open",
                    path: unsafe_path.to_path_buf(),
                    source,
                })
            }
        }
    }
    walk_in_root(root, unsafe_path, Final::Open(flags))
}

/// The component walk behind [`open_in_root_fd`], exposed so the fallback is testable (and
/// usable) on kernels that do have `openat2`.
pub fn open_in_root_walk(
    root: BorrowedFd<'_>,
    unsafe_path: &Path,
    flags: i32,
) -> Result<OwnedFd, PathError> {
    walk_in_root(root, unsafe_path, Final::Open(flags))
}

/// Create every missing directory of `unsafe_path` inside `root` with `mode` (subject to the
/// umask), following symlinks only within the root, and return an `O_PATH` fd of the final
/// directory.
pub fn mkdir_all_in_root(root: &Path, unsafe_path: &Path, mode: u32) -> Result<OwnedFd, PathError> {
    let root_fd = open_root(root)?;
    mkdir_all_in_root_fd(root_fd.as_fd(), unsafe_path, mode)
}

/// [`mkdir_all_in_root`] with an already-open root directory.
pub fn mkdir_all_in_root_fd(
    root: BorrowedFd<'_>,
    unsafe_path: &Path,
    mode: u32,
) -> Result<OwnedFd, PathError> {
    // Most targets exist already (an image's /proc, /dev, a directory made by an earlier
    // mount): one openat2 then resolves the whole path with the walk's semantics.
    if let Some(fd) = existing_in_root(root, unsafe_path, libc::O_DIRECTORY) {
        return Ok(fd);
    }
    if let Some(fd) = mkdir_leaf(root, unsafe_path, mode) {
        return Ok(fd);
    }
    walk_in_root(root, unsafe_path, Final::MkdirAll(mode))
}

/// The other common case: only the last component is missing. Its parent is resolved by
/// openat2 and the directory made there; mkdirat never follows a symlink (a dangling one
/// there gives EEXIST), and the new directory is opened without following one (a swap
/// in between fails the O_DIRECTORY open). Anything unexpected is left to the walk.
fn mkdir_leaf(root: BorrowedFd<'_>, unsafe_path: &Path, mode: u32) -> Option<OwnedFd> {
    let Some(Component::Normal(leaf)) = unsafe_path.components().next_back() else {
        return None;
    };
    let parent = unsafe_path.parent()?;
    let dir = existing_in_root(root, parent, libc::O_DIRECTORY)?;
    mkdirat(&dir, leaf, Mode::from_bits_truncate(mode)).ok()?;
    openat(
        &dir,
        leaf,
        OPATH_NOFOLLOW | OFlag::O_DIRECTORY,
        Mode::empty(),
    )
    .ok()
}

/// Ensure a regular file exists at `unsafe_path` inside `root` (creating it empty with `mode`,
/// and its parents with 0755, if missing) and return an `O_PATH` fd of it: the target for a
/// bind mount of a file.
pub fn create_file_in_root(
    root: &Path,
    unsafe_path: &Path,
    mode: u32,
) -> Result<OwnedFd, PathError> {
    let root_fd = open_root(root)?;
    create_file_in_root_fd(root_fd.as_fd(), unsafe_path, mode)
}

/// [`create_file_in_root`] with an already-open root directory.
pub fn create_file_in_root_fd(
    root: BorrowedFd<'_>,
    unsafe_path: &Path,
    mode: u32,
) -> Result<OwnedFd, PathError> {
    if let Some(fd) = existing_in_root(root, unsafe_path, 0) {
        // A directory there is the walk's error to report, in its words.
        let is_dir = fstat(&fd).is_ok_and(|st| file_kind(&st) == SFlag::S_IFDIR);
        if !is_dir {
            return Ok(fd);
        }
    }
    walk_in_root(root, unsafe_path, Final::CreateFile(mode))
}

static OPENAT2_USABLE: AtomicBool = AtomicBool::new(true);

/// The creating variants' fast path: an `O_PATH` fd of `unsafe_path` (with `extra` flags,
/// e.g. `O_DIRECTORY`) when openat2 resolves it whole, following symlinks inside the root
/// as the walk does. None for anything else (a missing component, the wrong type, no
/// openat2): the walk then creates what is missing or reports the error in its own terms.
fn existing_in_root(root: BorrowedFd<'_>, unsafe_path: &Path, extra: i32) -> Option<OwnedFd> {
    if !OPENAT2_USABLE.load(Ordering::Relaxed) {
        return None;
    }
    match openat2_in_root(root, unsafe_path, libc::O_PATH | libc::O_CLOEXEC | extra) {
        Ok(fd) => Some(fd),
        Err(Errno::ENOSYS) | Err(Errno::EPERM) | Err(Errno::E2BIG) => {
            OPENAT2_USABLE.store(false, Ordering::Relaxed);
            None
        }
        Err(_) => None,
    }
}

fn openat2_in_root(root: BorrowedFd<'_>, unsafe_path: &Path, flags: i32) -> Result<OwnedFd, Errno> {
    let rel = if unsafe_path.as_os_str().is_empty() {
        OsStr::new(".")
    } else {
        unsafe_path.as_os_str()
    };
    let c_path = CString::new(rel.as_bytes()).map_err(|_| Errno::EINVAL)?;
    // open_how has no padding; a zeroed struct plus the three fields is the documented way to
    // build it (unknown trailing fields must be zero).
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.mode = 0;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    for _ in 0..OPENAT2_RETRIES {
        // SAFETY: c_path and how outlive the call; the size passed is the struct's size.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                root.as_raw_fd(),
                c_path.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if ret >= 0 {
            // SAFETY: the kernel returned a new descriptor that nothing else owns.
            return Ok(unsafe { OwnedFd::from_raw_fd(ret as i32) });
        }
        match Errno::last() {
            Errno::EAGAIN | Errno::EINTR => continue,
            e => return Err(e),
        }
    }
    Err(Errno::EAGAIN)
}

/// What the walk does with the last component (and with missing ones).
#[derive(Clone, Copy)]
enum Final {
    /// Open it with these flags; missing components are an error.
    Open(i32),
    /// Create missing directories with this mode; return `O_PATH` of the final directory.
    MkdirAll(u32),
    /// Create missing parents (0755) and the final regular file with this mode.
    CreateFile(u32),
}

fn split_components(path: &Path) -> VecDeque<OsString> {
    path.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect()
}

fn file_kind(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT
}

fn kind_name(kind: SFlag) -> &'static str {
    match kind {
        SFlag::S_IFDIR => "a directory",
        SFlag::S_IFREG => "a regular file",
        SFlag::S_IFLNK => "a symlink",
        SFlag::S_IFCHR => "a character device",
        SFlag::S_IFBLK => "a block device",
        SFlag::S_IFIFO => "a fifo",
        SFlag::S_IFSOCK => "a socket",
        _ => "an unknown file type",
    }
}

const OPATH_NOFOLLOW: OFlag = OFlag::O_PATH
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// Flags that do not change what an `O_PATH` open yields.
fn is_plain_opath(flags: i32) -> bool {
    let ignorable = libc::O_PATH | libc::O_CLOEXEC | libc::O_NOFOLLOW | libc::O_DIRECTORY;
    flags & libc::O_PATH != 0 && flags & !ignorable == 0
}

/// The walk. `stack` holds the directories entered below `root`, so `..` is a pop clamped at
/// the root rather than a lookup of the on-disk parent (which a concurrent rename could move
/// outside the root).
fn walk_in_root(
    root: BorrowedFd<'_>,
    unsafe_path: &Path,
    fin: Final,
) -> Result<OwnedFd, PathError> {
    let sys = |op: &'static str| {
        move |source: Errno| PathError::Sys {
            op,
            path: unsafe_path.to_path_buf(),
            source,
        }
    };
    let mut stack: Vec<OwnedFd> = Vec::new();
    let mut rest = split_components(unsafe_path);
    let mut hops = 0u32;
    let mut races = 0u32;
    loop {
        let Some(name) = rest.pop_front() else {
            // The path ended on a directory we already hold (root, or after `..`).
            let dir = stack.last().map(|f| f.as_fd()).unwrap_or(root);
            return finish_dir(dir, unsafe_path, fin);
        };
        if name == ".." {
            stack.pop();
            continue;
        }
        let is_last = rest.is_empty();
        let cur = stack.last().map(|f| f.as_fd()).unwrap_or(root);
        let fd = match openat(cur, name.as_os_str(), OPATH_NOFOLLOW, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                let created = match fin {
                    Final::Open(_) => return Err(sys("open")(Errno::ENOENT)),
                    Final::CreateFile(mode) if is_last => {
                        create_regular(cur, &name, mode).map_err(sys("create"))?
                    }
                    Final::MkdirAll(mode) => mkdir_one(cur, &name, mode).map_err(sys("mkdir"))?,
                    Final::CreateFile(_) => mkdir_one(cur, &name, 0o755).map_err(sys("mkdir"))?,
                };
                if !created {
                    races += 1;
                    if races > CREATE_RACE_RETRIES {
                        return Err(PathError::Raced {
                            path: unsafe_path.to_path_buf(),
                        });
                    }
                }
                // Look at what is there now through the normal path, so a symlink planted in
                // the meantime is still resolved inside the root.
                rest.push_front(name);
                continue;
            }
            Err(e) => return Err(sys("open")(e)),
        };
        let st = fstat(&fd).map_err(sys("stat"))?;
        let kind = file_kind(&st);
        if kind == SFlag::S_IFLNK {
            if let Final::Open(flags) = fin {
                if is_last && flags & libc::O_NOFOLLOW != 0 {
                    return finish_open(cur, &name, fd, &st, flags, unsafe_path);
                }
            }
            hops += 1;
            if hops > MAX_SYMLINK_HOPS {
                return Err(PathError::TooManySymlinks {
                    path: unsafe_path.to_path_buf(),
                });
            }
            // readlinkat on the O_PATH fd itself with an empty path reads *this* link, not
            // whatever the name points to now.
            let target = readlinkat(&fd, "").map_err(sys("readlink"))?;
            if target.is_empty() {
                return Err(sys("readlink")(Errno::ENOENT));
            }
            let target = PathBuf::from(target);
            if target.is_absolute() {
                stack.clear();
            }
            for comp in split_components(&target).into_iter().rev() {
                rest.push_front(comp);
            }
            continue;
        }
        if is_last {
            return match fin {
                Final::Open(flags) => finish_open(cur, &name, fd, &st, flags, unsafe_path),
                Final::MkdirAll(_) if kind != SFlag::S_IFDIR => Err(PathError::WrongType {
                    path: unsafe_path.to_path_buf(),
                    expected: "a directory",
                    found: kind_name(kind),
                }),
                Final::CreateFile(_) if kind == SFlag::S_IFDIR => Err(PathError::WrongType {
                    path: unsafe_path.to_path_buf(),
                    expected: "a non-directory",
                    found: kind_name(kind),
                }),
                Final::MkdirAll(_) | Final::CreateFile(_) => Ok(fd),
            };
        }
        if kind != SFlag::S_IFDIR {
            return Err(PathError::NotADirectory {
                path: unsafe_path.to_path_buf(),
                component: name,
            });
        }
        stack.push(fd);
    }
}

/// Final step when the path ended on a directory already held.
fn finish_dir(dir: BorrowedFd<'_>, unsafe_path: &Path, fin: Final) -> Result<OwnedFd, PathError> {
    let flags = match fin {
        Final::Open(flags) => flags,
        Final::MkdirAll(_) => libc::O_PATH | libc::O_CLOEXEC,
        Final::CreateFile(_) => {
            return Err(PathError::WrongType {
                path: unsafe_path.to_path_buf(),
                expected: "a non-directory",
                found: "a directory",
            })
        }
    };
    openat(
        dir,
        ".",
        OFlag::from_bits_retain(flags) | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| PathError::Sys {
        op: "open",
        path: unsafe_path.to_path_buf(),
        source,
    })
}

/// Open the final component `name` in `parent` with the caller's flags, making sure it is the
/// same object the walk examined (`seen`, whose stat is `seen_st`).
fn finish_open(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    seen: OwnedFd,
    seen_st: &FileStat,
    flags: i32,
    unsafe_path: &Path,
) -> Result<OwnedFd, PathError> {
    let kind = file_kind(seen_st);
    if flags & libc::O_DIRECTORY != 0 && kind != SFlag::S_IFDIR {
        return Err(PathError::Sys {
            op: "open",
            path: unsafe_path.to_path_buf(),
            source: Errno::ENOTDIR,
        });
    }
    if is_plain_opath(flags) {
        return Ok(seen);
    }
    let fd = openat(
        parent,
        name,
        OFlag::from_bits_retain(flags) | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(|source| PathError::Sys {
        op: "open",
        path: unsafe_path.to_path_buf(),
        source,
    })?;
    let st = fstat(&fd).map_err(|source| PathError::Sys {
        op: "stat",
        path: unsafe_path.to_path_buf(),
        source,
    })?;
    if st.st_dev != seen_st.st_dev || st.st_ino != seen_st.st_ino {
        return Err(PathError::Raced {
            path: unsafe_path.to_path_buf(),
        });
    }
    Ok(fd)
}

/// mkdirat that treats "someone else created it" as success-to-retry. Returns whether we
/// created it.
fn mkdir_one(parent: BorrowedFd<'_>, name: &OsStr, mode: u32) -> Result<bool, Errno> {
    match mkdirat(parent, name, Mode::from_bits_truncate(mode)) {
        Ok(()) => Ok(true),
        // The O_NOFOLLOW open just saw nothing here, so EEXIST means a concurrent creator:
        // re-examine whatever it made.
        Err(Errno::EEXIST) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Create an empty regular file; `O_EXCL | O_NOFOLLOW` so we never write through a link.
fn create_regular(parent: BorrowedFd<'_>, name: &OsStr, mode: u32) -> Result<bool, Errno> {
    match openat(
        parent,
        name,
        OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(mode),
    ) {
        Ok(_fd) => Ok(true),
        Err(Errno::EEXIST) => Ok(false),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn components_drop_root_and_dot() {
        let c = split_components(Path::new("/a/./b/../c/"));
        let v: Vec<_> = c.iter().map(|s| s.to_string_lossy().into_owned()).collect();
        assert_eq!(v, ["a", "b", "..", "c"]);
    }

    #[test]
    fn plain_opath_detection() {
        assert!(is_plain_opath(libc::O_PATH | libc::O_CLOEXEC));
        assert!(is_plain_opath(
            libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW
        ));
        assert!(!is_plain_opath(libc::O_RDONLY));
        assert!(!is_plain_opath(libc::O_PATH | libc::O_RDWR));
    }

    #[test]
    fn proc_fd_path_names_the_fd() {
        let f = std::fs::File::open("/").expect("open /");
        let p = proc_fd_path(&f);
        assert_eq!(p, PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd())));
    }
}
