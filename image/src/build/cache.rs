//! The build cache: (parent state, instruction after substitution, content
//! hash of what it copies) -> the state after the step. Entries are small
//! JSON files under `<store>/build-cache`. An entry whose layers are gone
//! from the store (garbage-collected with the images that held them) is a
//! miss and is removed; [`prune`] removes all such entries, or every entry.

use std::path::PathBuf;

use sha2::{Digest as _, Sha256};
use tracing::debug;

use super::state::State;
use crate::digest::Digest;
use crate::store::{unique_name, Store};

/// Bound on one entry: a config with its history and layer list.
const MAX_ENTRY: u64 = 16 << 20;

pub struct Cache {
    dir: PathBuf,
}

/// The key of a step: the parent's image ID ([`State::id`]) and the step.
pub fn key(parent: &Digest, step: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"kos-build-cache-v2\n");
    h.update(parent.to_string().as_bytes());
    h.update(b"\n");
    h.update(step.as_bytes());
    hex::encode(h.finalize())
}

/// Whether every layer of a cached state is still in the store.
fn live(store: &Store, state: &State) -> bool {
    state.layers.iter().all(|l| store.has_blob(&l.digest))
}

/// What [`prune`] removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PruneReport {
    pub entries: usize,
    pub bytes: u64,
}

/// Removes the cache entries whose layers the store no longer has (run it
/// after [`Store::gc`]), or every entry with `all` (`docker builder prune -a`).
/// The layers themselves belong to images and go with them.
pub fn prune(store: &Store, all: bool) -> std::io::Result<PruneReport> {
    use std::io::Read;
    let dir = store.root().join("build-cache");
    let mut report = PruneReport::default();
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(report),
        Err(e) => return Err(e),
    };
    for ent in rd {
        let ent = ent?;
        let path = ent.path();
        let meta = ent.metadata()?;
        let stale = all || {
            let mut buf = Vec::new();
            std::fs::File::open(&path)?
                .take(MAX_ENTRY)
                .read_to_end(&mut buf)?;
            serde_json::from_slice::<State>(&buf)
                .map(|s| !live(store, &s))
                .unwrap_or(true)
        };
        if stale {
            match std::fs::remove_file(&path) {
                Ok(()) => {
                    report.entries += 1;
                    report.bytes += meta.len();
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(report)
}

impl Cache {
    pub fn open(store: &Store) -> std::io::Result<Self> {
        let dir = store.root().join("build-cache");
        std::fs::create_dir_all(&dir)?;
        Ok(Cache { dir })
    }

    pub fn get(&self, store: &Store, key: &str) -> Option<State> {
        use std::io::Read;
        let f = std::fs::File::open(self.dir.join(key)).ok()?;
        let mut buf = Vec::new();
        f.take(MAX_ENTRY).read_to_end(&mut buf).ok()?;
        let state: State = serde_json::from_slice(&buf).ok()?;
        if live(store, &state) {
            Some(state)
        } else {
            debug!(key, "cache entry refers to removed layers");
            let _ = std::fs::remove_file(self.dir.join(key));
            None
        }
    }

    /// Records an entry (atomically; a failure only costs a later rebuild).
    pub fn put(&self, key: &str, state: &State) {
        let tmp = self.dir.join(unique_name(".tmp"));
        let res = serde_json::to_vec(state)
            .map_err(std::io::Error::other)
            .and_then(|b| std::fs::write(&tmp, b))
            .and_then(|()| std::fs::rename(&tmp, self.dir.join(key)));
        if let Err(e) = res {
            let _ = std::fs::remove_file(&tmp);
            debug!(key, error = %e, "cannot record build cache entry");
        }
    }
}
