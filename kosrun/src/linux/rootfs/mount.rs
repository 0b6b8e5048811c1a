//! Mounting the spec's mounts inside the rootfs. Every target is resolved inside
//! the rootfs (never through a symlink out of it) and mounted through its
//! /proc/self/fd path, so the kernel acts on exactly the object we resolved.

use std::cell::RefCell;
use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use kos_security::path as safe;
use libc::c_ulong;
use oci_spec::runtime::Mount;

use super::options::{self, attr, Parsed};
use crate::error::{Error, Result, Stage};

/// Filesystems whose mount point must be a real directory at exactly the named
/// place: a symlinked /proc could hide masked paths (CVE-2023-27561/28642).
const NO_SYMLINK_TYPES: [&str; 2] = ["proc", "sysfs"];

/// The rootfs, opened once for every lookup inside it (each resolution starts from this
/// descriptor instead of opening the path again). Opened at first use, which is after the
/// rootfs was bind-mounted onto itself, so it is the new mount; opened again only after
/// something is mounted over the rootfs itself.
pub struct RootDir<'a> {
    path: &'a Path,
    fd: RefCell<Option<Rc<OwnedFd>>>,
}

impl<'a> RootDir<'a> {
    pub fn new(path: &'a Path) -> RootDir<'a> {
        RootDir {
            path,
            fd: RefCell::new(None),
        }
    }

    /// The open rootfs.
    fn fd(&self) -> std::result::Result<Rc<OwnedFd>, safe::PathError> {
        if let Some(fd) = self.fd.borrow().as_ref() {
            return Ok(fd.clone());
        }
        let fd = Rc::new(safe::open_root(self.path)?);
        *self.fd.borrow_mut() = Some(fd.clone());
        Ok(fd)
    }

    /// Something was mounted over the rootfs: the next lookup opens the mount on top.
    pub fn reopen(&self) {
        *self.fd.borrow_mut() = None;
    }

    pub fn mkdir_all(&self, p: &Path, mode: u32) -> Result<OwnedFd> {
        Ok(safe::mkdir_all_in_root_fd(self.fd()?.as_fd(), p, mode)?)
    }

    pub fn create_file(&self, p: &Path, mode: u32) -> Result<OwnedFd> {
        Ok(safe::create_file_in_root_fd(self.fd()?.as_fd(), p, mode)?)
    }

    pub fn open(&self, p: &Path, flags: i32) -> std::result::Result<OwnedFd, safe::PathError> {
        safe::open_in_root_fd(self.fd()?.as_fd(), p, flags)
    }
}

/// Whether `dest` names the rootfs itself, spelled lexically ("/", "/.", "/a/..").
fn is_root(dest: &Path) -> bool {
    let mut depth = 0usize;
    for c in dest.components() {
        match c {
            std::path::Component::Normal(_) => depth += 1,
            std::path::Component::ParentDir => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    depth == 0
}

pub struct MountCtx<'a> {
    pub rootfs: &'a Path,
    pub root: RootDir<'a>,
    pub bundle: &'a Path,
    pub cgroups: &'a [kos_cgroups::CgroupMountSource],
    pub cgroup_ns: bool,
    pub mount_label: Option<&'a str>,
    /// Per spec mount, its idmapped source tree, made by the runtime.
    pub idmap_trees: &'a [Option<std::os::fd::OwnedFd>],
    /// Puts the init in its cgroup (and cgroup namespace) if it is not yet: before the
    /// first cgroup mount, which binds the container's cgroup directories, and after the
    /// last mount, before device nodes are made under the device controller.
    pub enter_cgroup: &'a dyn Fn() -> Result<()>,
}

pub fn cstr(s: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::failed(Stage::Mounts, format!("{s:?} contains a NUL byte")))
}

pub use crate::sys::mount as sys_mount;
use crate::sys::mount_setattr;

/// The spec's recursive mount attributes ("rro", "rnosuid", ...) on the mount at `fd`.
pub fn set_recursive_attrs(fd: &OwnedFd, set: u64, clear: u64) -> std::io::Result<()> {
    mount_setattr(fd, true, set, clear, None)
}

fn mount_err(m: &Mount, what: &str, e: std::io::Error) -> Error {
    Error::failed(
        Stage::Mounts,
        format!(
            "mount {} ({}): {what}: {e}",
            m.destination().display(),
            m.typ().as_deref().unwrap_or("none")
        ),
    )
}

/// Mount every entry of the spec, in order.
pub fn mount_all(ctx: &MountCtx, mounts: &[Mount]) -> Result<()> {
    for (i, m) in mounts.iter().enumerate() {
        let tree = ctx.idmap_trees.get(i).and_then(|u| u.as_ref());
        mount_one(ctx, m, tree)?;
        if is_root(m.destination()) {
            ctx.root.reopen();
        }
    }
    (ctx.enter_cgroup)()
}

fn mount_one(ctx: &MountCtx, m: &Mount, idmap_tree: Option<&OwnedFd>) -> Result<()> {
    let typ = m.typ().as_deref().unwrap_or("none");
    let opts = options::parse(m.options().as_deref().unwrap_or(&[]));
    if typ == "cgroup" || typ == "cgroup2" {
        return mount_cgroup(ctx, m, &opts);
    }
    let dest = m.destination();
    let is_bind = opts.bind || typ == "bind";
    check_proc_mount(m, typ, is_bind)?;
    if is_bind {
        let source = bind_source(ctx, m)?;
        let meta = std::fs::metadata(&source).map_err(|e| mount_err(m, "bind source", e))?;
        let target = if meta.is_dir() {
            ctx.root.mkdir_all(dest, 0o755)?
        } else {
            ctx.root.create_file(dest, 0o644)?
        };
        if let Some(tree) = idmap_tree {
            super::idmap::attach(tree, &target)?;
        } else {
            let flags = libc::MS_BIND | if opts.rbind { libc::MS_REC } else { 0 };
            sys_mount(
                Some(&source),
                &safe::proc_fd_path(&target),
                None,
                flags,
                None,
            )
            .map_err(|e| mount_err(m, "bind", e))?;
        }
        let mounted = reopen(ctx, dest)?;
        let extra = opts.flags & !(libc::MS_BIND | libc::MS_REC | libc::MS_REMOUNT);
        if extra != 0 {
            remount_bind(&mounted, extra).map_err(|e| mount_err(m, "remount with options", e))?;
        }
        finish(m, &opts, &mounted)
    } else {
        let target = ctx.root.mkdir_all(dest, 0o755)?;
        if NO_SYMLINK_TYPES.contains(&typ) {
            ensure_exact(ctx.rootfs, dest, &target)?;
        }
        let mut data = opts.data_string();
        if let Some(label) = ctx.mount_label.filter(|l| !l.is_empty()) {
            if kos_security::label::selinux::takes_context(typ) {
                let ctx_opt = kos_security::label::selinux::mount_context_option(label)
                    .map_err(|e| Error::failed_by(Stage::Mounts, e.to_string(), e))?;
                data = Some(match data {
                    Some(d) => format!("{d},{ctx_opt}"),
                    None => ctx_opt,
                });
            }
        }
        let source = m
            .source()
            .as_ref()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(typ));
        let copy_from = if opts.tmpcopyup && typ == "tmpfs" {
            Some(
                ctx.root
                    .open(dest, libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC)?,
            )
        } else {
            None
        };
        sys_mount(
            Some(&source),
            &safe::proc_fd_path(&target),
            Some(typ),
            opts.flags & !libc::MS_REMOUNT,
            data.as_deref(),
        )
        .map_err(|e| mount_err(m, "mount", e))?;
        let mounted = reopen(ctx, dest)?;
        if let Some(src) = copy_from {
            super::copyup::copy_dir(&src, &mounted).map_err(|e| mount_err(m, "tmpcopyup", e))?;
        }
        finish(m, &opts, &mounted)
    }
}

