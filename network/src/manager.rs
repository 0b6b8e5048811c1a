//! [`Networks`]: the entry point. Creates and removes networks, attaches and detaches
//! containers, and dispatches to the drivers; all state lives in files under [`Options`].

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::dns::{self, DnsOptions};
use crate::driver::{
    BridgeDriver, ContainerDriver, Context, HostDriver, NetworkDriver, NoneDriver, Plan,
};
use crate::error::{Error, Result};
use crate::firewall::{FirewallDriver, Nftables};
use crate::fsutil::{self, FileLock};
use crate::ipam::Ipam;
use crate::mac;
use crate::names::{check_container_id, host_veth_name, valid_ifname};
use crate::netconf::{self, DriverKind, Existing, Network, NetworkSpec};
use crate::netlink::Netlink;
use crate::netns::NetnsDir;
use crate::ports::{PortMapping, PortRegistry};
use crate::record::{owner_key, AttachKind, AttachState, Attachment, Records};

/// The driver that makes (and unmakes) one kind of attachment.
fn driver_for(kind: &AttachKind) -> &'static dyn NetworkDriver {
    match kind {
        AttachKind::Bridge => &BridgeDriver,
        AttachKind::Host => &HostDriver,
        AttachKind::None => &NoneDriver,
        AttachKind::Container(_) => &ContainerDriver,
    }
}

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

/// How a container is networked (Docker's `--network`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkMode {
    /// A named network (any driver); "default" and "bridge" mean the default network.
    Network(String),
    Host,
    None,
    /// `container:<id>`: share another container's namespace.
    Container(String),
}

impl FromStr for NetworkMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "host" => Ok(NetworkMode::Host),
            "none" => Ok(NetworkMode::None),
            _ => match s.strip_prefix("container:") {
                Some(id) => {
                    check_container_id(id).map_err(|_| Error::InvalidMode(s.to_string()))?;
                    Ok(NetworkMode::Container(id.to_string()))
                }
                None if s.is_empty() => Err(Error::InvalidMode(s.to_string())),
                None => Ok(NetworkMode::Network(s.to_string())),
            },
        }
    }
}

/// One container joining one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachRequest {
    pub container_id: String,
    pub mode: NetworkMode,
    /// The container's network namespace; None: the pin `<netns_dir>/<container_id>`, made
    /// when missing.
    #[serde(default)]
    pub netns: Option<PathBuf>,
    /// Interface name inside the container (default `eth0`).
    #[serde(default)]
    pub ifname: Option<String>,
    /// Static addresses (at most one per subnet).
    #[serde(default)]
    pub ips: Vec<IpAddr>,
    #[serde(default)]
    pub mac: Option<String>,
    /// The container's name, registered in DNS with the aliases.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub ports: Vec<PortMapping>,
}

impl AttachRequest {
    pub fn new(container_id: &str, network: &str) -> Self {
        AttachRequest {
            container_id: container_id.to_string(),
            mode: NetworkMode::Network(network.to_string()),
            netns: None,
            ifname: None,
            ips: Vec::new(),
            mac: None,
            name: None,
            aliases: Vec::new(),
            ports: Vec::new(),
        }
    }
}

