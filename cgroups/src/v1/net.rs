//! v1 net_cls and net_prio controllers.

use std::path::Path;

use oci_spec::runtime::LinuxInterfacePriority;

use crate::error::Result;
use crate::fsutil::Writer;

/// net_cls.classid in the net_cls directory `d`.
pub(crate) fn write_class_id(d: &Path, id: u32, w: &mut Writer) -> Result<()> {
    w.write(
        "linux.resources.network.classID",
        &d.join("net_cls.classid"),
        &id.to_string(),
    )
}

/// One net_prio.ifpriomap line per interface in the net_prio directory `d`.
pub(crate) fn write_priorities(
    d: &Path,
    prios: &[LinuxInterfacePriority],
    w: &mut Writer,
) -> Result<()> {
    let p = d.join("net_prio.ifpriomap");
    for pr in prios {
        w.write_keyed(
            "linux.resources.network.priorities",
            &p,
            pr.name(),
            &format!("{} {}", pr.name(), pr.priority()),
            "0",
        )?;
    }
    Ok(())
}
