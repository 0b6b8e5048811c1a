//! Landlock rulesets from the `org.kos.landlock` annotation.
//!
//! ```json
//! {"fs": [{"path": "/", "access": ["read", "execute"]},
//!         {"path": "/tmp", "access": ["read", "write", "execute"]}],
//!  "net": {"bind": [8080], "connect": [53]}}
//! ```
//!
//! - `fs` present: every filesystem right the kernel knows is handled, so whatever no rule
//!   grants is denied. `read` = read files and list directories, `write` = write, truncate,
//!   create, remove, rename/link across directories and device ioctls, `execute` = execute.
//!   Rules on a non-directory keep only the rights that apply to files. `fs` absent: the
//!   filesystem is not restricted.
//! - `net` present (Landlock ABI 4+): TCP bind and connect are allowed only to the listed ports.
//!
//! The ruleset is built for the newest ABI and downgraded to what the running kernel offers;
//! [`LandlockOutcome`] says which ABI was used and what could not be enforced, and each
//! downgrade is logged as a warning.
//!
//! Call order: [`Ruleset::from_annotations`] and [`Ruleset::check_paths_in`] in the runtime
//! before the container exists; [`Ruleset::apply`] in the init after the capability drop and
//! user switch, before the seccomp filter (when no_new_privs is set) and `execve`. Landlock
//! needs no_new_privs, or `CAP_SYS_ADMIN` in the process's user namespace.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{open, OFlag};
use nix::sys::stat::{fstat, Mode, SFlag};
use serde::Deserialize;

/// The annotation carrying the ruleset.
pub const ANNOTATION: &str = "org.kos.landlock";

const EXECUTE: u64 = 1 << 0;
const WRITE_FILE: u64 = 1 << 1;
const READ_FILE: u64 = 1 << 2;
const READ_DIR: u64 = 1 << 3;
const REMOVE_DIR: u64 = 1 << 4;
const REMOVE_FILE: u64 = 1 << 5;
const MAKE_CHAR: u64 = 1 << 6;
const MAKE_DIR: u64 = 1 << 7;
const MAKE_REG: u64 = 1 << 8;
const MAKE_SOCK: u64 = 1 << 9;
const MAKE_FIFO: u64 = 1 << 10;
const MAKE_BLOCK: u64 = 1 << 11;
const MAKE_SYM: u64 = 1 << 12;
const REFER: u64 = 1 << 13;
const TRUNCATE: u64 = 1 << 14;
const IOCTL_DEV: u64 = 1 << 15;

const NET_BIND_TCP: u64 = 1 << 0;
const NET_CONNECT_TCP: u64 = 1 << 1;

const READ: u64 = READ_FILE | READ_DIR;
const WRITE: u64 = WRITE_FILE
    | REMOVE_DIR
    | REMOVE_FILE
    | MAKE_CHAR
    | MAKE_DIR
    | MAKE_REG
    | MAKE_SOCK
    | MAKE_FIFO
    | MAKE_BLOCK
    | MAKE_SYM
    | REFER
    | TRUNCATE
    | IOCTL_DEV;
/// Rights that make sense on a file (the rest only on directories).
const FILE_RIGHTS: u64 = EXECUTE | WRITE_FILE | READ_FILE | TRUNCATE | IOCTL_DEV;

const CREATE_RULESET_VERSION: u32 = 1 << 0;
const RULE_PATH_BENEATH: u32 = 1;
const RULE_NET_PORT: u32 = 2;

/// The newest ABI this crate knows how to use.
pub const NEWEST_ABI: u32 = 7;

/// Landlock errors.
#[derive(Debug, thiserror::Error)]
pub enum LandlockError {
    /// The annotation is not a valid ruleset.
    #[error("annotation {ANNOTATION}: {0}")]
    Invalid(String),
    /// A path named by the ruleset cannot be opened.
    #[error("annotation {ANNOTATION}: path {path}: {source}")]
    Path {
        /// The path.
        path: PathBuf,
        /// The kernel's error.
        source: Errno,
    },
    /// A Landlock syscall failed.
    #[error("landlock: {op}: {source}")]
    Sys {
        /// What was being done.
        op: &'static str,
        /// The kernel's error.
        source: Errno,
    },
}

