//! Container root filesystems built from layer snapshots.

pub mod copy;
pub mod overlay;

use std::path::{Path, PathBuf};

use tracing::{info, warn};

use crate::error::{Error, Result};
use crate::store::Store;

/// How a container's rootfs was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RootfsKind {
    Overlay,
    Copy,
}

/// A prepared container root filesystem.
#[derive(Debug, Clone)]
pub struct Rootfs {
    pub id: String,
    /// What a bundle's `root.path` points at.
    pub path: PathBuf,
    pub dir: PathBuf,
    pub kind: RootfsKind,
}

/// How [`Store::prepare_rootfs`] builds the tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RootfsStrategy {
    /// overlayfs, falling back to a copy when overlay cannot be mounted.
    #[default]
    Auto,
    Overlay,
    Copy,
}

/// Settings of [`Store::prepare_rootfs_with`] beyond the strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RootfsOptions {
    /// Mount the overlay `volatile` (see [`overlay::mount_with`]): for a rootfs that is
    /// removed with its container and never mounted again (`docker run --rm`).
    pub volatile: bool,
}

impl Store {
    /// Prepares `dir/rootfs` for container `id` from image `name`: an overlay
    /// of the image's snapshots with the container's own `dir/upper` and
    /// `dir/work`, or a full copy. Leases the snapshots so gc keeps them.
    pub fn prepare_rootfs(
        &self,
        name: &str,
        id: &str,
        dir: &Path,
        strategy: RootfsStrategy,
    ) -> Result<Rootfs> {
        self.prepare_rootfs_with(name, id, dir, strategy, RootfsOptions::default())
    }

    /// [`Store::prepare_rootfs`] with [`RootfsOptions`].
    pub fn prepare_rootfs_with(
        &self,
        name: &str,
        id: &str,
        dir: &Path,
        strategy: RootfsStrategy,
        options: RootfsOptions,
    ) -> Result<Rootfs> {
        let image = self.image(name)?;
        let rootfs = dir.join("rootfs");
        if overlay::is_mounted(&rootfs) {
            return Err(Error::InUse(format!(
                "{} is already a mounted rootfs",
                rootfs.display()
            )));
        }
        std::fs::create_dir_all(&rootfs)
            .map_err(|e| Error::path("creating rootfs directory", &rootfs, e))?;
        let chain = self.ensure_snapshots(&image)?;
        if let Some(top) = chain.last() {
            self.add_lease(id, top)?;
        }
        let make = |kind| Rootfs {
            id: id.to_string(),
            path: rootfs.clone(),
            dir: dir.to_path_buf(),
            kind,
        };
        if strategy != RootfsStrategy::Copy {
            let upper = dir.join("upper");
            let work = dir.join("work");
            for p in [&upper, &work] {
                std::fs::create_dir_all(p)
                    .map_err(|e| Error::path("creating overlay directory", p, e))?;
            }
            let lowers: Vec<PathBuf> = if chain.is_empty() {
                // overlayfs needs a lower layer; an image without layers gets an empty one.
                let empty = dir.join("empty");
                std::fs::create_dir_all(&empty)
                    .map_err(|e| Error::path("creating empty layer", &empty, e))?;
                vec![empty]
            } else {
                chain.iter().rev().map(|c| self.snapshot_dir(c)).collect()
            };
            match overlay::mount_with(&lowers, &upper, &work, &rootfs, options.volatile) {
                Ok(()) => {
                    info!(id, layers = lowers.len(), "overlay rootfs mounted");
                    return Ok(make(RootfsKind::Overlay));
                }
                Err(e) if strategy == RootfsStrategy::Auto => {
                    warn!(id, error = %e, "overlay mount failed; copying layers instead");
                }
                Err(e) => {
                    let _ = self.remove_lease(id);
                    return Err(Error::Mount {
                        target: rootfs,
                        source: e,
                    });
                }
            }
        }
        if let Err(e) = copy::materialize(self, &image, &rootfs) {
            let _ = std::fs::remove_dir_all(&rootfs);
            let _ = self.remove_lease(id);
            return Err(e);
        }
        Ok(make(RootfsKind::Copy))
    }

    /// Unmounts (if mounted) and removes a container's rootfs and its lease.
    pub fn release_rootfs(&self, rootfs: &Rootfs) -> Result<()> {
        if overlay::is_mounted(&rootfs.path) {
            overlay::unmount(&rootfs.path).map_err(|e| Error::Mount {
                target: rootfs.path.clone(),
                source: e,
            })?;
        }
        for sub in ["rootfs", "upper", "work", "empty"] {
            let p = rootfs.dir.join(sub);
            if p.exists() {
                std::fs::remove_dir_all(&p).map_err(|e| Error::path("removing", &p, e))?;
            }
        }
        self.remove_lease(&rootfs.id)
    }
}
