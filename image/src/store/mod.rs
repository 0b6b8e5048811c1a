//! The content store: verified blobs on disk, metadata in SQLite, unpacked
//! layer snapshots keyed by chain id.

pub mod blobs;
pub mod db;
pub mod gc;

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use tracing::debug;

use self::blobs::BlobDirs;
pub use self::blobs::BlobWriter;
use self::db::Db;
pub use self::db::{ImageRecord, SnapshotRecord};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::{self, Document, ImageConfig, Manifest};
use crate::unpack::{self, Limits, Mode, UnpackOptions};

/// The store's subdirectory of per-chain mount-point layers (snapshot/mount_points.rs);
/// gc removes each with its chain.
const MOUNT_POINT_LAYERS: &str = "mountpoints";

/// The name of the mount-point layer of the chain ending at `top` for target list `key`
/// (32 hex digits).
pub(crate) fn mount_point_layer_name(top: &Digest, key: &str) -> String {
    format!("{}-{key}", top.hex())
}

/// The top chain id a mount-point layer's name belongs to (None for scratch and strangers).
pub(crate) fn mount_point_layer_chain(name: &str) -> Option<Digest> {
    let (hex, key) = name.split_once('-')?;
    if key.len() != 32 || !key.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    format!("sha256:{hex}").parse().ok()
}

static UNIQUE: AtomicU64 = AtomicU64::new(0);

/// A process-unique suffix for scratch names.
pub(crate) fn unique_name(prefix: &str) -> String {
    let n = UNIQUE.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{nanos}", std::process::id())
}

/// An image as the store knows it: record, manifest and config.
#[derive(Debug, Clone)]
pub struct Image {
    pub record: ImageRecord,
    pub manifest: Manifest,
    pub config: ImageConfig,
    pub config_bytes: Vec<u8>,
}

impl Image {
    /// Chain ids of the image's layers, bottom first.
    pub fn chain_ids(&self) -> Vec<Digest> {
        crate::digest::chain_ids(&self.config.rootfs.diff_ids)
    }
}

/// The on-disk content store rooted at one directory.
pub struct Store {
    root: PathBuf,
    dirs: BlobDirs,
    snapshots: PathBuf,
    db: Mutex<Db>,
    /// Upper bound on what one layer may expand to.
    pub limits: Limits,
}

/// Shared (pull, unpack) or exclusive (gc) hold on the store.
pub(crate) struct StoreLock {
    _file: File,
}

