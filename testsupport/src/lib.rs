//! Fixtures shared by the integration tests of several KOS crates.

pub mod port;
pub mod registry;

pub use port::free_port;
pub use registry::{self_signed_tls, RegistryProcess};
