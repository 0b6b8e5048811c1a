//! API listeners: unix sockets (0660, root-owned) and TCP with mutual TLS.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use tokio::net::{TcpListener, UnixListener};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsFiles;

/// One `-H` address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Unix(PathBuf),
    Tcp(String),
}

impl Address {
    pub fn parse(s: &str) -> anyhow::Result<Address> {
        if let Some(p) = s.strip_prefix("unix://") {
            if !p.starts_with('/') {
                bail!("invalid -H {s:?}: a unix socket path must be absolute");
            }
            return Ok(Address::Unix(PathBuf::from(p)));
        }
        if let Some(a) = s.strip_prefix("tcp://") {
            let a = a.trim_end_matches('/');
            if a.rsplit_once(':')
                .is_none_or(|(_, p)| p.parse::<u16>().is_err())
            {
                bail!("invalid -H {s:?}: expected tcp://host:port");
            }
            return Ok(Address::Tcp(a.to_string()));
        }
        if s.starts_with('/') {
            return Ok(Address::Unix(PathBuf::from(s)));
        }
        bail!("invalid -H {s:?}: expected unix:///path or tcp://host:port")
    }
}

/// A bound listener.
pub enum Listener {
    Unix(UnixListener, PathBuf),
    Tls(TcpListener, TlsAcceptor),
}

/// A connection the API serves.
pub trait Conn: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static> Conn for T {}

fn pem_certs(path: &Path, what: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("loading {what} {}", path.display()))?;
    if certs.is_empty() {
        bail!(
            "loading {what} {}: no PEM certificate in it",
            path.display()
        );
    }
    Ok(certs)
}

/// TLS 1.2 and 1.3 (as dockerd's default), mutual: a client without a certificate
/// from our CA is refused in the handshake.
fn tls_acceptor(files: &TlsFiles) -> anyhow::Result<TlsAcceptor> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in pem_certs(&files.ca, "CA")? {
        roots
            .add(c)
            .with_context(|| format!("loading CA {}", files.ca.display()))?;
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .with_context(|| format!("using CA {}", files.ca.display()))?;
    let chain = pem_certs(&files.cert, "certificate")?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .with_context(|| format!("loading key {}", files.key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("creating TLS context")?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .context("the TLS key does not match the certificate")?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

fn bind_unix(path: &Path) -> anyhow::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // The data-root lock is held, so a socket file here is a stale one from a dead daemon:
    // it is replaced, and the new one is never seen without its mode.
    let l = kos_statefile::bind_unix(path, 0o660)
        .with_context(|| format!("binding {}", path.display()))?;
    l.set_nonblocking(true)
        .with_context(|| format!("binding {}", path.display()))?;
    let l = UnixListener::from_std(l).with_context(|| format!("binding {}", path.display()))?;
    std::os::unix::fs::chown(path, Some(0), Some(0))
        .with_context(|| format!("chown {}", path.display()))?;
    Ok(l)
}

/// Binds every address; TCP only with mutual TLS.
pub async fn bind_all(hosts: &[String], tls: Option<&TlsFiles>) -> anyhow::Result<Vec<Listener>> {
    let mut out = Vec::new();
    for h in hosts {
        match Address::parse(h)? {
            Address::Unix(p) => out.push(Listener::Unix(bind_unix(&p)?, p)),
            Address::Tcp(a) => {
                let Some(files) = tls else {
                    bail!(
                        "refusing to listen on {h}: TCP needs --tlsverify with --tlscacert, --tlscert and --tlskey (mutual TLS)"
                    );
                };
                let acc = tls_acceptor(files)?;
                let l = TcpListener::bind(&a)
                    .await
                    .with_context(|| format!("binding {a}"))?;
                out.push(Listener::Tls(l, acc));
            }
        }
    }
    Ok(out)
}

impl Listener {
    /// Accepts the next connection, finishing the TLS handshake for TCP. A failed
    /// handshake is logged and yields `None` rather than stopping the listener.
    pub async fn accept(&self) -> std::io::Result<Option<Box<dyn Conn>>> {
        match self {
            Listener::Unix(l, _) => {
                let (s, _) = l.accept().await?;
                Ok(Some(Box::new(s)))
            }
            Listener::Tls(l, acc) => {
                let (s, peer) = l.accept().await?;
                let hs =
                    tokio::time::timeout(std::time::Duration::from_secs(10), acc.accept(s)).await;
                match hs {
                    Ok(Ok(stream)) => Ok(Some(Box::new(stream))),
                    Ok(Err(e)) => {
                        tracing::info!(%peer, error = %e, "TLS handshake refused");
                        Ok(None)
                    }
                    Err(_) => {
                        tracing::info!(%peer, "TLS handshake timed out");
                        Ok(None)
                    }
                }
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Listener::Unix(_, p) => format!("unix://{}", p.display()),
            Listener::Tls(l, _) => format!(
                "tcp://{}",
                l.local_addr().map(|a| a.to_string()).unwrap_or_default()
            ),
        }
    }

    /// Removes the socket file of a unix listener.
    pub fn cleanup(&self) {
        if let Listener::Unix(_, p) = self {
            let _ = std::fs::remove_file(p);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn addresses() {
        assert_eq!(
            Address::parse("unix:///run/kos/kos.sock").unwrap(),
            Address::Unix("/run/kos/kos.sock".into())
        );
        assert_eq!(
            Address::parse("tcp://127.0.0.1:2376").unwrap(),
            Address::Tcp("127.0.0.1:2376".into())
        );
        assert!(Address::parse("unix://rel.sock").is_err());
        assert!(Address::parse("tcp://nohost").is_err());
        assert!(Address::parse("fd://").is_err());
    }
}
