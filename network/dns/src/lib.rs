//! kos-dns: container-name DNS for KOS bridge networks.
//!
//! - [`table`]: the state file the network crate writes and the server reads.
//! - [`etc_files`]: a container's /etc/resolv.conf, /etc/hosts and /etc/hostname.
//! - [`resolvconf`]: reading the host's resolvers (upstreams and container fallbacks).
//! - [`server`]: the `kos-dns` serving loop; [`answer`] decides per query, [`index`] is the
//!   table compiled for lookups, [`forward`] talks to upstreams, [`sdnotify`] to systemd.

pub mod answer;
pub mod etc_files;
pub mod forward;
pub mod index;
pub mod resolvconf;
pub mod sdnotify;
pub mod server;
pub mod table;
