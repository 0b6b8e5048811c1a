//! Reconcile: remove what a crash left half made. Runs when nothing else attaches (at daemon
//! start): an attachment still being made by another process would look abandoned.

use std::collections::{HashMap, HashSet};

use crate::error::{Error, Result};
use crate::firewall::PortRule;
use crate::manager::{Networks, ReconcileReport};
use crate::names::VETH_PREFIX;
use crate::netlink::Netlink;
use crate::record::AttachState;

pub(crate) fn run(nw: &Networks, live: &dyn Fn(&str) -> bool) -> Result<ReconcileReport> {
    let (records, ipam, ports, pins) = nw.parts();
    // 0. Records a power loss tore are set aside; the scans below find what they made.
    let mut report = ReconcileReport {
        corrupt_files: records.quarantine_unreadable()?,
        ..ReconcileReport::default()
    };

    // 1. Attachments that never completed, or whose container is gone.
    for rec in records.all()? {
        if rec.state != AttachState::Attached || !live(&rec.container_id) {
            nw.teardown_record(&rec)?;
            tracing::info!(container = %rec.container_id, network = %rec.network, state = ?rec.state, "reconcile: removed attachment");
            report.attachments.push(rec.owner());
        }
    }
    let remaining = records.all()?;
    let owners: HashSet<String> = remaining.iter().map(|r| r.owner()).collect();
    let veths: HashSet<&str> = remaining.iter().map(|r| r.host_veth.as_str()).collect();

    // 2. Host veth ends on KOS bridges that no record accounts for.
    let networks = nw.list()?;
    let bridges: HashSet<&str> = networks.iter().map(|n| n.bridge.as_str()).collect();
    // Bridges in the firewall's set but of no defined network: left by a crash while a
    // network was created or removed (removed in 2b, after their ports).
    let fw_bridges = nw.firewall().list_bridges()?;
    let orphan_bridges: Vec<&String> = fw_bridges
        .iter()
        .filter(|b| !bridges.contains(b.as_str()))
        .collect();
    let mut nl = Netlink::open().map_err(|e| Error::netlink("open socket", e))?;
    let links = nl.links().map_err(|e| Error::netlink("list links", e))?;
    let bridge_index: HashMap<u32, &str> = links
        .iter()
        .filter(|l| bridges.contains(l.name.as_str()) || orphan_bridges.contains(&&l.name))
        .map(|l| (l.index, l.name.as_str()))
        .collect();
    for link in &links {
        let ours = link.name.starts_with(VETH_PREFIX)
            && link.kind.as_deref() == Some("veth")
            && link.master.is_some_and(|m| bridge_index.contains_key(&m));
        if ours && !veths.contains(link.name.as_str()) {
            nl.delete_link_by_name(&link.name)
                .map_err(|e| Error::netlink(format!("delete orphaned veth {}", link.name), e))?;
            tracing::info!(veth = %link.name, "reconcile: removed orphaned veth");
            report.veths.push(link.name.clone());
        }
    }

    // 2b. Bridges KOS made for networks that are no longer defined (a crash while a network
    // was created or removed): the link and its firewall elements.
    for name in orphan_bridges {
        let link = links.iter().find(|l| &l.name == name);
        let subnets = match link {
            Some(l) => nl
                .addresses(l.index)
                .map_err(|e| Error::netlink(format!("list addresses of {name}"), e))?
                .into_iter()
                .filter(|a| !matches!(a.addr(), std::net::IpAddr::V6(v6) if v6.segments()[0] & 0xffc0 == 0xfe80))
                .map(|a| a.trunc())
                .collect(),
            None => Vec::new(),
        };
        for internal in [true, false] {
            nw.firewall()
                .teardown_network(&crate::firewall::NetworkRules {
                    bridge: name.clone(),
                    subnets: subnets.clone(),
                    internal,
                })?;
        }
        if link.is_some_and(|l| l.kind.as_deref() == Some("bridge")) {
            nl.delete_link_by_name(name)
                .map_err(|e| Error::netlink(format!("delete orphaned bridge {name}"), e))?;
        }
        tracing::info!(bridge = %name, "reconcile: removed orphaned bridge");
        report.bridges.push(name.clone());
    }

    // 3. DNAT entries of no remaining attachment.
    let table = &nw.options().nft_table;
    let wanted: HashSet<PortRule> = remaining
        .iter()
        .filter(|r| &r.table == table)
        .flat_map(|r| r.port_rules.iter().copied())
        .collect();
    let stale: Vec<PortRule> = nw
        .firewall()
        .list_ports()?
        .into_iter()
        .filter(|r| !wanted.contains(r))
        .collect();
    if !stale.is_empty() {
        nw.firewall().remove_ports(&stale)?;
        tracing::info!(
            count = stale.len(),
            "reconcile: removed orphaned published ports"
        );
        report.port_rules = stale.len();
    }

    // 4. Address and port reservations of no remaining attachment (unreadable pools are
    // rebuilt from the remaining records first).
    for net in &networks {
        let mine: Vec<(std::net::IpAddr, String)> = remaining
            .iter()
            .filter(|r| r.network == net.name)
            .flat_map(|r| r.addresses.iter().map(move |a| (a.addr(), r.owner())))
            .collect();
        if ipam.reset_if_corrupt(&net.name, &mine)? {
            report
                .corrupt_files
                .push(ipam.dir().join(format!("{}.json", net.name)));
        }
        let gone = ipam.release_unless(&net.name, |o| owners.contains(o))?;
        if !gone.is_empty() {
            tracing::info!(network = %net.name, count = gone.len(), "reconcile: released orphaned addresses");
        }
        report.addresses += gone.len();
    }
    let published: Vec<(crate::ports::PublishedPort, String)> = remaining
        .iter()
        .flat_map(|r| r.ports.iter().map(move |p| (*p, r.owner())))
        .collect();
    if ports.reset_if_corrupt(&published)? {
        report
            .corrupt_files
            .push(nw.options().run_dir.join("ports.json"));
    }
    report.port_reservations = ports.release_unless(|o| owners.contains(o))?;

    // 5. DNS names of no remaining attachment.
    if let Some(d) = &nw.options().dns {
        let keep: HashSet<(String, String)> = remaining
            .iter()
            .map(|r| (r.network.clone(), r.container_id.clone()))
            .collect();
        report.dns_entries = crate::dns::prune(d, |net, id| {
            keep.contains(&(net.to_string(), id.to_string()))
        })?;
    }

    // 6. Pins of containers that are gone.
    let pinned_by_records: HashSet<_> = remaining.iter().filter_map(|r| r.netns.clone()).collect();
    for name in pins.list()? {
        if !live(&name) && !pinned_by_records.contains(&pins.path(&name)) {
            pins.remove(&name)?;
            tracing::info!(pin = %name, "reconcile: removed orphaned netns pin");
            report.pins.push(name);
        }
    }

    // 7. Every network made whole again (bridge, addresses, sysctls, rules), even where the
    // "up" marker says it is: after a reboot or a flushed ruleset only this puts it back.
    for net in &networks {
        nw.restore_network(net)?;
    }
    // And the remaining attachments' published ports (adding present elements is a no-op).
    let wanted: Vec<PortRule> = wanted.into_iter().collect();
    nw.firewall().add_ports(&wanted)?;
    Ok(report)
}
