//! v2 io controller from the spec's blkio fields.

use std::collections::BTreeMap;
use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxThrottleDevice};

use crate::convert;
use crate::error::{Error, Result};
use crate::fsutil::Writer;

/// Where a weight goes: BFQ's io.bfq.weight takes the v1 range as is, io.weight needs the
/// 1..=10000 conversion.
fn weight_target(d: &Path, field: &str) -> Result<(std::path::PathBuf, bool)> {
    let bfq = d.join("io.bfq.weight");
    if bfq.exists() {
        return Ok((bfq, true));
    }
    let w = d.join("io.weight");
    if w.exists() {
        return Ok((w, false));
    }
    Err(Error::unsupported(
        field,
        "neither io.bfq.weight nor io.weight exists (io controller not enabled?)",
    ))
}

pub(crate) fn apply(d: &Path, b: &LinuxBlockIo, w: &mut Writer) -> Result<()> {
    if let Some(wt) = b.weight().filter(|w| *w != 0) {
        let field = "linux.resources.blockIO.weight";
        let (p, bfq) = weight_target(d, field)?;
        let v = if bfq {
            wt.to_string()
        } else {
            format!("default {}", convert::blkio_weight_to_io_weight(wt))
        };
        w.write(field, &p, &v)?;
    }
    if let Some(lw) = b.leaf_weight().filter(|w| *w != 0) {
        tracing::warn!(
            value = lw,
            "linux.resources.blockIO.leafWeight ignored: cgroup v2 has no leaf weights"
        );
    }
    for dev in b.weight_device().iter().flatten() {
        let key = format!("{}:{}", dev.major(), dev.minor());
        if let Some(wt) = dev.weight().filter(|w| *w != 0) {
            let field = "linux.resources.blockIO.weightDevice";
            let (p, bfq) = weight_target(d, field)?;
            let v = if bfq {
                u64::from(wt)
            } else {
                convert::blkio_weight_to_io_weight(wt)
            };
            w.write_keyed(field, &p, &key, &format!("{key} {v}"), "default")?;
        }
        if dev.leaf_weight().is_some_and(|w| w != 0) {
            tracing::warn!(device = %key, "linux.resources.blockIO.weightDevice.leafWeight ignored: cgroup v2 has no leaf weights");
        }
    }
    throttle(d, b, w)
}

/// One io.max value for one device: "maj:min rbps=.. wbps=.. riops=.. wiops=..". Only the
/// keys the spec sets appear; a rate of 0 (v1's "no limit") becomes "max".
pub(crate) fn io_max_line(major: i64, minor: i64, limits: &[(&str, u64)]) -> String {
    let mut s = format!("{major}:{minor}");
    for (k, rate) in limits {
        if *rate == 0 {
            s.push_str(&format!(" {k}=max"));
        } else {
            s.push_str(&format!(" {k}={rate}"));
        }
    }
    s
}

/// Gathers the four throttle lists per device so each device costs one write.
fn throttle(d: &Path, b: &LinuxBlockIo, w: &mut Writer) -> Result<()> {
    let mut per_dev: BTreeMap<(i64, i64), Vec<(&str, u64)>> = BTreeMap::new();
    let lists: [(&str, &Option<Vec<LinuxThrottleDevice>>); 4] = [
        ("rbps", b.throttle_read_bps_device()),
        ("wbps", b.throttle_write_bps_device()),
        ("riops", b.throttle_read_iops_device()),
        ("wiops", b.throttle_write_iops_device()),
    ];
    for (key, list) in lists {
        for t in list.iter().flatten() {
            per_dev
                .entry((t.major(), t.minor()))
                .or_default()
                .push((key, t.rate()));
        }
    }
    let p = d.join("io.max");
    for ((major, minor), limits) in per_dev {
        w.write_keyed(
            &format!("linux.resources.blockIO.throttle*Device ({major}:{minor})"),
            &p,
            &format!("{major}:{minor}"),
            &io_max_line(major, minor, &limits),
            "rbps=max wbps=max riops=max wiops=max",
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn io_max_lines() {
        assert_eq!(
            super::io_max_line(8, 0, &[("rbps", 1048576), ("wiops", 0)]),
            "8:0 rbps=1048576 wiops=max"
        );
    }
}
