//! Container names for kos-dns: every bridge attachment is registered in the DNS table file
//! that kos-dns serves from, and removed on detach. kos-dns re-reads the file on SIGHUP (sent
//! when a pid file is configured) and also notices changes by itself.

use std::fs;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use kos_dns::table::{self, Entry, NetworkInfo};

use crate::error::{Error, Result};
use crate::netconf::Network;
use crate::record::Attachment;

/// Where the DNS table lives and how kos-dns is told about changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsOptions {
    /// The table file (kos-dns `--table`): default `/run/kos/dns.json`.
    pub table: PathBuf,
    /// kos-dns's pid file: when set and the process exists, it gets SIGHUP after each change.
    /// Without it kos-dns picks up changes on its own file poll.
    pub pid_file: Option<PathBuf>,
    /// Search domain of the networks (`name.domain` resolves too).
    pub domain: Option<String>,
}

impl Default for DnsOptions {
    fn default() -> Self {
        DnsOptions {
            table: PathBuf::from("/run/kos/dns.json"),
            pid_file: Some(PathBuf::from("/run/kos/kos-dns.pid")),
            domain: None,
        }
    }
}

fn dns_err(step: &'static str) -> impl FnOnce(table::Error) -> Error {
    move |e| Error::Dns {
        step,
        source: Box::new(e),
    }
}

/// Registers the attachment's names (container name, or its id when it has none, plus
/// aliases) with its addresses.
pub fn register(opts: &DnsOptions, net: &Network, rec: &Attachment) -> Result<()> {
    let info = NetworkInfo {
        name: net.name.clone(),
        gateways: net.subnets.iter().map(|s| s.gateway).collect(),
        subnets: net.subnets.iter().map(|s| s.subnet).collect(),
        domain: opts.domain.clone(),
    };
    let mut names = rec.names.iter();
    let entry = Entry {
        id: rec.container_id.clone(),
        name: names
            .next()
            .cloned()
            .unwrap_or_else(|| rec.container_id.clone()),
        aliases: Vec::new(),
        network_aliases: names.cloned().collect(),
        ipv4: rec
            .addresses
            .iter()
            .filter_map(|a| match a.addr() {
                IpAddr::V4(v4) => Some(v4),
                IpAddr::V6(_) => None,
            })
            .collect(),
        ipv6: rec
            .addresses
            .iter()
            .filter_map(|a| match a.addr() {
                IpAddr::V6(v6) => Some(v6),
                IpAddr::V4(_) => None,
            })
            .collect(),
    };
    table::add_entry(&opts.table, &info, entry).map_err(dns_err("register container names"))?;
    notify(opts);
    Ok(())
}

/// Removes the attachment's names; absent names are fine.
pub fn unregister(opts: &DnsOptions, network: &str, container: &str) -> Result<()> {
    if table::remove_entry(&opts.table, network, container)
        .map_err(dns_err("remove container names"))?
    {
        notify(opts);
    }
    Ok(())
}

/// Drops a network from the table.
pub fn remove_network(opts: &DnsOptions, network: &str) -> Result<()> {
    if table::remove_network(&opts.table, network).map_err(dns_err("remove network"))? {
        notify(opts);
    }
    Ok(())
}

/// Removes entries `keep` refuses (network, container id); returns how many.
pub fn prune(opts: &DnsOptions, keep: impl Fn(&str, &str) -> bool) -> Result<usize> {
    let removed = table::update(&opts.table, |t| {
        let mut n = 0;
        for net in t.networks.values_mut() {
            let before = net.entries.len();
            let name = net.name.clone();
            net.entries.retain(|e| keep(&name, &e.id));
            n += before - net.entries.len();
        }
        Ok(n)
    })
    .map_err(dns_err("prune orphaned names"))?;
    if removed > 0 {
        notify(opts);
    }
    Ok(removed)
}

/// Sends SIGHUP to the kos-dns named by the pid file. A missing file or process means kos-dns
/// is not running (it reads the table when it starts); that is not an error.
fn notify(opts: &DnsOptions) {
    let Some(path) = &opts.pid_file else { return };
    match read_pid(path) {
        Ok(Some(pid)) => {
            match nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGHUP,
            ) {
                Ok(()) => tracing::debug!(pid, "told kos-dns to reload"),
                Err(e) => tracing::debug!(pid, error = %e, "kos-dns not signalled"),
            }
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(pid_file = %path.display(), error = %e, "unreadable kos-dns pid file")
        }
    }
}

fn read_pid(path: &Path) -> std::io::Result<Option<i32>> {
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut text = String::new();
    file.take(32).read_to_string(&mut text)?;
    match text.trim().parse::<i32>() {
        // Never signal a process group, init or ourselves by mistake.
        Ok(pid) if pid > 1 && pid != std::process::id() as i32 => Ok(Some(pid)),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("not a pid: {:?}", text.trim()),
        )),
    }
}
