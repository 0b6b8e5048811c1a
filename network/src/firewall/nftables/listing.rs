//! Reading `nft -j list table` back: set members and published ports.

use std::net::IpAddr;
use std::str::FromStr;

use crate::firewall::PortRule;
use crate::ports::Protocol;

/// Elements of set or map `name` in a table listing.
pub(super) fn elements_of<'v>(
    listing: &'v serde_json::Value,
    name: &str,
) -> Vec<&'v serde_json::Value> {
    let mut out = Vec::new();
    let Some(objects) = listing.get("nftables").and_then(|v| v.as_array()) else {
        return out;
    };
    for obj in objects {
        let inner = obj.get("map").or_else(|| obj.get("set"));
        if let Some(inner) = inner {
            if inner.get("name").and_then(|n| n.as_str()) == Some(name) {
                if let Some(elems) = inner.get("elem").and_then(|e| e.as_array()) {
                    out.extend(elems.iter());
                }
            }
        }
    }
    out
}

fn concat_items(v: &serde_json::Value) -> Option<&Vec<serde_json::Value>> {
    v.get("concat").and_then(|c| c.as_array())
}

fn json_ip(v: &serde_json::Value) -> Option<IpAddr> {
    v.as_str().and_then(|s| IpAddr::from_str(s).ok())
}

fn json_port(v: &serde_json::Value) -> Option<u16> {
    v.as_u64().and_then(|p| u16::try_from(p).ok())
}

fn json_proto(v: &serde_json::Value) -> Option<Protocol> {
    match v {
        serde_json::Value::String(s) => Protocol::from_str(s).ok(),
        serde_json::Value::Number(n) => match n.as_u64() {
            Some(6) => Some(Protocol::Tcp),
            Some(17) => Some(Protocol::Udp),
            Some(132) => Some(Protocol::Sctp),
            _ => None,
        },
        _ => None,
    }
}

/// (key items, value) of one map element `[{"concat": [...]}, value]`.
fn split_element(v: &serde_json::Value) -> Option<(&Vec<serde_json::Value>, &serde_json::Value)> {
    let pair = v.as_array()?;
    Some((concat_items(pair.first()?)?, pair.get(1)?))
}

/// Joins the address and port maps of one kind into port rules.
pub(super) fn parse_ports(
    addrs: &[&serde_json::Value],
    ports: &[&serde_json::Value],
    with_host: bool,
) -> Vec<PortRule> {
    let mut out = Vec::new();
    for a in addrs {
        let Some((key, addr)) = split_element(a) else {
            continue;
        };
        let Some(port) = ports
            .iter()
            .filter_map(|p| split_element(p))
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| json_port(v))
        else {
            continue;
        };
        let (host_ip, rest) = if with_host {
            match key.first().and_then(json_ip) {
                Some(ip) => (Some(ip), &key[1..]),
                None => continue,
            }
        } else {
            (None, &key[..])
        };
        let parsed = (|| {
            Some(PortRule {
                host_ip,
                protocol: json_proto(rest.first()?)?,
                host_port: json_port(rest.get(1)?)?,
                container_ip: json_ip(addr)?,
                container_port: port,
            })
        })();
        out.extend(parsed);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_joined_from_address_and_port_maps() {
        // The shape `nft -j list table` prints (nft 1.0.6).
        let dump: serde_json::Value = serde_json::from_str(
            r#"{"nftables": [
              {"metainfo": {"version": "1.0.6"}},
              {"map": {"name": "a4h", "elem": [[{"concat": ["127.0.0.1", "sctp", 8080]}, "10.1.2.3"]]}},
              {"map": {"name": "p4h", "elem": [[{"concat": ["127.0.0.1", "sctp", 8080]}, 9]]}},
              {"map": {"name": "a4a", "elem": [[{"concat": ["tcp", 80]}, "10.1.2.4"], [{"concat": [17, 53]}, "10.1.2.5"]]}},
              {"map": {"name": "p4a", "elem": [[{"concat": ["tcp", 80]}, 8080], [{"concat": [17, 53]}, 53]]}},
              {"set": {"name": "bridges", "elem": ["kos0", "kos1"]}}
            ]}"#,
        )
        .unwrap();
        let host = parse_ports(&elements_of(&dump, "a4h"), &elements_of(&dump, "p4h"), true);
        assert_eq!(
            host,
            vec![PortRule {
                host_ip: Some("127.0.0.1".parse().unwrap()),
                host_port: 8080,
                protocol: Protocol::Sctp,
                container_ip: "10.1.2.3".parse().unwrap(),
                container_port: 9,
            }]
        );
        let any = parse_ports(
            &elements_of(&dump, "a4a"),
            &elements_of(&dump, "p4a"),
            false,
        );
        assert_eq!(any.len(), 2);
        assert_eq!(
            (any[1].protocol, any[1].host_port, any[1].container_port),
            (Protocol::Udp, 53, 53)
        );
        assert_eq!(elements_of(&dump, "bridges").len(), 2);
        // Garbage is skipped, not trusted.
        let bad: serde_json::Value =
            serde_json::from_str(r#"{"nftables": [{"map": {"name": "a4a", "elem": [["x", 1]]}}]}"#)
                .unwrap();
        assert!(parse_ports(&elements_of(&bad, "a4a"), &[], false).is_empty());
    }
}
