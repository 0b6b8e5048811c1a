//! v2 memory controller, with the spec's v1 swap meaning converted.

use std::path::Path;

use oci_spec::runtime::LinuxMemory;

use crate::convert;
use crate::error::{Error, Result};
use crate::fsutil::{self, Writer};
use crate::validate::set;

pub(crate) fn apply(d: &Path, m: &LinuxMemory, w: &mut Writer, updating: bool) -> Result<()> {
    let limit = set(m.limit());
    let swap = match (set(m.swap()), limit) {
        // Swap alone counts against the limit in force.
        (Some(s), None) if s != -1 => {
            let cur = fsutil::read_string(&d.join("memory.max"))?;
            let cur = cur.trim();
            let cur = if cur == "max" {
                -1
            } else {
                cur.parse().unwrap_or(-1)
            };
            convert::swap_to_v2(Some(s), Some(cur))?
        }
        (s, l) => convert::swap_to_v2(s, l)?,
    };
    if updating && m.check_before_update() == Some(true) {
        if let Some(l) = limit.filter(|l| *l > 0) {
            let usage = fsutil::read_u64(&d.join("memory.current"))?;
            if (l as u64) < usage {
                return Err(Error::invalid(
                    "linux.resources.memory.limit",
                    format!("{l} is below the current usage of {usage} bytes (checkBeforeUpdate)"),
                ));
            }
        }
    }
    if let Some(s) = &swap {
        let p = d.join("memory.swap.max");
        if !p.exists() {
            if s != "max" {
                return Err(Error::unsupported(
                    "linux.resources.memory.swap",
                    "the kernel does not account swap (no memory.swap.max)",
                ));
            }
        } else {
            w.write("linux.resources.memory.swap", &p, s)?;
        }
    }
    if let Some(l) = limit {
        w.write(
            "linux.resources.memory.limit",
            &d.join("memory.max"),
            &convert::limit_to_v2(l),
        )?;
    }
    if let Some(r) = set(m.reservation()) {
        w.write(
            "linux.resources.memory.reservation",
            &d.join("memory.low"),
            &convert::limit_to_v2(r),
        )?;
    }
    if let Some(k) = set(m.kernel()) {
        tracing::warn!(
            value = k,
            "linux.resources.memory.kernel ignored: cgroup v2 counts kernel memory in memory.max"
        );
    }
    if let Some(k) = set(m.kernel_tcp()) {
        tracing::warn!(value = k, "linux.resources.memory.kernelTCP ignored: cgroup v2 counts socket memory in memory.max");
    }
    if let Some(s) = m.swappiness() {
        tracing::warn!(
            value = s,
            "linux.resources.memory.swappiness ignored: cgroup v2 has no per-cgroup swappiness"
        );
    }
    if m.disable_oom_killer() == Some(true) {
        tracing::warn!("linux.resources.memory.disableOOMKiller ignored: cgroup v2 cannot disable the OOM killer");
    }
    Ok(())
}
