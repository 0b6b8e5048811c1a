//! Container networking for KOS: network drivers (bridge, host, none, container), pinned
//! network namespaces, veth pairs over netlink, IPAM, and NAT, isolation and published ports
//! in KOS's own nftables table, and container names for kos-dns. A library with no daemon
//! assumptions: all state lives in files under the directories given in [`Options`], so any
//! process (kosd, a test, a CLI) can attach, detach and reconcile.
//!
//! ```no_run
//! use kos_network::{AttachRequest, EtcSpec, Networks, Options, PortMapping};
//!
//! # fn main() -> kos_network::Result<()> {
//! let nets = Networks::new(Options::default());
//! nets.reconcile(&|_id| false)?; // at daemon start: nothing from before is alive
//! let mut req = AttachRequest::new("4f1c0a", "default"); // pins /run/kos/netns/4f1c0a
//! req.name = Some("web".into());
//! req.ports = vec![PortMapping::parse("8080:80")?];
//! let att = nets.attach(&req)?; // att.netns goes into the OCI spec's network namespace
//! nets.write_etc_files("4f1c0a", std::path::Path::new("/var/lib/kos/c/4f1c0a"),
//!     &EtcSpec { hostname: "4f1c0a", ..EtcSpec::default() })?;
//! # let _ = att;
//! nets.release_container("4f1c0a")?; // detach from every network, unpin
//! # Ok(())
//! # }
//! ```
//!
//! State (all file + flock, written atomically):
//! - `data_dir/networks/<name>.json`: network definitions.
//! - `run_dir/attachments/<container>@<network>.json`: what each attachment made (the journal
//!   teardown and [`Networks::reconcile`] work from); `run_dir/ipam/<network>.json`: address
//!   pools; `run_dir/ports.json`: published host ports and their owners; `run_dir/up/`:
//!   networks whose bridge and rules are in place.
//! - `netns_dir/<container>`: pinned network namespaces.
//! - the DNS table of [`DnsOptions`] (kos-dns's format, written with kos-dns's library).

#![cfg_attr(test, allow(clippy::unwrap_used))]

mod attach;
pub mod dns;
pub mod driver;
pub mod error;
pub mod etc;
pub mod firewall;
mod fsutil;
pub mod ipam;
mod link_reaper;
pub mod mac;
mod manager;
pub mod names;
pub mod netconf;
pub mod netlink;
pub mod netns;
pub mod port_registry;
pub mod ports;
mod reconcile;
pub mod record;
pub mod sysctl;

pub use attach::{AttachRequest, AttachStep, NetworkMode};
pub use dns::DnsOptions;
pub use error::{Error, Result};
pub use etc::EtcSpec;
pub use manager::{Networks, Options, ReconcileReport};
pub use netconf::{DriverKind, Network, NetworkSpec, SubnetSpec};
pub use ports::{PortMapping, Protocol, PublishedPort};
pub use record::{AttachKind, AttachState, Attachment};