/// One access group of the annotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Read files, list directories.
    Read,
    /// Write, create, remove, truncate.
    Write,
    /// Execute files.
    Execute,
}

/// A filesystem rule: `access` beneath `path`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsRule {
    /// Absolute path in the container.
    pub path: PathBuf,
    /// Granted groups.
    pub access: Vec<Access>,
}

/// TCP ports allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetRules {
    /// Ports the container may bind.
    #[serde(default)]
    pub bind: Vec<u16>,
    /// Ports the container may connect to.
    #[serde(default)]
    pub connect: Vec<u16>,
}

/// A parsed, validated ruleset.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ruleset {
    /// Filesystem rules; `None` leaves the filesystem unrestricted.
    #[serde(default)]
    pub fs: Option<Vec<FsRule>>,
    /// Network rules; `None` leaves TCP unrestricted.
    #[serde(default)]
    pub net: Option<NetRules>,
}

/// What [`Ruleset::apply`] enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LandlockOutcome {
    /// ABI version used (0: Landlock unavailable, nothing enforced).
    pub abi: u32,
    /// Parts of the ruleset the kernel could not enforce.
    pub downgraded: Vec<String>,
}

/// The kernel's Landlock ABI version, 0 when Landlock is unavailable or disabled.
pub fn kernel_abi() -> u32 {
    // SAFETY: the version query takes no attribute.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    if r < 0 {
        0
    } else {
        r as u32
    }
}

fn fs_rights(abi: u32) -> u64 {
    let mut r = (1u64 << 13) - 1;
    if abi >= 2 {
        r |= REFER;
    }
    if abi >= 3 {
        r |= TRUNCATE;
    }
    if abi >= 5 {
        r |= IOCTL_DEV;
    }
    r
}

fn group_mask(access: &[Access]) -> u64 {
    access.iter().fold(0, |m, a| {
        m | match a {
            Access::Read => READ,
            Access::Write => WRITE,
            Access::Execute => EXECUTE,
        }
    })
}

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

#[repr(C)]
struct NetPortAttr {
    allowed_access: u64,
    port: u64,
}

impl Ruleset {
    /// The handled rights for `abi` and what had to be given up to fit it.
    fn plan(&self, abi: u32) -> (RulesetAttr, Vec<String>) {
        let mut downgraded = Vec::new();
        let wants_write = self
            .fs
            .iter()
            .flatten()
            .any(|r| r.access.contains(&Access::Write));
        if self.fs.is_some() {
            if abi < 2 {
                downgraded.push(
                    "renaming or linking across directories is always denied (ABI < 2)".into(),
                );
            }
            if abi < 3 && wants_write {
                downgraded.push("truncate is not controlled (ABI < 3)".into());
            }
            if abi < 5 && wants_write {
                downgraded.push("device ioctls are not controlled (ABI < 5)".into());
            }
        }
        let handle_net = self.net.is_some() && abi >= 4;
        if self.net.is_some() && abi < 4 {
            downgraded.push("network rules not enforced (ABI < 4)".into());
        }
        let attr = RulesetAttr {
            handled_access_fs: if self.fs.is_some() { fs_rights(abi) } else { 0 },
            handled_access_net: if handle_net {
                NET_BIND_TCP | NET_CONNECT_TCP
            } else {
                0
            },
        };
        (attr, downgraded)
    }

    /// Parse and validate a ruleset from JSON.
    pub fn parse(json: &str) -> Result<Ruleset, LandlockError> {
        let rs: Ruleset =
            serde_json::from_str(json).map_err(|e| LandlockError::Invalid(e.to_string()))?;
        for rule in rs.fs.iter().flatten() {
            if !rule.path.is_absolute() {
                return Err(LandlockError::Invalid(format!(
                    "path {} is not absolute",
                    rule.path.display()
                )));
            }
            if rule.access.is_empty() {
                return Err(LandlockError::Invalid(format!(
                    "path {}: access is empty",
                    rule.path.display()
                )));
            }
        }
        if let Some(net) = &rs.net {
            if net.bind.contains(&0) || net.connect.contains(&0) {
                return Err(LandlockError::Invalid("port 0 is not a valid port".into()));
            }
        }
        Ok(rs)
    }

