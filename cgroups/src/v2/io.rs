//! v2 io controller from the spec's blkio fields.

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
    let p = d.join("io.max");
    throttle(
        w,
        &p,
        "throttleReadBpsDevice",
        "rbps",
        b.throttle_read_bps_device(),
    )?;
    throttle(
        w,
        &p,
        "throttleWriteBpsDevice",
        "wbps",
        b.throttle_write_bps_device(),
    )?;
    throttle(
        w,
        &p,
        "throttleReadIOPSDevice",
        "riops",
        b.throttle_read_iops_device(),
    )?;
    throttle(
        w,
        &p,
        "throttleWriteIOPSDevice",
        "wiops",
        b.throttle_write_iops_device(),
    )?;
    Ok(())
}

/// One io.max line per device and direction; a rate of 0 (v1's "no limit") becomes "max".
pub(crate) fn io_max_line(major: i64, minor: i64, key: &str, rate: u64) -> String {
    if rate == 0 {
        format!("{major}:{minor} {key}=max")
    } else {
        format!("{major}:{minor} {key}={rate}")
    }
}

fn throttle(
    w: &mut Writer,
    p: &Path,
    name: &str,
    key: &str,
    list: &Option<Vec<LinuxThrottleDevice>>,
) -> Result<()> {
    let field = format!("linux.resources.blockIO.{name}");
    for t in list.iter().flatten() {
        let dev = format!("{}:{}", t.major(), t.minor());
        w.write_keyed(
            &field,
            p,
            &dev,
            &io_max_line(t.major(), t.minor(), key, t.rate()),
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
            super::io_max_line(8, 0, "rbps", 1048576),
            "8:0 rbps=1048576"
        );
        assert_eq!(super::io_max_line(8, 16, "wiops", 0), "8:16 wiops=max");
    }
}
