//! `bridge`: a Linux bridge per network with the gateway addresses on it; each container gets
//! a veth pair with the host end in the bridge and the other end, under its final name, in the
//! container's namespace. Addresses, routes and links are made over netlink.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd;

use ipnet::IpNet;

use super::{Context, NetworkDriver, Plan};
use crate::dns;
use crate::error::{Error, Result};
use crate::firewall::{NetworkRules, PortRule};
use crate::fsutil;
use crate::mac;
use crate::netconf::Network;
use crate::netlink::{Netlink, PeerSpec};
use crate::netns;
use crate::record::Attachment;
use crate::sysctl;

pub struct BridgeDriver;

fn firewall_view(net: &Network) -> NetworkRules {
    NetworkRules {
        bridge: net.bridge.clone(),
        subnets: net.subnets.iter().map(|s| s.subnet).collect(),
        internal: net.internal,
    }
}

/// DNAT entries for the reserved ports: one per address family the container has, unless
/// the host IP names a family.
pub fn port_rules(rec: &Attachment) -> Result<Vec<PortRule>> {
    let mut out = Vec::new();
    for p in &rec.ports {
        let mut made = false;
        for addr in &rec.addresses {
            let ip = addr.addr();
            if p.host_ip.is_some_and(|h| h.is_ipv4() != ip.is_ipv4()) {
                continue;
            }
            out.push(PortRule {
                host_ip: p.host_ip,
                host_port: p.host_port,
                protocol: p.protocol,
                container_ip: ip,
                container_port: p.container_port,
            });
            made = true;
        }
        if !made {
            return Err(Error::InvalidPort {
                spec: format!(
                    "{}:{}",
                    p.host_ip.map(|i| i.to_string()).unwrap_or_default(),
                    p.host_port
                ),
                reason: format!(
                    "the container has no address of that family on network {:?}",
                    rec.network
                ),
            });
        }
    }
    Ok(out)
}

impl BridgeDriver {
    fn marker(ctx: &Context<'_>, net: &Network) -> std::path::PathBuf {
        ctx.up_dir.join(&net.name)
    }
}

impl NetworkDriver for BridgeDriver {
    fn bring_up(&self, ctx: &Context<'_>, net: &Network) -> Result<()> {
        let mut nl = Netlink::open().map_err(|e| Error::netlink("open socket", e))?;
        let marker = Self::marker(ctx, net);
        let existing = nl
            .link_by_name(&net.bridge)
            .map_err(|e| Error::netlink(format!("look up bridge {}", net.bridge), e))?;
        if existing.is_some() && marker.exists() {
            return Ok(());
        }
        let index = match existing {
            Some(link) if link.kind.as_deref() == Some("bridge") => link.index,
            Some(_) => {
                return Err(Error::BridgeInUse {
                    name: net.bridge.clone(),
                    owner: "a non-bridge link on the host".to_string(),
                })
            }
            None => {
                let gw = net
                    .subnets
                    .first()
                    .map(|s| s.gateway)
                    .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
                match nl.create_bridge(&net.bridge, net.mtu, mac::from_ip(gw)) {
                    Ok(i) => i,
                    // Another attachment made it at the same moment.
                    Err(e) if crate::netlink::is_exists(&e) => nl
                        .link_by_name(&net.bridge)
                        .map_err(|e| Error::netlink(format!("look up bridge {}", net.bridge), e))?
                        .map(|l| l.index)
                        .ok_or_else(|| {
                            Error::netlink(format!("create bridge {}", net.bridge), e)
                        })?,
                    Err(e) => {
                        return Err(Error::netlink(format!("create bridge {}", net.bridge), e))
                    }
                }
            }
        };
        for s in &net.subnets {
            nl.add_address(index, s.gateway_net()).map_err(|e| {
                Error::netlink(
                    format!("add {} to bridge {}", s.gateway_net(), net.bridge),
                    e,
                )
            })?;
        }
        nl.set_up(index)
            .map_err(|e| Error::netlink(format!("set bridge {} up", net.bridge), e))?;

        if !net.internal {
            // Per-bridge switches: packets from the bridge may be routed (hairpin, outbound),
            // and 127.0.0.1-sourced packets may leave through it after a published port's DNAT.
            sysctl::ensure(
                &sysctl::ipv4_conf(&net.bridge, "forwarding"),
                "1",
                "route traffic of the network",
            )?;
            sysctl::ensure(
                &sysctl::ipv4_conf(&net.bridge, "route_localnet"),
                "1",
                "published ports reachable through 127.0.0.1",
            )?;
            if ctx.manage_ip_forward {
                sysctl::ensure("net.ipv4.ip_forward", "1", "containers reach other hosts")?;
                if net.has_ipv6() && sysctl::has_ipv6() {
                    sysctl::ensure(
                        "net.ipv6.conf.all.forwarding",
                        "1",
                        "containers reach other hosts over IPv6",
                    )?;
                }
            }
        }
        ctx.firewall.setup_network(&firewall_view(net))?;
        fsutil::write_json(&marker, &net.bridge)?;
        tracing::info!(network = %net.name, bridge = %net.bridge, "network up");
        Ok(())
    }

