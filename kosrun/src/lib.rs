//! The kosrun container lifecycle: a runc-compatible OCI runtime as a library.
//! The `kosrun` binary is a thin command line over [`ops`].

pub mod config;
pub mod container;
pub mod error;
pub mod hooks;
pub mod id;
pub mod linux;
pub mod ops;
pub mod store;
pub mod sys;
pub mod time;

pub use error::{Error, Result};
