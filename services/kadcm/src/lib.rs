//! kadcm, KOS's device communication manager: enumerates host devices from sysfs, writes CDI
//! specs for them and resolves CDI names (its own and third parties') into OCI edits, watches
//! the kernel's uevents and publishes them, and hot-plugs device nodes into running
//! containers (node in the container's /dev, cgroup rule on v1 and v2), every passthrough
//! judged by a kaim policy, with auto-attach rules.

pub mod autoattach;
pub mod cdi;
pub mod container;
pub mod devcgroup;
pub mod device;
pub mod error;
pub mod events;
pub mod node;
pub mod passthrough;
pub mod sysfs;
pub mod uevent;

pub use device::{Device, DeviceClass, NodeType};
pub use error::{Error, Result};