    fn bring_down(&self, ctx: &Context<'_>, net: &Network) -> Result<()> {
        // Every step is tried even when an earlier one fails; the first failure is returned.
        let marker = fsutil::remove(&Self::marker(ctx, net));
        let rules = ctx.firewall.teardown_network(&firewall_view(net));
        let link = Netlink::open()
            .and_then(|mut nl| nl.delete_link_by_name(&net.bridge))
            .map_err(|e| Error::netlink(format!("delete bridge {}", net.bridge), e));
        marker.and(rules).and(link.map(drop))?;
        tracing::info!(network = %net.name, bridge = %net.bridge, "network down");
        Ok(())
    }

    fn attach(&self, ctx: &Context<'_>, plan: &Plan<'_>, rec: &mut Attachment) -> Result<()> {
        let net = plan
            .network
            .ok_or_else(|| Error::NetworkNotFound(rec.network.clone()))?;
        let netns_path = rec
            .netns
            .clone()
            .ok_or_else(|| Error::NoNetnsToJoin(rec.container_id.clone()))?;
        let ns_fd = netns::open(&netns_path)?;

        self.bring_up(ctx, net)?;

        // Addresses first: the record then lists everything the later steps make.
        rec.addresses = ctx.ipam.allocate(net, &rec.owner(), plan.static_ips)?;
        rec.gateways = if net.internal {
            Vec::new()
        } else {
            net.subnets.iter().map(|s| s.gateway).collect()
        };
        let primary = rec
            .addresses
            .iter()
            .find(|a| a.addr().is_ipv4())
            .or(rec.addresses.first())
            .map(|a| a.addr());
        let mac = plan
            .mac
            .unwrap_or_else(|| mac::from_ip(primary.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))));
        rec.mac = Some(mac::format(&mac));
        rec.port_rules = port_rules(rec)?;
        rec.dns_table = ctx.dns.map(|d| d.table.clone());
        ctx.records.write(rec)?;

        // The DNAT entries (an `nft` run) and the links (netlink) do not depend on each
        // other: they are made at the same time.
        let rules = rec.port_rules.clone();
        let (links, ports) = std::thread::scope(|scope| {
            let ports = (!rules.is_empty()).then(|| scope.spawn(|| ctx.firewall.add_ports(&rules)));
            let links = connect(ctx, net, rec, mac, ns_fd.as_fd(), &netns_path);
            (links, ports.map(join).unwrap_or(Ok(())))
        });
        links?;
        ports?;

        if let Some(d) = ctx.dns {
            dns::register(d, net, rec)?;
        }
        Ok(())
    }

    fn detach(&self, ctx: &Context<'_>, rec: &Attachment) -> Result<()> {
        // Every step is tried even when an earlier one fails; the first failure is returned.
        // Names go first, so nobody resolves an address that is about to be reused.
        let names = match (&rec.dns_table, ctx.dns) {
            (Some(table), Some(d)) => {
                let opts = dns::DnsOptions {
                    table: table.clone(),
                    ..d.clone()
                };
                dns::unregister(&opts, &rec.network, &rec.container_id)
            }
            (Some(table), None) => dns::unregister(
                &dns::DnsOptions {
                    table: table.clone(),
                    pid_file: None,
                    domain: None,
                },
                &rec.network,
                &rec.container_id,
            ),
            (None, _) => Ok(()),
        };
        // The DNAT entries and the veth go at the same time: deleting a link waits for RCU
        // grace periods, removing entries waits for an `nft` run.
        let (rules, link) = std::thread::scope(|scope| {
            let rules = (!rec.port_rules.is_empty())
                .then(|| scope.spawn(|| ctx.firewall.remove_ports(&rec.port_rules)));
            let link = if rec.host_veth.is_empty() {
                Ok(())
            } else {
                remove_host_veth(ctx, &rec.host_veth)
            };
            (rules.map(join).unwrap_or(Ok(())), link)
        });
        let addrs = ctx.ipam.release(&rec.network, &rec.owner()).map(drop);
        names.and(rules).and(link).and(addrs)
    }
}

