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
        let inner = grammar::parse(s).map_err(|reason| Error::InvalidReference {
            reference: s.to_string(),
            reason: reason.to_string(),
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

/// The distribution reference grammar, checked by hand: oci-client's own parser compiles
/// one large regex on first use and keeps it (about 10 MB for the life of the process).
mod grammar {
    const DEFAULT_DOMAIN: &str = "docker.io";
    const LEGACY_DEFAULT_DOMAIN: &str = "index.docker.io";
    const OFFICIAL_REPOSITORY_PREFIX: &str = "library";
    const DEFAULT_TAG: &str = "latest";
    const NAME_TOTAL_LENGTH_MAX: usize = 255;
    const TAG_LENGTH_MAX: usize = 128;

    /// `[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]`
    fn domain_label(s: &str) -> bool {
        let b = s.as_bytes();
        !b.is_empty()
            && b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
    }

    /// `label(.label)*(:port)?`
    fn domain(s: &str) -> bool {
        let (host, port) = match s.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        };
        host.split('.').all(domain_label)
            && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()))
    }

    /// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
    fn path_component(s: &str) -> bool {
        let lower = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        let b = s.as_bytes();
        if b.is_empty() || !lower(b[0]) || !lower(b[b.len() - 1]) {
            return false;
        }
        let mut i = 0;
        while i < b.len() {
            if lower(b[i]) {
                i += 1;
                continue;
            }
            let sep_start = i;
            while i < b.len() && !lower(b[i]) {
                i += 1;
            }
            let sep = &s[sep_start..i];
            if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-')) {
                return false;
            }
        }
        true
    }

    /// `[\w][\w.-]{0,127}` (ASCII word characters, as Go's regexp has them).
    fn tag(s: &str) -> bool {
        let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
        let b = s.as_bytes();
        !b.is_empty()
            && b.len() <= TAG_LENGTH_MAX
            && word(b[0])
            && b.iter().all(|c| word(*c) || *c == b'.' || *c == b'-')
    }

    /// `[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}` and the
    /// hex length of the algorithms registries know.
    fn digest(s: &str) -> Result<(), &'static str> {
        let Some((alg, hex)) = s.split_once(':') else {
            return Err("invalid reference format");
        };
        let alg_ok = alg.split(['-', '_', '+', '.']).all(|part| {
            let b = part.as_bytes();
            !b.is_empty() && b[0].is_ascii_alphabetic() && b.iter().all(u8::is_ascii_alphanumeric)
        });
        if !alg_ok || hex.len() < 32 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err("invalid reference format");
        }
        let want = match alg {
            "sha256" => 64,
            "sha384" => 96,
            "sha512" => 128,
            _ => return Err("unsupported digest algorithm"),
        };
        if hex.len() != want {
            return Err("invalid checksum digest length");
        }
        Ok(())
    }

    /// Docker's normalisation: a first component with a dot or a port, or `localhost`, is
    /// the registry; Docker Hub's official images get `library/`.
    fn split_domain(name: &str) -> (String, String) {
        let (mut domain, mut rest) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DEFAULT_DOMAIN.to_string(), name.to_string()),
        };
        if domain == LEGACY_DEFAULT_DOMAIN {
            domain = DEFAULT_DOMAIN.to_string();
        }
        if domain == DEFAULT_DOMAIN && !rest.contains('/') {
            rest = format!("{OFFICIAL_REPOSITORY_PREFIX}/{rest}");
        }
        (domain, rest)
    }

    pub(super) fn parse(s: &str) -> Result<oci_client::Reference, &'static str> {
        if s.is_empty() {
            return Err("repository name must have at least one component");
        }
        let (rest, digest_part) = match s.split_once('@') {
            Some((r, d)) => (r, Some(d)),
            None => (s, None),
        };
        if let Some(d) = digest_part {
            digest(d)?;
        }
        // A colon after the last slash starts the tag; one before it is a registry's port.
        let (name, tag_part) = match rest.rfind(':') {
            Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
            _ => (rest, None),
        };
        if tag_part.is_some_and(|t| !tag(t)) {
            return Err("invalid reference format");
        }
        let mut parts = name.split('/');
        let first = parts.next().unwrap_or("");
        let first_ok = path_component(first) || (name.contains('/') && domain(first));
        if !first_ok || !parts.all(path_component) {
            if name.bytes().any(|c| c.is_ascii_uppercase()) && !name.contains(' ') {
                return Err("repository name must be lowercase");
            }
            return Err("invalid reference format");
        }
        let (registry, repository) = split_domain(name);
        if repository.len() > NAME_TOTAL_LENGTH_MAX {
            return Err("repository name must not be more than 255 characters");
        }
        let tag_part = match (tag_part, digest_part) {
            (None, None) => Some(DEFAULT_TAG),
            (t, _) => t,
        };
        Ok(match (tag_part, digest_part) {
            (Some(t), Some(d)) => oci_client::Reference::with_tag_and_digest(
                registry,
                repository,
                t.to_string(),
                d.to_string(),
            ),
            (None, Some(d)) => {
                oci_client::Reference::with_digest(registry, repository, d.to_string())
            }
            (t, None) => oci_client::Reference::with_tag(
                registry,
                repository,
                t.unwrap_or(DEFAULT_TAG).to_string(),
            ),
        })
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

    /// input, registry, repository, tag, digest as docker normalises them.
    type Case<'a> = (String, &'a str, &'a str, Option<&'a str>, Option<&'a str>);

    #[test]
    fn docker_normalisation() {
        let d = format!("sha256:{}", "ab".repeat(32));
        let cases: Vec<Case> = vec![
            (
                "busybox".into(),
                "docker.io",
                "library/busybox",
                Some("latest"),
                None,
            ),
            (
                "busybox:1.36".into(),
                "docker.io",
                "library/busybox",
                Some("1.36"),
                None,
            ),
            (
                "user/app".into(),
                "docker.io",
                "user/app",
                Some("latest"),
                None,
            ),
            (
                "index.docker.io/app".into(),
                "docker.io",
                "library/app",
                Some("latest"),
                None,
            ),
            (
                "test.com:tag".into(),
                "docker.io",
                "library/test.com",
                Some("tag"),
                None,
            ),
            (
                "test.com:5000".into(),
                "docker.io",
                "library/test.com",
                Some("5000"),
                None,
            ),
            (
                "test.com:5000/a/b".into(),
                "test.com:5000",
                "a/b",
                Some("latest"),
                None,
            ),
            ("localhost/a".into(), "localhost", "a", Some("latest"), None),
            (
                "127.0.0.1:38935/kos/bb:1".into(),
                "127.0.0.1:38935",
                "kos/bb",
                Some("1"),
                None,
            ),
            (
                "a.b/c__d/e-f/g---h/i.j_k:T_a.g-1".into(),
                "a.b",
                "c__d/e-f/g---h/i.j_k",
                Some("T_a.g-1"),
                None,
            ),
            (format!("r.io/x@{d}"), "r.io", "x", None, Some(d.as_str())),
            (
                format!("r.io/x:t@{d}"),
                "r.io",
                "x",
                Some("t"),
                Some(d.as_str()),
            ),
            (
                format!("x@{d}"),
                "docker.io",
                "library/x",
                None,
                Some(d.as_str()),
            ),
        ];
        for (input, reg, repo, tag, digest) in &cases {
            let r = grammar::parse(input).unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.registry(), *reg, "{input}");
            assert_eq!(r.repository(), *repo, "{input}");
            assert_eq!(r.tag(), *tag, "{input}");
            assert_eq!(r.digest(), *digest, "{input}");
        }
    }

    #[test]
    fn bad_references_are_refused_with_a_reason() {
        let long_tag = format!("x:{}", "t".repeat(129));
        let long_name = format!("r.io/{}", "a".repeat(256));
        let bad = [
            ("", "at least one component"),
            ("UPPER", "lowercase"),
            ("r.io/App", "lowercase"),
            ("a//b", "invalid reference format"),
            ("-a", "invalid reference format"),
            ("a-", "invalid reference format"),
            ("a..b", "invalid reference format"),
            ("a___b", "invalid reference format"),
            ("a:", "invalid reference format"),
            (":t", "invalid reference format"),
            ("a:.t", "invalid reference format"),
            ("a b", "invalid reference format"),
            ("r-.io:5000/a", "invalid reference format"),
            ("r.io:50x0/a", "invalid reference format"),
            ("a/", "invalid reference format"),
            ("a@sha256:abc", "invalid reference format"),
            (
                "a@md5:0123456789abcdef0123456789abcdef",
                "unsupported digest algorithm",
            ),
            (long_tag.as_str(), "invalid reference format"),
            (long_name.as_str(), "more than 255"),
        ];
        for (input, why) in bad {
            let e = grammar::parse(input)
                .err()
                .unwrap_or_else(|| panic!("{input} accepted"));
            assert!(e.contains(why), "{input}: {e}");
        }
        let e = ImageRef::parse("a@sha256:0123").unwrap_err().to_string();
        assert!(e.contains("a@sha256:0123"), "{e}");
    }
}
