//! The table compiled for lookups: per network, names to addresses and addresses to names.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

use crate::table::Table;

/// A name's addresses on one network.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Addrs {
    pub v4: Vec<Ipv4Addr>,
    pub v6: Vec<Ipv6Addr>,
}

#[derive(Debug)]
struct NetIndex {
    subnets: Vec<IpNet>,
    /// Lowercase, without trailing dot, with and without the domain.
    domain: Option<String>,
    names: HashMap<String, Addrs>,
    /// Address to the container's canonical name (`name` or `name.domain`).
    reverse: HashMap<IpAddr, String>,
}

/// Lookup view of a [`Table`].
#[derive(Debug, Default)]
pub struct Index {
    networks: Vec<NetIndex>,
    gateways: Vec<IpAddr>,
}

/// The networks an asker may see names of: those whose subnets hold its address.
pub struct View<'a> {
    nets: Vec<&'a NetIndex>,
}

/// A name lookup's result within a view.
#[derive(Debug, PartialEq, Eq)]
pub enum NameLookup {
    /// The name is registered: its addresses (one kind may be empty).
    Found(Addrs),
    /// Not registered, but inside a network's domain: the server is authoritative, NXDOMAIN.
    NoSuchName,
    /// Not ours: forward upstream.
    NotLocal,
}

/// A reverse lookup's result within a view.
#[derive(Debug, PartialEq, Eq)]
pub enum AddrLookup {
    Found(Vec<String>),
    /// Inside a visible subnet but unassigned: NXDOMAIN without asking upstream.
    NoSuchAddr,
    NotLocal,
}

impl Index {
    pub fn build(table: &Table) -> Index {
        let mut gateways = Vec::new();
        let mut networks = Vec::new();
        for net in table.networks.values() {
            for gw in &net.gateways {
                if !gateways.contains(gw) {
                    gateways.push(*gw);
                }
            }
            let domain = net
                .domain
                .as_deref()
                .map(|d| d.trim_end_matches('.').to_ascii_lowercase());
            let mut names: HashMap<String, Addrs> = HashMap::new();
            let mut reverse = HashMap::new();
            for entry in &net.entries {
                let canonical = match &domain {
                    Some(d) => format!("{}.{d}", entry.name.to_ascii_lowercase()),
                    None => entry.name.to_ascii_lowercase(),
                };
                for ip in &entry.ipv4 {
                    reverse.entry(IpAddr::V4(*ip)).or_insert(canonical.clone());
                }
                for ip in &entry.ipv6 {
                    reverse.entry(IpAddr::V6(*ip)).or_insert(canonical.clone());
                }
                for name in entry.names() {
                    let mut keys = vec![name.clone()];
                    if let Some(d) = &domain {
                        keys.push(format!("{name}.{d}"));
                    }
                    for key in keys {
                        let addrs = names.entry(key).or_default();
                        // Two containers may share an alias: both answer, as Docker does.
                        for ip in &entry.ipv4 {
                            if !addrs.v4.contains(ip) {
                                addrs.v4.push(*ip);
                            }
                        }
                        for ip in &entry.ipv6 {
                            if !addrs.v6.contains(ip) {
                                addrs.v6.push(*ip);
                            }
                        }
                    }
                }
            }
            networks.push(NetIndex {
                subnets: net.subnets.clone(),
                domain,
                names,
                reverse,
            });
        }
        Index { networks, gateways }
    }

    /// Every address the server should listen on.
    pub fn gateways(&self) -> &[IpAddr] {
        &self.gateways
    }

    /// The view for an asker at `source`; None when it is on none of the networks.
    pub fn view(&self, source: IpAddr) -> Option<View<'_>> {
        let source = canonical_ip(source);
        let nets: Vec<&NetIndex> = self
            .networks
            .iter()
            .filter(|n| n.subnets.iter().any(|s| s.contains(&source)))
            .collect();
        (!nets.is_empty()).then_some(View { nets })
    }
}

impl View<'_> {
    /// `name`: lowercase, no trailing dot.
    pub fn lookup_name(&self, name: &str) -> NameLookup {
        let mut found: Option<Addrs> = None;
        for net in &self.nets {
            if let Some(addrs) = net.names.get(name) {
                let acc = found.get_or_insert_with(Addrs::default);
                for ip in &addrs.v4 {
                    if !acc.v4.contains(ip) {
                        acc.v4.push(*ip);
                    }
                }
                for ip in &addrs.v6 {
                    if !acc.v6.contains(ip) {
                        acc.v6.push(*ip);
                    }
                }
            }
        }
        if let Some(addrs) = found {
            return NameLookup::Found(addrs);
        }
        let in_our_domain = self.nets.iter().any(|n| {
            n.domain
                .as_deref()
                .is_some_and(|d| name == d || name.ends_with(&format!(".{d}")))
        });
        if in_our_domain {
            NameLookup::NoSuchName
        } else {
            NameLookup::NotLocal
        }
    }

    pub fn lookup_addr(&self, ip: IpAddr) -> AddrLookup {
        let ip = canonical_ip(ip);
        let mut names = Vec::new();
        for net in &self.nets {
            if let Some(name) = net.reverse.get(&ip) {
                if !names.contains(name) {
                    names.push(name.clone());
                }
            }
        }
        if !names.is_empty() {
            AddrLookup::Found(names)
        } else if self
            .nets
            .iter()
            .any(|n| n.subnets.iter().any(|s| s.contains(&ip)))
        {
            AddrLookup::NoSuchAddr
        } else {
            AddrLookup::NotLocal
        }
    }
}

/// A v4 asker reaching a dual-stack socket shows up as `::ffff:a.b.c.d`.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}
