//! v1 blkio controller: weights (CFQ or BFQ files) and throttles.

use std::path::Path;

use oci_spec::runtime::{LinuxBlockIo, LinuxThrottleDevice};

use crate::error::{Error, Result};
use crate::fsutil::Writer;

pub(crate) fn wants(b: &LinuxBlockIo) -> bool {
    b.weight().is_some_and(|w| w != 0)
        || b.leaf_weight().is_some_and(|w| w != 0)
        || [
            b.throttle_read_bps_device(),
            b.throttle_write_bps_device(),
            b.throttle_read_iops_device(),
            b.throttle_write_iops_device(),
        ]
        .iter()
        .any(|l| l.as_ref().is_some_and(|l| !l.is_empty()))
        || b.weight_device().as_ref().is_some_and(|l| !l.is_empty())
}

/// Writes a weight to the CFQ-era file when the kernel has it, else to the BFQ one; the two
/// take the same "weight" and "major:minor weight" forms.
fn write_weight(
    d: &Path,
    w: &mut Writer,
    field: &str,
    files: [&str; 2],
    key: Option<&str>,
    value: &str,
) -> Result<()> {
    for f in files {
        let p = d.join(f);
        if p.exists() {
            return match key {
                Some(k) => w.write_keyed(field, &p, k, value, "0"),
                None => w.write(field, &p, value),
            };
        }
    }
    Err(Error::unsupported(
        field,
        format!(
            "the kernel has neither {} nor {} (no CFQ or BFQ I/O scheduler)",
            files[0], files[1]
        ),
    ))
}

pub(crate) fn write(d: &Path, b: &LinuxBlockIo, w: &mut Writer) -> Result<()> {
    if let Some(wt) = b.weight().filter(|w| *w != 0) {
        write_weight(
            d,
            w,
            "linux.resources.blockIO.weight",
            ["blkio.weight", "blkio.bfq.weight"],
            None,
            &wt.to_string(),
        )?;
    }
    if let Some(lw) = b.leaf_weight().filter(|w| *w != 0) {
        let p = d.join("blkio.leaf_weight");
        if p.exists() {
            w.write("linux.resources.blockIO.leafWeight", &p, &lw.to_string())?;
        } else {
            tracing::warn!(value = lw, "linux.resources.blockIO.leafWeight ignored: the kernel dropped leaf weights with CFQ");
        }
    }
    for dev in b.weight_device().iter().flatten() {
        let key = format!("{}:{}", dev.major(), dev.minor());
        if let Some(wt) = dev.weight().filter(|w| *w != 0) {
            write_weight(
                d,
                w,
                "linux.resources.blockIO.weightDevice",
                ["blkio.weight_device", "blkio.bfq.weight_device"],
                Some(&key),
                &format!("{key} {wt}"),
            )?;
        }
        if let Some(lw) = dev.leaf_weight().filter(|w| *w != 0) {
            let p = d.join("blkio.leaf_weight_device");
            if p.exists() {
                w.write_keyed(
                    "linux.resources.blockIO.weightDevice.leafWeight",
                    &p,
                    &key,
                    &format!("{key} {lw}"),
                    "0",
                )?;
            } else {
                tracing::warn!(device = %key, value = lw, "linux.resources.blockIO.weightDevice.leafWeight ignored: the kernel dropped leaf weights with CFQ");
            }
        }
    }
    throttle(
        d,
        w,
        "throttleReadBpsDevice",
        "blkio.throttle.read_bps_device",
        b.throttle_read_bps_device(),
    )?;
    throttle(
        d,
        w,
        "throttleWriteBpsDevice",
        "blkio.throttle.write_bps_device",
        b.throttle_write_bps_device(),
    )?;
    throttle(
        d,
        w,
        "throttleReadIOPSDevice",
        "blkio.throttle.read_iops_device",
        b.throttle_read_iops_device(),
    )?;
    throttle(
        d,
        w,
        "throttleWriteIOPSDevice",
        "blkio.throttle.write_iops_device",
        b.throttle_write_iops_device(),
    )?;
    Ok(())
}

fn throttle(
    d: &Path,
    w: &mut Writer,
    name: &str,
    file: &str,
    list: &Option<Vec<LinuxThrottleDevice>>,
) -> Result<()> {
    let field = format!("linux.resources.blockIO.{name}");
    let p = d.join(file);
    for t in list.iter().flatten() {
        let key = format!("{}:{}", t.major(), t.minor());
        w.write_keyed(&field, &p, &key, &format!("{key} {}", t.rate()), "0")?;
    }
    Ok(())
}
