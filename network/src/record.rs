//! Attachment records: one file per (container, network), written before anything is made and
//! updated as steps complete, so that teardown and reconcile work from the record alone.

use std::fs;
use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::firewall::PortRule;
use crate::fsutil;
use crate::ports::PublishedPort;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachState {
    /// Steps are being made; a record left in this state is undone by reconcile.
    Attaching,
    Attached,
}

/// How the container is connected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "kind", content = "of")]
pub enum AttachKind {
    Bridge,
    Host,
    None,
    /// Shares the network namespace of another container.
    Container(String),
}

/// Everything made for one container on one network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attachment {
    pub container_id: String,
    pub network: String,
    pub kind: AttachKind,
    pub state: AttachState,
    /// The container's network namespace (None: the host's).
    pub netns: Option<PathBuf>,
    /// nftables table the port elements live in.
    #[serde(default)]
    pub table: String,
    #[serde(default)]
    pub bridge: String,
    #[serde(default)]
    pub host_veth: String,
    #[serde(default)]
    pub ifname: String,
    #[serde(default)]
    pub mac: Option<String>,
    #[serde(default)]
    pub addresses: Vec<IpNet>,
    #[serde(default)]
    pub gateways: Vec<IpAddr>,
    #[serde(default)]
    pub ports: Vec<PublishedPort>,
    #[serde(default)]
    pub port_rules: Vec<PortRule>,
    /// DNS names: the container's name and its aliases on this network.
    #[serde(default)]
    pub names: Vec<String>,
    /// The DNS table the names were registered in.
    #[serde(default)]
    pub dns_table: Option<PathBuf>,
}

impl Attachment {
    /// The owner key used in the IPAM and port registries.
    pub fn owner(&self) -> String {
        owner_key(&self.container_id, &self.network)
    }
}

pub fn owner_key(container: &str, network: &str) -> String {
    format!("{container}@{network}")
}

/// The directory of attachment records.
pub struct Records {
    dir: PathBuf,
}

impl Records {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Records { dir: dir.into() }
    }

    fn path(&self, container: &str, network: &str) -> PathBuf {
        self.dir
            .join(format!("{}.json", owner_key(container, network)))
    }

    pub fn lock_path(&self, container: &str) -> PathBuf {
        self.dir.join(format!("{container}.lock"))
    }

    pub fn write(&self, rec: &Attachment) -> Result<()> {
        fsutil::write_json(&self.path(&rec.container_id, &rec.network), rec)
    }

    pub fn read(&self, container: &str, network: &str) -> Result<Option<Attachment>> {
        fsutil::read_json(&self.path(container, network))
    }

    pub fn remove(&self, container: &str, network: &str) -> Result<()> {
        fsutil::remove(&self.path(container, network))
    }

    /// Every record (unreadable ones are reported, not skipped silently).
    pub fn all(&self) -> Result<Vec<Attachment>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::file("list attachments", &self.dir, e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::file("list attachments", &self.dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') || !name.ends_with(".json") {
                continue;
            }
            if let Some(rec) = fsutil::read_json::<Attachment>(&entry.path())? {
                out.push(rec);
            }
        }
        Ok(out)
    }

    /// Moves records that cannot be parsed (a torn write after a power loss on a /run that is
    /// not a tmpfs) aside as `<name>.corrupt`, so that reconcile can go on; returns their paths.
    pub fn quarantine_unreadable(&self) -> Result<Vec<PathBuf>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::file("list attachments", &self.dir, e)),
        };
        let mut moved = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| Error::file("list attachments", &self.dir, e))?;
            let path = entry.path();
            let is_record = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with('.') && n.ends_with(".json"));
            if !is_record {
                continue;
            }
            if let Err(Error::Corrupt { .. }) = fsutil::read_json::<Attachment>(&path) {
                let aside = path.with_extension("corrupt");
                fs::rename(&path, &aside)
                    .map_err(|e| Error::file("set aside corrupt record", &path, e))?;
                tracing::warn!(record = %path.display(), "unreadable attachment record set aside");
                moved.push(aside);
            }
        }
        Ok(moved)
    }

    /// Records of one container.
    pub fn of_container(&self, container: &str) -> Result<Vec<Attachment>> {
        Ok(self
            .all()?
            .into_iter()
            .filter(|r| r.container_id == container)
            .collect())
    }

    /// Records of one network.
    pub fn of_network(&self, network: &str) -> Result<Vec<Attachment>> {
        Ok(self
            .all()?
            .into_iter()
            .filter(|r| r.network == network)
            .collect())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}
