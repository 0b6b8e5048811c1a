//! Network definitions: what a user asks for ([`NetworkSpec`]) and the validated, persisted
//! form ([`Network`]), with the subnet checks and the default-subnet choice.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::names::{check_network_name, default_bridge_name, stable_hash, valid_ifname};

/// The drivers a network can be created with. `container:<id>` is a mode of attachment, not
/// a network (see [`crate::NetworkMode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DriverKind {
    Bridge,
    Host,
    None,
}

impl FromStr for DriverKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "" | "bridge" => Ok(DriverKind::Bridge),
            "host" => Ok(DriverKind::Host),
            "none" | "null" => Ok(DriverKind::None),
            other => Err(Error::UnknownDriver(other.to_string())),
        }
    }
}

/// One subnet as the user wrote it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubnetSpec {
    pub subnet: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_range: Option<String>,
}

/// A network as the user asks for it (Docker's `network create` options).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkSpec {
    pub name: String,
    /// "bridge" (default), "host" or "none".
    #[serde(default)]
    pub driver: String,
    #[serde(default)]
    pub bridge_name: Option<String>,
    /// Empty: one IPv4 subnet chosen so that it overlaps no host route and no other network.
    #[serde(default)]
    pub subnets: Vec<SubnetSpec>,
    /// Dual stack: an IPv6 subnet is added (a ULA /64) when none is given.
    #[serde(default)]
    pub ipv6: bool,
    /// No way in or out: no masquerade, no forwarding, no default route, no published ports.
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Containers of the network may talk to each other (default true).
    #[serde(default = "yes")]
    pub enable_icc: bool,
}

fn yes() -> bool {
    true
}

impl NetworkSpec {
    /// A bridge network with defaults for everything but the name.
    pub fn bridge(name: &str) -> Self {
        NetworkSpec {
            name: name.to_string(),
            driver: "bridge".to_string(),
            bridge_name: None,
            subnets: Vec::new(),
            ipv6: false,
            internal: false,
            mtu: None,
            labels: BTreeMap::new(),
            enable_icc: true,
        }
    }

    pub fn with_subnet(mut self, subnet: &str) -> Self {
        self.subnets.push(SubnetSpec {
            subnet: subnet.to_string(),
            ..SubnetSpec::default()
        });
        self
    }
}

/// A validated subnet of a network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subnet {
    pub subnet: IpNet,
    pub gateway: IpAddr,
    /// Where dynamic addresses come from (default: the whole subnet).
    pub ip_range: Option<IpNet>,
}

impl Subnet {
    /// The gateway with the subnet's prefix length, as set on the bridge.
    pub fn gateway_net(&self) -> IpNet {
        IpNet::new(self.gateway, self.subnet.prefix_len()).unwrap_or(self.subnet)
    }

    /// Addresses never handed out: network address, gateway and (IPv4) broadcast.
    pub fn is_reserved(&self, ip: IpAddr) -> bool {
        if ip == self.gateway || ip == self.subnet.network() {
            return true;
        }
        match self.subnet {
            IpNet::V4(v4) => v4.prefix_len() < 31 && ip == IpAddr::V4(v4.broadcast()),
            IpNet::V6(_) => false,
        }
    }
}

/// A validated network, as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    pub name: String,
    pub driver: DriverKind,
    /// Bridge device name (bridge driver only).
    #[serde(default)]
    pub bridge: String,
    #[serde(default)]
    pub subnets: Vec<Subnet>,
    #[serde(default)]
    pub internal: bool,
    #[serde(default)]
    pub mtu: Option<u32>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default = "yes")]
    pub enable_icc: bool,
}

impl Network {
    pub fn has_ipv6(&self) -> bool {
        self.subnets.iter().any(|s| s.subnet.addr().is_ipv6())
    }
}

