//! A container's /etc/resolv.conf, /etc/hosts and /etc/hostname, from its attachments; the
//! writers themselves are kos-dns's.

use std::net::IpAddr;
use std::path::Path;

use kos_dns::etc_files::{self, HostsSpec, Nameservers, ResolvConfSpec};

pub use kos_dns::etc_files::ExtraHost;

use crate::error::{Error, Result};
use crate::manager::Networks;
use crate::record::AttachKind;

/// The host's resolver configuration, used when no KOS DNS serves the container.
pub const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

/// What the user asked for (Docker's `--hostname`, `--dns`, `--dns-search`, `--dns-option`,
/// `--add-host`).
#[derive(Debug, Clone, Default)]
pub struct EtcSpec<'a> {
    pub hostname: &'a str,
    pub dns_servers: &'a [IpAddr],
    pub search: &'a [String],
    pub options: &'a [String],
    pub extra_hosts: &'a [ExtraHost],
    /// Without `dns_servers`, the host's resolvers even when kos-dns serves the
    /// container's first network (dockerd gives the default bridge no embedded DNS).
    pub host_resolvers: bool,
}

fn etc_err(step: &'static str) -> impl FnOnce(etc_files::Error) -> Error {
    move |e| Error::Dns {
        step,
        source: Box::new(e),
    }
}

pub(crate) fn write(
    nets: &Networks,
    container: &str,
    dir: &Path,
    spec: &EtcSpec<'_>,
) -> Result<()> {
    crate::names::check_container_id(container)?;
    let mut recs = nets.attachments()?;
    recs.retain(|r| r.container_id == container);
    recs.sort_by(|a, b| a.network.cmp(&b.network));
    let bridged: Vec<_> = recs
        .iter()
        .filter(|r| r.kind == AttachKind::Bridge)
        .collect();

    // kos-dns listens on the gateways of the container's first network.
    let mut dns_gateways = Vec::new();
    if nets.options().dns.is_some() {
        if let Some(first) = bridged.first() {
            dns_gateways = nets
                .get(&first.network)?
                .subnets
                .iter()
                .map(|s| s.gateway)
                .collect();
        }
    }
    let servers = if !spec.dns_servers.is_empty() {
        Nameservers::Explicit(spec.dns_servers)
    } else if !dns_gateways.is_empty() && !spec.host_resolvers {
        Nameservers::KosDns(&dns_gateways)
    } else {
        Nameservers::Host(Path::new(HOST_RESOLV_CONF))
    };
    etc_files::write_resolv_conf(
        dir,
        servers,
        &ResolvConfSpec {
            search: spec.search,
            options: spec.options,
        },
    )
    .map_err(etc_err("write resolv.conf"))?;

    let addresses: Vec<IpAddr> = bridged
        .iter()
        .flat_map(|r| r.addresses.iter().map(|a| a.addr()))
        .collect();
    let mut names: Vec<String> = Vec::new();
    for r in &bridged {
        for n in &r.names {
            if !names.contains(n) && n != spec.hostname {
                names.push(n.clone());
            }
        }
    }
    etc_files::write_hosts(
        dir,
        &HostsSpec {
            hostname: spec.hostname,
            names: &names,
            addresses: &addresses,
            extra_hosts: spec.extra_hosts,
        },
    )
    .map_err(etc_err("write hosts"))?;
    etc_files::write_hostname(dir, spec.hostname).map_err(etc_err("write hostname"))
}
