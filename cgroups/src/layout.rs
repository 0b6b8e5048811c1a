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

/// One mountinfo line as a v1 cgroup mount, if it is one.
fn parse_v1_line(line: &str) -> Option<V1Mount> {
    let (pre, post) = line.split_once(" - ")?;
    let mut post_it = post.split_whitespace();
    if post_it.next() != Some("cgroup") {
        return None;
    }
    let _source = post_it.next();
    let super_opts = post_it.next()?;
    let mount_point = pre.split_whitespace().nth(4)?;
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
                    | "favordynmods"
            ) && !o.starts_with("release_agent=")
        })
        .map(str::to_string)
        .collect();
    if controllers.is_empty() {
        return None;
    }
    Some(V1Mount {
        mount_point: PathBuf::from(unescape_mountinfo(mount_point)),
        controllers,
    })
}

/// Adds `m` unless its hierarchy is already known: the first mount of each hierarchy wins
/// (later ones are bind mounts or mounts in containers).
fn add_first(out: &mut Vec<V1Mount>, m: V1Mount) {
    if !out.iter().any(|o| o.controllers == m.controllers) {
        out.push(m);
    }
}

/// Parses /proc/self/mountinfo text into the v1 cgroup hierarchies, first mount of each
/// hierarchy wins.
pub(crate) fn parse_v1_mounts(mountinfo: &str) -> Vec<V1Mount> {
    let mut out: Vec<V1Mount> = Vec::new();
    for m in mountinfo.lines().filter_map(parse_v1_line) {
        add_first(&mut out, m);
    }
    out
}

/// The v1 hierarchies this process belongs to, from /proc/self/cgroup text: each one's
/// controllers ("name=systemd" for a named one), sorted.
fn v1_hierarchies(proc_cgroup: &str) -> Vec<Vec<String>> {
    proc_cgroup
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(1))
        .filter(|c| !c.is_empty())
        .map(|c| {
            let mut v: Vec<String> = c.split(',').map(str::to_string).collect();
            v.sort();
            v
        })
        .collect()
}

/// Whether every hierarchy in `wanted` has a mount in `found`.
fn all_found(wanted: &[Vec<String>], found: &[V1Mount]) -> bool {
    wanted.iter().all(|w| {
        found.iter().any(|m| {
            let mut c = m.controllers.clone();
            c.sort();
            &c == w
        })
    })
}

/// The v1 hierarchies' mounts. mountinfo is generated by the kernel as it is read, and a
/// host with many containers has hundreds of long overlay lines: the read stops once every
/// hierarchy /proc/self/cgroup lists has been seen (the cgroup mounts come early on a
/// normal boot), instead of making the kernel render the whole table on every call.
pub(crate) fn v1_mounts() -> Result<Vec<V1Mount>> {
    use std::io::BufRead;
    let read_err = |p: &str, source| Error::Read {
        path: PathBuf::from(p),
        source,
    };
    let wanted = match std::fs::read_to_string("/proc/self/cgroup") {
        Ok(t) => v1_hierarchies(&t),
        // Without it, read the whole table.
        Err(_) => Vec::new(),
    };
    let p = "/proc/self/mountinfo";
    let f = std::fs::File::open(p).map_err(|e| read_err(p, e))?;
    let mut out = Vec::new();
    for line in std::io::BufReader::with_capacity(16 << 10, f).lines() {
        let line = line.map_err(|e| read_err(p, e))?;
        if let Some(m) = parse_v1_line(&line) {
            add_first(&mut out, m);
            if !wanted.is_empty() && all_found(&wanted, &out) {
                break;
            }
        }
    }
    Ok(out)
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
    fn hierarchies_of_self_and_early_stop_condition() {
        let w = v1_hierarchies("12:cpuacct,cpu:/a\n1:name=systemd:/\n0::/x\n");
        assert_eq!(
            w,
            vec![
                vec!["cpu".to_string(), "cpuacct".to_string()],
                vec!["name=systemd".to_string()]
            ]
        );
        let m = parse_v1_mounts(SAMPLE);
        // cpu,cpuacct and name=systemd are mounted; a hierarchy with no mount is not.
        assert!(all_found(&w, &m));
        assert!(!all_found(&[vec!["memory".to_string()]], &m));
    }

    #[test]
    fn this_hosts_hierarchies_are_all_found() {
        if detect_layout().expect("layout") == Layout::V2 {
            return;
        }
        let quick = v1_mounts().expect("v1 mounts");
        let full = parse_v1_mounts(&std::fs::read_to_string("/proc/self/mountinfo").unwrap());
        assert_eq!(quick, full);
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
