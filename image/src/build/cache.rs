//! The build cache: (parent state, instruction after substitution, content
//! hash of what it copies) -> the state after the step. Entries are small
//! JSON files under `<store>/build-cache`; an entry whose layers are gone
//! from the store (garbage-collected) is a miss.

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

/// The key of a step.
pub fn key(parent: &Digest, step: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"kos-build-cache-v1\n");
    h.update(parent.to_string().as_bytes());
    h.update(b"\n");
    h.update(step.as_bytes());
    hex::encode(h.finalize())
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
        if state.layers.iter().all(|l| store.has_blob(&l.digest)) {
            Some(state)
        } else {
            debug!(key, "cache entry refers to removed layers");
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
