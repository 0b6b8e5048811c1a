//! The user's process: ids, limits, descriptors and the final exec.

pub mod exec;
pub mod fds;
pub mod launch;
pub mod rlimit;
pub mod sched;
pub mod signals;
pub mod user;

use oci_spec::runtime::{LinuxPersonality, Process};

use crate::error::Result;

/// rlimits, personality, I/O priority and scheduler: set while still privileged,
/// for the init and for exec alike.
pub fn apply_attributes(process: &Process, personality: Option<&LinuxPersonality>) -> Result<()> {
    rlimit::apply(process.rlimits().as_deref().unwrap_or(&[]))?;
    if let Some(p) = personality {
        sched::apply_personality(p)?;
    }
    if let Some(io) = process.io_priority() {
        sched::apply_io_priority(io)?;
    }
    if let Some(s) = process.scheduler() {
        sched::apply_scheduler(s)?;
    }
    Ok(())
}