impl Store {
    /// Opens or creates a store under `root`.
    pub fn open(root: impl AsRef<Path>) -> Result<Self> {
        let root = root.as_ref().to_path_buf();
        let dirs = BlobDirs::new(&root)?;
        let snapshots = root.join("snapshots");
        std::fs::create_dir_all(&snapshots)
            .map_err(|e| Error::path("creating store directory", &snapshots, e))?;
        let db = Db::open(&root.join("meta.db"))?;
        Ok(Store {
            root,
            dirs,
            snapshots,
            db: Mutex::new(db),
            limits: Limits::default(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn db(&self) -> MutexGuard<'_, Db> {
        // A panic while holding the lock leaves SQLite itself consistent.
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn lock(&self, exclusive: bool) -> Result<StoreLock> {
        let path = self.root.join("lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::path("opening store lock", &path, e))?;
        let op = if exclusive {
            libc::LOCK_EX
        } else {
            libc::LOCK_SH
        };
        // SAFETY: valid fd; released when the file closes.
        if unsafe { libc::flock(file.as_raw_fd(), op) } < 0 {
            return Err(Error::path(
                "locking store",
                &path,
                std::io::Error::last_os_error(),
            ));
        }
        Ok(StoreLock { _file: file })
    }

    // ---- blobs ----

    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.dirs.path(d)
    }

    pub fn has_blob(&self, d: &Digest) -> bool {
        self.dirs.path(d).is_file()
    }

    /// A writer for the blob `d` that resumes an interrupted ingest.
    pub fn blob_writer(&self, d: &Digest, size: Option<u64>) -> Result<BlobWriter> {
        BlobWriter::open(&self.dirs, d, size)
    }

    /// Stores bytes as a blob and returns their digest.
    pub fn put_blob(&self, bytes: &[u8]) -> Result<Digest> {
        blobs::write_whole(&self.dirs, bytes)
    }

    /// Stores a stream as a blob named by its digest, up to `max` bytes.
    pub fn put_blob_stream(&self, r: &mut dyn Read, max: u64) -> Result<(Digest, u64)> {
        blobs::write_stream(&self.dirs, r, max)
    }

    /// Stores a stream that must hash to `expected` and be `size` bytes long.
    pub fn put_blob_verified(&self, r: &mut dyn Read, expected: &Digest, size: u64) -> Result<()> {
        if self.has_blob(expected) {
            return Ok(());
        }
        let mut w = self.blob_writer(expected, Some(size))?;
        if w.written() > 0 {
            w.restart()?;
        }
        std::io::copy(r, &mut w).map_err(|e| Error::io(format!("storing blob {expected}"), e))?;
        w.commit().map(|_| ())
    }

    pub fn open_blob(&self, d: &Digest) -> Result<File> {
        File::open(self.dirs.path(d)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::BlobNotFound(d.to_string()),
            _ => Error::path("opening blob", self.dirs.path(d), e),
        })
    }

    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let mut v = Vec::new();
        self.open_blob(d)?
            .read_to_end(&mut v)
            .map_err(|e| Error::path("reading blob", self.dirs.path(d), e))?;
        Ok(v)
    }

    // ---- manifests and images ----

    /// Records a manifest or index after checking its digest.
    pub fn put_manifest(&self, expected: &Digest, media_type: &str, body: &[u8]) -> Result<()> {
        let actual = Digest::of(body);
        if actual != *expected {
            return Err(Error::DigestMismatch {
                what: "manifest".into(),
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
        self.db().put_manifest(expected, media_type, body)
    }

    /// Media type and bytes of a stored manifest or index.
    pub fn manifest(&self, d: &Digest) -> Result<(String, Vec<u8>)> {
        self.db()
            .manifest(d)?
            .ok_or_else(|| Error::BlobNotFound(d.to_string()))
    }

    /// Points `name` at an image whose manifest, config and layers are all
    /// present. The name is only recorded once everything it needs is there.
    pub fn tag_image(
        &self,
        name: &str,
        target: &Digest,
        manifest_digest: &Digest,
    ) -> Result<ImageRecord> {
        let (mt, body) = self.manifest(manifest_digest)?;
        let Document::Image(m) = manifest::parse_document(&body, Some(&mt))?.1 else {
            return Err(Error::UnsupportedMediaType(mt));
        };
        for d in std::iter::once(&m.config).chain(m.layers.iter()) {
            if !self.has_blob(&d.digest) {
                return Err(Error::BlobNotFound(d.digest.to_string()));
            }
        }
        self.manifest(target)?;
        self.db()
            .put_image(name, target, manifest_digest, &m.config.digest)?;
        self.db()
            .image(name)?
            .ok_or_else(|| Error::ImageNotFound(name.to_string()))
    }

    /// Adds another name for an existing image.
    pub fn tag(&self, existing: &str, new_name: &str) -> Result<ImageRecord> {
        let rec = self.image_record(existing)?;
        self.tag_image(new_name, &rec.target, &rec.manifest)
    }

    pub fn image_record(&self, name: &str) -> Result<ImageRecord> {
        self.db()
            .image(name)?
            .ok_or_else(|| Error::ImageNotFound(name.to_string()))
    }

    /// The image's record, manifest and config.
    pub fn image(&self, name: &str) -> Result<Image> {
        let record = self.image_record(name)?;
        let (mt, body) = self.manifest(&record.manifest)?;
        let Document::Image(manifest) = manifest::parse_document(&body, Some(&mt))?.1 else {
            return Err(Error::UnsupportedMediaType(mt));
        };
        let config_bytes = self.read_blob(&record.config)?;
        let config = ImageConfig::parse(&config_bytes)?;
        Ok(Image {
            record,
            manifest,
            config,
            config_bytes,
        })
    }

    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        self.db().images()
    }

    /// Removes a name. Content goes at the next [`Store::gc`].
    pub fn remove_image(&self, name: &str) -> Result<()> {
        if self.db().delete_image(name)? {
            Ok(())
        } else {
            Err(Error::ImageNotFound(name.to_string()))
        }
    }

    // ---- snapshots ----

    pub(crate) fn snapshots_dir(&self) -> &Path {
        &self.snapshots
    }

    /// Where the mount-point layers of all images live.
    pub(crate) fn mount_point_layers_dir(&self) -> PathBuf {
        self.root.join(MOUNT_POINT_LAYERS)
    }

    /// The directory holding the unpacked layer with this chain id.
    pub fn snapshot_dir(&self, chain_id: &Digest) -> PathBuf {
        self.snapshots.join(chain_id.hex()).join("fs")
    }

    /// The layer directories of the image whose config blob is `config`, top-most first
    /// (overlayfs's lowerdir order): what Docker's inspect reports as an image's and its
    /// containers' `GraphDriver.Data`. A layer not unpacked yet is listed where it will be.
    pub fn layer_dirs(&self, config: &Digest) -> Result<Vec<PathBuf>> {
        let cfg = ImageConfig::parse(&self.read_blob(config)?)?;
        Ok(self.layer_dirs_of(&cfg.rootfs.diff_ids))
    }

    /// [`Store::layer_dirs`] of an image whose config is already read: its diff ids.
    pub fn layer_dirs_of(&self, diff_ids: &[Digest]) -> Vec<PathBuf> {
        let chain = crate::digest::chain_ids(diff_ids);
        chain.iter().rev().map(|c| self.snapshot_dir(c)).collect()
    }

    pub fn has_snapshot(&self, chain_id: &Digest) -> Result<bool> {
        Ok(self.db().snapshot(chain_id)?.is_some() && self.snapshot_dir(chain_id).is_dir())
    }

    /// Unpacks a layer stream into the snapshot for `chain_id`. The layer is
    /// extracted into a scratch directory and renamed into place only when
    /// its diff id checks out, so a snapshot is never half there.
    pub fn unpack_snapshot<R: Read + Send>(
        &self,
        chain_id: &Digest,
        parent: Option<&Digest>,
        diff_id: &Digest,
        mut layer: R,
    ) -> Result<SnapshotRecord> {
        self.unpack_snapshot_checked(chain_id, parent, diff_id, &mut layer, |_| Ok(()))
    }

    /// Like [`Store::unpack_snapshot`], with a last check on the input
    /// (e.g. the compressed blob's digest) run before the snapshot is published.
    pub fn unpack_snapshot_checked<R: Read + Send>(
        &self,
        chain_id: &Digest,
        parent: Option<&Digest>,
        diff_id: &Digest,
        layer: &mut R,
        before_publish: impl FnOnce(&mut R) -> Result<()>,
    ) -> Result<SnapshotRecord> {
        let scratch = self.snapshots.join(unique_name("tmp"));
        let fs = scratch.join("fs");
        std::fs::create_dir_all(&fs)
            .map_err(|e| Error::path("creating snapshot scratch", &fs, e))?;
        let guard = RemoveOnDrop(Some(scratch.clone()));
        let opts = UnpackOptions {
            mode: Mode::Overlay,
            limits: self.limits,
            expected_diff_id: Some(diff_id.clone()),
        };
        let stats = unpack::unpack_layer(&mut *layer, &fs, &opts)?;
        before_publish(layer)?;
        let dest = self.snapshots.join(chain_id.hex());
        match std::fs::rename(&scratch, &dest) {
            Ok(()) => {}
            // Someone else finished the same layer first; theirs is as good.
            Err(e) if dest.is_dir() => debug!(%chain_id, error = %e, "snapshot already present"),
            Err(e) => return Err(Error::path("publishing snapshot", &dest, e)),
        }
        blobs::fsync_dir(&self.snapshots)?;
        drop(guard);
        let rec = SnapshotRecord {
            chain_id: chain_id.clone(),
            diff_id: diff_id.clone(),
            parent: parent.cloned(),
            size: stats.bytes,
        };
        self.db().put_snapshot(&rec)?;
        Ok(rec)
    }

    /// Makes sure every layer of the image is unpacked, from blobs in the store.
    pub fn ensure_snapshots(&self, image: &Image) -> Result<Vec<Digest>> {
        let _lock = self.lock(false)?;
        let chain = image.chain_ids();
        if chain.len() != image.manifest.layers.len() {
            return Err(Error::InvalidJson {
                what: "image config".into(),
                reason: format!(
                    "{} diff ids for {} layers",
                    chain.len(),
                    image.manifest.layers.len()
                ),
            });
        }
        for (i, c) in chain.iter().enumerate() {
            if self.has_snapshot(c)? {
                continue;
            }
            let blob = self.open_blob(&image.manifest.layers[i].digest)?;
            let parent = if i > 0 { Some(&chain[i - 1]) } else { None };
            self.unpack_snapshot(
                c,
                parent,
                &image.config.rootfs.diff_ids[i],
                std::io::BufReader::new(blob),
            )?;
        }
        Ok(chain)
    }

    /// Records that `id` (a container) uses the snapshot chain ending at `top`.
    pub fn add_lease(&self, id: &str, top: &Digest) -> Result<()> {
        self.db().put_lease(id, top)
    }

    pub fn remove_lease(&self, id: &str) -> Result<()> {
        self.db().delete_lease(id)
    }
}

/// Removes a scratch directory unless disarmed.
pub(crate) struct RemoveOnDrop(pub Option<PathBuf>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            if p.exists() {
                if let Err(e) = std::fs::remove_dir_all(&p) {
                    debug!(path = %p.display(), error = %e, "cannot remove scratch directory");
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn mount_point_layer_names_parse_back_to_their_chain() {
        let top = Digest::of(b"chain");
        let name = mount_point_layer_name(&top, "0123456789abcdef0123456789abcdef");
        assert_eq!(mount_point_layer_chain(&name), Some(top));
        assert_eq!(mount_point_layer_chain("tmp-1-2-3"), None);
        assert_eq!(mount_point_layer_chain("junk"), None);
    }
}
