//! Firewall: NAT, isolation and published ports behind one small trait. The nftables back end
//! is the only one; the trait keeps the rest of the crate independent of how rules are made.

mod nftables;

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::ports::Protocol;

pub use self::nftables::Nftables;

/// What the firewall needs to know about one bridge network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRules {
    pub bridge: String,
    pub subnets: Vec<IpNet>,
    /// No masquerade and nothing forwarded in or out.
    pub internal: bool,
}

/// One published port as a DNAT entry: traffic to `host_ip:host_port` (any local address when
/// `host_ip` is None) goes to `container_ip:container_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortRule {
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub protocol: Protocol,
    pub container_ip: IpAddr,
    pub container_port: u16,
}

pub trait FirewallDriver: Send + Sync {
    /// Makes the network's rules (idempotent).
    fn setup_network(&self, net: &NetworkRules) -> Result<()>;
    /// Removes the network's rules; what is already gone is not an error.
    fn teardown_network(&self, net: &NetworkRules) -> Result<()>;
    /// Adds DNAT entries, all in one transaction.
    fn add_ports(&self, rules: &[PortRule]) -> Result<()>;
    /// Removes DNAT entries; entries already gone are not an error.
    fn remove_ports(&self, rules: &[PortRule]) -> Result<()>;
    /// Every DNAT entry present (for reconcile).
    fn list_ports(&self) -> Result<Vec<PortRule>>;
    /// Bridges the firewall knows about (for reconcile).
    fn list_bridges(&self) -> Result<Vec<String>>;
    /// Removes everything KOS made (its whole table).
    fn remove_all(&self) -> Result<()>;
}
