//! v1 hugetlb controller: v2's writer with the v1 file name; -1 means no limit as it is.

use std::path::Path;

use oci_spec::runtime::LinuxHugepageLimit;

use crate::error::Result;
use crate::fsutil::Writer;
use crate::v2::hugetlb::write_limits;

pub(crate) fn apply(d: &Path, limits: &[LinuxHugepageLimit], w: &mut Writer) -> Result<()> {
    write_limits(d, limits, w, "limit_in_bytes", |v| v.to_string())
}
