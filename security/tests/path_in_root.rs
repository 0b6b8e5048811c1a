//! Resolution inside a root against real symlinks on the real filesystem, through both the
//! openat2 path and the component walk.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{symlink, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use kos_security::path::{
    create_file_in_root, create_file_in_root_fd, mkdir_all_in_root, mkdir_all_in_root_fd,
    open_in_root, open_in_root_fd, open_in_root_walk, open_root, proc_fd_path, PathError,
};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A temp root with a `marker` file, removed on drop even when the test fails.
struct TempRoot {
    path: PathBuf,
}

impl TempRoot {
    fn new(tag: &str) -> TempRoot {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let path =
            std::env::temp_dir().join(format!("kos-sec-path-{tag}-{}-{n}", std::process::id()));
        fs::create_dir_all(&path).expect("mkdir temp root");
        fs::write(path.join("marker"), b"inside").expect("write marker");
        TempRoot { path }
    }
}

impl Drop for TempRoot {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// (dev, ino) of what an fd refers to.
fn ident(fd: &OwnedFd) -> (u64, u64) {
    let m = fs::metadata(proc_fd_path(fd)).expect("stat via /proc/self/fd");
    (m.dev(), m.ino())
}

fn ident_path(p: &Path) -> (u64, u64) {
    let m = fs::metadata(p).expect("stat path");
    (m.dev(), m.ino())
}

type Opener = fn(BorrowedFd<'_>, &Path, i32) -> Result<OwnedFd, PathError>;

/// Run a check with both resolvers so the fallback walk is held to the same results.
fn both(check: impl Fn(Opener)) {
    check(open_in_root_fd);
    check(open_in_root_walk);
}

const OPATH: i32 = libc::O_PATH | libc::O_CLOEXEC;

#[test]
fn absolute_symlink_to_etc_stays_inside() {
    both(|open| {
        let r = TempRoot::new("abs");
        fs::create_dir(r.path.join("etc")).unwrap();
        fs::write(r.path.join("etc/passwd"), b"fake").unwrap();
        symlink("/etc", r.path.join("a")).unwrap();
        let root = open_root(&r.path).unwrap();
        let fd = open(
            root.as_fd(),
            Path::new("a/passwd"),
            libc::O_RDONLY | libc::O_CLOEXEC,
        )
        .expect("resolve a/passwd");
        let content = fs::read(proc_fd_path(&fd)).unwrap();
        assert_eq!(content, b"fake", "a -> /etc must clamp to <root>/etc");
        assert_ne!(ident(&fd), ident_path(Path::new("/etc/passwd")));
    });
}

#[test]
fn dotdot_symlink_clamps_at_root() {
    both(|open| {
        let r = TempRoot::new("dotdot");
        fs::create_dir_all(r.path.join("x/y")).unwrap();
        symlink("../../../../../../..", r.path.join("x/y/up")).unwrap();
        let root = open_root(&r.path).unwrap();
        let fd = open(root.as_fd(), Path::new("x/y/up"), OPATH | libc::O_DIRECTORY).unwrap();
        assert_eq!(
            ident(&fd),
            ident_path(&r.path),
            "../.. chain must stop at root"
        );
        let fd = open(root.as_fd(), Path::new("x/y/up/marker"), libc::O_RDONLY).unwrap();
        assert_eq!(fs::read(proc_fd_path(&fd)).unwrap(), b"inside");
        // Plain `..` in the caller's path clamps too.
        let fd = open(root.as_fd(), Path::new("/../../../marker"), OPATH).unwrap();
        assert_eq!(ident(&fd), ident_path(&r.path.join("marker")));
    });
}

#[test]
fn absolute_symlink_chain_and_root_alias() {
    both(|open| {
        let r = TempRoot::new("chain");
        fs::create_dir(r.path.join("real")).unwrap();
        symlink("/real", r.path.join("l1")).unwrap();
        symlink("l1", r.path.join("l2")).unwrap();
        symlink("/", r.path.join("rootlink")).unwrap();
        let root = open_root(&r.path).unwrap();
        let fd = open(root.as_fd(), Path::new("/l2"), OPATH).unwrap();
        assert_eq!(ident(&fd), ident_path(&r.path.join("real")));
        let fd = open(root.as_fd(), Path::new("rootlink/rootlink/marker"), OPATH).unwrap();
        assert_eq!(ident(&fd), ident_path(&r.path.join("marker")));
        let fd = open(root.as_fd(), Path::new(""), OPATH).unwrap();
        assert_eq!(ident(&fd), ident_path(&r.path));
    });
}

#[test]
fn missing_and_not_a_directory_errors() {
    both(|open| {
        let r = TempRoot::new("err");
        let root = open_root(&r.path).unwrap();
        let e = open(root.as_fd(), Path::new("nope/x"), OPATH).unwrap_err();
        assert!(e.is_not_found(), "{e}");
        let e = open(root.as_fd(), Path::new("marker/x"), OPATH).unwrap_err();
        assert_eq!(e.errno(), nix::errno::Errno::ENOTDIR, "{e}");
        let e = open(root.as_fd(), Path::new("marker"), OPATH | libc::O_DIRECTORY).unwrap_err();
        assert_eq!(e.errno(), nix::errno::Errno::ENOTDIR, "{e}");
    });
}

#[test]
fn symlink_loop_is_eloop() {
    both(|open| {
        let r = TempRoot::new("loop");
        symlink("b", r.path.join("a")).unwrap();
        symlink("a", r.path.join("b")).unwrap();
        let root = open_root(&r.path).unwrap();
        let e = open(root.as_fd(), Path::new("a"), OPATH).unwrap_err();
        assert_eq!(e.errno(), nix::errno::Errno::ELOOP, "{e}");
    });
}

#[test]
fn nofollow_opens_the_link_itself() {
    both(|open| {
        let r = TempRoot::new("nofollow");
        symlink("/etc", r.path.join("a")).unwrap();
        let root = open_root(&r.path).unwrap();
        let fd = open(root.as_fd(), Path::new("a"), OPATH | libc::O_NOFOLLOW).unwrap();
        let st = nix::sys::stat::fstat(&fd).unwrap();
        assert_eq!(
            st.st_mode & libc::S_IFMT,
            libc::S_IFLNK,
            "fd must be the symlink itself"
        );
        let lm = fs::symlink_metadata(r.path.join("a")).unwrap();
        assert_eq!(st.st_ino, lm.ino());
    });
}

#[test]
fn mkdir_all_through_symlinked_parent_stays_inside() {
    let r = TempRoot::new("mkdir");
    // A parent that points at the host's /tmp: creation must land in <root>/tmp instead.
    symlink("/tmp", r.path.join("evil")).unwrap();
    let unique = format!(
        "kos-sec-escape-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    let rel = PathBuf::from("evil").join(&unique).join("deeper");
    let fd = mkdir_all_in_root(&r.path, &rel, 0o755).expect("mkdir_all");
    assert!(
        !Path::new("/tmp").join(&unique).exists(),
        "escaped to host /tmp"
    );
    let inside = r.path.join("tmp").join(&unique).join("deeper");
    assert!(inside.is_dir());
    assert_eq!(ident(&fd), ident_path(&inside));
    // Idempotent on an existing tree.
    let again = mkdir_all_in_root(&r.path, &rel, 0o755).unwrap();
    assert_eq!(ident(&again), ident(&fd));
    // A file in the way is a clear error.
    let e = mkdir_all_in_root(&r.path, Path::new("marker/sub"), 0o755).unwrap_err();
    assert!(e.to_string().contains("not a directory"), "{e}");
}

#[test]
fn mkdir_all_through_dotdot_symlink() {
    let r = TempRoot::new("mkdirup");
    fs::create_dir(r.path.join("a")).unwrap();
    symlink("../../../../..", r.path.join("a/up")).unwrap();
    let fd = mkdir_all_in_root(&r.path, Path::new("a/up/kos-made"), 0o700).unwrap();
    assert_eq!(ident(&fd), ident_path(&r.path.join("kos-made")));
}

#[test]
fn create_file_through_dangling_absolute_symlink() {
    let r = TempRoot::new("file");
    let unique = format!(
        "kos-sec-file-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    let host_target = Path::new("/tmp").join(&unique);
    symlink(&host_target, r.path.join("target")).unwrap();
    let fd = create_file_in_root(&r.path, Path::new("target"), 0o644).expect("create file");
    assert!(!host_target.exists(), "created on the host");
    let inside = r.path.join("tmp").join(&unique);
    assert!(inside.is_file());
    assert_eq!(ident(&fd), ident_path(&inside));
    // Existing file: same object back. Existing dir: clear error.
    let again = create_file_in_root(&r.path, Path::new("/target"), 0o644).unwrap();
    assert_eq!(ident(&again), ident(&fd));
    let e = create_file_in_root(&r.path, Path::new("tmp"), 0o644).unwrap_err();
    assert!(e.to_string().contains("a directory"), "{e}");
    // Nested parents are made.
    let fd = create_file_in_root(&r.path, Path::new("dev/kos/null"), 0o600).unwrap();
    assert_eq!(ident(&fd), ident_path(&r.path.join("dev/kos/null")));
}

#[test]
fn open_in_root_by_path() {
    let r = TempRoot::new("bypath");
    symlink("/marker", r.path.join("m")).unwrap();
    let fd = open_in_root(&r.path, Path::new("m"), libc::O_RDONLY | libc::O_CLOEXEC).unwrap();
    assert_eq!(fs::read(proc_fd_path(&fd)).unwrap(), b"inside");
    let e = open_in_root(&r.path.join("absent"), Path::new("m"), OPATH).unwrap_err();
    assert!(e.to_string().contains("cannot open root"), "{e}");
}

/// A component swapped between a directory and a symlink out of the root while we resolve:
/// nothing may ever be created or opened outside.
#[test]
fn symlink_swap_race_never_escapes() {
    let r = TempRoot::new("race");
    let outside = TempRoot::new("race-outside");
    fs::create_dir(r.path.join("real")).unwrap();
    fs::write(outside.path.join("secret"), b"host").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attacker = {
        let stop = stop.clone();
        let root = r.path.clone();
        let out = outside.path.clone();
        std::thread::spawn(move || {
            let link = root.join("a");
            let tmp = root.join("a.tmp");
            while !stop.load(Ordering::Relaxed) {
                let _ = symlink(&out, &tmp);
                let _ = fs::rename(&tmp, &link);
                let _ = symlink("real", &tmp);
                let _ = fs::rename(&tmp, &link);
            }
        })
    };
    let root_fd = open_root(&r.path).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(800);
    let mut resolved = 0;
    while std::time::Instant::now() < deadline {
        if mkdir_all_in_root(&r.path, Path::new("a/kos-made"), 0o755).is_ok() {
            resolved += 1;
        }
        for open in [open_in_root_fd as Opener, open_in_root_walk as Opener] {
            if let Ok(fd) = open(root_fd.as_fd(), Path::new("a/secret"), libc::O_RDONLY) {
                assert_ne!(fs::read(proc_fd_path(&fd)).unwrap(), b"host", "escaped");
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    attacker.join().unwrap();
    assert!(
        !outside.path.join("kos-made").exists(),
        "created outside the root"
    );
    assert!(resolved > 0, "the race never let a resolution through");
}

/// The creating variants resolve an existing target in one openat2 (their fast path) with
/// the walk's semantics: these cover what that path meets.
#[test]
fn mkdir_all_on_existing_targets() {
    let r = TempRoot::new("fast-mkdir");
    let root = open_root(&r.path).unwrap();
    fs::create_dir_all(r.path.join("sys/fs/cgroup")).unwrap();
    // An existing directory: that directory, nothing else made.
    let fd = mkdir_all_in_root_fd(root.as_fd(), Path::new("/sys/fs/cgroup"), 0o755).unwrap();
    assert_eq!(ident(&fd), ident_path(&r.path.join("sys/fs/cgroup")));
    assert_eq!(
        fs::read_dir(r.path.join("sys/fs/cgroup")).unwrap().count(),
        0
    );
    // A symlink inside the root, relative and absolute: followed to its target.
    symlink("sys/fs", r.path.join("rel")).unwrap();
    symlink("/sys/fs/cgroup", r.path.join("abs")).unwrap();
    let fd = mkdir_all_in_root_fd(root.as_fd(), Path::new("rel/cgroup"), 0o755).unwrap();
    assert_eq!(ident(&fd), ident_path(&r.path.join("sys/fs/cgroup")));
    let fd = mkdir_all_in_root_fd(root.as_fd(), Path::new("/abs"), 0o755).unwrap();
    assert_eq!(ident(&fd), ident_path(&r.path.join("sys/fs/cgroup")));
    // A symlink out of the root, to a place that exists both inside and on the host:
    // the one inside, never the host's.
    fs::create_dir(r.path.join("etc")).unwrap();
    symlink("/etc", r.path.join("esc-abs")).unwrap();
    symlink("../../../../../../etc", r.path.join("esc-up")).unwrap();
    for link in ["esc-abs", "esc-up", "/esc-up/../esc-abs"] {
        let fd = mkdir_all_in_root_fd(root.as_fd(), Path::new(link), 0o755).unwrap();
        assert_eq!(ident(&fd), ident_path(&r.path.join("etc")), "{link}");
        assert_ne!(ident(&fd), ident_path(Path::new("/etc")), "{link}");
    }
    // A file where a directory is expected: the walk's errors, final or in the middle.
    let e = mkdir_all_in_root_fd(root.as_fd(), Path::new("marker"), 0o755).unwrap_err();
    assert!(matches!(e, PathError::WrongType { .. }), "{e}");
    let e = mkdir_all_in_root_fd(root.as_fd(), Path::new("marker/sub"), 0o755).unwrap_err();
    assert!(matches!(e, PathError::NotADirectory { .. }), "{e}");
    symlink("/marker", r.path.join("to-file")).unwrap();
    let e = mkdir_all_in_root_fd(root.as_fd(), Path::new("to-file"), 0o755).unwrap_err();
    assert!(matches!(e, PathError::WrongType { .. }), "{e}");
    // Partly there: the rest is made below what exists.
    let fd = mkdir_all_in_root_fd(root.as_fd(), Path::new("abs/cpu/x"), 0o755).unwrap();
    assert_eq!(ident(&fd), ident_path(&r.path.join("sys/fs/cgroup/cpu/x")));
    // Only the last component missing, below a symlinked parent: made inside.
    let fd = mkdir_all_in_root_fd(root.as_fd(), Path::new("esc-up/leaf"), 0o755).unwrap();
    assert_eq!(ident(&fd), ident_path(&r.path.join("etc/leaf")));
    assert!(!Path::new("/etc/leaf").exists());
    // A dangling symlink as the last component: followed (inside), never replaced.
    symlink("/made/by/link", r.path.join("dangling")).unwrap();
    let fd = mkdir_all_in_root_fd(root.as_fd(), Path::new("dangling"), 0o755).unwrap();
    assert_eq!(ident(&fd), ident_path(&r.path.join("made/by/link")));
    assert!(fs::symlink_metadata(r.path.join("dangling"))
        .unwrap()
        .file_type()
        .is_symlink());
}

#[test]
fn create_file_on_existing_targets() {
    let r = TempRoot::new("fast-file");
    let root = open_root(&r.path).unwrap();
    let marker = ident_path(&r.path.join("marker"));
    // An existing file, directly and through symlinks inside and out of the root.
    symlink("marker", r.path.join("rel")).unwrap();
    symlink("/marker", r.path.join("abs")).unwrap();
    symlink("../../../../../marker", r.path.join("up")).unwrap();
    for p in ["marker", "/marker", "rel", "abs", "up"] {
        let fd = create_file_in_root_fd(root.as_fd(), Path::new(p), 0o644).unwrap();
        assert_eq!(ident(&fd), marker, "{p}");
    }
    assert_eq!(fs::read(r.path.join("marker")).unwrap(), b"inside");
    // A symlink out of the root to a host file: resolved (and made) inside.
    symlink("/etc/hostname", r.path.join("host")).unwrap();
    let fd = create_file_in_root_fd(root.as_fd(), Path::new("host"), 0o644).unwrap();
    assert_eq!(ident(&fd), ident_path(&r.path.join("etc/hostname")));
    // A directory where a file is expected, also through a symlink.
    fs::create_dir(r.path.join("d")).unwrap();
    symlink("/d", r.path.join("to-dir")).unwrap();
    for p in ["d", "to-dir", "/"] {
        let e = create_file_in_root_fd(root.as_fd(), Path::new(p), 0o644).unwrap_err();
        assert!(matches!(e, PathError::WrongType { .. }), "{p}: {e}");
    }
    // A file in the middle of the path.
    let e = create_file_in_root_fd(root.as_fd(), Path::new("marker/f"), 0o644).unwrap_err();
    assert!(matches!(e, PathError::NotADirectory { .. }), "{e}");
}
