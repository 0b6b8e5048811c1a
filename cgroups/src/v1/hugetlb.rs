//! v1 hugetlb controller.

use std::path::Path;

use oci_spec::runtime::LinuxHugepageLimit;

use crate::error::{Error, Result};
use crate::fsutil::Writer;

pub(crate) fn apply(d: &Path, limits: &[LinuxHugepageLimit], w: &mut Writer) -> Result<()> {
    for h in limits {
        let p = d.join(format!("hugetlb.{}.limit_in_bytes", h.page_size()));
        if !p.exists() {
            return Err(Error::invalid(
                "linux.resources.hugepageLimits.pageSize",
                format!("the host has no {} huge pages", h.page_size()),
            ));
        }
        w.write(
            "linux.resources.hugepageLimits.limit",
            &p,
            &h.limit().to_string(),
        )?;
    }
    Ok(())
}
