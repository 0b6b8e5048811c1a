//! v1 net_cls and net_prio controllers.

use oci_spec::runtime::LinuxNetwork;

use crate::error::Result;
use crate::fsutil::Writer;
use crate::manager::Manager;

pub(crate) fn apply(m: &Manager, n: &LinuxNetwork, w: &mut Writer) -> Result<()> {
    if let Some(id) = n.class_id() {
        let d = super::dir(m, "net_cls", "linux.resources.network.classID")?;
        w.write(
            "linux.resources.network.classID",
            &d.join("net_cls.classid"),
            &id.to_string(),
        )?;
    }
    let prios = n.priorities().as_deref().unwrap_or_default();
    if !prios.is_empty() {
        let d = super::dir(m, "net_prio", "linux.resources.network.priorities")?;
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
    }
    Ok(())
}
