//! v2 hugetlb controller (on a hybrid host it often lives only here).

use std::path::Path;

use oci_spec::runtime::LinuxHugepageLimit;

use crate::convert;
use crate::error::{Error, Result};
use crate::fsutil::Writer;

const FIELD: &str = "linux.resources.hugepageLimits";

pub(crate) fn apply(
    d: &Path,
    root: &Path,
    limits: &[LinuxHugepageLimit],
    w: &mut Writer,
) -> Result<()> {
    super::controllers::enable(root, d, &["hugetlb"], FIELD)?;
    write(d, limits, w)
}

pub(crate) fn write(d: &Path, limits: &[LinuxHugepageLimit], w: &mut Writer) -> Result<()> {
    write_limits(d, limits, w, "max", convert::limit_to_v2)
}

/// Writes each limit to `hugetlb.<size>.<file>` as `value` renders it; a page size the host
/// lacks has no file, which is the spec's fault, not an I/O error.
pub(crate) fn write_limits(
    d: &Path,
    limits: &[LinuxHugepageLimit],
    w: &mut Writer,
    file: &str,
    value: fn(i64) -> String,
) -> Result<()> {
    for h in limits {
        let p = d.join(format!("hugetlb.{}.{file}", h.page_size()));
        if !p.exists() {
            return Err(Error::invalid(
                "linux.resources.hugepageLimits.pageSize",
                format!("the host has no {} huge pages", h.page_size()),
            ));
        }
        w.write(
            "linux.resources.hugepageLimits.limit",
            &p,
            &value(h.limit()),
        )?;
    }
    Ok(())
}
