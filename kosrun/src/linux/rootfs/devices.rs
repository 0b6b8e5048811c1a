//! /dev inside the container: the spec's default devices, `linux.devices`,
//! and the conventional symlinks.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use kos_security::path as safe;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::mount::RootDir;
use crate::error::{Error, Result, Stage};
use crate::sys::mount as sys_mount;

struct Dev {
    path: &'static str,
    major: u64,
    minor: u64,
}

/// Devices every container gets (runtime spec, "Default Devices").
const DEFAULTS: [Dev; 6] = [
    Dev {
        path: "/dev/null",
        major: 1,
        minor: 3,
    },
    Dev {
        path: "/dev/zero",
        major: 1,
        minor: 5,
    },
    Dev {
        path: "/dev/full",
        major: 1,
        minor: 7,
    },
    Dev {
        path: "/dev/random",
        major: 1,
        minor: 8,
    },
    Dev {
        path: "/dev/urandom",
        major: 1,
        minor: 9,
    },
    Dev {
        path: "/dev/tty",
        major: 5,
        minor: 0,
    },
];

/// Create the defaults and `linux.devices`. In a user namespace mknod is not
/// permitted, so the host's node is bind-mounted instead (as runc does). A path that
/// is also a mount destination of the config was mounted already and stays as mounted
/// (a bind of the host's /dev/null or /dev/fuse over it, as runc allows).
pub fn create_all(
    root: &RootDir,
    devices: &[LinuxDevice],
    in_userns: bool,
    mounted: &[&Path],
) -> Result<()> {
    let mut dirs = Dirs::new(root);
    for d in DEFAULTS.iter() {
        if devices.iter().any(|x| x.path() == Path::new(d.path))
            || mounted.contains(&Path::new(d.path))
        {
            continue;
        }
        make(
            &mut dirs,
            Path::new(d.path),
            libc::S_IFCHR,
            d.major,
            d.minor,
            0o666,
            0,
            0,
            in_userns,
        )?;
    }
    for d in devices {
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => libc::S_IFCHR,
            LinuxDeviceType::B => libc::S_IFBLK,
            LinuxDeviceType::P => libc::S_IFIFO,
            LinuxDeviceType::A => {
                return Err(Error::invalid_in(
                    Stage::Devices,
                    "linux.devices.type",
                    format!(
                        "linux.devices {}: type \"a\" is only valid in cgroup rules",
                        d.path().display()
                    ),
                ))
            }
        };
        if !d.path().starts_with("/dev") {
            return Err(Error::invalid_in(
                Stage::Devices,
                "linux.devices.path",
                format!(
                    "linux.devices {}: devices must live under /dev",
                    d.path().display()
                ),
            ));
        }
        if mounted.contains(&d.path().as_path()) {
            continue;
        }
        let mode = d.file_mode().unwrap_or(0o666) & 0o7777;
        make(
            &mut dirs,
            d.path(),
            kind,
            d.major() as u64,
            d.minor() as u64,
            mode,
            d.uid().unwrap_or(0),
            d.gid().unwrap_or(0),
            in_userns,
        )?;
    }
    Ok(())
}

/// The directory the last device was made in, kept for the next one in the same place
/// (all of them, usually: /dev): resolved inside the root once, not once per node.
struct Dirs<'r, 'a> {
    root: &'r RootDir<'a>,
    last: Option<(std::path::PathBuf, OwnedFd)>,
}

impl<'r, 'a> Dirs<'r, 'a> {
    fn new(root: &'r RootDir<'a>) -> Self {
        Dirs { root, last: None }
    }