/// Files under /proc that may be bind-mounted over (lxcfs-style virtualisation).
const PROC_BIND_ALLOWED: [&str; 10] = [
    "/proc/cpuinfo",
    "/proc/diskstats",
    "/proc/meminfo",
    "/proc/stat",
    "/proc/swaps",
    "/proc/uptime",
    "/proc/loadavg",
    "/proc/slabinfo",
    "/proc/net/dev",
    "/proc/sys/kernel/ns_last_pid",
];

/// Only procfs may sit at /proc, and only a few files under it may be replaced: a fake
/// /proc would let the container feed the runtime its own /proc/self/attr files and
/// dodge its LSM label (CVE-2019-16884).
fn check_proc_mount(m: &Mount, typ: &str, is_bind: bool) -> Result<()> {
    let dest = normalize(m.destination());
    if !dest.starts_with("/proc") {
        return Ok(());
    }
    if dest == Path::new("/proc") {
        if typ == "proc" {
            return Ok(());
        }
        return Err(Error::invalid_in(
            Stage::Mounts,
            "mounts.type",
            format!(
                "mount {}: only a proc filesystem may be mounted at /proc (got {typ})",
                m.destination().display()
            ),
        ));
    }
    let allowed = PROC_BIND_ALLOWED.iter().any(|p| dest == Path::new(p));
    let from_procfs = is_bind
        && m.source().as_ref().is_some_and(|src| {
            nix::sys::statfs::statfs(src.as_path())
                .map(|s| s.filesystem_type() == nix::sys::statfs::PROC_SUPER_MAGIC)
                .unwrap_or(false)
        });
    if allowed || from_procfs {
        return Ok(());
    }
    Err(Error::invalid_in(
        Stage::Mounts,
        "mounts.source",
        format!(
            "mount {}: mounts over /proc are limited to procfs sources and {}",
            m.destination().display(),
            PROC_BIND_ALLOWED.join(", ")
        ),
    ))
}

