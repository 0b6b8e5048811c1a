//! Pieces every escape test shares: host-side evidence (file snapshots, guarded sensitive
//! files, host tools for hooks) and readings of what the container saw.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Value};

use crate::harness::ctx::Ctx;
use crate::harness::parse::{mountinfo, MountLine};

/// The host sysctl the /dev node attacks aim at: writing it gives code execution on the host
/// at the next crash, so it is the classic prize of a writable procfs escape.
pub const CORE_PATTERN: &str = "/proc/sys/kernel/core_pattern";

/// A host file's contents taken before an attack. If the attack changed the file, Drop
/// writes the old contents back (so a vulnerable runtime does not leave the host altered)
/// and `changed` reports it.
pub struct Guarded {
    path: PathBuf,
    before: Vec<u8>,
}

impl Guarded {
    pub fn take(path: &Path) -> Result<Self> {
        let before = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            before,
        })
    }

    /// Fails when the file no longer holds what it held at `take`.
    pub fn check_unchanged(&self) -> Result<()> {
        let now =
            fs::read(&self.path).with_context(|| format!("re-reading {}", self.path.display()))?;
        if now != self.before {
            bail!(
                "host file {} changed: was {:?}, now {:?}",
                self.path.display(),
                preview(&self.before),
                preview(&now)
            );
        }
        Ok(())
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        if fs::read(&self.path).is_ok_and(|now| now != self.before) {
            let _ = fs::write(&self.path, &self.before);
        }
    }
}

fn preview(b: &[u8]) -> String {
    let s = String::from_utf8_lossy(&b[..b.len().min(120)]).into_owned();
    if b.len() > 120 {
        format!("{s}... ({} bytes)", b.len())
    } else {
        s
    }
}

/// The control for tests where a failed create counts as the attack being blocked: a plain
/// container must run, or the refusal would prove nothing about the attack.
pub fn require_plain_container_runs(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(&["true"])?;
    let (out, _c) = ctx.run(&b)?;
    if !out.success() {
        bail!(
            "control: a plain container fails as well ({}), so a refused attack would prove nothing",
            out.describe()
        );
    }
    Ok(())
}

/// Absolute path of a host tool, for hooks (they run with an empty environment).
pub fn host_tool(name: &str) -> Result<PathBuf> {
    for dir in ["/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
        let p = Path::new(dir).join(name);
        if p.is_file() {
            return Ok(p);
        }
    }
    bail!("host tool {name} not found in /usr/bin, /bin, /usr/sbin or /sbin")
}

/// A createContainer hook running `script` with the host's /bin/sh. It runs in the
/// container's mount namespace before the root switch, where an attacker racing the
/// runtime (another container sharing a volume, a malicious image) could act: the hook
/// stands in for the race winner.
pub fn create_container_hook(script: &str) -> Value {
    json!([{"path": "/bin/sh", "args": ["sh", "-e", "-c", script]}])
}

/// Procfs mounts inside the container that are writable and expose a part of procfs rather
/// than the whole: a runtime that binds a procfs file somewhere by mistake makes one.
pub fn writable_proc_submounts(mounts: &[MountLine]) -> Vec<String> {
    mounts
        .iter()
        .filter(|m| m.fstype == "proc" && !m.has_opt("ro") && m.mount_point != "/proc")
        .map(|m| m.mount_point.clone())
        .collect()
}

/// Mount points (as listed, unescaped) of the mounts in a mountinfo text whose source field
/// is `source`: tests name their mounts' sources so they can find them anywhere.
pub fn mounts_with_source<'a>(text: &'a str, source: &str) -> Vec<&'a str> {
    text.lines()
        .filter(|l| {
            l.split_once(" - ")
                .and_then(|(_, r)| r.split(' ').nth(1))
                .is_some_and(|s| s == source)
        })
        .filter_map(|l| l.split(' ').nth(4))
        .collect()
}

/// Parses the container's mountinfo printed in a section, failing when it is empty (the
/// container could not read it: the test would then prove nothing).
pub fn parse_mountinfo(text: &str) -> Result<Vec<MountLine>> {
    let m = mountinfo(text);
    if m.is_empty() {
        return Err(anyhow!(
            "the container printed no readable mountinfo: {:?}",
            text.chars().take(300).collect::<String>()
        ));
    }
    Ok(m)
}

/// The mount that holds `path` in a mountinfo listing: the topmost mount whose mount point
/// is `path` or its longest ancestor.
pub fn covering_mount<'a>(mounts: &'a [MountLine], path: &str) -> Option<&'a MountLine> {
    let mut best: Option<&MountLine> = None;
    for m in mounts {
        let mp = m.mount_point.as_str();
        let covers = mp == "/"
            || path == mp
            || (path.starts_with(mp) && path.as_bytes().get(mp.len()) == Some(&b'/'));
        if !covers {
            continue;
        }
        // Later lines are mounted on top of earlier ones at the same point.
        if best.is_none_or(|b| mp.len() >= b.mount_point.len()) {
            best = Some(m);
        }
    }
    best
}

/// Reads a whole host file for a before/after comparison.
pub fn snapshot(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Names of the entries of a host directory, sorted.
pub fn dir_entries(dir: &Path) -> Result<Vec<String>> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MI: &str = "20 1 0:5 / / rw - ext4 /dev/vda rw\n\
        21 20 0:6 / /proc rw - proc proc rw\n\
        22 21 0:6 /sys /proc/sys ro - proc proc rw\n\
        23 21 0:6 /sys/kernel/core_pattern /proc/kcore rw - proc proc rw\n\
        24 22 0:7 /0 /proc/sys/kernel/core_pattern rw - devpts devpts rw\n\
        25 20 0:8 / /kos/m0 rw - tmpfs kos-race rw\n";

    #[test]
    fn finds_writable_proc_submounts() {
        let m = mountinfo(MI);
        assert_eq!(writable_proc_submounts(&m), vec!["/proc/kcore"]);
    }

    #[test]
    fn covering_mount_takes_longest_prefix() {
        let m = mountinfo(MI);
        let c = covering_mount(&m, "/proc/sys/kernel/core_pattern").map(|m| m.fstype.as_str());
        assert_eq!(c, Some("devpts"));
        let c = covering_mount(&m, "/proc/sys/vm/x").map(|m| m.mount_point.as_str());
        assert_eq!(c, Some("/proc/sys"));
        let c = covering_mount(&m, "/procfoo").map(|m| m.mount_point.as_str());
        assert_eq!(c, Some("/"));
    }

    #[test]
    fn mounts_by_source() {
        assert_eq!(mounts_with_source(MI, "kos-race"), vec!["/kos/m0"]);
        assert!(mounts_with_source(MI, "nothing").is_empty());
    }
}
