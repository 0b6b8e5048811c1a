//! IP address management: one pool file per network, changed only under that network's flock
//! and written atomically, so concurrent attachments (threads or processes) never share an
//! address and a crash never loses or half-writes an allocation.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil::{self, FileLock};
use crate::netconf::{Network, Subnet};

#[derive(Debug, Default, Serialize, Deserialize)]
struct PoolState {
    /// Address -> owner (an attachment key).
    allocations: BTreeMap<IpAddr, String>,
    /// Where the next dynamic search starts, per subnet: addresses are handed out in turn, so
    /// a just-released address is not immediately reused by a different container.
    cursors: BTreeMap<IpNet, IpAddr>,
}

pub struct Ipam {
    dir: PathBuf,
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_u128(v: u128, v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(v.into())
    } else {
        IpAddr::V4((v as u32).into())
    }
}

impl Ipam {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Ipam { dir: dir.into() }
    }

    fn state_path(&self, network: &str) -> PathBuf {
        self.dir.join(format!("{network}.json"))
    }

    fn lock_path(&self, network: &str) -> PathBuf {
        self.dir.join(format!("{network}.lock"))
    }

    fn locked<T>(
        &self,
        network: &str,
        f: impl FnOnce(&mut PoolState) -> Result<(T, bool)>,
    ) -> Result<T> {
        let _lock = FileLock::acquire(&self.lock_path(network))?;
        let path = self.state_path(network);
        let mut state: PoolState = fsutil::read_json(&path)?.unwrap_or_default();
        let (out, changed) = f(&mut state)?;
        if changed {
            fsutil::write_json(&path, &state)?;
        }
        Ok(out)
    }

    /// Allocates one address per subnet of `net` for `owner`. A requested address is used for
    /// the subnet it belongs to; every request must belong to some subnet. All or nothing.
    pub fn allocate(&self, net: &Network, owner: &str, requests: &[IpAddr]) -> Result<Vec<IpNet>> {
        for ip in requests {
            check_request(net, *ip)?;
        }
        self.locked(&net.name, |state| {
            let mut got = Vec::new();
            for subnet in &net.subnets {
                let ip = match requests.iter().find(|ip| subnet.subnet.contains(*ip)) {
                    Some(ip) => {
                        if let Some(owner) = state.allocations.get(ip) {
                            return Err(Error::IpTaken {
                                ip: *ip,
                                network: net.name.clone(),
                                owner: owner.clone(),
                            });
                        }
                        *ip
                    }
                    None => next_free(state, subnet, &net.name)?,
                };
                state.allocations.insert(ip, owner.to_string());
                got.push(IpNet::new(ip, subnet.subnet.prefix_len()).unwrap_or(subnet.subnet));
            }
            Ok((got, true))
        })
    }

    /// Releases every address of `owner` on `network`; returns how many.
    pub fn release(&self, network: &str, owner: &str) -> Result<usize> {
        self.locked(network, |state| {
            let before = state.allocations.len();
            state.allocations.retain(|_, o| o != owner);
            let n = before - state.allocations.len();
            Ok((n, n > 0))
        })
    }

    /// Releases every allocation whose owner `keep` refuses; returns the released ones.
    pub fn release_unless(
        &self,
        network: &str,
        keep: impl Fn(&str) -> bool,
    ) -> Result<Vec<(IpAddr, String)>> {
        self.locked(network, |state| {
            let gone: Vec<(IpAddr, String)> = state
                .allocations
                .iter()
                .filter(|(_, o)| !keep(o))
                .map(|(ip, o)| (*ip, o.clone()))
                .collect();
            for (ip, _) in &gone {
                state.allocations.remove(ip);
            }
            let changed = !gone.is_empty();
            Ok((gone, changed))
        })
    }

    /// Rebuilds a pool file that cannot be parsed from `allocations` (those of the remaining
    /// attachment records); true when it had to.
    pub fn reset_if_corrupt(
        &self,
        network: &str,
        allocations: &[(IpAddr, String)],
    ) -> Result<bool> {
        let _lock = FileLock::acquire(&self.lock_path(network))?;
        let path = self.state_path(network);
        match fsutil::read_json::<PoolState>(&path) {
            Err(Error::Corrupt { .. }) => {
                let state = PoolState {
                    allocations: allocations.iter().cloned().collect(),
                    cursors: BTreeMap::new(),
                };
                fsutil::write_json(&path, &state)?;
                tracing::warn!(pool = %path.display(), "unreadable address pool rebuilt from the attachment records");
                Ok(true)
            }
            Err(e) => Err(e),
            Ok(_) => Ok(false),
        }
    }

    /// Current allocations of a network.
    pub fn allocations(&self, network: &str) -> Result<BTreeMap<IpAddr, String>> {
        self.locked(network, |state| Ok((state.allocations.clone(), false)))
    }

    /// Forgets a network's pool (the network is being removed).
    pub fn remove_network(&self, network: &str) -> Result<()> {
        fsutil::remove(&self.state_path(network))?;
        fsutil::remove(&self.lock_path(network))
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Whether `ip` may be requested on `net` at all: inside a subnet, and neither its network,
/// gateway nor broadcast address. (Whether it is free is known only under the pool's lock.)
pub fn check_request(net: &Network, ip: IpAddr) -> Result<()> {
    let Some(subnet) = net.subnets.iter().find(|s| s.subnet.contains(&ip)) else {
        let subnet = net
            .subnets
            .iter()
            .find(|s| s.subnet.addr().is_ipv4() == ip.is_ipv4())
            .map(|s| s.subnet)
            .unwrap_or_else(|| IpNet::from(ip));
        return Err(Error::IpOutsidePool {
            ip,
            subnet,
            network: net.name.clone(),
        });
    };
    if subnet.is_reserved(ip) {
        return Err(Error::IpReserved {
            ip,
            network: net.name.clone(),
        });
    }
    Ok(())
}

/// Next free dynamic address of `subnet`, starting at its cursor and wrapping around.
fn next_free(state: &mut PoolState, subnet: &Subnet, network: &str) -> Result<IpAddr> {
    let range = subnet.ip_range.unwrap_or(subnet.subnet);
    let v6 = range.addr().is_ipv6();
    let first = to_u128(range.network());
    let last = to_u128(range.broadcast());
    let size = last - first + 1;
    let start = state
        .cursors
        .get(&subnet.subnet)
        .map(|c| to_u128(*c))
        .filter(|c| (first..=last).contains(c))
        .unwrap_or(first);
    // Only taken and reserved addresses can be skipped, so this many steps always reach a free
    // one if any exists.
    let steps = size.min(state.allocations.len() as u128 + 4);
    let mut tried = 0u128;
    let mut offset = start - first;
    while tried < steps {
        let ip = from_u128(first + offset, v6);
        if !subnet.is_reserved(ip)
            && !state.allocations.contains_key(&ip)
            && subnet.subnet.contains(&ip)
        {
            let next = (offset + 1) % size;
            state
                .cursors
                .insert(subnet.subnet, from_u128(first + next, v6));
            return Ok(ip);
        }
        offset = (offset + 1) % size;
        tried += 1;
    }
    Err(Error::PoolExhausted {
        subnet: range,
        network: network.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::netconf::DriverKind;

    fn net(cidr: &str, range: Option<&str>) -> Network {
        let subnet: IpNet = cidr.parse().unwrap();
        Network {
            name: "t".into(),
            driver: DriverKind::Bridge,
            bridge: "kost".into(),
            subnets: vec![Subnet {
                subnet,
                gateway: match subnet {
                    IpNet::V4(v) => IpAddr::V4((u32::from(v.network()) + 1).into()),
                    IpNet::V6(v) => IpAddr::V6((u128::from(v.network()) + 1).into()),
                },
                ip_range: range.map(|r| r.parse().unwrap()),
            }],
            internal: false,
            mtu: None,
            labels: Default::default(),
            enable_icc: true,
        }
    }

    #[test]
    fn never_hands_out_network_gateway_or_broadcast_and_reports_exhaustion() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(dir.path());
        let n = net("10.1.0.0/29", None);
        let mut got = Vec::new();
        for i in 0..5 {
            got.push(ipam.allocate(&n, &format!("c{i}"), &[]).unwrap()[0].addr());
        }
        let s: Vec<String> = got.iter().map(|i| i.to_string()).collect();
        assert_eq!(
            s,
            ["10.1.0.2", "10.1.0.3", "10.1.0.4", "10.1.0.5", "10.1.0.6"]
        );
        assert!(matches!(
            ipam.allocate(&n, "c9", &[]),
            Err(Error::PoolExhausted { .. })
        ));
        assert_eq!(ipam.release(&n.name, "c2").unwrap(), 1);
        assert_eq!(
            ipam.allocate(&n, "c9", &[]).unwrap()[0].addr().to_string(),
            "10.1.0.4"
        );
    }

    #[test]
    fn static_requests_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let ipam = Ipam::new(dir.path());
        let n = net("10.2.0.0/24", Some("10.2.0.128/25"));
        let a = ipam
            .allocate(&n, "a", &["10.2.0.7".parse().unwrap()])
            .unwrap();
        assert_eq!(a[0].to_string(), "10.2.0.7/24");
        assert!(matches!(
            ipam.allocate(&n, "b", &["10.2.0.7".parse().unwrap()]),
            Err(Error::IpTaken { .. })
        ));
        assert!(matches!(
            ipam.allocate(&n, "b", &["10.3.0.7".parse().unwrap()]),
            Err(Error::IpOutsidePool { .. })
        ));
        assert!(matches!(
            ipam.allocate(&n, "b", &["10.2.0.1".parse().unwrap()]),
            Err(Error::IpReserved { .. })
        ));
        assert!(matches!(
            ipam.allocate(&n, "b", &["10.2.0.255".parse().unwrap()]),
            Err(Error::IpReserved { .. })
        ));
        // Dynamic addresses come from the ip-range (its first address is a host of the subnet).
        assert_eq!(
            ipam.allocate(&n, "c", &[]).unwrap()[0].addr().to_string(),
            "10.2.0.128"
        );
        assert_eq!(
            ipam.allocate(&n, "d", &[]).unwrap()[0].addr().to_string(),
            "10.2.0.129"
        );
    }

    #[test]
    fn concurrent_allocations_are_distinct() {
        let dir = tempfile::tempdir().unwrap();
        let n = net("fd00:1::/64", None);
        let ips = std::thread::scope(|s| {
            let handles: Vec<_> = (0..50)
                .map(|i| {
                    let n = &n;
                    let dir = dir.path();
                    s.spawn(move || Ipam::new(dir).allocate(n, &format!("c{i}"), &[]).unwrap()[0])
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap())
                .collect::<Vec<_>>()
        });
        let set: std::collections::BTreeSet<_> = ips.iter().collect();
        assert_eq!(set.len(), 50);
    }
}
