//! Turning a mount's option strings into mount(2) flags, propagation,
//! recursive attributes (mount_setattr) and the filesystem's data string.

use libc::c_ulong;

/// MOUNT_ATTR_* bits for mount_setattr(2).
pub mod attr {
    pub const RDONLY: u64 = 0x1;
    pub const NOSUID: u64 = 0x2;
    pub const NODEV: u64 = 0x4;
    pub const NOEXEC: u64 = 0x8;
    pub const ATIME_MASK: u64 = 0x70;
    pub const RELATIME: u64 = 0x0;
    pub const NOATIME: u64 = 0x10;
    pub const STRICTATIME: u64 = 0x20;
    pub const NODIRATIME: u64 = 0x80;
    pub const NOSYMFOLLOW: u64 = 0x200000;
}

pub const MS_NOSYMFOLLOW: c_ulong = 256;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Parsed {
    /// Flags for the mount call itself.
    pub flags: c_ulong,
    /// Flags the options explicitly cleared (e.g. "rw", "suid"), kept for remounts.
    pub cleared: c_ulong,
    /// MS_SHARED / MS_PRIVATE / MS_SLAVE / MS_UNBINDABLE, possibly with MS_REC.
    pub propagation: Vec<c_ulong>,
    /// Recursive attributes to set and clear with mount_setattr(AT_RECURSIVE).
    pub rec_set: u64,
    pub rec_clear: u64,
    pub bind: bool,
    pub rbind: bool,
    pub tmpcopyup: bool,
    /// "idmap" / "ridmap": an idmapped bind mount (recursive for ridmap).
    pub idmap: bool,
    pub ridmap: bool,
    /// Options the kernel filesystem interprets itself.
    pub data: Vec<String>,
}

impl Parsed {
    pub fn data_string(&self) -> Option<String> {
        if self.data.is_empty() {
            None
        } else {
            Some(self.data.join(","))
        }
    }
}

pub fn propagation(opt: &str) -> Option<c_ulong> {
    Some(match opt {
        "private" => libc::MS_PRIVATE,
        "rprivate" => libc::MS_PRIVATE | libc::MS_REC,
        "shared" => libc::MS_SHARED,
        "rshared" => libc::MS_SHARED | libc::MS_REC,
        "slave" => libc::MS_SLAVE,
        "rslave" => libc::MS_SLAVE | libc::MS_REC,
        "unbindable" => libc::MS_UNBINDABLE,
        "runbindable" => libc::MS_UNBINDABLE | libc::MS_REC,
        _ => return None,
    })
}

pub fn parse(options: &[String]) -> Parsed {
    let mut p = Parsed::default();
    for o in options {
        let o = o.as_str();
        if let Some(f) = propagation(o) {
            p.propagation.push(f);
            continue;
        }
        let (set, clear): (c_ulong, c_ulong) = match o {
            "defaults" => (0, 0),
            "ro" => (libc::MS_RDONLY, 0),
            "rw" => (0, libc::MS_RDONLY),
            "suid" => (0, libc::MS_NOSUID),
            "nosuid" => (libc::MS_NOSUID, 0),
            "dev" => (0, libc::MS_NODEV),
            "nodev" => (libc::MS_NODEV, 0),
            "exec" => (0, libc::MS_NOEXEC),
            "noexec" => (libc::MS_NOEXEC, 0),
            "sync" => (libc::MS_SYNCHRONOUS, 0),
            "async" => (0, libc::MS_SYNCHRONOUS),
            "dirsync" => (libc::MS_DIRSYNC, 0),
            "remount" => (libc::MS_REMOUNT, 0),
            "mand" => (libc::MS_MANDLOCK, 0),
            "nomand" => (0, libc::MS_MANDLOCK),
            "atime" => (0, libc::MS_NOATIME),
            "noatime" => (libc::MS_NOATIME, 0),
            "diratime" => (0, libc::MS_NODIRATIME),
            "nodiratime" => (libc::MS_NODIRATIME, 0),
            "relatime" => (libc::MS_RELATIME, 0),
            "norelatime" => (0, libc::MS_RELATIME),
            "strictatime" => (libc::MS_STRICTATIME, 0),
            "nostrictatime" => (0, libc::MS_STRICTATIME),
            "lazytime" => (libc::MS_LAZYTIME, 0),
            "nolazytime" => (0, libc::MS_LAZYTIME),
            "silent" => (libc::MS_SILENT, 0),
            "loud" => (0, libc::MS_SILENT),
            "nosymfollow" => (MS_NOSYMFOLLOW, 0),
            "symfollow" => (0, MS_NOSYMFOLLOW),
            "bind" => {
                p.bind = true;
                (libc::MS_BIND, 0)
            }
            "rbind" => {
                p.bind = true;
                p.rbind = true;
                (libc::MS_BIND | libc::MS_REC, 0)
            }
            "tmpcopyup" => {
                p.tmpcopyup = true;
                (0, 0)
            }
            "idmap" => {
                p.idmap = true;
                (0, 0)
            }
            "ridmap" => {
                p.idmap = true;
                p.ridmap = true;
                (0, 0)
            }
            _ => {
                if let Some((set, clear)) = recursive(o) {
                    p.rec_set |= set;
                    p.rec_clear |= clear;
                } else {
                    p.data.push(o.to_string());
                }
                continue;
            }
        };
        p.flags = (p.flags | set) & !clear;
        p.cleared = (p.cleared | clear) & !set;
    }
    p
}