    /// The ruleset from the container's annotations, if it has one.
    pub fn from_annotations(
        annotations: &HashMap<String, String>,
    ) -> Result<Option<Ruleset>, LandlockError> {
        annotations
            .get(ANNOTATION)
            .map(|v| Ruleset::parse(v))
            .transpose()
    }

    /// Check, before the container exists, that every path exists inside `rootfs` or lies at
    /// or below one of `mount_destinations` (mounts made later in the container's setup).
    pub fn check_paths_in(
        &self,
        rootfs: &Path,
        mount_destinations: &[PathBuf],
    ) -> Result<(), LandlockError> {
        for rule in self.fs.iter().flatten() {
            if mount_destinations.iter().any(|m| rule.path.starts_with(m)) {
                continue;
            }
            crate::path::open_in_root(rootfs, &rule.path, libc::O_PATH | libc::O_CLOEXEC).map_err(
                |e| LandlockError::Path {
                    path: rule.path.clone(),
                    source: e.errno(),
                },
            )?;
        }
        Ok(())
    }

    /// Restrict the calling thread (and its future children) with this ruleset, downgraded to
    /// the running kernel's ABI. Paths are opened in the caller's current root.
    pub fn apply(&self) -> Result<LandlockOutcome, LandlockError> {
        let abi = kernel_abi().min(NEWEST_ABI);
        if abi == 0 {
            let msg = "Landlock is not available on this kernel: ruleset not enforced".to_string();
            tracing::warn!("{msg}");
            return Ok(LandlockOutcome {
                abi,
                downgraded: vec![msg],
            });
        }
        let (attr, downgraded) = self.plan(abi);
        for d in &downgraded {
            tracing::warn!(abi, "landlock downgrade: {d}");
        }
        let handle_net = attr.handled_access_net != 0;
        if attr.handled_access_fs == 0 && attr.handled_access_net == 0 {
            return Ok(LandlockOutcome { abi, downgraded });
        }
        let attr_size = if abi >= 4 {
            std::mem::size_of::<RulesetAttr>()
        } else {
            std::mem::size_of::<u64>()
        };
        // SAFETY: attr is live and attr_size bytes of it are initialised.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                &attr as *const RulesetAttr,
                attr_size,
                0u32,
            )
        };
        if fd < 0 {
            return Err(LandlockError::Sys {
                op: "create ruleset",
                source: Errno::last(),
            });
        }
        // SAFETY: a new fd owned by nobody else.
        let ruleset = unsafe { OwnedFd::from_raw_fd(fd as i32) };

        for rule in self.fs.iter().flatten() {
            let path_fd = open(
                rule.path.as_path(),
                OFlag::O_PATH | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|source| LandlockError::Path {
                path: rule.path.clone(),
                source,
            })?;
            let st = fstat(&path_fd).map_err(|source| LandlockError::Path {
                path: rule.path.clone(),
                source,
            })?;
            let is_dir = SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR;
            let mut allowed = group_mask(&rule.access) & attr.handled_access_fs;
            if !is_dir {
                allowed &= FILE_RIGHTS;
            }
            if allowed == 0 {
                continue;
            }
            let pb = PathBeneathAttr {
                allowed_access: allowed,
                parent_fd: path_fd.as_raw_fd(),
            };
            add_rule(&ruleset, RULE_PATH_BENEATH, &pb as *const _ as *const u8)?;
        }
        if handle_net {
            if let Some(net) = &self.net {
                let ports = net
                    .bind
                    .iter()
                    .map(|p| (NET_BIND_TCP, *p))
                    .chain(net.connect.iter().map(|p| (NET_CONNECT_TCP, *p)));
                for (access, port) in ports {
                    let np = NetPortAttr {
                        allowed_access: access,
                        port: u64::from(port),
                    };
                    add_rule(&ruleset, RULE_NET_PORT, &np as *const _ as *const u8)?;
                }
            }
        }
        // SAFETY: plain syscall on a ruleset fd we own.
        let r =
            unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0u32) };
        if r != 0 {
            let source = Errno::last();
            return Err(LandlockError::Sys {
                op: if source == Errno::EPERM {
                    "restrict self (needs process.noNewPrivileges or CAP_SYS_ADMIN)"
                } else {
                    "restrict self"
                },
                source,
            });
        }
        Ok(LandlockOutcome { abi, downgraded })
    }
}

