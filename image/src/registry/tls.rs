//! How kos-image reaches a registry over TLS, as dockerd does:
//! - a registry that may be reached over plain HTTP (loopback, `--insecure-registry`) is
//!   tried over HTTPS first, without verifying its certificate, and over HTTP only when it
//!   does not speak TLS; the answer is remembered for a while;
//! - the CA certificates (`*.crt`) in `<certs dir>/<host[:port]>/` are trusted for that
//!   registry, besides the system's roots (Docker's `certs.d` layout).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use oci_client::client::{Certificate, CertificateEncoding};

/// How long a probe's answer holds.
const PROBE_TTL: Duration = Duration::from_secs(60);
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// At most this many certificate files per registry, of at most this many bytes each.
const MAX_CERT_FILES: usize = 16;
const MAX_CERT_BYTES: u64 = 1 << 20;

/// Probe answers: does `host` speak TLS?
#[derive(Debug, Clone, Default)]
pub struct TlsProbes(Arc<Mutex<HashMap<String, (bool, Instant)>>>);

impl TlsProbes {
    fn cached(&self, host: &str) -> Option<bool> {
        let m = self.0.lock().ok()?;
        m.get(host)
            .filter(|(_, at)| at.elapsed() < PROBE_TTL)
            .map(|(tls, _)| *tls)
    }

    /// Whether `host` answers HTTPS (any HTTP status counts: the TLS session worked).
    pub async fn speaks_tls(&self, host: &str) -> bool {
        if let Some(tls) = self.cached(host) {
            return tls;
        }
        super::install_crypto_provider();
        let client = reqwest::Client::builder()
            .danger_accept_invalid_certs(true)
            .timeout(PROBE_TIMEOUT)
            .build();
        let tls = match client {
            Ok(c) => c.get(format!("https://{host}/v2/")).send().await.is_ok(),
            Err(_) => false,
        };
        tracing::debug!(%host, tls, "probed the registry for TLS");
        if let Ok(mut m) = self.0.lock() {
            m.insert(host.to_string(), (tls, Instant::now()));
        }
        tls
    }
}

/// The CA certificates in `<dir>/<host>/*.crt`; none when the directory is missing.
/// Unreadable or oversized files are skipped with a warning.
pub fn certs_for(dir: &Path, host: &str) -> Vec<Certificate> {
    // A host name can't name a path outside `dir`.
    if host.is_empty() || host.contains('/') || host.starts_with('.') {
        return Vec::new();
    }
    let Ok(rd) = std::fs::read_dir(dir.join(host)) else {
        return Vec::new();
    };
    let mut names: Vec<_> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "crt"))
        .collect();
    names.sort();
    let mut out = Vec::new();
    for p in names.into_iter().take(MAX_CERT_FILES) {
        match std::fs::metadata(&p) {
            Ok(md) if md.is_file() && md.len() <= MAX_CERT_BYTES => {}
            _ => {
                tracing::warn!(path = %p.display(), "skipping a registry CA file (not a file, or too big)");
                continue;
            }
        }
        match std::fs::read(&p) {
            Ok(data) => out.push(Certificate {
                encoding: CertificateEncoding::Pem,
                data,
            }),
            Err(e) => tracing::warn!(path = %p.display(), error = %e, "reading a registry CA file"),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn certs_are_read_per_host_and_bounded() {
        let d = std::env::temp_dir().join(crate::store::unique_name("kos-certs"));
        let h = d.join("reg.example:5000");
        std::fs::create_dir_all(&h).unwrap();
        std::fs::write(h.join("ca.crt"), b"-----BEGIN CERTIFICATE-----\n").unwrap();
        std::fs::write(h.join("extra.crt"), b"x").unwrap();
        std::fs::write(h.join("client.cert"), b"not a CA").unwrap();
        std::fs::create_dir(h.join("dir.crt")).unwrap();
        let certs = certs_for(&d, "reg.example:5000");
        assert_eq!(certs.len(), 2);
        assert!(certs_for(&d, "other:1").is_empty());
        assert!(certs_for(&d, "../etc").is_empty());
        assert!(certs_for(&d, "").is_empty());
        std::fs::remove_dir_all(&d).unwrap();
    }
}
