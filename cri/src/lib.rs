//! kos-cri: the Kubernetes CRI (runtime.v1) server of KOS.
//!
//! - [`images`]: ImageService over kos-image, Kubernetes references, registry mirrors from
//!   containerd's `hosts.toml` files.
//! - [`server`]: [`serve`] on a unix socket (tonic), what kosd calls.
//! - [`streaming`]: the HTTP server behind Exec, Attach and PortForward (WebSocket).
//!
//! Pods need no pause image: their namespaces are pinned as bind-mounted files and
//! containers (run by `containerd-shim-kos-v2` through kos-shim-client) join them by path.

pub mod config;
pub mod container;
pub mod core;
pub mod error;
pub mod images;
pub mod runtime;
pub mod sandbox;
pub mod server;
pub mod state;
pub mod streaming;

pub use config::CriConfig;
pub use error::{Error, Result};
pub use sandbox::holder::run_if_holder;
pub use server::{serve, serve_with_shutdown};
