//! Kubernetes image references: what kubelet sends (`busybox`, `nginx:1.27`,
//! `registry.k8s.io/pause:3.10`, `repo@sha256:...`, or an image id) to the store's names.

use kos_image::ImageRef;

use crate::error::{Error, Result};

/// The canonical name of a reference: `docker.io/library/busybox:latest` for `busybox`.
pub fn normalise(reference: &str) -> Result<ImageRef> {
    let r = reference.trim();
    if r.is_empty() {
        return Err(Error::InvalidArgument("image reference is empty".into()));
    }
    if r.len() > 4096 {
        return Err(Error::InvalidArgument("image reference is too long".into()));
    }
    ImageRef::parse(r).map_err(|e| Error::InvalidArgument(format!("image reference {r:?}: {e}")))
}

/// Whether `s` looks like an image id (`sha256:<64 hex>` or 64 hex digits).
pub fn as_image_id(s: &str) -> Option<String> {
    let hex = s.strip_prefix("sha256:").unwrap_or(s);
    (hex.len() == 64
        && hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()))
    .then(|| format!("sha256:{hex}"))
}

/// `repo@digest` for a canonical name `repo:tag` and its manifest digest.
pub fn repo_digest(name: &str, digest: &str) -> String {
    let repo = match name.split_once('@') {
        Some((repo, _)) => repo,
        None => {
            // The tag is after the last ':' that follows the last '/'.
            let slash = name.rfind('/').map(|i| i + 1).unwrap_or(0);
            match name[slash..].rfind(':') {
                Some(i) => &name[..slash + i],
                None => name,
            }
        }
    };
    format!("{repo}@{digest}")
}

/// Whether a stored name is a tag (not a `repo@digest`).
pub fn is_tag(name: &str) -> bool {
    !name.contains('@')
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn docker_hub_normalisation() {
        for (input, want) in [
            ("busybox", "docker.io/library/busybox:latest"),
            ("busybox:1.36", "docker.io/library/busybox:1.36"),
            ("library/busybox", "docker.io/library/busybox:latest"),
            ("me/app", "docker.io/me/app:latest"),
            ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
            ("127.0.0.1:5000/x/y:z", "127.0.0.1:5000/x/y:z"),
            ("localhost:5000/y", "localhost:5000/y:latest"),
        ] {
            assert_eq!(normalise(input).unwrap().to_string(), want, "{input}");
        }
        let d = format!("sha256:{}", "a".repeat(64));
        assert_eq!(
            normalise(&format!("busybox@{d}")).unwrap().to_string(),
            format!("docker.io/library/busybox@{d}")
        );
        assert!(normalise("").is_err());
        assert!(normalise("a b").is_err());
        assert!(normalise("docker.io/Upper").is_err());
    }

    #[test]
    fn ids_and_digests() {
        let hex = "0123456789abcdef".repeat(4);
        assert_eq!(as_image_id(&hex), Some(format!("sha256:{hex}")));
        assert_eq!(
            as_image_id(&format!("sha256:{hex}")),
            Some(format!("sha256:{hex}"))
        );
        assert_eq!(as_image_id("busybox"), None);
        assert_eq!(
            repo_digest("localhost:5000/a/b:1", "sha256:x"),
            "localhost:5000/a/b@sha256:x"
        );
        assert_eq!(
            repo_digest("docker.io/library/busybox:latest", "sha256:x"),
            "docker.io/library/busybox@sha256:x"
        );
    }
}
