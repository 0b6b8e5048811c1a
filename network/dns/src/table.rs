//! The DNS table: the one state file kos-dns answers from.
//!
//! The network crate rewrites it on every attach and detach; kos-dns only reads it (at start, on
//! SIGHUP and when the file changes), so the server keeps no state of its own and can be
//! restarted at any time. Writers serialise on an `flock` of a sibling `.lock` file and replace
//! the table atomically (temp file, fsync, rename), so a reader never sees half a table and two
//! concurrent attaches never lose each other's entry.
//!
//! Format (JSON):
//! ```json
//! {
//!   "version": 1,
//!   "networks": {
//!     "frontend": {
//!       "name": "frontend",
//!       "gateways": ["10.89.0.1", "fd00:89::1"],
//!       "subnets": ["10.89.0.0/24", "fd00:89::/64"],
//!       "domain": "dns.kos",
//!       "entries": [
//!         { "id": "4f1c...", "name": "web", "aliases": ["www"],
//!           "network_aliases": ["api"], "ipv4": ["10.89.0.2"], "ipv6": ["fd00:89::2"] }
//!       ]
//!     }
//!   }
//! }
//! ```
//! An entry answers to its `name`, every alias, every network alias, the first 12 characters of
//! its id (as Docker does), and each of those followed by the network's `domain` when set.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The table format version this crate reads and writes.
pub const VERSION: u32 = 1;

/// Largest table file accepted: far above any real host, small enough that a corrupt or hostile
/// file cannot exhaust memory.
pub const MAX_TABLE_BYTES: u64 = 32 << 20;

/// Longest DNS name (RFC 1035, presentation form without the trailing dot).
const MAX_NAME_LEN: usize = 253;
const MAX_LABEL_LEN: usize = 63;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading DNS table {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("DNS table {path} is larger than {max} bytes")]
    TooLarge { path: PathBuf, max: u64 },
    #[error("parsing DNS table {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("DNS table {path} has version {found}, this kos-dns reads version {VERSION}")]
    Version { path: PathBuf, found: u32 },
    #[error("writing DNS table {path}: {step}: {source}")]
    Write {
        path: PathBuf,
        step: &'static str,
        source: std::io::Error,
    },
    #[error("locking DNS table {path}: {source}")]
    Lock {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid DNS table: {0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// All networks kos-dns serves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Table {
    pub version: u32,
    #[serde(default)]
    pub networks: BTreeMap<String, Network>,
}

/// One bridge network: where the server listens, who may ask, and the names it answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    pub name: String,
    /// The bridge's addresses; kos-dns listens on each (UDP and TCP).
    #[serde(default)]
    pub gateways: Vec<IpAddr>,
    /// Askers whose source address is in one of these get this network's names.
    #[serde(default)]
    pub subnets: Vec<IpNet>,
    /// Optional search domain: `name.domain` answers as well as `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default)]
    pub entries: Vec<Entry>,
}

/// One container's registration on one network.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Container id (full); its first 12 characters also resolve.
    pub id: String,
    /// Container name.
    pub name: String,
    /// Container-wide aliases (hostname, compose service name, ...).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Aliases given for this network only (`--network-alias`).
    #[serde(default)]
    pub network_aliases: Vec<String>,
    #[serde(default)]
    pub ipv4: Vec<Ipv4Addr>,
    #[serde(default)]
    pub ipv6: Vec<Ipv6Addr>,
}

/// Network-level facts an attach passes along with its entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkInfo {
    pub name: String,
    pub gateways: Vec<IpAddr>,
    pub subnets: Vec<IpNet>,
    pub domain: Option<String>,
}

impl Table {
    pub fn new() -> Table {
        Table {
            version: VERSION,
            networks: BTreeMap::new(),
        }
    }

