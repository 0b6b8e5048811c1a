//! v1 memory controller.

use std::path::Path;

use oci_spec::runtime::LinuxMemory;

use crate::error::{Error, Result};
use crate::fsutil::{self, Writer};
use crate::kernel;
use crate::validate::set;

pub(crate) fn wants(mem: &LinuxMemory) -> bool {
    set(mem.limit()).is_some()
        || set(mem.reservation()).is_some()
        || set(mem.swap()).is_some()
        || set(mem.kernel()).is_some()
        || set(mem.kernel_tcp()).is_some()
        || mem.swappiness().is_some()
        || mem.disable_oom_killer().is_some()
        || mem.use_hierarchy().is_some()
}

pub(crate) fn write(d: &Path, mem: &LinuxMemory, w: &mut Writer, updating: bool) -> Result<()> {
    if updating && mem.check_before_update() == Some(true) {
        if let Some(l) = mem.limit().filter(|l| *l > 0) {
            let usage = fsutil::read_u64(&d.join("memory.usage_in_bytes"))?;
            if (l as u64) < usage {
                return Err(Error::invalid(
                    "linux.resources.memory.limit",
                    format!("{l} is below the current usage of {usage} bytes (checkBeforeUpdate)"),
                ));
            }
        }
    }
    write_limits(d, mem, w)?;
    if let Some(r) = set(mem.reservation()) {
        w.write(
            "linux.resources.memory.reservation",
            &d.join("memory.soft_limit_in_bytes"),
            &r.to_string(),
        )?;
    }
    if let Some(k) = set(mem.kernel()) {
        if kernel::kmem_limit_works() {
            w.write(
                "linux.resources.memory.kernel",
                &d.join("memory.kmem.limit_in_bytes"),
                &k.to_string(),
            )?;
        } else {
            tracing::warn!(
                value = k,
                "linux.resources.memory.kernel ignored: the kernel dropped kernel memory limits in 5.16"
            );
        }
    }
    if let Some(k) = set(mem.kernel_tcp()) {
        let p = d.join("memory.kmem.tcp.limit_in_bytes");
        if p.exists() {
            w.write("linux.resources.memory.kernelTCP", &p, &k.to_string())?;
        } else {
            tracing::warn!(value = k, "linux.resources.memory.kernelTCP ignored: the kernel has no memory.kmem.tcp.limit_in_bytes");
        }
    }
    if let Some(s) = mem.swappiness() {
        w.write(
            "linux.resources.memory.swappiness",
            &d.join("memory.swappiness"),
            &s.to_string(),
        )?;
    }
    if let Some(dis) = mem.disable_oom_killer() {
        w.write(
            "linux.resources.memory.disableOOMKiller",
            &d.join("memory.oom_control"),
            if dis { "1" } else { "0" },
        )?;
    }
    match mem.use_hierarchy() {
        Some(true) => w.write(
            "linux.resources.memory.useHierarchy",
            &d.join("memory.use_hierarchy"),
            "1",
        )?,
        Some(false) => tracing::warn!(
            "linux.resources.memory.useHierarchy=false ignored: the kernel always uses the hierarchy"
        ),
        None => {}
    }
    Ok(())
}

/// memory.memsw.limit_in_bytes (memory plus swap) may never be below memory.limit_in_bytes,
/// so a raise must go memsw first and a cut limit first. Trying limit first and, on the
/// kernel's refusal, swap first, gets both right without reading the current values.
fn write_limits(d: &Path, mem: &LinuxMemory, w: &mut Writer) -> Result<()> {
    let limit = set(mem.limit());
    let swap = set(mem.swap());
    let lf = "linux.resources.memory.limit";
    let sf = "linux.resources.memory.swap";
    let lp = d.join("memory.limit_in_bytes");
    let sp = d.join("memory.memsw.limit_in_bytes");
    if let (Some(s), Some(l)) = (swap, limit) {
        if s != -1 && l != -1 && s < l {
            return Err(Error::invalid(
                sf,
                format!("{s} is below memory.limit {l}; swap counts memory plus swap"),
            ));
        }
    }
    if swap.is_some() && !sp.exists() {
        if swap == Some(-1) {
            return limit.map_or(Ok(()), |l| w.write(lf, &lp, &l.to_string()));
        }
        return Err(Error::unsupported(
            sf,
            "the kernel does not account swap (no memory.memsw.limit_in_bytes; boot with swapaccount=1)",
        ));
    }
    match (limit, swap) {
        (None, None) => Ok(()),
        (Some(l), None) => w.write(lf, &lp, &l.to_string()),
        (None, Some(s)) => w.write(sf, &sp, &s.to_string()),
        (Some(l), Some(s)) => {
            if w.write(lf, &lp, &l.to_string()).is_ok() {
                w.write(sf, &sp, &s.to_string())
            } else {
                w.write(sf, &sp, &s.to_string())?;
                w.write(lf, &lp, &l.to_string())
            }
        }
    }
}
