//! Container root filesystems built from layer snapshots.

pub mod copy;
pub mod merged_view;
pub mod mount_points;
pub mod overlay;

pub use mount_points::{MountKind, MountPoint};

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
        self.prepare_rootfs_with_mount_points(name, id, dir, strategy, options, &[])
    }

    /// [`Store::prepare_rootfs_with`] for a container whose runtime will mount on
    /// `mount_points`: an overlay rootfs then gets the image's cached mount-point layer
    /// (see [`mount_points`]) as its topmost lower layer, so the targets the image lacks
    /// already exist and starting creates nothing in the container's upper directory. A
    /// layer that cannot be built or mounted is logged and left out, never an error.
    pub fn prepare_rootfs_with_mount_points(
        &self,
        name: &str,
        id: &str,
        dir: &Path,
        strategy: RootfsStrategy,
        options: RootfsOptions,
        mount_points: &[MountPoint],
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
            let mut lowers: Vec<PathBuf> = if chain.is_empty() {
                // overlayfs needs a lower layer; an image without layers gets an empty one.
                let empty = dir.join("empty");
                std::fs::create_dir_all(&empty)
                    .map_err(|e| Error::path("creating empty layer", &empty, e))?;
                vec![empty]
            } else {
                chain.iter().rev().map(|c| self.snapshot_dir(c)).collect()
            };
            // An image without layers has nothing shared to cache a layer for.
            let extra = match chain.last() {
                Some(top) if !mount_points.is_empty() => {
                    match self.mount_point_layer(top, &lowers, mount_points) {
                        Ok(layer) => layer,
                        Err(e) => {
                            warn!(id, error = %e, "no mount-point layer; the runtime creates the targets");
                            None
                        }
                    }
                }
                _ => None,
            };
            let with_layer = extra.and_then(|layer| {
                let with: Vec<PathBuf> = std::iter::once(layer).chain(lowers.iter().cloned()).collect();
                match overlay::mount_with(&with, &upper, &work, &rootfs, options.volatile) {
                    Ok(()) => Some(with),
                    // E.g. one layer more than overlayfs stacks: the start goes on without.
                    Err(e) => {
                        warn!(id, error = %e, "overlay with the mount-point layer failed; mounting without");
                        None
                    }
                }
            });
            let mounted = match with_layer {
                Some(with) => {
                    lowers = with;
                    Ok(())
                }
                None => overlay::mount_with(&lowers, &upper, &work, &rootfs, options.volatile),
            };
            match mounted {
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
