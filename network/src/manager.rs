//! [`Networks`]: the entry point, its [`Options`], and the networks themselves (create,
//! remove, list, the default network). Attachments are in `attach.rs`, reconcile in
//! `reconcile.rs`; all state lives in files under [`Options`].

use std::path::{Path, PathBuf};

use crate::dns::{self, DnsOptions};
use crate::driver::{BridgeDriver, Context, HostDriver, NetworkDriver, NoneDriver};
use crate::error::{Error, Result};
use crate::firewall::{FirewallDriver, Nftables};
use crate::fsutil::{self, FileLock};
use crate::ipam::Ipam;
use crate::link_reaper::LinkReaper;
use crate::netconf::{self, DriverKind, Existing, Network, NetworkSpec};
use crate::netlink::Netlink;
use crate::netns::NetnsDir;
use crate::port_registry::PortRegistry;
use crate::record::Records;

/// Where KOS keeps network state and how it names things.
#[derive(Debug, Clone)]
pub struct Options {
    /// Network definitions (persistent): default `/var/lib/kos/network`.
    pub data_dir: PathBuf,
    /// Runtime state (IPAM, ports, attachment records): default `/run/kos/network`.
    pub run_dir: PathBuf,
    /// Pinned network namespaces: default `/run/kos/netns`.
    pub netns_dir: PathBuf,
    /// nftables table (family inet): default `kos`.
    pub nft_table: String,
    /// Name and bridge of the default network: default `kos0`.
    pub default_network: String,
    pub default_bridge: String,
    /// Turn on IPv4 (and IPv6) forwarding when a network with a way out is set up, as dockerd
    /// does by default. Per-bridge forwarding is always set; this is the host-wide switch.
    pub manage_ip_forward: bool,
    /// Container names for kos-dns (None: no DNS registration).
    pub dns: Option<DnsOptions>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            data_dir: PathBuf::from("/var/lib/kos/network"),
            run_dir: PathBuf::from("/run/kos/network"),
            netns_dir: PathBuf::from("/run/kos/netns"),
            nft_table: "kos".to_string(),
            default_network: "kos0".to_string(),
            default_bridge: "kos0".to_string(),
            manage_ip_forward: true,
            dns: Some(DnsOptions::default()),
        }
    }
}

impl Options {
    /// Everything under one root directory (tests, rootless experiments).
    pub fn under(root: &Path) -> Self {
        Options {
            data_dir: root.join("data"),
            run_dir: root.join("run"),
            netns_dir: root.join("netns"),
            dns: Some(DnsOptions {
                table: root.join("run").join("dns.json"),
                pid_file: None,
                domain: None,
            }),
            ..Options::default()
        }
    }
}

/// What a reconcile removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    pub attachments: Vec<String>,
    pub bridges: Vec<String>,
    pub veths: Vec<String>,
    pub port_rules: usize,
    pub addresses: usize,
    pub port_reservations: usize,
    pub dns_entries: usize,
    pub pins: Vec<String>,
    /// State files that could not be parsed: records set aside, pools and registry rebuilt.
    pub corrupt_files: Vec<PathBuf>,
}

impl ReconcileReport {
    pub fn is_empty(&self) -> bool {
        *self == ReconcileReport::default()
    }
}

pub struct Networks {
    pub(crate) opts: Options,
    pub(crate) firewall: Box<dyn FirewallDriver>,
    pub(crate) ipam: Ipam,
    pub(crate) ports: PortRegistry,
    pub(crate) records: Records,
    pub(crate) pins: NetnsDir,
    pub(crate) links: LinkReaper,
}

impl Networks {
    pub fn new(opts: Options) -> Self {
        let firewall = Box::new(Nftables::new(opts.nft_table.clone()));
        Self::with_firewall(opts, firewall)
    }

    pub fn with_firewall(opts: Options, firewall: Box<dyn FirewallDriver>) -> Self {
        Networks {
            ipam: Ipam::new(opts.run_dir.join("ipam")),
            ports: PortRegistry::new(opts.run_dir.clone()),
            records: Records::new(opts.run_dir.join("attachments")),
            pins: NetnsDir::new(opts.netns_dir.clone()),
            links: LinkReaper::default(),
            firewall,
            opts,
        }
    }

    pub fn options(&self) -> &Options {
        &self.opts
    }

    pub fn pins(&self) -> &NetnsDir {
        &self.pins
    }

    pub fn firewall(&self) -> &dyn FirewallDriver {
        self.firewall.as_ref()
    }

