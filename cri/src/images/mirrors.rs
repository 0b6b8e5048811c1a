//! Registry mirrors per upstream host from containerd's `hosts.toml` files
//! (`<dir>/<host>/hosts.toml`, else `<dir>/_default/hosts.toml`): kos-image's
//! [`kos_image::mirrors`], with its errors as the CRI's InvalidArgument.

use std::path::PathBuf;

pub use kos_image::mirrors::Endpoint;

use crate::error::{Error, Result};

/// The mirror configuration under one directory.
#[derive(Debug, Clone)]
pub struct Mirrors {
    inner: kos_image::mirrors::Mirrors,
}

impl Mirrors {
    pub fn new(dir: impl Into<PathBuf>) -> Mirrors {
        Mirrors {
            inner: kos_image::mirrors::Mirrors::from_hosts_dir(dir),
        }
    }

    /// Where to pull `registry`'s images from, in order. The upstream comes last unless a
    /// `server` entry says otherwise.
    pub fn endpoints(&self, registry: &str) -> Result<Vec<Endpoint>> {
        self.inner
            .endpoints(registry)
            .map_err(|e| Error::InvalidArgument(e.to_string()))
    }
}
