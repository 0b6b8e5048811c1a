//! OCI images for KOS: content store, registry pull and push, safe layer
//! unpack, overlay snapshots, image config to runtime settings, and archives.

pub mod digest;
pub mod error;
pub mod unpack;

pub use digest::Digest;
pub use error::{Error, Result};
pub mod manifest;
pub mod store;

pub use store::{Image, ImageRecord, Store};
pub mod progress;
pub mod reference;
pub mod registry;

pub use reference::ImageRef;
pub use registry::{pull::PullOptions, Credentials, Registry, RegistryConfig};
pub mod snapshot;

pub use snapshot::{Rootfs, RootfsKind, RootfsStrategy};
pub mod archive;
pub mod config_to_spec;
