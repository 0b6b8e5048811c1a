//! Garbage collection: drop manifests, blobs and snapshots no name or lease reaches.

use std::collections::HashSet;
use std::os::fd::AsRawFd;

use tracing::{debug, warn};

use super::Store;
use crate::digest::{chain_ids, Digest};
use crate::error::{Error, Result};
use crate::manifest::{self, Document, ImageConfig};

/// What a collection removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub manifests: usize,
    pub blobs: usize,
    pub snapshots: usize,
    pub bytes: u64,
}

impl Store {
    /// Removes everything unreachable from an image name or a lease, plus
    /// leftovers of interrupted work (partial downloads, scratch dirs).
    pub fn gc(&self) -> Result<GcReport> {
        let _lock = self.lock(true)?;
        let mut report = GcReport::default();
        let mut live_manifests: HashSet<Digest> = HashSet::new();
        let mut live_blobs: HashSet<Digest> = HashSet::new();
        let mut live_snaps: HashSet<Digest> = HashSet::new();

        let images = self.db().images()?;
        let mut todo: Vec<Digest> = Vec::new();
        for img in &images {
            todo.push(img.target.clone());
            todo.push(img.manifest.clone());
        }
        while let Some(d) = todo.pop() {
            if !live_manifests.insert(d.clone()) {
                continue;
            }
            let Some((mt, body)) = self.db().manifest(&d)? else {
                continue;
            };
            match manifest::parse_document(&body, Some(&mt))?.1 {
                Document::Index(i) => {
                    // Children of an index are kept only if they were fetched.
                    for m in i.manifests {
                        if self.db().manifest(&m.digest)?.is_some() {
                            todo.push(m.digest);
                        }
                    }
                }
                Document::Image(m) => {
                    live_blobs.insert(m.config.digest.clone());
                    for l in &m.layers {
                        live_blobs.insert(l.digest.clone());
                    }
                    if let Ok(bytes) = self.read_blob(&m.config.digest) {
                        if let Ok(cfg) = ImageConfig::parse(&bytes) {
                            live_snaps.extend(chain_ids(&cfg.rootfs.diff_ids));
                        }
                    }
                }
            }
        }
        let snaps = self.db().snapshots()?;
        let leases = self.db().leased_chain_ids()?;
        for lease in leases {
            let mut cur = Some(lease);
            while let Some(c) = cur {
                cur = snaps
                    .iter()
                    .find(|s| s.chain_id == c)
                    .and_then(|s| s.parent.clone());
                live_snaps.insert(c);
            }
        }

        let manifests = self.db().all_manifests()?;
        for (d, _, _) in manifests {
            if !live_manifests.contains(&d) {
                self.db().delete_manifest(&d)?;
                report.manifests += 1;
            }
        }
        for s in &snaps {
            if !live_snaps.contains(&s.chain_id) {
                let dir = self.snapshots_dir().join(s.chain_id.hex());
                self.db().delete_snapshot(&s.chain_id)?;
                remove_tree(&dir)?;
                report.snapshots += 1;
            }
        }
        // Snapshot dirs without a record: scratch of a crashed unpack.
        for ent in read_dir(self.snapshots_dir())? {
            let name = ent.file_name();
            let keep = name
                .to_str()
                .and_then(|n| format!("sha256:{n}").parse::<Digest>().ok())
                .is_some_and(|d| live_snaps.contains(&d));
            if !keep {
                remove_tree(&ent.path())?;
            }
        }
        // Mount-point layers go with their chain; scratch of a crashed build goes too
        // (builders hold the store shared, so none is running now).
        let layers = self.mount_point_layers_dir();
        if layers.is_dir() {
            for ent in read_dir(&layers)? {
                let keep = ent
                    .file_name()
                    .to_str()
                    .and_then(super::mount_point_layer_chain)
                    .is_some_and(|d| live_snaps.contains(&d));
                if !keep {
                    remove_tree(&ent.path())?;
                }
            }
        }
        for ent in read_dir(&self.dirs.blobs)? {
            let keep = ent
                .file_name()
                .to_str()
                .and_then(|n| format!("sha256:{n}").parse::<Digest>().ok())
                .is_some_and(|d| live_blobs.contains(&d));
            if !keep {
                report.bytes += ent.metadata().map(|m| m.len()).unwrap_or(0);
                std::fs::remove_file(ent.path())
                    .map_err(|e| Error::path("removing blob", ent.path(), e))?;
                report.blobs += 1;
            }
        }
        for ent in read_dir(&self.dirs.ingest)? {
            remove_if_unlocked(&ent.path());
        }
        for ent in read_dir(&self.dirs.tmp)? {
            remove_tree(&ent.path())?;
        }
        debug!(?report, "garbage collection done");
        Ok(report)
    }
}

fn read_dir(p: &std::path::Path) -> Result<Vec<std::fs::DirEntry>> {
    let rd = std::fs::read_dir(p).map_err(|e| Error::path("listing", p, e))?;
    rd.collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| Error::path("listing", p, e))
}

fn remove_tree(p: &std::path::Path) -> Result<()> {
    match std::fs::symlink_metadata(p) {
        Err(_) => Ok(()),
        Ok(m) if m.is_dir() => {
            std::fs::remove_dir_all(p).map_err(|e| Error::path("removing", p, e))
        }
        Ok(_) => std::fs::remove_file(p).map_err(|e| Error::path("removing", p, e)),
    }
}

/// A partial download another pull is writing is locked: leave it.
fn remove_if_unlocked(p: &std::path::Path) {
    let Ok(f) = std::fs::File::open(p) else {
        return;
    };
    // SAFETY: valid fd.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        if let Err(e) = std::fs::remove_file(p) {
            warn!(path = %p.display(), error = %e, "cannot remove partial download");
        }
    }
}
