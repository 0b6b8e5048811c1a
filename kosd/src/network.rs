//! Docker networks over kos-network: the default `bridge` network (device
//! `kos0` unless `--bridge` says otherwise), user bridge networks, published
//! ports, and the Docker JSON shapes of networks and endpoints.

use std::collections::BTreeMap;
use std::sync::Arc;

use bollard_stubs::models::HostConfig;
use kos_network::{Attachment, Networks, Options, PortMapping, Protocol};
use serde_json::{json, Value};

use crate::config::Config;
use crate::error::{ApiError, Result};

/// The name Docker users know the default network by.
pub const DEFAULT: &str = "bridge";

pub fn open(config: &Config) -> Arc<Networks> {
    Arc::new(Networks::new(Options {
        data_dir: config.data_root.join("network"),
        run_dir: config.exec_root.join("network"),
        netns_dir: config.exec_root.join("netns"),
        nft_table: config.nft_table.clone(),
        default_network: DEFAULT.to_string(),
        default_bridge: config.bridge.clone(),
        manage_ip_forward: true,
        dns: Some(crate::dns_server::options(config)),
    }))
}

impl From<kos_network::Error> for ApiError {
    fn from(e: kos_network::Error) -> Self {
        use kos_network::Error as E;
        match &e {
            E::NetworkNotFound(n) => ApiError::NotFound(format!("network {n} not found")),
            E::DuplicateNetwork(n) => {
                ApiError::Conflict(format!("network with name {n} already exists"))
            }
            E::PortConflict { .. }
            | E::NoFreePort { .. }
            | E::IpTaken { .. }
            | E::AlreadyAttached { .. }
            | E::NetworkInUse { .. }
            | E::BridgeInUse { .. } => ApiError::Conflict(e.to_string()),
            E::NotAttached { .. } => ApiError::NotFound(e.to_string()),
            E::InvalidName(_)
            | E::InvalidCidr { .. }
            | E::InvalidIp(_)
            | E::InvalidPort { .. }
            | E::InvalidMode(_)
            | E::UnknownDriver(_)
            | E::InvalidOption { .. }
            | E::InvalidMtu(_)
            | E::InvalidBridgeName(_)
            | E::GatewayOutsideSubnet { .. }
            | E::RangeOutsideSubnet { .. }
            | E::SubnetOverlap { .. }
            | E::InvalidMac(_)
            | E::IpOutsidePool { .. }
            | E::IpReserved { .. } => ApiError::BadRequest(e.to_string()),
            _ => ApiError::Internal(e.to_string()),
        }
    }
}

/// The store name of a network the user named (`default` is the default network).
/// The networks every engine has beside kos-network's: (name, driver), as dockerd.
pub const BUILTIN: [(&str, &str); 2] = [("host", "host"), ("none", "null")];

/// The driver of network `name`: a built-in one's, else bridge (kos-network's only one).
pub fn driver_of(name: &str) -> &'static str {
    BUILTIN
        .iter()
        .find(|(n, _)| *n == name)
        .map_or("bridge", |(_, d)| d)
}

pub fn canonical(name: &str) -> &str {
    if name == "default" {
        DEFAULT
    } else {
        name
    }
}

fn proto(s: &str) -> Result<Protocol> {
    match s {
        "" | "tcp" => Ok(Protocol::Tcp),
        "udp" => Ok(Protocol::Udp),
        "sctp" => Ok(Protocol::Sctp),
        other => Err(ApiError::bad(format!("invalid protocol {other:?}"))),
    }
}

/// `-p` bindings plus, with `-P`, every exposed port on a random host port.
pub fn port_mappings(hc: &HostConfig, exposed: &[String]) -> Result<Vec<PortMapping>> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (key, binds) in hc.port_bindings.clone().unwrap_or_default() {
        let (port, pr) = key.split_once('/').unwrap_or((&key, "tcp"));
        let cp: u16 = port
            .parse()
            .map_err(|_| ApiError::bad(format!("invalid port {key:?}")))?;
        seen.insert(key.clone());
        for b in binds.unwrap_or_default() {
            let host_ip = match b.host_ip.as_deref().filter(|s| !s.is_empty()) {
                None => None,
                Some("0.0.0.0") | Some("::") => None,
                Some(ip) => Some(
                    ip.parse()
                        .map_err(|_| ApiError::bad(format!("invalid host IP {ip:?}")))?,
                ),
            };
            let hp = b.host_port.as_deref().unwrap_or("");
            let (hp, hp_end) = match hp.split_once('-') {
                Some((a, b)) => (a, Some(b)),
                None => (hp, None),
            };
            let host_port: u16 = if hp.is_empty() {
                0
            } else {
                hp.parse()
                    .map_err(|_| ApiError::bad(format!("invalid host port {hp:?}")))?
            };
            let host_port_end = hp_end
                .map(|e| {
                    e.parse::<u16>()
                        .map_err(|_| ApiError::bad(format!("invalid host port range {e:?}")))
                })
                .transpose()?;
            out.push(PortMapping {
                host_ip,
                host_port,
                host_port_end,
                container_port: cp,
                container_port_end: None,
                protocol: proto(pr)?,
            });
        }
    }
    if hc.publish_all_ports.unwrap_or(false) {
        for key in exposed {
            if seen.contains(key) {
                continue;
            }
            let (port, pr) = key.split_once('/').unwrap_or((key, "tcp"));
            let cp: u16 = port
                .parse()
                .map_err(|_| ApiError::bad(format!("invalid port {key:?}")))?;
            out.push(PortMapping {
                host_ip: None,
                host_port: 0,
                host_port_end: None,
                container_port: cp,
                container_port_end: None,
                protocol: proto(pr)?,
            });
        }
    }
    Ok(out)
}

