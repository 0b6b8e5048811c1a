//! The user's process: ids, limits, descriptors and the final exec.

pub mod exec;
pub mod fds;
pub mod launch;
pub mod rlimit;
pub mod sched;
pub mod user;
