//! v2 pids controller (same file and values as v1).

use std::path::Path;

use oci_spec::runtime::LinuxPids;

use crate::error::Result;
use crate::fsutil::Writer;

pub(crate) fn apply(d: &Path, p: &LinuxPids, w: &mut Writer) -> Result<()> {
    match crate::v1::pids::value(p.limit()) {
        Some(v) => crate::v1::pids::write(d, &v, w),
        None => Ok(()),
    }
}
