//! The host-wide registry of published ports: one file under flock, so that a conflict is
//! found (and its owner named) before anything is made, across threads and processes.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, UdpSocket};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil::{self, FileLock};
use crate::ports::{PortMapping, Protocol, PublishedPort};

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    port: PublishedPort,
    owner: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Registry {
    entries: Vec<Entry>,
}

/// The host-wide registry of published ports (one file under flock).
pub struct PortRegistry {
    dir: PathBuf,
}

impl PortRegistry {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        PortRegistry { dir: dir.into() }
    }

    fn locked<T>(&self, f: impl FnOnce(&mut Registry) -> Result<(T, bool)>) -> Result<T> {
        let _lock = FileLock::acquire(&self.dir.join("ports.lock"))?;
        let path = self.dir.join("ports.json");
        let mut reg: Registry = fsutil::read_json(&path)?.unwrap_or_default();
        let (out, changed) = f(&mut reg)?;
        if changed {
            fsutil::write_json(&path, &reg)?;
        }
        Ok(out)
    }

    /// Expands `mappings` into host ports and reserves them for `owner`, all or nothing. A
    /// port is refused when KOS already publishes it or a host process listens on it.
    pub fn reserve(&self, owner: &str, mappings: &[PortMapping]) -> Result<Vec<PublishedPort>> {
        if mappings.is_empty() {
            return Ok(Vec::new());
        }
        for m in mappings {
            m.expand_check(&m.to_string())?;
        }
        self.locked(|reg| {
            let mut chosen: Vec<PublishedPort> = Vec::new();
            for m in mappings {
                let taken = |p: &PublishedPort, chosen: &[PublishedPort]| -> Option<String> {
                    reg.entries
                        .iter()
                        .find(|e| e.port.clashes(p))
                        .map(|e| e.owner.clone())
                        .or_else(|| {
                            chosen
                                .iter()
                                .find(|c| c.clashes(p))
                                .map(|_| owner.to_string())
                        })
                };
                let one_to_one = m.container_port_end.is_some_and(|e| e > m.container_port);
                if one_to_one {
                    let count = m.container_port_end.unwrap_or(m.container_port) - m.container_port;
                    for i in 0..=count {
                        let p = PublishedPort {
                            host_ip: m.host_ip,
                            host_port: m.host_port + i,
                            container_port: m.container_port + i,
                            protocol: m.protocol,
                        };
                        if let Some(o) = taken(&p, &chosen) {
                            return Err(conflict(&p, o));
                        }
                        probe(&p)?;
                        chosen.push(p);
                    }
                } else if m.host_port == 0 {
                    let mut found = None;
                    for _ in 0..32 {
                        let port = random_free_port(m.host_ip, m.protocol)?;
                        let p = PublishedPort {
                            host_ip: m.host_ip,
                            host_port: port,
                            container_port: m.container_port,
                            protocol: m.protocol,
                        };
                        if taken(&p, &chosen).is_none() {
                            found = Some(p);
                            break;
                        }
                    }
                    chosen.push(found.ok_or(Error::NoFreePort {
                        first: 1024,
                        last: 65535,
                        proto: m.protocol.as_str(),
                    })?);
                } else {
                    let last = m.host_port_end.unwrap_or(m.host_port);
                    let mut found = None;
                    let mut first_err = None;
                    for port in m.host_port..=last {
                        let p = PublishedPort {
                            host_ip: m.host_ip,
                            host_port: port,
                            container_port: m.container_port,
                            protocol: m.protocol,
                        };
                        let outcome = match taken(&p, &chosen) {
                            Some(o) => Err(conflict(&p, o)),
                            None => probe(&p),
                        };
                        match outcome {
                            Ok(()) => {
                                found = Some(p);
                                break;
                            }
                            Err(e) => {
                                first_err.get_or_insert(e);
                            }
                        }
                    }
                    match (found, first_err) {
                        (Some(p), _) => chosen.push(p),
                        (None, Some(e)) if last == m.host_port => return Err(e),
                        (None, _) => {
                            return Err(Error::NoFreePort {
                                first: m.host_port,
                                last,
                                proto: m.protocol.as_str(),
                            })
                        }
                    }
                }
            }
            for p in &chosen {
                reg.entries.push(Entry {
                    port: *p,
                    owner: owner.to_string(),
                });
            }
            Ok((chosen, true))
        })
    }

    /// Releases every port of `owner`.
    pub fn release(&self, owner: &str) -> Result<usize> {
        self.locked(|reg| {
            let before = reg.entries.len();
            reg.entries.retain(|e| e.owner != owner);
            let n = before - reg.entries.len();
            Ok((n, n > 0))
        })
    }

    /// Releases every entry whose owner `keep` refuses; returns how many.
    pub fn release_unless(&self, keep: impl Fn(&str) -> bool) -> Result<usize> {
        self.locked(|reg| {
            let before = reg.entries.len();
            reg.entries.retain(|e| keep(&e.owner));
            let n = before - reg.entries.len();
            Ok((n, n > 0))
        })
    }

    /// Rebuilds a registry file that cannot be parsed from `entries` (the ports of the
    /// remaining attachment records); true when it had to.
    pub fn reset_if_corrupt(&self, entries: &[(PublishedPort, String)]) -> Result<bool> {
        let _lock = FileLock::acquire(&self.dir.join("ports.lock"))?;
        let path = self.dir.join("ports.json");
        match fsutil::read_json::<Registry>(&path) {
            Err(Error::Corrupt { .. }) => {
                let reg = Registry {
                    entries: entries
                        .iter()
                        .map(|(port, owner)| Entry {
                            port: *port,
                            owner: owner.clone(),
                        })
                        .collect(),
                };
                fsutil::write_json(&path, &reg)?;
                tracing::warn!(registry = %path.display(), "unreadable port registry rebuilt from the attachment records");
                Ok(true)
            }
            Err(e) => Err(e),
            Ok(_) => Ok(false),
        }
    }

    /// Owners with published ports.
    pub fn owners(&self) -> Result<Vec<String>> {
        self.locked(|reg| {
            let mut o: Vec<String> = reg.entries.iter().map(|e| e.owner.clone()).collect();
            o.dedup();
            Ok((o, false))
        })
    }
}

