//! v2 cpu and cpuset controllers: weight from shares, cpu.max, burst, idle, cpus, mems.

use std::path::Path;

use oci_spec::runtime::LinuxCpu;

use crate::convert;
use crate::error::{Error, Result};
use crate::fsutil::{self, Writer};

/// The cpu.max value for a quota and period; None when neither is set. A quota of 0 or -1
/// is unset and a negative one means no limit ("max"). With only a period, the quota in force is kept.
pub(crate) fn cpu_max(d: &Path, quota: Option<i64>, period: Option<u64>) -> Result<Option<String>> {
    let period = period.filter(|p| *p != 0);
    // 0 is the zero value runtimes emit for "not set", as runc reads it.
    let quota = quota.filter(|q| *q != 0);
    let q = match quota {
        Some(q) if q > 0 => q.to_string(),
        Some(_) => "max".to_string(),
        None => match period {
            None => return Ok(None),
            Some(_) => {
                let cur = fsutil::read_string(&d.join("cpu.max"))?;
                cur.split_whitespace().next().unwrap_or("max").to_string()
            }
        },
    };
    Ok(Some(match period {
        Some(p) => format!("{q} {p}"),
        None => q,
    }))
}

pub(crate) fn apply(d: &Path, c: &LinuxCpu, w: &mut Writer) -> Result<()> {
    if c.realtime_runtime().is_some_and(|v| v != 0) {
        return Err(Error::unsupported(
            "linux.resources.cpu.realtimeRuntime",
            "cgroup v2 has no realtime CPU budget",
        ));
    }
    if c.realtime_period().is_some_and(|v| v != 0) {
        return Err(Error::unsupported(
            "linux.resources.cpu.realtimePeriod",
            "cgroup v2 has no realtime CPU budget",
        ));
    }
    if let Some(s) = c.shares().filter(|s| *s != 0) {
        w.write(
            "linux.resources.cpu.shares",
            &d.join("cpu.weight"),
            &convert::shares_to_weight(s).to_string(),
        )?;
    }
    if let Some(v) = cpu_max(d, c.quota(), c.period())? {
        w.write("linux.resources.cpu.quota", &d.join("cpu.max"), &v)?;
    }
    if let Some(b) = c.burst() {
        w.write(
            "linux.resources.cpu.burst",
            &d.join("cpu.max.burst"),
            &b.to_string(),
        )?;
    }
    if let Some(i) = c.idle() {
        w.write(
            "linux.resources.cpu.idle",
            &d.join("cpu.idle"),
            &i.to_string(),
        )?;
    }
    if let Some(v) = c.cpus().as_deref().filter(|s| !s.is_empty()) {
        w.write("linux.resources.cpu.cpus", &d.join("cpuset.cpus"), v)?;
    }
    if let Some(v) = c.mems().as_deref().filter(|s| !s.is_empty()) {
        w.write("linux.resources.cpu.mems", &d.join("cpuset.mems"), v)?;
    }
    Ok(())
}
