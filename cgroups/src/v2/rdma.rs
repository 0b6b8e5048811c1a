//! v2 rdma controller.

use std::collections::HashMap;
use std::path::Path;

use oci_spec::runtime::LinuxRdma;

use crate::error::Result;
use crate::fsutil::Writer;

pub(crate) fn apply(
    d: &Path,
    root: &Path,
    rd: &HashMap<String, LinuxRdma>,
    w: &mut Writer,
) -> Result<()> {
    super::controllers::enable(root, d, &["rdma"], "linux.resources.rdma")?;
    crate::v1::rdma::apply(d, rd, w)
}