/// An endpoint not (yet) attached: what a created or stopped container shows.
pub fn skeleton(aliases: Value) -> Value {
    json!({
        "IPAMConfig": null, "Links": null, "Aliases": aliases, "MacAddress": "",
        "NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
        "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
        "DriverOpts": null, "DNSNames": null,
    })
}

/// The endpoint as Docker shows it under NetworkSettings.Networks.
pub fn endpoint(a: &Attachment, aliases: &[String]) -> Value {
    let v4 = a.addresses.iter().find(|n| n.addr().is_ipv4());
    let v6 = a.addresses.iter().find(|n| n.addr().is_ipv6());
    let gw4 = a.gateways.iter().find(|g| g.is_ipv4());
    let gw6 = a.gateways.iter().find(|g| g.is_ipv6());
    json!({
        "IPAMConfig": null, "Links": null,
        "Aliases": if aliases.is_empty() { Value::Null } else { json!(aliases) },
        "MacAddress": a.mac.clone().unwrap_or_default(),
        "NetworkID": a.network, "EndpointID": a.host_veth,
        "Gateway": gw4.map(|g| g.to_string()).unwrap_or_default(),
        "IPAddress": v4.map(|n| n.addr().to_string()).unwrap_or_default(),
        "IPPrefixLen": v4.map(|n| n.prefix_len()).unwrap_or(0),
        "IPv6Gateway": gw6.map(|g| g.to_string()).unwrap_or_default(),
        "GlobalIPv6Address": v6.map(|n| n.addr().to_string()).unwrap_or_default(),
        "GlobalIPv6PrefixLen": v6.map(|n| n.prefix_len()).unwrap_or(0),
        "DriverOpts": null, "DNSNames": if a.names.is_empty() { Value::Null } else { json!(a.names) },
    })
}

/// `NetworkSettings.Ports`: `{"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}`.
pub fn ports_json(atts: &[Attachment], exposed: &[String]) -> Value {
    let mut m: BTreeMap<String, Value> = BTreeMap::new();
    for e in exposed {
        m.insert(e.clone(), Value::Null);
    }
    for a in atts {
        for p in &a.ports {
            let key = format!("{}/{}", p.container_port, p.protocol.as_str());
            let entry = m.entry(key).or_insert_with(|| json!([]));
            if entry.is_null() {
                *entry = json!([]);
            }
            if let Some(arr) = entry.as_array_mut() {
                arr.push(json!({"HostIp": p.host_ip.map(|i| i.to_string()).unwrap_or_else(|| "0.0.0.0".into()), "HostPort": p.host_port.to_string()}));
            }
        }
    }
    json!(m)
}

/// A network as `docker network inspect` shows it.
pub fn network_json(n: &kos_network::Network, containers: Value) -> Value {
    let config: Vec<Value> = n
        .subnets
        .iter()
        .map(|s| json!({"Subnet": s.subnet.to_string(), "Gateway": s.gateway.to_string()}))
        .collect();
    json!({
        "Name": n.name,
        "Id": n.name,
        "Created": crate::timefmt::ZERO_TIME,
        "Scope": "local",
        "Driver": format!("{:?}", n.driver).to_lowercase(),
        "EnableIPv6": n.has_ipv6(),
        "IPAM": {"Driver": "default", "Options": {}, "Config": config},
        "Internal": n.internal,
        "Attachable": false,
        "Ingress": false,
        "ConfigFrom": {"Network": ""},
        "ConfigOnly": false,
        "Containers": containers,
        "Options": if n.bridge.is_empty() { json!({}) } else { json!({"com.docker.network.bridge.name": n.bridge}) },
        "Labels": n.labels,
    })
}
