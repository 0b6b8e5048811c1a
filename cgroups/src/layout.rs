//! Which cgroup layout the host runs, and where each v1 hierarchy is mounted.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The standard cgroup mount point.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The three host layouts KOS runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Only v1 hierarchies.
    V1,
    /// v1 hierarchies plus a v2 mount at /sys/fs/cgroup/unified (holding whatever controllers
    /// are not bound to v1, often none or only a few).
    Hybrid,
    /// A single v2 hierarchy at /sys/fs/cgroup.
    V2,
}

fn is_cgroup2(path: &Path) -> Result<Option<bool>> {
    match nix::sys::statfs::statfs(path) {
        Ok(st) => Ok(Some(
            st.filesystem_type() == nix::sys::statfs::CGROUP2_SUPER_MAGIC,
        )),
        Err(nix::errno::Errno::ENOENT) => Ok(None),
        Err(source) => Err(Error::Sys {
            what: format!("statfs {}", path.display()),
            source,
        }),
    }
}

/// Works out the host layout with at most two statfs calls.
pub fn detect_layout() -> Result<Layout> {
    detect_layout_at(Path::new(CGROUP_ROOT))
}

pub(crate) fn detect_layout_at(root: &Path) -> Result<Layout> {
    match is_cgroup2(root)? {
        None => Err(Error::Layout(format!("{} does not exist", root.display()))),
        Some(true) => Ok(Layout::V2),
        Some(false) => match is_cgroup2(&root.join("unified"))? {
            Some(true) => Ok(Layout::Hybrid),
            _ => Ok(Layout::V1),
        },
    }
}

/// One mounted v1 hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct V1Mount {
    /// Where it is mounted.
    pub mount_point: PathBuf,
    /// The controllers bound to it; a named hierarchy appears as "name=<name>".
    pub controllers: Vec<String>,
}

/// Unescapes the octal escapes (\040 etc.) that mountinfo uses for spaces and the like.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses /proc/self/mountinfo text into the v1 cgroup hierarchies, first mount of each
/// hierarchy wins (later ones are bind mounts or mounts in containers).
pub(crate) fn parse_v1_mounts(mountinfo: &str) -> Vec<V1Mount> {
    let mut out: Vec<V1Mount> = Vec::new();
    for line in mountinfo.lines() {
        let Some((pre, post)) = line.split_once(" - ") else {
            continue;
        };
        let mut post_it = post.split_whitespace();
        if post_it.next() != Some("cgroup") {
            continue;
        }
        let _source = post_it.next();
        let Some(super_opts) = post_it.next() else {
            continue;
        };
        let Some(mount_point) = pre.split_whitespace().nth(4) else {
            continue;
        };
        let controllers: Vec<String> = super_opts
            .split(',')
            .filter(|o| {
                !matches!(
                    *o,
                    "rw" | "ro"
                        | "relatime"
                        | "noatime"
                        | "nosuid"
                        | "nodev"
                        | "noexec"
                        | "clone_children"
                        | "xattr"
                        | "noprefix"
                        | "cpuset_v2_mode"
                ) && !o.starts_with("release_agent=")
            })
            .map(str::to_string)
            .collect();
        if controllers.is_empty() || out.iter().any(|m| m.controllers == controllers) {
            continue;
        }
        out.push(V1Mount {
            mount_point: PathBuf::from(unescape_mountinfo(mount_point)),
            controllers,
        });
    }
    out
}

pub(crate) fn v1_mounts() -> Result<Vec<V1Mount>> {
    let p = Path::new("/proc/self/mountinfo");
    let s = std::fs::read_to_string(p).map_err(|source| Error::Read {
        path: p.to_path_buf(),
        source,
    })?;
    Ok(parse_v1_mounts(&s))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
30 23 0:26 / /sys/fs/cgroup rw,nosuid - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
33 30 0:29 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,release_agent=/x,name=systemd
34 30 0:30 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
35 30 0:27 / /mnt/my\\040cpu rw - cgroup cgroup rw,cpu
";

    #[test]
    fn parses_v1_hierarchies_and_skips_duplicates_and_v2() {
        let m = parse_v1_mounts(SAMPLE);
        assert_eq!(m.len(), 3);
        assert_eq!(m[0].mount_point, PathBuf::from("/sys/fs/cgroup/cpu"));
        assert_eq!(m[0].controllers, vec!["cpu"]);
        assert_eq!(m[1].controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(m[2].controllers, vec!["name=systemd"]);
    }

    #[test]
    fn unescapes_octal() {
        assert_eq!(unescape_mountinfo("/mnt/my\\040cpu"), "/mnt/my cpu");
        assert_eq!(unescape_mountinfo("/a\\b"), "/a\\b");
    }

    #[test]
    fn this_host_layout_is_detected() {
        let l = detect_layout().expect("detect");
        let v2 = nix::sys::statfs::statfs(CGROUP_ROOT)
            .expect("statfs")
            .filesystem_type()
            == nix::sys::statfs::CGROUP2_SUPER_MAGIC;
        assert_eq!(l == Layout::V2, v2);
    }
}
