//! A pod's network counters: `/proc/thread-self/net/dev` read from a short-lived thread
//! that joined the pod's network namespace (the file shows the reading thread's
//! namespace, and setns must never touch a pooled thread).

use std::io::Read;
use std::path::{Path, PathBuf};

use nix::sched::{setns, CloneFlags};

use crate::error::{Error, Result};

/// Counters of one interface.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub name: String,
    pub rx_bytes: u64,
    pub rx_errors: u64,
    pub tx_bytes: u64,
    pub tx_errors: u64,
}

/// The interfaces of a `net/dev` table, loopback left out.
pub fn parse(table: &str) -> Vec<Counters> {
    table
        .lines()
        .skip(2)
        .filter_map(|l| {
            let (name, rest) = l.split_once(':')?;
            let name = name.trim();
            if name == "lo" {
                return None;
            }
            let f: Vec<u64> = rest
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            if f.len() < 16 {
                return None;
            }
            Some(Counters {
                name: name.to_string(),
                rx_bytes: f[0],
                rx_errors: f[2],
                tx_bytes: f[8],
                tx_errors: f[10],
            })
        })
        .collect()
}

/// Largest `net/dev` read (a pod with very many interfaces is not one of ours).
const MAX_TABLE: u64 = 1024 * 1024;

/// The counters of the interfaces in the network namespace pinned at `netns`.
pub fn read(netns: &Path) -> Result<Vec<Counters>> {
    let ns: PathBuf = netns.to_path_buf();
    std::thread::Builder::new()
        .name("kos-cri-netstats".into())
        .spawn(move || -> Result<Vec<Counters>> {
            let fd = kos_network::netns::open(&ns).map_err(|e| Error::Network {
                step: "opening the pod's network namespace".into(),
                source: e,
            })?;
            setns(&fd, CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::sys("entering the pod's network namespace", e))?;
            let p = "/proc/thread-self/net/dev";
            let mut s = String::new();
            std::fs::File::open(p)
                .and_then(|f| f.take(MAX_TABLE).read_to_string(&mut s))
                .map_err(|e| Error::io("reading", p, e))?;
            Ok(parse(&s))
        })
        .map_err(|e| Error::io("spawning a thread for", "network stats", e))?
        .join()
        .map_err(|_| Error::Internal {
            step: "reading network stats",
            message: "the reading thread panicked".into(),
        })?
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_parses_without_loopback() {
        let t = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0
  eth0:    5000      40    2    0    0     0          0         0     3000      30    1    0    0     0       0          0
";
        assert_eq!(
            parse(t),
            vec![Counters {
                name: "eth0".into(),
                rx_bytes: 5000,
                rx_errors: 2,
                tx_bytes: 3000,
                tx_errors: 1
            }]
        );
    }
}
