//! One error type for the crate: each variant says which step failed and keeps its source.

use std::io;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    // --- bad input, reported before anything is made ---
    #[error("invalid network name {0:?}: use 1-64 characters from [A-Za-z0-9_.-], starting with a letter or digit")]
    InvalidName(String),
    #[error("invalid container id {0:?}: use 1-128 characters from [A-Za-z0-9_.-]")]
    InvalidContainerId(String),
    #[error("network {0:?} already exists")]
    DuplicateNetwork(String),
    #[error("network {0:?} not found")]
    NetworkNotFound(String),
    #[error("unknown network driver {0:?} (known: bridge, host, none)")]
    UnknownDriver(String),
    #[error("invalid CIDR {value:?}: {reason}")]
    InvalidCidr { value: String, reason: String },
    #[error("invalid IP address {0:?}")]
    InvalidIp(String),
    #[error("gateway {gateway} is outside subnet {subnet}")]
    GatewayOutsideSubnet { gateway: IpAddr, subnet: IpNet },
    #[error("ip-range {range} is outside subnet {subnet}")]
    RangeOutsideSubnet { range: IpNet, subnet: IpNet },
    #[error("subnet {subnet} overlaps {other} of {owner}")]
    SubnetOverlap {
        subnet: IpNet,
        other: IpNet,
        owner: String,
    },
    #[error("no free default subnet: every candidate overlaps a host route or another network")]
    NoFreeSubnet,
    #[error("invalid bridge name {0:?}: 1-15 characters, no '/', ':' or whitespace")]
    InvalidBridgeName(String),
    #[error("bridge name {name:?} is already used by network {owner:?}")]
    BridgeInUse { name: String, owner: String },
    #[error("invalid MTU {0}: must be between 68 and 65535")]
    InvalidMtu(u32),
    #[error("invalid option for network {network:?}: {reason}")]
    InvalidOption { network: String, reason: String },
    #[error("address {ip} is outside the pool {subnet} of network {network:?}")]
    IpOutsidePool {
        ip: IpAddr,
        subnet: IpNet,
        network: String,
    },
    #[error(
        "address {ip} is reserved on network {network:?} (network, gateway or broadcast address)"
    )]
    IpReserved { ip: IpAddr, network: String },
    #[error("address {ip} on network {network:?} is already taken by {owner}")]
    IpTaken {
        ip: IpAddr,
        network: String,
        owner: String,
    },
    #[error("address pool {subnet} of network {network:?} is exhausted")]
    PoolExhausted { subnet: IpNet, network: String },
    #[error("invalid MAC address {0:?}")]
    InvalidMac(String),
    #[error("invalid interface name {0:?}: 1-15 characters, no '/', ':' or whitespace")]
    InvalidIfName(String),
    #[error("invalid port mapping {spec}: {reason}")]
    InvalidPort { spec: String, reason: String },
    #[error("host port {port}/{proto} on {host_ip} is already published by {owner}")]
    PortConflict {
        host_ip: String,
        port: u16,
        proto: &'static str,
        owner: String,
    },
    #[error("no free host port in {first}-{last}/{proto}")]
    NoFreePort {
        first: u16,
        last: u16,
        proto: &'static str,
    },
    #[error("container {container:?} is already attached to network {network:?}")]
    AlreadyAttached { container: String, network: String },
    #[error("container {container:?} is not attached to network {network:?}")]
    NotAttached { container: String, network: String },
    #[error("network {network:?} still has {count} attachment(s)")]
    NetworkInUse { network: String, count: usize },
    #[error("container {0:?} has no network namespace to join")]
    NoNetnsToJoin(String),
    #[error("invalid network mode {0:?}")]
    InvalidMode(String),

    // --- system steps that failed ---
    #[error("{step}: {source}")]
    Io {
        step: String,
        #[source]
        source: io::Error,
    },
    #[error("{step}: {path}: {source}")]
    File {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{step}: {path}: {source}")]
    Corrupt {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("netlink: {step}: {source}")]
    Netlink {
        step: String,
        #[source]
        source: io::Error,
    },
    #[error("network namespace {path}: {step}: {source}")]
    Netns {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("nftables: {step}: {detail}")]
    Nft { step: String, detail: String },
    #[error("sysctl {path}: {source}")]
    Sysctl {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("dns: {step}: {source}")]
    Dns {
        step: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    pub(crate) fn io(step: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            step: step.into(),
            source,
        }
    }

    pub(crate) fn file(step: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::File {
            step,
            path: path.into(),
            source,
        }
    }

    pub(crate) fn netlink(step: impl Into<String>, source: io::Error) -> Self {
        Error::Netlink {
            step: step.into(),
            source,
        }
    }
}