fn conflict(p: &PublishedPort, owner: String) -> Error {
    Error::PortConflict {
        host_ip: p.host_ip_text(),
        port: p.host_port,
        proto: p.protocol.as_str(),
        owner,
    }
}

fn bind_addr(host_ip: Option<IpAddr>, port: u16) -> SocketAddr {
    SocketAddr::new(host_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)), port)
}

/// Refuses a port a host process already uses, and a host IP that is not the host's: a DNAT
/// rule would silently steal the one and never match the other.
fn probe(p: &PublishedPort) -> Result<()> {
    let addr = bind_addr(p.host_ip, p.host_port);
    let res = match p.protocol {
        Protocol::Tcp => TcpListener::bind(addr).map(drop),
        Protocol::Udp => UdpSocket::bind(addr).map(drop),
        // Probing SCTP would load the sctp module as a side effect; the registry alone decides.
        Protocol::Sctp => Ok(()),
    };
    match res {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EADDRINUSE) => {
            Err(conflict(p, "a process on the host".to_string()))
        }
        Err(e) if e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => Err(Error::InvalidPort {
            spec: format!("{}:{}", p.host_ip_text(), p.host_port),
            reason: "the host IP is not an address of this host".to_string(),
        }),
        Err(e) => Err(Error::io(format!("probe host port {}", p.host_port), e)),
    }
}

/// A port the kernel considers free right now (bind to port 0), for `-p :80`.
fn random_free_port(host_ip: Option<IpAddr>, proto: Protocol) -> Result<u16> {
    let addr = bind_addr(host_ip, 0);
    let got = match proto {
        Protocol::Udp => UdpSocket::bind(addr).and_then(|s| s.local_addr()),
        Protocol::Tcp | Protocol::Sctp => TcpListener::bind(addr).and_then(|s| s.local_addr()),
    };
    got.map(|a| a.port())
        .map_err(|e| Error::io("choose a random host port", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_detects_conflicts_and_names_the_owner() {
        let dir = tempfile::tempdir().unwrap();
        let reg = PortRegistry::new(dir.path());
        let port = random_free_port(None, Protocol::Tcp).unwrap();
        let got = reg.reserve("ctr-a", &[PortMapping::tcp(port, 80)]).unwrap();
        assert_eq!(got[0].host_port, port);
        let err = reg
            .reserve(
                "ctr-b",
                &[PortMapping {
                    host_ip: Some("127.0.0.1".parse().unwrap()),
                    ..PortMapping::tcp(port, 81)
                }],
            )
            .unwrap_err();
        assert!(err.to_string().contains("ctr-a"), "{err}");
        // Same number over UDP is a different port.
        reg.reserve(
            "ctr-b",
            &[PortMapping {
                protocol: Protocol::Udp,
                ..PortMapping::tcp(port, 81)
            }],
        )
        .unwrap();
        assert_eq!(reg.release("ctr-a").unwrap(), 1);
        reg.reserve("ctr-c", &[PortMapping::tcp(port, 80)]).unwrap();
        // A port a host process listens on is refused, naming the host.
        let l = TcpListener::bind("0.0.0.0:0").unwrap();
        let busy = l.local_addr().unwrap().port();
        let err = reg
            .reserve("ctr-d", &[PortMapping::tcp(busy, 80)])
            .unwrap_err();
        assert!(err.to_string().contains("process on the host"), "{err}");
        // A range skips the busy port.
        let got = reg
            .reserve(
                "ctr-d",
                &[PortMapping {
                    host_port_end: Some(busy.saturating_add(20)),
                    ..PortMapping::tcp(busy, 80)
                }],
            )
            .unwrap();
        assert_ne!(got[0].host_port, busy);
    }
}
