//! How kos-image reaches a registry over TLS, as dockerd does:
//! - a registry that may be reached over plain HTTP (loopback, `--insecure-registry`) is
//!   reached over HTTPS, without verifying its certificate, unless it answers plain HTTP
//!   (what dockerd's HTTPS-then-HTTP attempts end with); the answer is remembered for a
//!   while;
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

    /// Whether `host` speaks TLS. Asked in plain HTTP (`GET /v2/`): a plain registry
    /// answers 200 or 401, a TLS port refuses the request (Go's servers and nginx answer
    /// 400 "HTTP request to an HTTPS server"; others close or send a TLS alert). That gives
    /// what dockerd's HTTPS-then-HTTP attempts give, without building a TLS client for
    /// every plain loopback registry.
    pub async fn speaks_tls(&self, host: &str) -> bool {
        if let Some(tls) = self.cached(host) {
            return tls;
        }
        let h = host.to_string();
        let tls = tokio::task::spawn_blocking(move || probe(&h))
            .await
            .unwrap_or(true);
        tracing::debug!(%host, tls, "probed the registry for TLS");
        if let Ok(mut m) = self.0.lock() {
            m.insert(host.to_string(), (tls, Instant::now()));
        }
        tls
    }
}

/// See [`TlsProbes::speaks_tls`]. A host that cannot be reached counts as TLS: the pull
/// then fails on it with the real error.
fn probe(host: &str) -> bool {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    // Without a port, plain HTTP would be port 80 (and TLS 443).
    let has_port = host.rsplit_once(':').is_some_and(|(h, p)| {
        !p.is_empty()
            && p.bytes().all(|b| b.is_ascii_digit())
            && (!h.contains(':') || h.ends_with(']'))
    });
    let target = if has_port {
        host.to_string()
    } else {
        format!("{host}:80")
    };
    let Some(addr) = target.to_socket_addrs().ok().and_then(|mut a| a.next()) else {
        return true;
    };
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, PROBE_TIMEOUT) else {
        return true;
    };
    let _ = s.set_read_timeout(Some(PROBE_TIMEOUT));
    let _ = s.set_write_timeout(Some(PROBE_TIMEOUT));
    if s.write_all(format!("GET /v2/ HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .is_err()
    {
        return true;
    }
    let mut buf = [0u8; 64];
    let mut n = 0;
    while n < 12 {
        match s.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    !answers_plain_http(&buf[..n])
}

/// A plain HTTP answer other than 400 to `GET /v2/`.
fn answers_plain_http(head: &[u8]) -> bool {
    let text = String::from_utf8_lossy(head);
    let mut parts = text.split_whitespace();
    matches!(parts.next(), Some(v) if v.starts_with("HTTP/1."))
        && parts.next().is_some_and(|code| code != "400")
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
    fn plain_answers_are_told_from_tls_ports() {
        assert!(answers_plain_http(b"HTTP/1.1 200 OK\r\n"));
        assert!(answers_plain_http(b"HTTP/1.1 401 Unauthorized\r\n"));
        assert!(!answers_plain_http(
            b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent"
        ));
        assert!(!answers_plain_http(b"\x15\x03\x01\x00\x02\x02\x46"));
        assert!(!answers_plain_http(b""));
    }

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