    /// Reads and validates a table file, refusing anything above [`MAX_TABLE_BYTES`].
    pub fn load(path: &Path) -> Result<Table> {
        let file = File::open(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::load_from(file, path)
    }

    /// Like [`Table::load`], but a missing file is an empty table (nothing registered yet).
    pub fn load_or_empty(path: &Path) -> Result<Table> {
        match File::open(path) {
            Ok(file) => Self::load_from(file, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Table::new()),
            Err(source) => Err(Error::Read {
                path: path.to_owned(),
                source,
            }),
        }
    }

    fn load_from(file: File, path: &Path) -> Result<Table> {
        let mut buf = Vec::new();
        file.take(MAX_TABLE_BYTES + 1)
            .read_to_end(&mut buf)
            .map_err(|source| Error::Read {
                path: path.to_owned(),
                source,
            })?;
        if buf.len() as u64 > MAX_TABLE_BYTES {
            return Err(Error::TooLarge {
                path: path.to_owned(),
                max: MAX_TABLE_BYTES,
            });
        }
        let table: Table = serde_json::from_slice(&buf).map_err(|source| Error::Parse {
            path: path.to_owned(),
            source,
        })?;
        if table.version != VERSION {
            return Err(Error::Version {
                path: path.to_owned(),
                found: table.version,
            });
        }
        table.validate()?;
        Ok(table)
    }

    /// Checks what a reader relies on: names are DNS names, addresses fit the network.
    pub fn validate(&self) -> Result<()> {
        for (key, net) in &self.networks {
            if key != &net.name {
                return Err(Error::Invalid(format!(
                    "network key {key:?} differs from its name {:?}",
                    net.name
                )));
            }
            if net.name.is_empty() {
                return Err(Error::Invalid("a network has an empty name".into()));
            }
            if let Some(domain) = &net.domain {
                check_dns_name(domain)
                    .map_err(|why| Error::Invalid(format!("network {key}: domain: {why}")))?;
            }
            for entry in &net.entries {
                entry
                    .validate()
                    .map_err(|why| Error::Invalid(format!("network {key}: {why}")))?;
            }
        }
        Ok(())
    }

    /// Writes the table so readers see the old or the new file, never a mix: a temp file in the
    /// same directory, fsync, rename over, fsync of the directory.
    pub fn write_atomic(&self, path: &Path) -> Result<()> {
        self.validate()?;
        let err = |step: &'static str| {
            let path = path.to_owned();
            move |source| Error::Write { path, step, source }
        };
        let data = serde_json::to_vec_pretty(self)
            .map_err(|e| err("serialise")(std::io::Error::other(e)))?;
        kos_statefile::replace(path, &data, 0o644).map_err(|e| err(e.step)(e.source))
    }

    /// Adds or replaces (same container id) `entry` on `net`, creating the network when new and
    /// refreshing its gateways, subnets and domain from `net`.
    pub fn upsert(&mut self, net: &NetworkInfo, entry: Entry) {
        let network = self
            .networks
            .entry(net.name.clone())
            .or_insert_with(|| Network {
                name: net.name.clone(),
                ..Network::default()
            });
        network.gateways = net.gateways.clone();
        network.subnets = net.subnets.clone();
        network.domain = net.domain.clone();
        network.entries.retain(|e| e.id != entry.id);
        network.entries.push(entry);
    }

    /// Removes a container from one network; true when it was there.
    pub fn remove(&mut self, network: &str, id: &str) -> bool {
        let Some(net) = self.networks.get_mut(network) else {
            return false;
        };
        let before = net.entries.len();
        net.entries.retain(|e| e.id != id);
        before != net.entries.len()
    }
}

impl Entry {
    fn validate(&self) -> std::result::Result<(), String> {
        if self.id.is_empty() {
            return Err(format!("entry {:?} has an empty id", self.name));
        }
        for name in std::iter::once(&self.name)
            .chain(&self.aliases)
            .chain(&self.network_aliases)
        {
            check_dns_name(name)
                .map_err(|why| format!("container {}: name {name:?}: {why}", self.id))?;
        }
        Ok(())
    }

    /// Every name this entry answers to, lowercased, without the network domain.
    pub fn names(&self) -> impl Iterator<Item = String> + '_ {
        let short_id =
            (self.id.len() >= 12 && self.id.is_ascii()).then(|| self.id[..12].to_owned());
        std::iter::once(self.name.clone())
            .chain(self.aliases.iter().cloned())
            .chain(self.network_aliases.iter().cloned())
            .chain(short_id)
            .map(|n| n.to_ascii_lowercase())
    }
}

