//! Image references (`registry/repo:tag@digest`), parsed with the
//! distribution-spec grammar and normalised the way docker does.

use std::fmt;

use crate::digest::Digest;
use crate::error::{Error, Result};

/// A parsed image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    inner: oci_client::Reference,
}

impl ImageRef {
    pub fn parse(s: &str) -> Result<Self> {
        let inner: oci_client::Reference =
            s.parse()
                .map_err(|e: oci_client::ParseError| Error::InvalidReference {
                    reference: s.to_string(),
                    reason: e.to_string(),
                })?;
        if let Some(d) = inner.digest() {
            d.parse::<Digest>()?;
        }
        Ok(ImageRef { inner })
    }

    pub fn registry(&self) -> &str {
        self.inner.registry()
    }

    pub fn repository(&self) -> &str {
        self.inner.repository()
    }

    pub fn tag(&self) -> Option<&str> {
        self.inner.tag()
    }

    pub fn digest(&self) -> Option<Digest> {
        self.inner.digest().and_then(|d| d.parse().ok())
    }

    /// The same repository at `digest`.
    pub fn with_digest(&self, digest: &Digest) -> Self {
        ImageRef {
            inner: oci_client::Reference::with_digest(
                self.registry().to_string(),
                self.repository().to_string(),
                digest.to_string(),
            ),
        }
    }

    /// Whether the registry is on a loopback address.
    pub fn is_loopback(&self) -> bool {
        let reg = self.registry();
        let host = if let Some(rest) = reg.strip_prefix('[') {
            rest.split(']').next().unwrap_or(rest)
        } else {
            reg.rsplit_once(':').map(|(h, _)| h).unwrap_or(reg)
        };
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    pub(crate) fn oci(&self) -> &oci_client::Reference {
        &self.inner
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.inner.whole())
    }
}

impl std::str::FromStr for ImageRef {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn normalises_and_detects_loopback() {
        let r = ImageRef::parse("localhost:5000/app:1.2").unwrap();
        assert_eq!(r.registry(), "localhost:5000");
        assert_eq!(r.repository(), "app");
        assert_eq!(r.tag(), Some("1.2"));
        assert!(r.is_loopback());
        assert_eq!(r.to_string(), "localhost:5000/app:1.2");
        let r = ImageRef::parse("busybox").unwrap();
        assert_eq!(r.to_string(), "docker.io/library/busybox:latest");
        assert!(!r.is_loopback());
        assert!(ImageRef::parse("127.0.0.1:5000/a/b:c")
            .unwrap()
            .is_loopback());
        assert!(ImageRef::parse("has space/x").is_err());
        assert!(ImageRef::parse("").is_err());
        assert!(ImageRef::parse("x@sha256:abc").is_err());
    }
}
