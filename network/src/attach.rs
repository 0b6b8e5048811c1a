//! Attaching and detaching containers: input checked and ports reserved before anything is
//! made, a record written before each step that makes something, teardown from the record.

use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::driver::{
    BridgeDriver, ContainerDriver, Context, HostDriver, NetworkDriver, NoneDriver, Plan,
};
use crate::error::{Error, Result};
use crate::firewall::Nftables;
use crate::fsutil::{self, FileLock};
use crate::mac;
use crate::manager::Networks;
use crate::names::{check_container_id, host_veth_name, valid_ifname};
use crate::netconf::{DriverKind, Network};
use crate::ports::PortMapping;
use crate::record::{owner_key, AttachKind, AttachState, Attachment};

/// The driver that makes (and unmakes) one kind of attachment.
fn driver_for(kind: &AttachKind) -> &'static dyn NetworkDriver {
    match kind {
        AttachKind::Bridge => &BridgeDriver,
        AttachKind::Host => &HostDriver,
        AttachKind::None => &NoneDriver,
        AttachKind::Container(_) => &ContainerDriver,
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

impl Networks {
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

        // The network stays while this attachment is made; it may have gone since it was
        // looked up (removal takes the lock exclusively).
        let _networks_lock = self.lock_shared()?;
        if let Some(n) = &net {
            self.get(&n.name)?;
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
        self.teardown_with(rec, false)
    }

    /// [`Self::teardown`]; with `defer_links` the host veth is set down and left to the link
    /// reaper instead of deleted here.
    fn teardown_with(&self, rec: &Attachment, defer_links: bool) -> Result<()> {
        let driver = driver_for(&rec.kind);
        let base = Context {
            defer_link_deletion: defer_links,
            ..self.ctx()
        };
        let made = if rec.table == self.opts.nft_table {
            driver.detach(&base, rec)
        } else {
            // Made with another table name: tear down with a back end for that table.
            let fw = Nftables::new(rec.table.clone());
            let ctx = Context {
                firewall: &fw,
                ..base
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
    /// Returns the networks it was detached from (none when nothing was attached, so a
    /// second release says so).
    pub fn release_container(&self, container: &str) -> Result<Vec<String>> {
        self.release_container_with(container, false)
    }

    /// [`Networks::release_container`] for a container whose processes are gone, without
    /// waiting for its host veths to be deleted: names, published ports, addresses, records
    /// and the pin go now, each veth is set down now (out of its bridge's forwarding) and
    /// deleted by a background thread, since deleting a link waits for an RCU barrier (about
    /// 20 ms) that the container's exit need not. A later attach of the same container waits
    /// for its old veth; [`Networks::wait_for_deferred_links`] waits for all of them.
    pub fn release_container_deferred(&self, container: &str) -> Result<Vec<String>> {
        self.release_container_with(container, true)
    }

    fn release_container_with(&self, container: &str, defer_links: bool) -> Result<Vec<String>> {
        check_container_id(container)?;
        let mut released = Vec::new();
        for rec in self.records.of_container(container)? {
            let _lock = FileLock::acquire(&self.records.lock_path(container))?;
            self.teardown_with(&rec, defer_links)?;
            released.push(rec.network.clone());
        }
        fsutil::remove(&self.records.lock_path(container))?;
        self.pins.remove(container)?;
        Ok(released)
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

    pub(crate) fn teardown_record(&self, rec: &Attachment) -> Result<()> {
        let _lock = FileLock::acquire(&self.records.lock_path(&rec.container_id))?;
        self.teardown(rec)
    }
}
