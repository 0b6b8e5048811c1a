//! TLS to a tcp:// daemon, chosen the way the docker CLI chooses it:
//! `--tls`, `--tlsverify`, `--tlscacert`, `--tlscert`, `--tlskey`, and
//! `DOCKER_TLS`, `DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH` (default ~/.docker,
//! holding ca.pem, cert.pem and key.pem). OpenSSL, as the rest of KOS.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use openssl::ssl::{
    HandshakeError, SslConnector, SslFiletype, SslMethod, SslStream, SslVerifyMode,
};

/// The TLS flags as given on the command line.
#[derive(Debug, Default, Clone)]
pub struct TlsFlags {
    pub tls: Option<bool>,
    pub verify: Option<bool>,
    pub cacert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// What the flags and the environment come to.
#[derive(Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub verify: bool,
    /// The CA the daemon's certificate must chain to (when verifying).
    pub ca: Option<PathBuf>,
    /// The client certificate and key, when there are any.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
}

/// docker's rules: `--tlsverify` (or DOCKER_TLS_VERIFY) turns TLS on and
/// checks the daemon's certificate; `--tls` (or DOCKER_TLS) only encrypts.
/// Default files come from DOCKER_CERT_PATH or ~/.docker; a default client
/// certificate or key that does not exist is left out, a named one is required.
pub fn resolve(
    f: &TlsFlags,
    env: impl Fn(&str) -> Option<String>,
    exists: impl Fn(&Path) -> bool,
) -> Option<TlsFiles> {
    let verify = f
        .verify
        .unwrap_or_else(|| env("DOCKER_TLS_VERIFY").is_some());
    let tls = f.tls.unwrap_or_else(|| env("DOCKER_TLS").is_some()) || verify || f.verify.is_some();
    if !tls {
        return None;
    }
    let dir = env("DOCKER_CERT_PATH")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".docker")))
        .unwrap_or_else(|| PathBuf::from(".docker"));
    let pick = |given: &Option<PathBuf>, default: &str| match given {
        Some(p) => Some(p.clone()),
        None => Some(dir.join(default)).filter(|p| exists(p)),
    };
    Some(TlsFiles {
        verify,
        ca: if verify {
            Some(f.cacert.clone().unwrap_or_else(|| dir.join("ca.pem")))
        } else {
            None
        },
        cert: pick(&f.cert, "cert.pem"),
        key: pick(&f.key, "key.pem"),
    })
}

/// A configured TLS client.
pub struct Tls {
    connector: SslConnector,
    verify: bool,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("verify", &self.verify).finish()
    }
}

fn readable(what: &str, p: &Path) -> Result<(), String> {
    std::fs::metadata(p)
        .map(|_| ())
        .map_err(|e| format!("could not read {what} {:?}: {e}", p.display().to_string()))
}

impl Tls {
    pub fn new(files: &TlsFiles) -> Result<Tls, String> {
        let mut b = SslConnector::builder(SslMethod::tls_client())
            .map_err(|e| format!("creating the TLS context: {e}"))?;
        if files.verify {
            let ca = files.ca.as_deref().unwrap_or(Path::new("ca.pem"));
            readable("CA certificate", ca)?;
            b.set_ca_file(ca)
                .map_err(|e| format!("loading the CA certificate {}: {e}", ca.display()))?;
        } else {
            b.set_verify(SslVerifyMode::NONE);
        }
        match (&files.cert, &files.key) {
            (Some(c), Some(k)) => {
                readable("client certificate", c)?;
                readable("client key", k)?;
                b.set_certificate_chain_file(c)
                    .map_err(|e| format!("loading the client certificate {}: {e}", c.display()))?;
                b.set_private_key_file(k, SslFiletype::PEM)
                    .map_err(|e| format!("loading the client key {}: {e}", k.display()))?;
                b.check_private_key().map_err(|e| {
                    format!(
                        "the client key {} does not match the certificate {}: {e}",
                        k.display(),
                        c.display()
                    )
                })?;
            }
            (None, None) => {}
            (Some(c), None) => {
                return Err(format!(
                    "the client certificate {} needs a key (--tlskey)",
                    c.display()
                ))
            }
            (None, Some(k)) => {
                return Err(format!(
                    "the client key {} needs a certificate (--tlscert)",
                    k.display()
                ))
            }
        }
        Ok(Tls {
            connector: b.build(),
            verify: files.verify,
        })
    }

    /// The handshake over `tcp`; `host` is checked against the daemon's
    /// certificate when verifying (a name or an IP address).
    pub fn connect(&self, tcp: TcpStream, host: &str) -> io::Result<TlsStream> {
        let raw = tcp.try_clone()?;
        let cfg = self.connector.configure().map_err(io::Error::other)?;
        let cfg = cfg.verify_hostname(self.verify);
        let s = cfg.connect(host, tcp).map_err(|e| {
            let why = match &e {
                HandshakeError::Failure(m) | HandshakeError::WouldBlock(m) => {
                    let v = m.ssl().verify_result();
                    let mut w = reasons(m.error());
                    if v.as_raw() != 0 {
                        w.push_str(&format!(" ({})", v.error_string()));
                    }
                    w
                }
                HandshakeError::SetupFailure(s) => s.to_string(),
            };
            io::Error::other(format!("TLS handshake failed: {why}"))
        })?;
        Ok(TlsStream {
            inner: Arc::new(Shared {
                ssl: Mutex::new(s),
                writer_waiting: AtomicBool::new(false),
            }),
            raw,
        })
    }
}

