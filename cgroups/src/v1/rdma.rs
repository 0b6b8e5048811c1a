//! rdma controller; v1 and v2 share the rdma.max format.

use std::collections::HashMap;
use std::path::Path;

use oci_spec::runtime::LinuxRdma;

use crate::error::Result;
use crate::fsutil::Writer;

/// The rdma.max line for one device, or None when the entry limits nothing.
pub(crate) fn line(dev: &str, r: &LinuxRdma) -> Option<String> {
    let mut s = dev.to_string();
    if let Some(h) = r.hca_handles() {
        s.push_str(&format!(" hca_handle={h}"));
    }
    if let Some(o) = r.hca_objects() {
        s.push_str(&format!(" hca_object={o}"));
    }
    (s.len() > dev.len()).then_some(s)
}

pub(crate) fn apply(d: &Path, rd: &HashMap<String, LinuxRdma>, w: &mut Writer) -> Result<()> {
    let p = d.join("rdma.max");
    let mut devs: Vec<_> = rd.iter().collect();
    devs.sort_by(|a, b| a.0.cmp(b.0));
    for (dev, r) in devs {
        if let Some(l) = line(dev, r) {
            w.write_keyed(
                "linux.resources.rdma",
                &p,
                dev,
                &l,
                "hca_handle=max hca_object=max",
            )?;
        }
    }
    Ok(())
}