    fn get(&mut self, parent: &Path) -> Result<BorrowedFd<'_>> {
        if self.last.as_ref().is_none_or(|(p, _)| p != parent) {
            let fd = self.root.mkdir_all(parent, 0o755)?;
            self.last = Some((parent.to_path_buf(), fd));
        }
        match &self.last {
            Some((_, fd)) => Ok(fd.as_fd()),
            None => Err(Error::failed(
                Stage::Devices,
                "device directory lost".into(),
            )),
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn make(
    dirs: &mut Dirs,
    path: &Path,
    kind: libc::mode_t,
    major: u64,
    minor: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    in_userns: bool,
) -> Result<()> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().ok_or_else(|| {
        Error::invalid_in(
            Stage::Devices,
            "linux.devices.path",
            format!("device path {} has no name", path.display()),
        )
    })?;
    let root = dirs.root;
    let dir = dirs.get(parent)?;
    let cname = CString::new(name.as_encoded_bytes()).map_err(|_| {
        Error::invalid_in(
            Stage::Devices,
            "linux.devices.path",
            format!("device path {} has a NUL", path.display()),
        )
    })?;
    if in_userns && kind != libc::S_IFIFO {
        let target = root.create_file(path, 0o644)?;
        sys_mount(
            Some(path),
            &safe::proc_fd_path(&target),
            None,
            libc::MS_BIND,
            None,
        )
        .map_err(|e| {
            Error::failed_by(
                Stage::Devices,
                format!("bind device {}: {e}", path.display()),
                e,
            )
        })?;
        return Ok(());
    }
    // A file already there (from the image) is replaced by the node we were asked for.
    // SAFETY: dir is a valid directory fd, cname a valid name.
    unsafe { libc::unlinkat(dir.as_raw_fd(), cname.as_ptr(), 0) };
    let dev = libc::makedev(major as u32, minor as u32);
    // SAFETY: as above; mode and dev are plain integers.
    let rc = unsafe { libc::mknodat(dir.as_raw_fd(), cname.as_ptr(), kind | mode, dev) };
    if rc != 0 {
        return Err(Error::failed(
            Stage::Devices,
            format!(
                "mknod {}: {}",
                path.display(),
                std::io::Error::last_os_error()
            ),
        ));
    }
    // mknod is subject to the umask; set the mode the spec asked for exactly.
    // SAFETY: as above.
    unsafe {
        libc::fchmodat(dir.as_raw_fd(), cname.as_ptr(), mode, 0);
        if libc::fchownat(
            dir.as_raw_fd(),
            cname.as_ptr(),
            uid,
            gid,
            libc::AT_SYMLINK_NOFOLLOW,
        ) != 0
        {
            return Err(Error::failed(
                Stage::Devices,
                format!(
                    "chown {}: {}",
                    path.display(),
                    std::io::Error::last_os_error()
                ),
            ));
        }
    }
    Ok(())
}

/// /dev/fd, /dev/std{in,out,err}, /dev/ptmx and /dev/core.
pub fn symlinks(root: &RootDir, has_devpts: bool) -> Result<()> {
    let dev = root.mkdir_all(Path::new("/dev"), 0o755)?;
    let mut links = vec![
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "core"));
    }
    if has_devpts {
        let name = c"ptmx";
        // SAFETY: valid dir fd and name; a leftover node is replaced by the link.
        unsafe { libc::unlinkat(dev.as_raw_fd(), name.as_ptr(), 0) };
        links.push(("pts/ptmx", "ptmx"));
    }
    for (target, name) in links {
        let t =
            CString::new(target).map_err(|_| Error::failed(Stage::Devices, "bad link".into()))?;
        let n = CString::new(name).map_err(|_| Error::failed(Stage::Devices, "bad link".into()))?;
        // SAFETY: valid strings and dir fd.
        let rc = unsafe { libc::symlinkat(t.as_ptr(), dev.as_raw_fd(), n.as_ptr()) };
        if rc != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(Error::failed(
                    Stage::Devices,
                    format!("symlink /dev/{name}: {e}"),
                ));
            }
        }
    }
    Ok(())
}

/// Cgroup rules that let the container use the devices it is always given,
/// appended after the spec's own rules (later rules win), as runc does.
pub fn default_cgroup_rules(devices: &[LinuxDevice]) -> Vec<oci_spec::runtime::LinuxDeviceCgroup> {
    let rule = |typ: LinuxDeviceType, major: Option<i64>, minor: Option<i64>, access: &str| {
        let mut r = oci_spec::runtime::LinuxDeviceCgroup::default();
        r.set_allow(true);
        r.set_typ(Some(typ));
        r.set_major(major);
        r.set_minor(minor);
        r.set_access(Some(access.to_string()));
        r
    };
    let mut rules: Vec<_> = DEFAULTS
        .iter()
        .map(|d| {
            rule(
                LinuxDeviceType::C,
                Some(d.major as i64),
                Some(d.minor as i64),
                "rwm",
            )
        })
        .collect();
    // /dev/console, /dev/ptmx and the devpts slaves.
    rules.push(rule(LinuxDeviceType::C, Some(5), Some(1), "rwm"));
    rules.push(rule(LinuxDeviceType::C, Some(5), Some(2), "rwm"));
    rules.push(rule(LinuxDeviceType::C, Some(136), None, "rwm"));
    // Anyone may mknod a device node; using it is still checked by the rules above.
    rules.push(rule(LinuxDeviceType::C, None, None, "m"));
    rules.push(rule(LinuxDeviceType::B, None, None, "m"));
    for d in devices {
        let typ = match d.typ() {
            LinuxDeviceType::U => LinuxDeviceType::C,
            t => t,
        };
        if typ == LinuxDeviceType::P {
            continue;
        }
        rules.push(rule(typ, Some(d.major()), Some(d.minor()), "rwm"));
    }
    rules
}
