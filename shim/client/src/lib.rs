//! kos-shim-client: a typed client for `containerd-shim-kos-v2`.
//!
//! - [`launch`]: runs the shim's `start` action exactly as containerd 1.6 does (bundle as the
//!   working directory, `-namespace`, `-address`, `-publish-binary`, `-id`, `TTRPC_ADDRESS`)
//!   and its `delete` action to clean up after a shim that died.
//! - [`client`]: the task API v2 (`containerd.task.v2.Task`) over ttrpc with typed calls.
//! - `frame_io`: the connection's byte stream, one write and one read per ttrpc message.
//! - [`error`]: one error type; ttrpc status codes become [`ErrorKind`]s.
//! - [`options`]: containerd's runc `Options` message (runtime binary and root), or KOS's
//!   own with `start_at_create` ([`RuntimeOptions::to_kos_any`]).
//!
//! The CRI server and kosd drive their shims through it.

pub mod client;
pub mod error;
mod frame_io;
pub mod launch;
pub mod options;

pub use client::{Metrics, ProcessState, ShimClient, Stdio, TaskState};
pub use error::{Error, ErrorKind, Result};
pub use launch::{LaunchOptions, Launched};
pub use options::{RuntimeOptions, KOS_OPTIONS_TYPE};