/// The "r"-prefixed options of runtime-spec 1.1, applied with mount_setattr(AT_RECURSIVE).
fn recursive(o: &str) -> Option<(u64, u64)> {
    Some(match o {
        "rro" => (attr::RDONLY, 0),
        "rrw" => (0, attr::RDONLY),
        "rnosuid" => (attr::NOSUID, 0),
        "rsuid" => (0, attr::NOSUID),
        "rnodev" => (attr::NODEV, 0),
        "rdev" => (0, attr::NODEV),
        "rnoexec" => (attr::NOEXEC, 0),
        "rexec" => (0, attr::NOEXEC),
        "rnodiratime" => (attr::NODIRATIME, 0),
        "rdiratime" => (0, attr::NODIRATIME),
        "rrelatime" => (attr::RELATIME, attr::ATIME_MASK),
        "rnorelatime" => (0, attr::ATIME_MASK),
        "rnoatime" => (attr::NOATIME, attr::ATIME_MASK),
        "ratime" => (0, attr::ATIME_MASK),
        "rstrictatime" => (attr::STRICTATIME, attr::ATIME_MASK),
        "rnostrictatime" => (0, attr::ATIME_MASK),
        "rnosymfollow" => (attr::NOSYMFOLLOW, 0),
        "rsymfollow" => (0, attr::NOSYMFOLLOW),
        _ => return None,
    })
}

/// Every option name kosrun understands, for `features`.
pub const KNOWN: &[&str] = &[
    "async",
    "atime",
    "bind",
    "defaults",
    "dev",
    "diratime",
    "dirsync",
    "exec",
    "lazytime",
    "loud",
    "mand",
    "noatime",
    "nodev",
    "nodiratime",
    "noexec",
    "nolazytime",
    "nomand",
    "norelatime",
    "nostrictatime",
    "nosuid",
    "nosymfollow",
    "private",
    "rbind",
    "ratime",
    "rdev",
    "rdiratime",
    "relatime",
    "remount",
    "rexec",
    "rnoatime",
    "rnodev",
    "rnodiratime",
    "rnoexec",
    "rnorelatime",
    "rnostrictatime",
    "rnosuid",
    "rnosymfollow",
    "ro",
    "rprivate",
    "rrelatime",
    "rro",
    "rrw",
    "rshared",
    "rslave",
    "rstrictatime",
    "rsuid",
    "rsymfollow",
    "runbindable",
    "rw",
    "shared",
    "silent",
    "slave",
    "strictatime",
    "suid",
    "symfollow",
    "sync",
    "tmpcopyup",
    "unbindable",
];

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(v: &[&str]) -> Parsed {
        parse(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_and_data_split() {
        let p = opts(&["nosuid", "noexec", "mode=755", "size=65536k", "ro"]);
        assert_eq!(p.flags, libc::MS_NOSUID | libc::MS_NOEXEC | libc::MS_RDONLY);
        assert_eq!(p.data_string().as_deref(), Some("mode=755,size=65536k"));
    }

    #[test]
    fn later_options_win() {
        let p = opts(&["ro", "rw"]);
        assert_eq!(p.flags & libc::MS_RDONLY, 0);
        assert_ne!(p.cleared & libc::MS_RDONLY, 0);
    }

    #[test]
    fn bind_propagation_recursive() {
        let p = opts(&["rbind", "rprivate", "rro", "rnosuid"]);
        assert!(p.bind && p.rbind);
        assert_eq!(p.propagation, vec![libc::MS_PRIVATE | libc::MS_REC]);
        assert_eq!(p.rec_set, attr::RDONLY | attr::NOSUID);
        assert!(p.data.is_empty());
    }
}
