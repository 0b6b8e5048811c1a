//! kos-dns: container-name DNS for KOS bridge networks.
//!
//! - [`table`]: the state file the network crate writes and the server reads.
//! - [`etc_files`]: a container's /etc/resolv.conf, /etc/hosts and /etc/hostname.
//! - [`resolvconf`]: reading the host's resolvers (upstreams and container fallbacks).

pub mod etc_files;
pub mod resolvconf;
pub mod table;
