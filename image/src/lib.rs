//! OCI images for KOS: content store, registry pull and push, safe layer
//! unpack, overlay snapshots, image config to runtime settings, and archives.
//!
//! The flow for `kos run localhost:5000/app:1.2`:
//!
//! 1. [`Store::open`] the content store (blobs by digest, SQLite metadata).
//! 2. [`Registry::pull`] resolves the reference, selects the platform,
//!    downloads layers concurrently and unpacks each one, while it streams,
//!    into a snapshot directory keyed by its chain id.
//! 3. [`Store::prepare_rootfs`] mounts an overlay of those snapshots with the
//!    container's own upper and work dirs (or copies the layers when overlayfs
//!    is unavailable); [`Store::release_rootfs`] undoes it.
//!    [`Store::prepare_rootfs_with_mount_points`] also stacks the image's cached
//!    mount-point layer on top, so the runtime's mount targets exist without a write.
//! 4. [`config_to_spec::runtime_config`] turns the image config into process
//!    args, env, cwd and user for the bundle's config.json.
//!
//! Every byte from a registry or archive is checked against its digest before
//! it is named, and every layer path is resolved inside its root.

pub mod digest;
pub mod error;
pub mod unpack;

pub use digest::Digest;
pub use error::{Error, Result};
pub mod manifest;
pub mod mirrors;
pub mod store;

pub use store::{Image, ImageRecord, Store};
pub mod progress;
pub mod reference;
pub mod registry;

pub use reference::ImageRef;
pub use registry::{pull::PullOptions, Credentials, Registry, RegistryConfig};
pub mod snapshot;

pub use snapshot::{MountKind, MountPoint, Rootfs, RootfsKind, RootfsOptions, RootfsStrategy};
pub mod archive;
pub mod build;
pub mod config_to_spec;

pub use build::{BuildError, BuildEvent, BuildOptions, BuildResult, Builder};