/// Checks that `name` can be a DNS owner name: dot-separated labels of letters, digits, `-`,
/// `_` (Docker allows it in container names), each 1..=63 bytes, at most 253 in all.
pub fn check_dns_name(name: &str) -> std::result::Result<(), &'static str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err("empty");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("longer than 253 characters");
    }
    for label in name.split('.') {
        if label.is_empty() {
            return Err("has an empty label");
        }
        if label.len() > MAX_LABEL_LEN {
            return Err("has a label longer than 63 characters");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("has a character other than letters, digits, '-', '_' and '.'");
        }
    }
    Ok(())
}

/// An exclusive `flock` on `<table>.lock`, held while a writer loads, edits and replaces the
/// table. The lock file is separate from the table because the table's inode changes on every
/// rename.
pub struct TableLock {
    _lock: kos_statefile::Lock,
}

impl TableLock {
    pub fn acquire(table_path: &Path) -> Result<TableLock> {
        let mut lock_path = table_path.as_os_str().to_owned();
        lock_path.push(".lock");
        let lock = kos_statefile::lock(&PathBuf::from(lock_path), false).map_err(|source| {
            Error::Lock {
                path: table_path.to_owned(),
                source,
            }
        })?;
        Ok(TableLock { _lock: lock })
    }
}

/// Runs `edit` on the table at `path` under the writers' lock and writes the result atomically.
/// A missing table starts empty. Nothing is written when `edit` fails.
pub fn update<R>(path: &Path, edit: impl FnOnce(&mut Table) -> Result<R>) -> Result<R> {
    let _lock = TableLock::acquire(path)?;
    let mut table = Table::load_or_empty(path)?;
    let out = edit(&mut table)?;
    table.write_atomic(path)?;
    Ok(out)
}

/// Registers a container on a network (replacing an earlier registration of the same id there).
pub fn add_entry(path: &Path, net: &NetworkInfo, entry: Entry) -> Result<()> {
    entry
        .validate()
        .map_err(|why| Error::Invalid(format!("network {}: {why}", net.name)))?;
    update(path, |t| {
        t.upsert(net, entry);
        Ok(())
    })
}

/// Removes a container from one network; true when it was registered there.
pub fn remove_entry(path: &Path, network: &str, id: &str) -> Result<bool> {
    update(path, |t| Ok(t.remove(network, id)))
}

/// Removes a container from every network (teardown from recorded state); how many entries went.
pub fn remove_container(path: &Path, id: &str) -> Result<usize> {
    update(path, |t| {
        let mut n = 0;
        for net in t.networks.values_mut() {
            let before = net.entries.len();
            net.entries.retain(|e| e.id != id);
            n += before - net.entries.len();
        }
        Ok(n)
    })
}

