//! The result cache: what each successful ADD returned, with the config and arguments it ran
//! with, so CHECK, DEL and GC work after a restart and even after the config file is gone
//! (the same role as libcni's /var/lib/cni/results).
//!
//! One file per attachment, `results/<network>+<container id>+<ifname>`: network names and
//! container ids cannot hold `+`, so the name is unambiguous. Files are written atomically.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Default cache directory. KOS keeps its own (libcni's /var/lib/cni holds containerd's and
/// CRI-O's entries, in their format).
pub const DEFAULT_CACHE_DIR: &str = "/var/lib/kos/cni";
const KIND: &str = "kosCniCacheV1";
const MAX_ENTRY_BYTES: u64 = 4 << 20;

/// One cached attachment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    pub kind: String,
    pub container_id: String,
    pub network_name: String,
    pub if_name: String,
    pub netns: PathBuf,
    #[serde(default)]
    pub cni_args: Vec<(String, String)>,
    #[serde(default)]
    pub capability_args: Map<String, Value>,
    /// The network config list the attachment was made with.
    pub config: Value,
    pub result: Value,
}

impl Entry {
    pub fn new(
        rt: &crate::runner::RuntimeConf,
        network: &str,
        config: Value,
        result: Value,
    ) -> Entry {
        Entry {
            kind: KIND.to_owned(),
            container_id: rt.container_id.clone(),
            network_name: network.to_owned(),
            if_name: rt.ifname.clone(),
            netns: rt.netns.clone(),
            cni_args: rt.args.clone(),
            capability_args: rt.capability_args.clone(),
            config,
            result,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    pub fn new(dir: impl Into<PathBuf>) -> Cache {
        Cache { dir: dir.into() }
    }

    fn results(&self) -> PathBuf {
        self.dir.join("results")
    }

    fn path(&self, network: &str, container_id: &str, ifname: &str) -> PathBuf {
        self.results()
            .join(format!("{network}+{container_id}+{ifname}"))
    }

    fn err(path: &Path, step: &'static str) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.to_owned();
        move |source| Error::Cache { path, step, source }
    }

    pub fn save(&self, entry: &Entry) -> Result<()> {
        let dir = self.results();
        std::fs::create_dir_all(&dir).map_err(Self::err(&dir, "create directory"))?;
        let path = self.path(&entry.network_name, &entry.container_id, &entry.if_name);
        let data = serde_json::to_vec(entry)
            .map_err(|e| Self::err(&path, "serialise")(std::io::Error::other(e)))?;
        kos_statefile::replace(&path, &data, 0o600).map_err(|e| Self::err(&path, e.step)(e.source))
    }

    /// The entry of one attachment; None when there is none.
    pub fn load(&self, network: &str, container_id: &str, ifname: &str) -> Result<Option<Entry>> {
        let path = self.path(network, container_id, ifname);
        match std::fs::File::open(&path) {
            Ok(f) => read_entry(f, &path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Self::err(&path, "open")(e)),
        }
    }

    /// Removes one attachment's entry (absent is fine).
    pub fn remove(&self, network: &str, container_id: &str, ifname: &str) -> Result<()> {
        let path = self.path(network, container_id, ifname);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Self::err(&path, "remove")(e)),
        }
    }

    /// Every readable entry of `network` (unreadable files are logged and skipped).
    pub fn list(&self, network: &str) -> Result<Vec<Entry>> {
        let dir = self.results();
        let iter = match std::fs::read_dir(&dir) {
            Ok(i) => i,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Self::err(&dir, "list")(e)),
        };
        let prefix = format!("{network}+");
        let mut out = Vec::new();
        for entry in iter {
            let entry = entry.map_err(Self::err(&dir, "list"))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if !name.starts_with(&prefix) {
                continue;
            }
            let path = entry.path();
            let parsed = std::fs::File::open(&path)
                .map_err(Self::err(&path, "open"))
                .and_then(|f| read_entry(f, &path));
            match parsed {
                Ok(e) if e.network_name == network => out.push(e),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "skipping unreadable CNI cache entry"),
            }
        }
        Ok(out)
    }
}

fn read_entry(f: std::fs::File, path: &Path) -> Result<Entry> {
    let mut buf = Vec::new();
    f.take(MAX_ENTRY_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(Cache::err(path, "read"))?;
    if buf.len() as u64 > MAX_ENTRY_BYTES {
        return Err(Cache::err(path, "read")(std::io::Error::other(
            "entry too large",
        )));
    }
    let entry: Entry = serde_json::from_slice(&buf)
        .map_err(|e| Cache::err(path, "parse")(std::io::Error::other(e)))?;
    if entry.kind != KIND {
        return Err(Cache::err(path, "parse")(std::io::Error::other(format!(
            "unknown kind {:?}",
            entry.kind
        ))));
    }
    Ok(entry)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::runner::RuntimeConf;

    fn entry(net: &str, id: &str, ifname: &str) -> Entry {
        let rt = RuntimeConf {
            container_id: id.into(),
            netns: "/run/netns/x".into(),
            ifname: ifname.into(),
            ..RuntimeConf::default()
        };
        Entry::new(
            &rt,
            net,
            serde_json::json!({"name": net}),
            serde_json::json!({"cniVersion": "1.0.0"}),
        )
    }

    #[test]
    fn save_load_list_remove_with_dotted_names() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let a = entry("net.one", "c.1", "eth0");
        let b = entry("net.one", "c.2", "eth0");
        let other = entry("net.one-x", "c.1", "eth0");
        for e in [&a, &b, &other] {
            cache.save(e).unwrap();
        }
        assert_eq!(cache.load("net.one", "c.1", "eth0").unwrap().unwrap(), a);
        assert!(cache.load("net.one", "c.3", "eth0").unwrap().is_none());
        let mut ids: Vec<String> = cache
            .list("net.one")
            .unwrap()
            .into_iter()
            .map(|e| e.container_id)
            .collect();
        ids.sort();
        assert_eq!(ids, vec!["c.1", "c.2"]);
        cache.remove("net.one", "c.1", "eth0").unwrap();
        cache.remove("net.one", "c.1", "eth0").unwrap();
        assert_eq!(cache.list("net.one").unwrap().len(), 1);
        // Only the entries themselves are in the directory (no temp files).
        assert_eq!(
            std::fs::read_dir(dir.path().join("results"))
                .unwrap()
                .count(),
            2
        );
        // A corrupt entry is an error for load and skipped by list.
        std::fs::write(dir.path().join("results/net.one+bad+eth0"), "{").unwrap();
        assert!(cache.load("net.one", "bad", "eth0").is_err());
        assert_eq!(cache.list("net.one").unwrap().len(), 1);
    }
}