fn add_rule(ruleset: &OwnedFd, kind: u32, attr: *const u8) -> Result<(), LandlockError> {
    // SAFETY: attr points at the live struct matching `kind`.
    let r = unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset.as_raw_fd(),
            kind,
            attr,
            0u32,
        )
    };
    if r != 0 {
        return Err(LandlockError::Sys {
            op: "add rule",
            source: Errno::last(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_example() {
        let rs = Ruleset::parse(
            r#"{"fs": [{"path": "/", "access": ["read", "execute"]},
                       {"path": "/tmp", "access": ["read", "write", "execute"]}],
                "net": {"bind": [8080], "connect": [53]}}"#,
        )
        .expect("parse");
        let fs = rs.fs.as_ref().expect("fs");
        assert_eq!(fs.len(), 2);
        assert_eq!(group_mask(&fs[0].access), READ | EXECUTE);
        assert_eq!(rs.net.as_ref().map(|n| n.bind.clone()), Some(vec![8080]));
    }

    #[test]
    fn annotation_lookup() {
        let mut a = HashMap::new();
        assert_eq!(Ruleset::from_annotations(&a).expect("none"), None);
        a.insert(
            ANNOTATION.to_string(),
            r#"{"net":{"connect":[53]}}"#.to_string(),
        );
        assert!(Ruleset::from_annotations(&a).expect("some").is_some());
    }

    #[test]
    fn bad_rulesets_are_clear_errors() {
        for (json, needle) in [
            (r#"{"fs":[{"path":"/","access":["delete"]}]}"#, "delete"),
            (
                r#"{"fs":[{"path":"tmp","access":["read"]}]}"#,
                "not absolute",
            ),
            (r#"{"fs":[{"path":"/","access":[]}]}"#, "access is empty"),
            (r#"{"net":{"bind":[70000]}}"#, "70000"),
            (r#"{"net":{"bind":[0]}}"#, "port 0"),
            (r#"{"fss":[]}"#, "fss"),
            (r#"{"fs":"#, "EOF"),
        ] {
            let e = Ruleset::parse(json).expect_err(json);
            let s = e.to_string();
            assert!(
                s.contains(needle) && s.contains(ANNOTATION),
                "{s} / {needle}"
            );
        }
    }

    #[test]
    fn downgrade_plan() {
        let rs = Ruleset::parse(
            r#"{"fs":[{"path":"/","access":["read","write"]}],"net":{"connect":[53]}}"#,
        )
        .expect("parse");
        let (a, d) = rs.plan(1);
        assert_eq!((a.handled_access_fs, a.handled_access_net), (0x1fff, 0));
        assert_eq!(d.len(), 4, "{d:?}");
        let (a, d) = rs.plan(4);
        assert_eq!((a.handled_access_fs, a.handled_access_net), (0x7fff, 3));
        assert_eq!(
            d,
            vec!["device ioctls are not controlled (ABI < 5)".to_string()]
        );
        let (a, d) = rs.plan(7);
        assert_eq!((a.handled_access_fs, a.handled_access_net), (0xffff, 3));
        assert!(d.is_empty());
        let net_only = Ruleset::parse(r#"{"net":{"bind":[80]}}"#).expect("parse");
        assert_eq!(net_only.plan(7).0.handled_access_fs, 0);
    }

    #[test]
    fn rights_per_abi() {
        assert_eq!(fs_rights(1), 0x1fff);
        assert_eq!(fs_rights(2), 0x3fff);
        assert_eq!(fs_rights(3), 0x7fff);
        assert_eq!(fs_rights(5), 0xffff);
        assert_eq!(std::mem::size_of::<PathBeneathAttr>(), 12);
    }
}
