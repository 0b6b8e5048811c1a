//! Network drivers behind one small trait, one file each.

mod bridge;
mod container;
mod host;
mod none;

use std::net::IpAddr;
use std::path::PathBuf;

use crate::error::Result;
use crate::firewall::FirewallDriver;
use crate::ipam::Ipam;
use crate::netconf::Network;
use crate::netns::NetnsDir;
use crate::record::{Attachment, Records};

pub use bridge::BridgeDriver;
pub use container::ContainerDriver;
pub use host::HostDriver;
pub use none::NoneDriver;

/// What drivers share: the state stores and the firewall.
pub struct Context<'a> {
    pub firewall: &'a dyn FirewallDriver,
    pub ipam: &'a Ipam,
    pub records: &'a Records,
    pub pins: &'a NetnsDir,
    /// Where "network is up" markers live (a tmpfs dir: they vanish with the bridges at boot).
    pub up_dir: PathBuf,
    /// Enable net.ipv4.ip_forward (and IPv6 forwarding) for networks with a way out.
    pub manage_ip_forward: bool,
    /// Container-name registration (None: no DNS).
    pub dns: Option<&'a crate::dns::DnsOptions>,
    /// Where host veth ends are deleted in the background, and whether a detach leaves them
    /// there (set down) instead of deleting them itself.
    pub(crate) links: &'a crate::link_reaper::LinkReaper,
    pub(crate) defer_link_deletion: bool,
}

/// A validated request of one container on one network, as drivers see it.
pub struct Plan<'a> {
    pub network: Option<&'a Network>,
    pub static_ips: &'a [IpAddr],
    pub mac: Option<[u8; 6]>,
}

pub trait NetworkDriver {
    /// Makes what the network's attachments share (bridge, addresses, firewall rules);
    /// idempotent and cheap when already done.
    fn bring_up(&self, ctx: &Context<'_>, net: &Network) -> Result<()>;
    /// Removes what `bring_up` made; what is already gone is not an error.
    fn bring_down(&self, ctx: &Context<'_>, net: &Network) -> Result<()>;
    /// Connects the container. `rec` is the journal: it is persisted by the driver before each
    /// step that makes something, so that [`NetworkDriver::detach`] can undo a partial attach.
    fn attach(&self, ctx: &Context<'_>, plan: &Plan<'_>, rec: &mut Attachment) -> Result<()>;
    /// Disconnects the container using the record alone; idempotent.
    fn detach(&self, ctx: &Context<'_>, rec: &Attachment) -> Result<()>;
}
