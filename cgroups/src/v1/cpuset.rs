//! v1 cpuset controller: cpus and mems, and seeding new cgroups from their parents.

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxCpu;

use crate::error::Result;
use crate::fsutil::{self, Writer};

/// A new v1 cpuset cgroup starts with empty cpus and mems and refuses processes until both
/// are set, so every directory we made gets its parent's values, outermost first. `skip`
/// is a directory whose values the caller is about to write itself.
pub(crate) fn inherit_from_parents(
    mount_point: &Path,
    made: &[PathBuf],
    skip: Option<&Path>,
) -> Result<()> {
    let mut w = Writer::new(false);
    for d in made {
        if !d.starts_with(mount_point) || Some(d.as_path()) == skip {
            continue;
        }
        let Some(parent) = d.parent() else { continue };
        for f in ["cpuset.cpus", "cpuset.mems"] {
            let v = fsutil::read_string(&parent.join(f))?;
            let v = v.trim();
            if !v.is_empty() {
                w.write_only(f, &d.join(f), v)?;
            }
        }
    }
    Ok(())
}

/// The cpus and mems `c` sets, each None when absent or empty.
pub(crate) fn wanted(c: &LinuxCpu) -> Option<(Option<&str>, Option<&str>)> {
    let cpus = c.cpus().as_deref().filter(|s| !s.is_empty());
    let mems = c.mems().as_deref().filter(|s| !s.is_empty());
    (cpus.is_some() || mems.is_some()).then_some((cpus, mems))
}

pub(crate) fn write(
    d: &Path,
    cpus: Option<&str>,
    mems: Option<&str>,
    w: &mut Writer,
) -> Result<()> {
    if let Some(v) = cpus {
        w.write("linux.resources.cpu.cpus", &d.join("cpuset.cpus"), v)?;
    }
    if let Some(v) = mems {
        w.write("linux.resources.cpu.mems", &d.join("cpuset.mems"), v)?;
    }
    Ok(())
}
