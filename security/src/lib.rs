//! Process confinement for KOS: seccomp, capabilities, MAC labels, Landlock, safe paths.

pub mod caps;
pub mod label;
pub mod landlock;
pub mod path;
pub mod seccomp;
pub mod spec_defaults;