/// Propagation and recursive attributes apply to the mount now at the target.
fn finish(m: &Mount, opts: &Parsed, mounted: &OwnedFd) -> Result<()> {
    let p = safe::proc_fd_path(mounted);
    for prop in &opts.propagation {
        sys_mount(None, &p, None, *prop, None).map_err(|e| mount_err(m, "propagation", e))?;
    }
    if opts.rec_set != 0 || opts.rec_clear != 0 {
        set_recursive_attrs(mounted, opts.rec_set, opts.rec_clear)
            .map_err(|e| mount_err(m, "recursive attributes", e))?;
    }
    Ok(())
}

fn reopen(ctx: &MountCtx, dest: &Path) -> Result<OwnedFd> {
    Ok(ctx.root.open(dest, libc::O_PATH | libc::O_CLOEXEC)?)
}

/// Remount a bind mount with per-mount flags, keeping the locked flags it already has
/// (an unprivileged remount that drops nosuid/nodev/noexec is refused by the kernel).
pub fn remount_bind(mounted: &OwnedFd, flags: c_ulong) -> std::io::Result<()> {
    let p = safe::proc_fd_path(mounted);
    let keep = current_flags(mounted)?
        & (libc::MS_NOSUID
            | libc::MS_NODEV
            | libc::MS_NOEXEC
            | libc::MS_NOATIME
            | libc::MS_NODIRATIME
            | libc::MS_RELATIME);
    let flags = flags | keep | libc::MS_BIND | libc::MS_REMOUNT;
    sys_mount(None, &p, None, flags, None)
}

