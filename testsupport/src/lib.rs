//! Fixtures shared by the integration tests of several KOS crates.

pub mod cargo;
pub mod executable;
pub mod port;
pub mod registry;
pub mod runtime;

pub use cargo::cargo;
pub use executable::write_executable;
pub use port::free_port;
pub use registry::{self_signed_tls, RegistryProcess};
pub use runtime::{kosrun_from_env, kosrun_or};