/// Drops a whole network (network removal); true when it was there.
pub fn remove_network(path: &Path, network: &str) -> Result<bool> {
    update(path, |t| Ok(t.networks.remove(network).is_some()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn net(name: &str) -> NetworkInfo {
        NetworkInfo {
            name: name.into(),
            gateways: vec!["10.89.0.1".parse().unwrap()],
            subnets: vec!["10.89.0.0/24".parse().unwrap()],
            domain: Some("dns.kos".into()),
        }
    }

    fn entry(id: &str, name: &str, ip: &str) -> Entry {
        Entry {
            id: id.into(),
            name: name.into(),
            ipv4: vec![ip.parse().unwrap()],
            ..Entry::default()
        }
    }

    #[test]
    fn add_replace_remove_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dns.json");
        add_entry(
            &path,
            &net("n1"),
            entry("aaaaaaaaaaaaaaaa", "web", "10.89.0.2"),
        )
        .unwrap();
        add_entry(
            &path,
            &net("n1"),
            entry("bbbbbbbbbbbbbbbb", "db", "10.89.0.3"),
        )
        .unwrap();
        // Same id again replaces, it does not duplicate.
        add_entry(
            &path,
            &net("n1"),
            entry("aaaaaaaaaaaaaaaa", "web", "10.89.0.9"),
        )
        .unwrap();
        let t = Table::load(&path).unwrap();
        let n1 = &t.networks["n1"];
        assert_eq!(n1.entries.len(), 2);
        assert_eq!(
            n1.entries[1].ipv4,
            vec!["10.89.0.9".parse::<Ipv4Addr>().unwrap()]
        );
        assert_eq!(n1.domain.as_deref(), Some("dns.kos"));

        assert!(remove_entry(&path, "n1", "bbbbbbbbbbbbbbbb").unwrap());
        assert!(!remove_entry(&path, "n1", "bbbbbbbbbbbbbbbb").unwrap());
        assert!(!remove_entry(&path, "nope", "x").unwrap());
        add_entry(
            &path,
            &net("n2"),
            entry("aaaaaaaaaaaaaaaa", "web", "10.89.0.9"),
        )
        .unwrap();
        assert_eq!(remove_container(&path, "aaaaaaaaaaaaaaaa").unwrap(), 2);
        assert!(remove_network(&path, "n2").unwrap());
        let t = Table::load(&path).unwrap();
        assert_eq!(t.networks.len(), 1);
        assert!(t.networks["n1"].entries.is_empty());
        // No temp files left beside the table.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert!(
            names
                .iter()
                .all(|n| n == "dns.json" || n == "dns.json.lock"),
            "{names:?}"
        );
    }

    #[test]
    fn concurrent_adds_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dns.json");
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let path = path.clone();
                std::thread::spawn(move || {
                    add_entry(
                        &path,
                        &net("n"),
                        entry(
                            &format!("id{i:02}"),
                            &format!("c{i}"),
                            &format!("10.89.0.{}", i + 2),
                        ),
                    )
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        assert_eq!(Table::load(&path).unwrap().networks["n"].entries.len(), 16);
    }

    #[test]
    fn bad_tables_are_refused_with_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dns.json");
        let missing = Table::load(&path).unwrap_err();
        assert!(matches!(missing, Error::Read { .. }), "{missing}");
        assert_eq!(Table::load_or_empty(&path).unwrap(), Table::new());

        std::fs::write(&path, b"{\"version\": 1, \"networks\": ").unwrap();
        assert!(matches!(Table::load(&path), Err(Error::Parse { .. })));
        std::fs::write(&path, b"{\"version\": 7}").unwrap();
        assert!(matches!(
            Table::load(&path),
            Err(Error::Version { found: 7, .. })
        ));
        std::fs::write(
            &path,
            br#"{"version":1,"networks":{"n":{"name":"n","entries":[{"id":"x","name":"a\nb"}]}}}"#,
        )
        .unwrap();
        let e = Table::load(&path).unwrap_err();
        assert!(e.to_string().contains("a\\nb"), "{e}");
        std::fs::write(&path, br#"{"version":1,"networks":{"n":{"name":"m"}}}"#).unwrap();
        assert!(matches!(Table::load(&path), Err(Error::Invalid(_))));

        let f = File::create(&path).unwrap();
        f.set_len(MAX_TABLE_BYTES + 10).unwrap();
        assert!(matches!(Table::load(&path), Err(Error::TooLarge { .. })));

        // A refused entry leaves the table as it was.
        let good = dir.path().join("good.json");
        add_entry(&good, &net("n"), entry("id1", "ok", "10.89.0.2")).unwrap();
        let before = std::fs::read(&good).unwrap();
        assert!(add_entry(&good, &net("n"), entry("id2", "bad name", "10.89.0.3")).is_err());
        assert_eq!(std::fs::read(&good).unwrap(), before);
    }

    #[test]
    fn entry_names_include_aliases_and_short_id() {
        let e = Entry {
            id: "0123456789abcdef0123".into(),
            name: "Web".into(),
            aliases: vec!["www".into()],
            network_aliases: vec!["api".into()],
            ..Entry::default()
        };
        let names: Vec<String> = e.names().collect();
        assert_eq!(names, vec!["web", "www", "api", "0123456789ab"]);
        assert!(check_dns_name("a.b-c_d").is_ok());
        assert!(check_dns_name("a..b").is_err());
        assert!(check_dns_name(&"x".repeat(64)).is_err());
    }
}