/// The per-mount flags of the mount holding `fd`, as MS_* bits.
pub fn current_flags(fd: &OwnedFd) -> std::io::Result<c_ulong> {
    // SAFETY: zeroed statvfs is a valid out-parameter.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // O_PATH descriptors cannot be passed to fstatvfs; go through the magic link.
    let p = CString::new(safe::proc_fd_path(fd).to_string_lossy().as_bytes())
        .map_err(|_| std::io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: valid path and out-parameter.
    if unsafe { libc::statvfs(p.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // ST_* and MS_* share values for the bits we keep.
    Ok(st.f_flag as c_ulong)
}

fn bind_source(ctx: &MountCtx, m: &Mount) -> Result<PathBuf> {
    let src = m.source().as_ref().ok_or_else(|| {
        Error::invalid_in(
            Stage::Mounts,
            "mounts.source",
            format!("bind mount {} has no source", m.destination().display()),
        )
    })?;
    Ok(if src.is_absolute() {
        src.clone()
    } else {
        ctx.bundle.join(src)
    })
}

/// Fail if resolving `dest` inside the root went through a symlink.
fn ensure_exact(rootfs: &Path, dest: &Path, fd: &OwnedFd) -> Result<()> {
    let real = std::fs::read_link(safe::proc_fd_path(fd)).map_err(|e| Error::io(dest, e))?;
    let want = normalize(&rootfs.join(dest.strip_prefix("/").unwrap_or(dest)));
    if real != want {
        return Err(Error::failed(
            Stage::Mounts,
            format!(
                "mount destination {} resolves to {} through a symlink; refusing to mount there",
                dest.display(),
                real.display()
            ),
        ));
    }
    Ok(())
}

fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

/// A "cgroup" mount: with a cgroup namespace on a v2 host, a fresh cgroup2 mount;
/// otherwise a tmpfs holding bind mounts of the container's own cgroup directories.
fn mount_cgroup(ctx: &MountCtx, m: &Mount, opts: &Parsed) -> Result<()> {
    (ctx.enter_cgroup)()?;
    let dest = m.destination();
    let target = ctx.root.mkdir_all(dest, 0o755)?;
    let ro = opts.flags & libc::MS_RDONLY;
    let base = opts.flags & (libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC);
    let all_v2 = !ctx.cgroups.is_empty() && ctx.cgroups.iter().all(|s| s.v2);
    if all_v2 {
        let src = &ctx.cgroups[0].host_dir;
        if ctx.cgroup_ns {
            sys_mount(
                Some(Path::new("cgroup2")),
                &safe::proc_fd_path(&target),
                Some("cgroup2"),
                base | ro,
                None,
            )
            .map_err(|e| mount_err(m, "cgroup2", e))?;
        } else {
            sys_mount(
                Some(src),
                &safe::proc_fd_path(&target),
                None,
                libc::MS_BIND | libc::MS_REC,
                None,
            )
            .map_err(|e| mount_err(m, "bind cgroup2", e))?;
            let mounted = reopen(ctx, dest)?;
            remount_bind(&mounted, base | ro).map_err(|e| mount_err(m, "remount cgroup2", e))?;
        }
        return finish(m, opts, &reopen(ctx, dest)?);
    }
    sys_mount(
        Some(Path::new("tmpfs")),
        &safe::proc_fd_path(&target),
        Some("tmpfs"),
        base,
        Some("mode=755"),
    )
    .map_err(|e| mount_err(m, "cgroup tmpfs", e))?;
    // The tmpfs is ours and nothing of the container runs yet: its directories are made
    // and opened from its root directly, with no resolution inside the rootfs each time.
    let tmpfs = reopen(ctx, dest)?;
    let sys = |what: &str, e: nix::errno::Errno| mount_err(m, what, std::io::Error::from(e));
    let mut bound: Vec<&str> = Vec::new();
    for s in ctx.cgroups {
        let name = if s.v2 { "unified" } else { s.name.as_str() };
        match nix::sys::stat::mkdirat(
            &tmpfs,
            name,
            nix::sys::stat::Mode::from_bits_truncate(0o755),
        ) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
            Err(e) => return Err(sys(&format!("mkdir {name}"), e)),
        }
        let open = |extra: nix::fcntl::OFlag| {
            nix::fcntl::openat(
                &tmpfs,
                name,
                nix::fcntl::OFlag::O_PATH
                    | nix::fcntl::OFlag::O_NOFOLLOW
                    | nix::fcntl::OFlag::O_CLOEXEC
                    | extra,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(|e| sys(&format!("open {name}"), e))
        };
        let t = open(nix::fcntl::OFlag::O_DIRECTORY)?;
        sys_mount(
            Some(&s.host_dir),
            &safe::proc_fd_path(&t),
            None,
            libc::MS_BIND | libc::MS_REC,
            None,
        )
        .map_err(|e| mount_err(m, &format!("bind {}", s.name), e))?;
        bound.push(name);
        // Co-mounted controllers ("cpu,cpuacct") are reachable by each name, as on the host.
        if s.name.contains(',') {
            for alias in s.name.split(',') {
                let _ = nix::unistd::symlinkat(s.name.as_str(), &tmpfs, alias);
            }
        }
    }
    // The tmpfs and every hierarchy bound in it get the mount's flags in one recursive
    // mount_setattr; a kernel without it (before 5.12) gets a remount per mount.
    let set = ms_to_attr(base | ro);
    match set_recursive_attrs(&tmpfs, set, 0) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
            for name in &bound {
                let mounted = nix::fcntl::openat(
                    &tmpfs,
                    *name,
                    nix::fcntl::OFlag::O_PATH
                        | nix::fcntl::OFlag::O_NOFOLLOW
                        | nix::fcntl::OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .map_err(|e| sys(&format!("open {name}"), e))?;
                remount_bind(&mounted, base | ro).map_err(|e| mount_err(m, "remount cgroup", e))?;
            }
            if ro != 0 {
                remount_bind(&tmpfs, ro).map_err(|e| mount_err(m, "remount cgroup ro", e))?;
            }
        }
        Err(e) => return Err(mount_err(m, "cgroup mount attributes", e)),
    }
    finish(m, opts, &tmpfs)
}

/// The MOUNT_ATTR_* bits of mount(2)'s per-mount MS_* flags.
fn ms_to_attr(flags: c_ulong) -> u64 {
    [
        (libc::MS_RDONLY, attr::RDONLY),
        (libc::MS_NOSUID, attr::NOSUID),
        (libc::MS_NODEV, attr::NODEV),
        (libc::MS_NOEXEC, attr::NOEXEC),
    ]
    .iter()
    .filter(|(ms, _)| flags & ms != 0)
    .fold(0, |acc, (_, a)| acc | a)
}