    pub(crate) fn ctx(&self) -> Context<'_> {
        Context {
            firewall: self.firewall.as_ref(),
            ipam: &self.ipam,
            records: &self.records,
            pins: &self.pins,
            up_dir: self.opts.run_dir.join("up"),
            manage_ip_forward: self.opts.manage_ip_forward,
            dns: self.opts.dns.as_ref(),
            links: &self.links,
            defer_link_deletion: false,
        }
    }

    /// Waits (at most `limit`) until the host veths left by
    /// [`Networks::release_container_deferred`] are deleted; true if they are.
    pub fn wait_for_deferred_links(&self, limit: std::time::Duration) -> bool {
        self.links.wait_all(limit)
    }

    fn networks_dir(&self) -> PathBuf {
        self.opts.data_dir.join("networks")
    }

    fn network_path(&self, name: &str) -> PathBuf {
        self.networks_dir().join(format!("{name}.json"))
    }

    /// Exclusive: networks are being created or removed.
    fn lock(&self) -> Result<FileLock> {
        FileLock::acquire(&self.networks_lock_path())
    }

    /// Shared: held by attachments, so that a network is not removed under one.
    pub(crate) fn lock_shared(&self) -> Result<FileLock> {
        FileLock::acquire_shared(&self.networks_lock_path())
    }

    fn networks_lock_path(&self) -> PathBuf {
        self.opts.data_dir.join("networks.lock")
    }

    pub(crate) fn driver(kind: DriverKind) -> &'static dyn NetworkDriver {
        match kind {
            DriverKind::Bridge => &BridgeDriver,
            DriverKind::Host => &HostDriver,
            DriverKind::None => &NoneDriver,
        }
    }

    /// Every network.
    pub fn list(&self) -> Result<Vec<Network>> {
        let dir = self.networks_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::file("list networks", &dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::file("list networks", &dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            if let Some(n) = fsutil::read_json::<Network>(&entry.path())? {
                out.push(n);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub fn get(&self, name: &str) -> Result<Network> {
        crate::names::check_network_name(name)?;
        fsutil::read_json(&self.network_path(name))?
            .ok_or_else(|| Error::NetworkNotFound(name.to_string()))
    }

    /// Creates a network: validated first (nothing made on bad input), then brought up (for a
    /// bridge: the bridge, its addresses and firewall rules), then saved. A failure while
    /// bringing it up removes what was made.
    pub fn create(&self, spec: &NetworkSpec) -> Result<Network> {
        self.create_with(spec, &mut netconf::default_network_candidates().skip(1))
    }

    fn create_with(
        &self,
        spec: &NetworkSpec,
        candidates: &mut dyn Iterator<Item = ipnet::IpNet>,
    ) -> Result<Network> {
        let _lock = self.lock()?;
        let networks = self.list()?;
        let host_routes = if spec.subnets.is_empty() {
            Netlink::open()
                .and_then(|mut nl| nl.route_destinations())
                .map_err(|e| Error::netlink("list host routes", e))?
        } else {
            Vec::new()
        };
        let net = netconf::validate(
            spec,
            Existing {
                networks: &networks,
                host_routes: &host_routes,
                candidates,
            },
        )?;
        if net.driver == DriverKind::Bridge {
            if let Some(existing) = Netlink::open()
                .and_then(|mut nl| nl.link_by_name(&net.bridge))
                .map_err(|e| Error::netlink("look up bridge", e))?
            {
                return Err(Error::BridgeInUse {
                    name: existing.name,
                    owner: "an existing link on the host".to_string(),
                });
            }
        }
        let driver = Self::driver(net.driver);
        let ctx = self.ctx();
        if let Err(e) = driver.bring_up(&ctx, &net) {
            if let Err(undo) = driver.bring_down(&ctx, &net) {
                tracing::warn!(network = %net.name, error = %undo, "undoing a failed network creation");
            }
            return Err(e);
        }
        fsutil::write_json(&self.network_path(&net.name), &net)?;
        tracing::info!(network = %net.name, driver = ?net.driver, "network created");
        Ok(net)
    }

    /// The default network, created on first use (subnet 10.88.0.0/16 unless that overlaps a
    /// host route or another network).
    pub fn ensure_default(&self) -> Result<Network> {
        match self.get(&self.opts.default_network) {
            Ok(n) => return Ok(n),
            Err(Error::NetworkNotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let mut spec = NetworkSpec::bridge(&self.opts.default_network);
        spec.bridge_name = Some(self.opts.default_bridge.clone());
        match self.create_with(&spec, &mut netconf::default_network_candidates()) {
            Ok(n) => Ok(n),
            // Created by someone else meanwhile.
            Err(Error::DuplicateNetwork(_)) => self.get(&self.opts.default_network),
            Err(e) => Err(e),
        }
    }

    /// Removes a network that has no attachments.
    pub fn remove(&self, name: &str) -> Result<()> {
        let _lock = self.lock()?;
        let net = self.get(name)?;
        let count = self.records.of_network(name)?.len();
        if count > 0 {
            return Err(Error::NetworkInUse {
                network: name.to_string(),
                count,
            });
        }
        Self::driver(net.driver).bring_down(&self.ctx(), &net)?;
        if let Some(d) = &self.opts.dns {
            dns::remove_network(d, name)?;
        }
        self.ipam.remove_network(name)?;
        fsutil::remove(&self.network_path(name))?;
        tracing::info!(network = %name, "network removed");
        Ok(())
    }

    /// Removes what a crash left behind: attachments that never completed, and those of
    /// containers `live` says are gone (with their pins); then veths on KOS bridges, DNAT
    /// entries, address and port reservations that no remaining record accounts for.
    pub fn reconcile(&self, live: &dyn Fn(&str) -> bool) -> Result<ReconcileReport> {
        crate::reconcile::run(self, live)
    }

    /// Writes the container's resolv.conf, hosts and hostname into `dir` (to be bind-mounted
    /// over the container's /etc files) from its attachments.
    pub fn write_etc_files(
        &self,
        container: &str,
        dir: &Path,
        spec: &crate::etc::EtcSpec<'_>,
    ) -> Result<()> {
        crate::etc::write(self, container, dir, spec)
    }

    /// Brings a network up regardless of its "up" marker.
    pub(crate) fn restore_network(&self, net: &Network) -> Result<()> {
        let ctx = self.ctx();
        fsutil::remove(&ctx.up_dir.join(&net.name))?;
        Self::driver(net.driver).bring_up(&ctx, net)
    }

    pub(crate) fn parts(&self) -> (&Records, &Ipam, &PortRegistry, &NetnsDir) {
        (&self.records, &self.ipam, &self.ports, &self.pins)
    }
}