/// OpenSSL's reasons ("certificate verify failed"), without its codes and
/// source locations.
fn reasons(e: &openssl::ssl::Error) -> String {
    let r: Vec<String> = e
        .ssl_error()
        .map(|st| {
            st.errors()
                .iter()
                .filter_map(|x| x.reason().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if r.is_empty() {
        match e.io_error() {
            Some(io) => io.to_string(),
            None => e.to_string(),
        }
    } else {
        r.join(": ")
    }
}

/// An I/O error of the TLS stream with OpenSSL's reason in words.
fn readable_error(e: io::Error) -> io::Error {
    let text = e
        .get_ref()
        .and_then(|x| x.downcast_ref::<openssl::ssl::Error>())
        .map(reasons);
    match text {
        Some(t) => io::Error::new(e.kind(), format!("TLS: {t}")),
        None => e,
    }
}

struct Shared {
    ssl: Mutex<SslStream<TcpStream>>,
    writer_waiting: AtomicBool,
}

/// One TLS connection, which may be shared by a reading and a writing thread
/// (attach and exec). OpenSSL's stream is one object, so a clone sets a short
/// read timeout: a reader holding the lock gives it up between tries, and a
/// waiting writer gets its turn.
pub struct TlsStream {
    inner: Arc<Shared>,
    raw: TcpStream,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream").finish()
    }
}

const SHARED_READ_SLICE: Duration = Duration::from_millis(20);

impl TlsStream {
    fn lock(&self) -> io::Result<MutexGuard<'_, SslStream<TcpStream>>> {
        self.inner
            .ssl
            .lock()
            .map_err(|_| io::Error::other("a TLS stream user panicked"))
    }

    pub fn try_clone(&self) -> io::Result<TlsStream> {
        self.raw.set_read_timeout(Some(SHARED_READ_SLICE))?;
        Ok(TlsStream {
            inner: self.inner.clone(),
            raw: self.raw.try_clone()?,
        })
    }

    /// End of input for the daemon: TLS's close_notify (the daemon reads EOF);
    /// the daemon's output keeps coming.
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.inner.writer_waiting.store(true, Ordering::SeqCst);
        let mut s = self.lock()?;
        self.inner.writer_waiting.store(false, Ordering::SeqCst);
        s.shutdown().map(|_| ()).map_err(io::Error::other)
    }

    pub fn shutdown_both(&self) -> io::Result<()> {
        self.raw.shutdown(Shutdown::Both)
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let r = self.lock()?.read(buf);
            match r {
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if self.inner.writer_waiting.load(Ordering::SeqCst) {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                other => return other.map_err(readable_error),
            }
        }
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.writer_waiting.store(true, Ordering::SeqCst);
        let mut s = self.lock()?;
        self.inner.writer_waiting.store(false, Ordering::SeqCst);
        s.write(buf).map_err(readable_error)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.lock()?.flush()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn env<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn docker_rules() {
        let all = |_: &Path| true;
        let none = |_: &Path| false;
        // Nothing asked: plain TCP.
        assert_eq!(
            resolve(&TlsFlags::default(), env(&[("HOME", "/h")]), all),
            None
        );
        // --tlsverify: the defaults under ~/.docker.
        let f = TlsFlags {
            verify: Some(true),
            ..Default::default()
        };
        assert_eq!(
            resolve(&f, env(&[("HOME", "/h")]), all).unwrap(),
            TlsFiles {
                verify: true,
                ca: Some("/h/.docker/ca.pem".into()),
                cert: Some("/h/.docker/cert.pem".into()),
                key: Some("/h/.docker/key.pem".into()),
            }
        );
        // Missing default client files are left out; the CA is still required.
        let r = resolve(&f, env(&[("DOCKER_CERT_PATH", "/c")]), none).unwrap();
        assert_eq!(
            (r.ca, r.cert, r.key),
            (Some("/c/ca.pem".into()), None, None)
        );
        // The environment alone, and flags over it.
        let r = resolve(
            &TlsFlags::default(),
            env(&[("DOCKER_TLS_VERIFY", "1"), ("DOCKER_CERT_PATH", "/c")]),
            all,
        )
        .unwrap();
        assert!(r.verify);
        let f = TlsFlags {
            verify: Some(true),
            cacert: Some("/x/ca".into()),
            cert: Some("/x/c".into()),
            key: Some("/x/k".into()),
            ..Default::default()
        };
        let r = resolve(&f, env(&[("DOCKER_CERT_PATH", "/c")]), none).unwrap();
        assert_eq!(
            (r.ca, r.cert, r.key),
            (
                Some("/x/ca".into()),
                Some("/x/c".into()),
                Some("/x/k".into())
            )
        );
        // --tls only encrypts: no CA; --tlsverify=false still means TLS, as docker.
        let f = TlsFlags {
            tls: Some(true),
            ..Default::default()
        };
        let r = resolve(&f, env(&[("HOME", "/h")]), none).unwrap();
        assert_eq!((r.verify, r.ca), (false, None));
        let f = TlsFlags {
            verify: Some(false),
            ..Default::default()
        };
        assert!(
            !resolve(&f, env(&[("DOCKER_TLS_VERIFY", "1")]), none)
                .unwrap()
                .verify
        );
        let r = resolve(&TlsFlags::default(), env(&[("DOCKER_TLS", "1")]), none).unwrap();
        assert!(!r.verify);
    }

    #[test]
    fn bad_files_are_named() {
        let e = Tls::new(&TlsFiles {
            verify: true,
            ca: Some("/nonexistent/ca.pem".into()),
            cert: None,
            key: None,
        })
        .unwrap_err();
        assert!(
            e.contains("could not read CA certificate \"/nonexistent/ca.pem\""),
            "{e}"
        );
        let e = Tls::new(&TlsFiles {
            verify: false,
            ca: None,
            cert: Some("/nonexistent/cert.pem".into()),
            key: None,
        })
        .unwrap_err();
        assert!(e.contains("needs a key"), "{e}");
    }
}
