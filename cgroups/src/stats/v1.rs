//! Stats from v1 hierarchies.

use std::path::Path;

use crate::error::Result;
use crate::fsutil::parse_flat_keyed;

use super::{
    page_sizes, parse_blkio_v1, parse_list, read_opt, read_u64_opt, Hugetlb, MemoryEntry, Stats,
};

/// USER_HZ, the unit of cpuacct.stat; fixed at 100 on every architecture Linux exports it.
const USER_HZ: u64 = 100;

/// CPU time used, from the cpuacct directory.
pub(super) fn cpuacct(d: &Path, s: &mut Stats) -> Result<()> {
    s.cpu.usage.total = read_u64_opt(&d.join("cpuacct.usage"))?;
    for (file, dst) in [
        ("cpuacct.usage_percpu", &mut s.cpu.usage.percpu),
        ("cpuacct.usage_percpu_sys", &mut s.cpu.usage.percpu_kernel),
        ("cpuacct.usage_percpu_user", &mut s.cpu.usage.percpu_user),
    ] {
        if let Some(p) = read_opt(&d.join(file))? {
            *dst = p
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
        }
    }
    if let Some(st) = read_opt(&d.join("cpuacct.stat"))? {
        for (k, v) in parse_flat_keyed(&st) {
            match k {
                "user" => s.cpu.usage.user = v * (1_000_000_000 / USER_HZ),
                "system" => s.cpu.usage.kernel = v * (1_000_000_000 / USER_HZ),
                _ => {}
            }
        }
    }
    Ok(())
}

/// CFS throttling, from the cpu directory.
pub(super) fn cpu(d: &Path, s: &mut Stats) -> Result<()> {
    if let Some(st) = read_opt(&d.join("cpu.stat"))? {
        for (k, v) in parse_flat_keyed(&st) {
            match k {
                "nr_periods" => s.cpu.throttling.periods = v,
                "nr_throttled" => s.cpu.throttling.throttled_periods = v,
                "throttled_time" => s.cpu.throttling.throttled_time = v,
                _ => {}
            }
        }
    }
    Ok(())
}

/// CPUs and memory nodes, with the cpuset flags, from the cpuset directory.
pub(super) fn cpuset(d: &Path, s: &mut Stats) -> Result<()> {
    let c = &mut s.cpuset;
    c.cpus = parse_list(&read_opt(&d.join("cpuset.cpus"))?.unwrap_or_default());
    c.mems = parse_list(&read_opt(&d.join("cpuset.mems"))?.unwrap_or_default());
    for (file, dst) in [
        ("cpuset.cpu_exclusive", &mut c.cpu_exclusive),
        ("cpuset.mem_hardwall", &mut c.mem_hardwall),
        ("cpuset.mem_exclusive", &mut c.mem_exclusive),
        ("cpuset.memory_migrate", &mut c.memory_migrate),
        ("cpuset.memory_spread_page", &mut c.memory_spread_page),
        ("cpuset.memory_spread_slab", &mut c.memory_spread_slab),
        ("cpuset.memory_pressure", &mut c.memory_pressure),
        ("cpuset.sched_load_balance", &mut c.sched_load_balance),
    ] {
        *dst = read_u64_opt(&d.join(file))?;
    }
    c.sched_relax_domain_level = read_opt(&d.join("cpuset.sched_relax_domain_level"))?
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    Ok(())
}

/// Usage, limits and counters, with the OOM kills, from the memory directory.
pub(super) fn memory(d: &Path, s: &mut Stats) -> Result<()> {
    let entry = |prefix: &str| -> Result<MemoryEntry> {
        Ok(MemoryEntry {
            usage: read_u64_opt(&d.join(format!("{prefix}.usage_in_bytes")))?,
            max: read_u64_opt(&d.join(format!("{prefix}.max_usage_in_bytes")))?,
            failcnt: read_u64_opt(&d.join(format!("{prefix}.failcnt")))?,
            limit: read_u64_opt(&d.join(format!("{prefix}.limit_in_bytes")))?,
        })
    };
    s.memory.usage = entry("memory")?;
    s.memory.swap = entry("memory.memsw")?;
    s.memory.kernel = entry("memory.kmem")?;
    s.memory.kernel_tcp = entry("memory.kmem.tcp")?;
    if let Some(st) = read_opt(&d.join("memory.stat"))? {
        for (k, v) in parse_flat_keyed(&st) {
            s.memory.raw.insert(k.to_string(), v);
        }
        s.memory.cache = s.memory.raw.get("cache").copied().unwrap_or(0);
        s.memory.rss = s.memory.raw.get("rss").copied().unwrap_or(0);
    }
    if let Some(oc) = read_opt(&d.join("memory.oom_control"))? {
        for (k, v) in parse_flat_keyed(&oc) {
            if k == "oom_kill" {
                s.memory.oom_kill = v;
                s.memory.oom_events = v;
            }
        }
    }
    Ok(())
}

/// The process count and its limit, from the pids directory.
pub(super) fn pids(d: &Path, s: &mut Stats) -> Result<()> {
    s.pids.current = read_u64_opt(&d.join("pids.current"))?;
    let l = read_u64_opt(&d.join("pids.max"))?;
    s.pids.limit = if l == u64::MAX { 0 } else { l };
    Ok(())
}

/// Bytes and operations per device, from the blkio directory.
pub(super) fn blkio(d: &Path, s: &mut Stats) -> Result<()> {
    for (file, dst) in [
        (
            "blkio.throttle.io_service_bytes_recursive",
            &mut s.blkio.io_service_bytes_recursive,
        ),
        (
            "blkio.throttle.io_serviced_recursive",
            &mut s.blkio.io_serviced_recursive,
        ),
    ] {
        if let Some(t) = read_opt(&d.join(file))? {
            *dst = parse_blkio_v1(&t);
        }
    }
    Ok(())
}

/// Huge page usage per page size, from the hugetlb directory.
pub(super) fn hugetlb(d: &Path, s: &mut Stats) -> Result<()> {
    for size in page_sizes() {
        let h = Hugetlb {
            usage: read_u64_opt(&d.join(format!("hugetlb.{size}.usage_in_bytes")))?,
            max: read_u64_opt(&d.join(format!("hugetlb.{size}.max_usage_in_bytes")))?,
            failcnt: read_u64_opt(&d.join(format!("hugetlb.{size}.failcnt")))?,
        };
        s.hugetlb.insert(size, h);
    }
    Ok(())
}