fn parse_cidr(value: &str) -> Result<IpNet> {
    let net = IpNet::from_str(value.trim()).map_err(|e| Error::InvalidCidr {
        value: value.to_string(),
        reason: e.to_string(),
    })?;
    if net != net.trunc() {
        return Err(Error::InvalidCidr {
            value: value.to_string(),
            reason: format!("host bits set (did you mean {}?)", net.trunc()),
        });
    }
    let max_prefix = match net {
        IpNet::V4(_) => 30,
        IpNet::V6(_) => 126,
    };
    if net.prefix_len() > max_prefix || net.prefix_len() < 8 {
        return Err(Error::InvalidCidr {
            value: value.to_string(),
            reason: format!("prefix length must be between 8 and {max_prefix}"),
        });
    }
    Ok(net)
}

fn parse_ip(value: &str) -> Result<IpAddr> {
    IpAddr::from_str(value.trim()).map_err(|_| Error::InvalidIp(value.to_string()))
}

/// First usable host address of a subnet (the default gateway).
fn first_host(net: IpNet) -> IpAddr {
    match net {
        IpNet::V4(v4) => IpAddr::V4((u32::from(v4.network()) + 1).into()),
        IpNet::V6(v6) => IpAddr::V6((u128::from(v6.network()) + 1).into()),
    }
}

fn validate_subnet(spec: &SubnetSpec) -> Result<Subnet> {
    let subnet = parse_cidr(&spec.subnet)?;
    let gateway = match &spec.gateway {
        Some(g) => parse_ip(g)?,
        None => first_host(subnet),
    };
    let candidate = Subnet {
        subnet,
        gateway,
        ip_range: None,
    };
    if !subnet.contains(&gateway)
        || gateway == subnet.network()
        || (subnet.addr().is_ipv4() && gateway == subnet.broadcast())
    {
        return Err(Error::GatewayOutsideSubnet { gateway, subnet });
    }
    let ip_range = match &spec.ip_range {
        Some(r) => {
            let range = IpNet::from_str(r.trim()).map_err(|e| Error::InvalidCidr {
                value: r.clone(),
                reason: e.to_string(),
            })?;
            if !subnet.contains(&range) {
                return Err(Error::RangeOutsideSubnet { range, subnet });
            }
            Some(range.trunc())
        }
        None => None,
    };
    Ok(Subnet {
        ip_range,
        ..candidate
    })
}

/// Default IPv4 candidates: 10.89.0.0/24 .. 10.99.255.0/24 (10.88.0.0/16 is the default
/// network's, tried first for it).
fn v4_candidates() -> impl Iterator<Item = IpNet> {
    (89u32..=99).flat_map(|second| {
        (0u32..=255).filter_map(move |third| {
            Ipv4Net::new((10 << 24 | second << 16 | third << 8).into(), 24)
                .ok()
                .map(IpNet::V4)
        })
    })
}

/// The default network's candidates: 10.88.0.0/16, then the user-network /24s.
pub fn default_network_candidates() -> impl Iterator<Item = IpNet> {
    Ipv4Net::new([10, 88, 0, 0].into(), 16)
        .ok()
        .map(IpNet::V4)
        .into_iter()
        .chain(v4_candidates())
}

/// A ULA /64 derived from the network name (stable, so a re-created network gets the same).
fn default_v6_subnet(name: &str, taken: &[IpNet]) -> Result<IpNet> {
    for salt in 0u32..64 {
        let h = stable_hash(&[name, &salt.to_string()]);
        let prefix: u128 = (0xfd00u128 << 112) | (u128::from(h & 0x00ff_ffff_ffff_ffff) << 64);
        let net = Ipv6Net::new(Ipv6Addr::from(prefix), 64)
            .map(IpNet::V6)
            .map_err(|_| Error::NoFreeSubnet)?;
        if !taken.iter().any(|t| overlaps(t, &net)) {
            return Ok(net);
        }
    }
    Err(Error::NoFreeSubnet)
}

pub fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Chooses the first candidate that overlaps none of `taken`.
pub fn choose_subnet(candidates: impl Iterator<Item = IpNet>, taken: &[IpNet]) -> Result<IpNet> {
    candidates
        .into_iter()
        .find(|c| !taken.iter().any(|t| overlaps(t, c)))
        .ok_or(Error::NoFreeSubnet)
}

