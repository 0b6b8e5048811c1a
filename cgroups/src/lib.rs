//! cgroup v1, hybrid and v2 management for KOS.
//!
//! One `Manager` per container: it resolves the container's cgroupsPath to a directory in
//! every hierarchy of the host (v1, hybrid with v1 controllers plus a v2 mount, or pure v2),
//! applies `linux.resources` with the documented v1/v2 conversions, places processes,
//! freezes, kills, reports stats and removes. `OomWatch` turns the kernel's OOM notifications
//! for the container's memory cgroup into a pollable descriptor.
//!
//! The controller writers, freezing, killing and stats take the container's directories
//! (`dirs::Dirs`), never the `Manager`, which sits above them all.
//!
//! Writes never read first on the create path: `create_with_resources` undoes a failed apply
//! by removing the directories it made. `update` journals the previous value of each file it
//! writes and writes them back if a later write fails.

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod convert;
mod dirs;
mod error;
mod freeze;
mod fsutil;
mod join;
mod kernel;
mod kill;
mod layout;
mod manager;
mod oom;
mod path;
mod remove;
pub mod stats;
mod v1;
mod v2;
mod validate;

pub use convert::{blkio_weight_to_io_weight, shares_to_weight, swap_to_v2, weight_to_shares};
pub use error::{Error, Result};
pub use fsutil::read_small;
pub use join::SelfJoin;
pub use layout::{detect_layout, Layout, CGROUP_ROOT};
pub use manager::{CgroupMountSource, Hierarchy, Manager};
pub use oom::OomWatch;
pub use stats::{Stats, StatsEvent};
pub use validate::resources as validate_resources;
