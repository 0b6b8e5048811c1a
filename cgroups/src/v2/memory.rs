//! v2 memory controller, with the spec's v1 swap meaning converted.

use std::path::Path;

use oci_spec::runtime::LinuxMemory;

use crate::convert;
use crate::error::{Error, Result};
use crate::fsutil::{self, Writer};

pub(crate) fn apply(d: &Path, m: &LinuxMemory, w: &mut Writer, updating: bool) -> Result<()> {
    let swap = convert::swap_to_v2(m.swap(), m.limit())?;
    if updating && m.check_before_update() == Some(true) {
        if let Some(l) = m.limit().filter(|l| *l > 0) {
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
    if let Some(l) = m.limit() {
        w.write(
            "linux.resources.memory.limit",
            &d.join("memory.max"),
            &convert::limit_to_v2(l),
        )?;
    }
    if let Some(r) = m.reservation() {
        w.write(
            "linux.resources.memory.reservation",
            &d.join("memory.low"),
            &convert::limit_to_v2(r),
        )?;
    }
    if let Some(k) = m.kernel() {
        tracing::warn!(
            value = k,
            "linux.resources.memory.kernel ignored: cgroup v2 counts kernel memory in memory.max"
        );
    }
    if let Some(k) = m.kernel_tcp() {
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
