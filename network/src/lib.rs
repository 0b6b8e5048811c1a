//! Container networking for KOS: network drivers (bridge, host, none, container), pinned
//! network namespaces, veth pairs over netlink, IPAM, and NAT, isolation and published ports
//! in KOS's own nftables table. A library with no daemon assumptions: all state lives in
//! files under the directories given in [`Options`], so any process (kosd, a test, a CLI)
//! can attach, detach and reconcile.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod dns;
pub mod driver;
pub mod error;
pub mod etc;
pub mod firewall;
mod fsutil;
pub mod ipam;
pub mod mac;
mod manager;
pub mod names;
pub mod netconf;
pub mod netlink;
pub mod netns;
pub mod ports;
mod reconcile;
pub mod record;
pub mod sysctl;

pub use dns::DnsOptions;
pub use error::{Error, Result};
pub use etc::EtcSpec;
pub use manager::{AttachRequest, AttachStep, NetworkMode, Networks, Options, ReconcileReport};
pub use netconf::{DriverKind, Network, NetworkSpec, SubnetSpec};
pub use ports::{PortMapping, Protocol, PublishedPort};
pub use record::{AttachKind, AttachState, Attachment};
