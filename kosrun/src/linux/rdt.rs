//! Intel RDT (`linux.intelRdt`): kosrun does not drive resctrl, so a config asking for it
//! is refused up front, with the reason the host gives.

use std::path::Path;

/// Why a config with `linux.intelRdt` cannot run here.
pub fn unsupported() -> String {
    if host_has_resctrl() {
        "linux.intelRdt is set: kosrun does not manage Intel RDT (resctrl) groups".into()
    } else {
        "linux.intelRdt is set but this host has no Intel RDT: resctrl is not mounted at /sys/fs/resctrl"
            .into()
    }
}

/// resctrl mounted at its usual place shows its root `schemata` file.
pub fn host_has_resctrl() -> bool {
    Path::new("/sys/fs/resctrl/schemata").exists()
}