/// Deletes the host end of a veth pair (and so the pair), or with deferred deletion sets it
/// down (no longer forwarding in its bridge, its learned MACs flushed) and leaves the deletion
/// to the link reaper.
fn remove_host_veth(ctx: &Context<'_>, name: &str) -> Result<()> {
    let mut nl = Netlink::open().map_err(|e| Error::netlink("open socket", e))?;
    if ctx.defer_link_deletion {
        let down = nl
            .set_down_by_name(name)
            .map_err(|e| Error::netlink(format!("set veth {name} down"), e))?;
        if let Some(index) = down {
            ctx.links.delete(index, name);
        }
        return Ok(());
    }
    nl.delete_link_by_name(name)
        .map(drop)
        .map_err(|e| Error::netlink(format!("delete veth {name}"), e))
}

/// Waits for a helper thread; a panic there is reported as an error of its step.
fn join(handle: std::thread::ScopedJoinHandle<'_, Result<()>>) -> Result<()> {
    handle.join().unwrap_or_else(|_| {
        Err(Error::io(
            "firewall step",
            std::io::Error::other("thread panicked"),
        ))
    })
}

/// The links of one attachment: the veth pair (container end made inside the namespace under
/// its final name), addresses, routes, loopback.
fn connect(
    ctx: &Context<'_>,
    net: &Network,
    rec: &Attachment,
    mac: [u8; 6],
    ns_fd: std::os::fd::BorrowedFd<'_>,
    netns_path: &std::path::Path,
) -> Result<()> {
    // A restarted container's veth has its old name: the old one must be gone first.
    ctx.links.wait_for(&rec.host_veth);
    let mut host = Netlink::open().map_err(|e| Error::netlink("open socket", e))?;
    let bridge = host
        .link_by_name(&net.bridge)
        .map_err(|e| Error::netlink(format!("look up bridge {}", net.bridge), e))?
        .ok_or_else(|| {
            Error::netlink(
                format!("look up bridge {}", net.bridge),
                std::io::Error::from_raw_os_error(libc::ENODEV),
            )
        })?;
    host.create_veth(
        &rec.host_veth,
        bridge.index,
        net.mtu,
        &PeerSpec {
            name: &rec.ifname,
            netns: ns_fd,
            mac,
        },
    )
    .map_err(|e| {
        Error::netlink(
            format!(
                "create veth {} / {} in {}",
                rec.host_veth,
                rec.ifname,
                netns_path.display()
            ),
            e,
        )
    })?;
    let host_index = host
        .set_up_by_name(&rec.host_veth)
        .map_err(|e| Error::netlink(format!("set {} up", rec.host_veth), e))?;
    // Hairpin only with published ports (the container reaching its own port through the
    // host): it also reflects the container's broadcasts, which fails IPv6 DAD.
    let hairpin = !rec.ports.is_empty();
    if hairpin || !net.enable_icc {
        host.set_port_flags(host_index, hairpin, !net.enable_icc)
            .map_err(|e| {
                Error::netlink(format!("set bridge port flags of {}", rec.host_veth), e)
            })?;
    }

    let mut inner = Netlink::open_in(ns_fd)
        .map_err(|e| Error::netlink("open socket in container namespace", e))?;
    let index = inner
        .link_by_name(&rec.ifname)
        .map_err(|e| Error::netlink(format!("look up {}", rec.ifname), e))?
        .ok_or_else(|| {
            Error::netlink(
                format!("look up {}", rec.ifname),
                std::io::Error::from_raw_os_error(libc::ENODEV),
            )
        })?
        .index;
    for addr in &rec.addresses {
        inner
            .add_address(index, *addr)
            .map_err(|e| Error::netlink(format!("add {addr} to {}", rec.ifname), e))?;
    }
    inner
        .set_up(index)
        .map_err(|e| Error::netlink(format!("set {} up", rec.ifname), e))?;
    inner
        .set_up_by_name("lo")
        .map_err(|e| Error::netlink("set loopback up", e))?;
    for gw in &rec.gateways {
        let default = match gw {
            IpAddr::V4(_) => IpNet::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            IpAddr::V6(_) => IpNet::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
        }
        .unwrap_or_default();
        inner
            .add_route(default, Some(*gw), index)
            .map_err(|e| Error::netlink(format!("add default route via {gw}"), e))?;
    }

    Ok(())
}