/// What validation needs to know about the rest of the world.
pub struct Existing<'a> {
    pub networks: &'a [Network],
    /// Destinations of the host's routes (only used when a subnet is chosen automatically).
    pub host_routes: &'a [IpNet],
    /// Candidates for an automatically chosen IPv4 subnet.
    pub candidates: &'a mut dyn Iterator<Item = IpNet>,
}

/// Validates a spec into a network. Nothing is made here; errors name the bad value.
pub fn validate(spec: &NetworkSpec, existing: Existing<'_>) -> Result<Network> {
    check_network_name(&spec.name)?;
    let driver = DriverKind::from_str(&spec.driver)?;
    if existing.networks.iter().any(|n| n.name == spec.name) {
        return Err(Error::DuplicateNetwork(spec.name.clone()));
    }
    let invalid = |reason: &str| Error::InvalidOption {
        network: spec.name.clone(),
        reason: reason.to_string(),
    };
    if driver != DriverKind::Bridge {
        if !spec.subnets.is_empty() || spec.ipv6 || spec.bridge_name.is_some() || spec.mtu.is_some()
        {
            return Err(invalid(
                "subnets, IPv6, bridge name and MTU apply to bridge networks only",
            ));
        }
        if existing.networks.iter().any(|n| n.driver == driver) {
            return Err(invalid(&format!(
                "only one {} network can exist",
                spec.driver
            )));
        }
        return Ok(Network {
            name: spec.name.clone(),
            driver,
            bridge: String::new(),
            subnets: Vec::new(),
            internal: spec.internal,
            mtu: None,
            labels: spec.labels.clone(),
            enable_icc: spec.enable_icc,
        });
    }

    if let Some(mtu) = spec.mtu {
        if !(68..=65535).contains(&mtu) {
            return Err(Error::InvalidMtu(mtu));
        }
    }
    let bridge = match &spec.bridge_name {
        Some(b) => {
            if !valid_ifname(b) {
                return Err(Error::InvalidBridgeName(b.clone()));
            }
            b.clone()
        }
        None => default_bridge_name(&spec.name),
    };
    if let Some(owner) = existing.networks.iter().find(|n| n.bridge == bridge) {
        return Err(Error::BridgeInUse {
            name: bridge,
            owner: owner.name.clone(),
        });
    }

    let mut subnets = spec
        .subnets
        .iter()
        .map(validate_subnet)
        .collect::<Result<Vec<_>>>()?;
    let v4_count = subnets.iter().filter(|s| s.subnet.addr().is_ipv4()).count();
    let v6_count = subnets.len() - v4_count;
    if v4_count > 1 || v6_count > 1 {
        return Err(invalid("at most one IPv4 and one IPv6 subnet"));
    }
    // Explicit subnets must not overlap each other or any other network.
    for (i, s) in subnets.iter().enumerate() {
        for other in &subnets[i + 1..] {
            if overlaps(&s.subnet, &other.subnet) {
                return Err(Error::SubnetOverlap {
                    subnet: other.subnet,
                    other: s.subnet,
                    owner: format!("network {:?}", spec.name),
                });
            }
        }
        for n in existing.networks {
            for o in &n.subnets {
                if overlaps(&s.subnet, &o.subnet) {
                    return Err(Error::SubnetOverlap {
                        subnet: s.subnet,
                        other: o.subnet,
                        owner: format!("network {:?}", n.name),
                    });
                }
            }
        }
    }

    let mut taken: Vec<IpNet> = existing
        .networks
        .iter()
        .flat_map(|n| n.subnets.iter().map(|s| s.subnet))
        .chain(existing.host_routes.iter().copied())
        .collect();
    // Every bridge network has IPv4 (as Docker's); IPv6 is added on request.
    if v4_count == 0 {
        let chosen = choose_subnet(existing.candidates, &taken)?;
        taken.push(chosen);
        subnets.insert(
            0,
            Subnet {
                subnet: chosen,
                gateway: first_host(chosen),
                ip_range: None,
            },
        );
    }
    if spec.ipv6 && v6_count == 0 {
        let chosen = default_v6_subnet(&spec.name, &taken)?;
        subnets.push(Subnet {
            subnet: chosen,
            gateway: first_host(chosen),
            ip_range: None,
        });
    }

    Ok(Network {
        name: spec.name.clone(),
        driver,
        bridge,
        subnets,
        internal: spec.internal,
        mtu: spec.mtu,
        labels: spec.labels.clone(),
        enable_icc: spec.enable_icc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(spec: &NetworkSpec, networks: &[Network], routes: &[IpNet]) -> Result<Network> {
        validate(
            spec,
            Existing {
                networks,
                host_routes: routes,
                candidates: &mut v4_candidates(),
            },
        )
    }

    #[test]
    fn default_subnet_skips_host_routes_and_networks() {
        let routes: Vec<IpNet> = vec!["10.89.0.0/16".parse().unwrap()];
        let a = check(&NetworkSpec::bridge("a"), &[], &routes).unwrap();
        assert_eq!(a.subnets[0].subnet.to_string(), "10.90.0.0/24");
        assert_eq!(a.subnets[0].gateway.to_string(), "10.90.0.1");
        let b = check(&NetworkSpec::bridge("b"), &[a], &routes).unwrap();
        assert_eq!(b.subnets[0].subnet.to_string(), "10.90.1.0/24");
    }

    #[test]
    fn bad_input_gives_one_clear_error() {
        let base = check(
            &NetworkSpec::bridge("a").with_subnet("10.50.0.0/16"),
            &[],
            &[],
        )
        .unwrap();
        let err = |spec: NetworkSpec| check(&spec, std::slice::from_ref(&base), &[]).unwrap_err();
        assert!(matches!(
            err(NetworkSpec::bridge("a")),
            Error::DuplicateNetwork(_)
        ));
        assert!(matches!(
            err(NetworkSpec::bridge("b").with_subnet("10.50.3.0/24")),
            Error::SubnetOverlap { .. }
        ));
        assert!(matches!(
            err(NetworkSpec::bridge("b").with_subnet("10.60.0.0/33")),
            Error::InvalidCidr { .. }
        ));
        assert!(matches!(
            err(NetworkSpec::bridge("b").with_subnet("10.60.0.1/24")),
            Error::InvalidCidr { .. }
        ));
        let mut gw = NetworkSpec::bridge("b");
        gw.subnets.push(SubnetSpec {
            subnet: "10.60.0.0/24".into(),
            gateway: Some("10.61.0.1".into()),
            ip_range: None,
        });
        assert!(matches!(err(gw), Error::GatewayOutsideSubnet { .. }));
        let mut unknown = NetworkSpec::bridge("b");
        unknown.driver = "macvlan".into();
        assert!(matches!(err(unknown), Error::UnknownDriver(_)));
        let mut mtu = NetworkSpec::bridge("b");
        mtu.mtu = Some(10);
        assert!(matches!(err(mtu), Error::InvalidMtu(10)));
        let mut br = NetworkSpec::bridge("b");
        br.bridge_name = Some(base.bridge.clone());
        assert!(matches!(err(br), Error::BridgeInUse { .. }));
    }

    #[test]
    fn dual_stack_gets_a_ula() {
        let mut spec = NetworkSpec::bridge("v6");
        spec.ipv6 = true;
        let n = check(&spec, &[], &[]).unwrap();
        assert_eq!(n.subnets.len(), 2);
        let v6 = n.subnets[1].subnet;
        assert!(v6.addr().is_ipv6() && v6.prefix_len() == 64);
        assert!(v6.to_string().starts_with("fd"));
        assert!(n.subnets[1].is_reserved(n.subnets[1].gateway));
    }
}