/// Steps of an attachment, for progress observers (and crash tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachStep {
    /// Ports reserved, record written; nothing made in the kernel yet.
    Recorded,
    /// Interfaces, addresses and DNAT entries made.
    Connected,
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
    opts: Options,
    firewall: Box<dyn FirewallDriver>,
    ipam: Ipam,
    ports: PortRegistry,
    records: Records,
    pins: NetnsDir,
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

    fn ctx(&self) -> Context<'_> {
        Context {
            firewall: self.firewall.as_ref(),
            ipam: &self.ipam,
            records: &self.records,
            pins: &self.pins,
            up_dir: self.opts.run_dir.join("up"),
            manage_ip_forward: self.opts.manage_ip_forward,
            dns: self.opts.dns.as_ref(),
        }
    }

    fn networks_dir(&self) -> PathBuf {
        self.opts.data_dir.join("networks")
    }

    fn network_path(&self, name: &str) -> PathBuf {
        self.networks_dir().join(format!("{name}.json"))
    }

    fn lock(&self) -> Result<FileLock> {
        FileLock::acquire(&self.opts.data_dir.join("networks.lock"))
    }

    fn driver(kind: DriverKind) -> &'static dyn NetworkDriver {
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

    fn resolve(&self, mode: &NetworkMode) -> Result<(String, AttachKind, Option<Network>)> {
        match mode {
            NetworkMode::Host => Ok(("host".to_string(), AttachKind::Host, None)),
            NetworkMode::None => Ok(("none".to_string(), AttachKind::None, None)),
            NetworkMode::Container(id) => Ok((
                format!("container-{id}"),
                AttachKind::Container(id.clone()),
                None,
            )),
            NetworkMode::Network(name) => {
                let net = if name == "default"
                    || name == "bridge"
                    || *name == self.opts.default_network
                {
                    self.ensure_default()?
                } else {
                    self.get(name)?
                };
                let kind = match net.driver {
                    DriverKind::Bridge => AttachKind::Bridge,
                    DriverKind::Host => AttachKind::Host,
                    DriverKind::None => AttachKind::None,
                };
                Ok((net.name.clone(), kind, Some(net)))
            }
        }
    }

    /// Attaches a container. Input is checked and ports reserved before anything is made; a
    /// failure later undoes every step made, and a crash is undone by [`Networks::reconcile`].
    pub fn attach(&self, req: &AttachRequest) -> Result<Attachment> {
        self.attach_observed(req, &|_| {})
    }

    /// As [`Networks::attach`], calling `observe` after each step.
    pub fn attach_observed(
        &self,
        req: &AttachRequest,
        observe: &dyn Fn(AttachStep),
    ) -> Result<Attachment> {
        check_container_id(&req.container_id)?;
        let ifname = req.ifname.clone().unwrap_or_else(|| "eth0".to_string());
        if !valid_ifname(&ifname) {
            return Err(Error::InvalidIfName(ifname));
        }
        let mac = req.mac.as_deref().map(mac::parse).transpose()?;
        // Names are checked here, as kos-dns will check them, so that a bad one is refused
        // before anything is made.
        for name in req.name.iter().chain(&req.aliases) {
            kos_dns::table::check_dns_name(name).map_err(|why| Error::InvalidOption {
                network: format!("{:?}", req.mode),
                reason: format!("DNS name {name:?}: {why}"),
            })?;
        }
        let (network, kind, net) = self.resolve(&req.mode)?;
        let bridged = kind == AttachKind::Bridge;
        if !bridged && (!req.ips.is_empty() || mac.is_some() || !req.ports.is_empty()) {
            return Err(Error::InvalidOption {
                network,
                reason: "static IPs, MAC and published ports need a bridge network".to_string(),
            });
        }
        if let Some(net) = &net {
            if net.internal && !req.ports.is_empty() {
                return Err(Error::InvalidOption {
                    network,
                    reason: "an internal network cannot publish ports".to_string(),
                });
            }
            // Static addresses are checked against the pool before anything is reserved.
            for ip in &req.ips {
                crate::ipam::check_request(net, *ip)?;
            }
            for s in &net.subnets {
                if req.ips.iter().filter(|ip| s.subnet.contains(*ip)).count() > 1 {
                    return Err(Error::InvalidOption {
                        network,
                        reason: format!("more than one static address in {}", s.subnet),
                    });
                }
            }
        }

        let _lock = FileLock::acquire(&self.records.lock_path(&req.container_id))?;
        if self.records.read(&req.container_id, &network)?.is_some() {
            return Err(Error::AlreadyAttached {
                container: req.container_id.clone(),
                network,
            });
        }
        // The pin is made only after the ports are reserved, so that a port conflict leaves
        // nothing behind.
        let (netns, make_pin) = match kind {
            AttachKind::Host | AttachKind::Container(_) => (None, false),
            AttachKind::Bridge | AttachKind::None => match &req.netns {
                Some(p) => (Some(p.clone()), false),
                None => {
                    let p = self.pins.path(&req.container_id);
                    let missing = !p.exists();
                    (Some(p), missing)
                }
            },
        };

        let owner = owner_key(&req.container_id, &network);
        let ports = self.ports.reserve(&owner, &req.ports)?;
        let mut rec = Attachment {
            container_id: req.container_id.clone(),
            network: network.clone(),
            kind: kind.clone(),
            state: AttachState::Attaching,
            netns,
            table: self.opts.nft_table.clone(),
            bridge: net.as_ref().map(|n| n.bridge.clone()).unwrap_or_default(),
            host_veth: if bridged {
                host_veth_name(&req.container_id, &network)
            } else {
                String::new()
            },
            ifname: if bridged { ifname } else { String::new() },
            mac: None,
            addresses: Vec::new(),
            gateways: Vec::new(),
            ports,
            port_rules: Vec::new(),
            names: req.name.iter().chain(&req.aliases).cloned().collect(),
            dns_table: None,
        };
        if let Err(e) = self.records.write(&rec) {
            let _ = self.ports.release(&owner);
            return Err(e);
        }
        if make_pin {
            if let Err(e) = self.pins.create(&req.container_id) {
                let _ = self.teardown(&rec);
                return Err(e);
            }
        }
        observe(AttachStep::Recorded);

        let driver = driver_for(&kind);
        let plan = Plan {
            network: net.as_ref(),
            static_ips: &req.ips,
            mac,
        };
        let ctx = self.ctx();
        let made = driver.attach(&ctx, &plan, &mut rec);
        if let Err(e) = made {
            if let Err(undo) = self.teardown(&rec) {
                tracing::warn!(container = %rec.container_id, network = %rec.network, error = %undo, "undoing a failed attach; reconcile will finish it");
            }
            if make_pin {
                let _ = self.pins.remove(&req.container_id);
            }
            return Err(e);
        }
        observe(AttachStep::Connected);
        rec.state = AttachState::Attached;
        self.records.write(&rec)?;
        tracing::debug!(container = %rec.container_id, network = %rec.network, addresses = ?rec.addresses, "attached");
        Ok(rec)
    }

    /// Undoes an attachment from its record alone; every step is idempotent.
    fn teardown(&self, rec: &Attachment) -> Result<()> {
        let driver = driver_for(&rec.kind);
        let made = if rec.table == self.opts.nft_table {
            driver.detach(&self.ctx(), rec)
        } else {
            // Made with another table name: tear down with a back end for that table.
            let fw = Nftables::new(rec.table.clone());
            let ctx = Context {
                firewall: &fw,
                ..self.ctx()
            };
            driver.detach(&ctx, rec)
        };
        // The record goes only when everything it accounts for is gone; otherwise it stays
        // for a later detach or reconcile.
        made?;
        self.ipam.release(&rec.network, &rec.owner())?;
        self.ports.release(&rec.owner())?;
        self.records.remove(&rec.container_id, &rec.network)
    }

    /// Detaches a container from a network.
    pub fn detach(&self, container: &str, network: &str) -> Result<()> {
        check_container_id(container)?;
        let _lock = FileLock::acquire(&self.records.lock_path(container))?;
        let rec = self
            .records
            .read(container, network)?
            .ok_or_else(|| Error::NotAttached {
                container: container.to_string(),
                network: network.to_string(),
            })?;
        self.teardown(&rec)?;
        tracing::debug!(container, network, "detached");
        Ok(())
    }

    /// Detaches a container from every network and removes its namespace pin.
    pub fn release_container(&self, container: &str) -> Result<()> {
        check_container_id(container)?;
        for rec in self.records.of_container(container)? {
            let _lock = FileLock::acquire(&self.records.lock_path(container))?;
            self.teardown(&rec)?;
        }
        fsutil::remove(&self.records.lock_path(container))?;
        self.pins.remove(container)
    }

    /// The attachment of a container to a network.
    pub fn attachment(&self, container: &str, network: &str) -> Result<Option<Attachment>> {
        check_container_id(container)?;
        self.records.read(container, network)
    }

    /// Every attachment record.
    pub fn attachments(&self) -> Result<Vec<Attachment>> {
        self.records.all()
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

    pub(crate) fn teardown_record(&self, rec: &Attachment) -> Result<()> {
        let _lock = FileLock::acquire(&self.records.lock_path(&rec.container_id))?;
        self.teardown(rec)
    }
}
