//! kos-dns: container-name DNS for KOS bridge networks.
//!
//! - [`table`]: the state file the network crate writes and the server reads.
//! - [`etc_files`]: a container's /etc/resolv.conf, /etc/hosts and /etc/hostname.
//! - [`resolvconf`]: reading the host's resolvers (upstreams and container fallbacks).
//! - [`server`]: the `kos-dns` serving loop; [`answer`] decides per query, [`index`] is the
//!   table compiled for lookups, [`forward`] talks to upstreams.
//!
//! The server parts sit behind the default `server` feature; the network crate can depend on
//! this crate with `default-features = false` for the table and the /etc writers alone.

#[cfg(feature = "server")]
pub mod answer;
pub mod etc_files;
#[cfg(feature = "server")]
pub mod forward;
#[cfg(feature = "server")]
pub mod index;
pub mod resolvconf;
#[cfg(feature = "server")]
pub mod server;
pub mod table;
