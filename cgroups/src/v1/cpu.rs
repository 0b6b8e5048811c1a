//! v1 cpu controller: shares, CFS quota/period/burst, realtime budget, idle.

use std::path::Path;

use oci_spec::runtime::LinuxCpu;

use crate::error::Result;
use crate::fsutil::Writer;

/// Whether `c` sets anything the cpu controller holds (0 is "unset", as runc reads it).
pub(crate) fn wants(c: &LinuxCpu) -> bool {
    c.shares().is_some_and(|s| s != 0)
        || c.quota().is_some_and(|q| q != 0)
        || c.period().is_some_and(|p| p != 0)
        || c.burst().is_some()
        || c.realtime_runtime().is_some_and(|v| v != 0)
        || c.realtime_period().is_some_and(|v| v != 0)
        || c.idle().is_some()
}

pub(crate) fn write(d: &Path, c: &LinuxCpu, w: &mut Writer) -> Result<()> {
    if let Some(s) = c.shares().filter(|s| *s != 0) {
        w.write(
            "linux.resources.cpu.shares",
            &d.join("cpu.shares"),
            &s.to_string(),
        )?;
    }
    // The period goes first: the kernel checks a quota against the period in force.
    if let Some(p) = c.period().filter(|p| *p != 0) {
        w.write(
            "linux.resources.cpu.period",
            &d.join("cpu.cfs_period_us"),
            &p.to_string(),
        )?;
    }
    // 0 is the zero value runtimes emit for "not set", as runc reads it.
    if let Some(q) = c.quota().filter(|q| *q != 0) {
        let v = if q < 0 {
            "-1".to_string()
        } else {
            q.to_string()
        };
        w.write("linux.resources.cpu.quota", &d.join("cpu.cfs_quota_us"), &v)?;
    }
    if let Some(b) = c.burst() {
        w.write(
            "linux.resources.cpu.burst",
            &d.join("cpu.cfs_burst_us"),
            &b.to_string(),
        )?;
    }
    write_realtime(d, c, w)?;
    if let Some(i) = c.idle() {
        w.write(
            "linux.resources.cpu.idle",
            &d.join("cpu.idle"),
            &i.to_string(),
        )?;
    }
    Ok(())
}

/// The runtime must fit in the period at every step, so when both change the order depends
/// on the direction; trying period first and falling back to runtime first covers both
/// without reading the current values.
fn write_realtime(d: &Path, c: &LinuxCpu, w: &mut Writer) -> Result<()> {
    let period = c.realtime_period().filter(|v| *v != 0);
    let runtime = c.realtime_runtime().filter(|v| *v != 0);
    let pf = "linux.resources.cpu.realtimePeriod";
    let rf = "linux.resources.cpu.realtimeRuntime";
    let pp = d.join("cpu.rt_period_us");
    let rp = d.join("cpu.rt_runtime_us");
    match (period, runtime) {
        (None, None) => Ok(()),
        (Some(p), None) => w.write(pf, &pp, &p.to_string()),
        (None, Some(r)) => w.write(rf, &rp, &r.to_string()),
        (Some(p), Some(r)) => {
            if w.write(pf, &pp, &p.to_string()).is_ok() {
                w.write(rf, &rp, &r.to_string())
            } else {
                w.write(rf, &rp, &r.to_string())?;
                w.write(pf, &pp, &p.to_string())
            }
        }
    }
}
