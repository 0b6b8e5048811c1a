//! The Docker Engine API client kos speaks to kosd with: the daemon address
//! (`-H`, `KOS_HOST`, `DOCKER_HOST`), API version negotiation through
//! `/_ping` as the docker CLI does, JSON helpers and Docker's error messages.

pub mod conn;
pub mod http;
pub mod tls;

use std::cell::OnceCell;
use std::io::{self, Read};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

pub use conn::{Host, Stream};
pub use http::{query, ReqBody, Request, Response};
pub use tls::TlsFlags;

/// The newest API version kos speaks (the one kosd advertises).
pub const MAX_API: (u32, u32) = (1, 47);
/// JSON answers above this are refused.
pub const MAX_JSON: usize = 64 << 20;

#[derive(Debug)]
pub enum ClientError {
    Connect { host: String, source: io::Error },
    Io(String, io::Error),
    Daemon { status: u16, message: String },
    Decode(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Connect { host, source } => write!(
                f,
                "Cannot connect to the kos daemon at {host}. Is kosd running? ({source})"
            ),
            ClientError::Io(what, e) => write!(f, "error during {what}: {e}"),
            ClientError::Daemon { message, .. } => {
                write!(f, "Error response from daemon: {message}")
            }
            ClientError::Decode(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl ClientError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Daemon { status, .. } => Some(*status),
            _ => None,
        }
    }
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }
    pub fn message(&self) -> String {
        match self {
            ClientError::Daemon { message, .. } => message.clone(),
            other => other.to_string(),
        }
    }
}

pub type Result<T> = std::result::Result<T, ClientError>;

pub struct Client {
    pub host: Host,
    tls: Option<Arc<tls::Tls>>,
    version: OnceCell<String>,
}

fn parse_ver(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.trim().split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

impl Client {
    /// The daemon address: the flag, then `KOS_HOST`, then `DOCKER_HOST`
    /// (with TLS asked for and no address, docker's tcp://localhost:2376).
    pub fn from_flag(
        flag: Option<&str>,
        tls_flags: &TlsFlags,
    ) -> std::result::Result<Client, String> {
        let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let files = tls::resolve(tls_flags, env, |p| p.exists());
        let addr = flag
            .map(str::to_string)
            .or_else(|| env("KOS_HOST"))
            .or_else(|| env("DOCKER_HOST"))
            .unwrap_or_else(|| {
                if files.is_some() {
                    conn::DEFAULT_TLS_HOST.to_string()
                } else {
                    conn::DEFAULT_HOST.to_string()
                }
            });
        let host = Host::parse(&addr)?;
        let tls = match (&host, files) {
            (Host::Tcp(_), Some(f)) => Some(Arc::new(tls::Tls::new(&f)?)),
            _ => None,
        };
        let version = OnceCell::new();
        // As docker: a pinned version skips negotiation.
        if let Some(v) = env("KOS_API_VERSION").or_else(|| env("DOCKER_API_VERSION")) {
            if parse_ver(&v).is_none() {
                return Err(format!("invalid API version {v:?}"));
            }
            let _ = version.set(v);
        }
        Ok(Client { host, tls, version })
    }

    /// A copy for another thread, with the negotiated version kept.
    pub fn pinned(&self) -> Client {
        let version = OnceCell::new();
        if let Some(v) = self.version.get() {
            let _ = version.set(v.clone());
        }
        Client {
            host: self.host.clone(),
            tls: self.tls.clone(),
            version,
        }
    }

    fn connect(&self) -> Result<Stream> {
        self.host
            .connect(self.tls.as_deref())
            .map_err(|source| ClientError::Connect {
                host: self.host.display(),
                source,
            })
    }

    /// The API version: the daemon's (from `/_ping`), capped at what kos speaks.
    pub fn version(&self) -> Result<&str> {
        if let Some(v) = self.version.get() {
            return Ok(v);
        }
        let r = http::send(self.connect()?, Request::new("GET", "/_ping".into()))
            .map_err(|e| ClientError::Io("ping".into(), e))?;
        let server = r.header("Api-Version").and_then(parse_ver);
        let v = match server {
            Some(s) if s < MAX_API => s,
            _ => MAX_API,
        };
        Ok(self.version.get_or_init(|| format!("{}.{}", v.0, v.1)))
    }

    /// Sends a request to `/vX.Y{path}`; a status >= 400 becomes the daemon's error.
    pub fn request(&self, mut req: Request<'_>) -> Result<Response> {
        let v = self.version()?.to_string();
        req.target = format!("/v{v}{}", req.target);
        let what = format!("{} {}", req.method, req.target);
        let stream = self.connect()?;
        let r = http::send(stream, req).map_err(|e| ClientError::Io(what.clone(), e))?;
        if r.status >= 400 {
            return Err(daemon_error(r));
        }
        Ok(r)
    }

    pub fn get(&self, path: &str) -> Result<Response> {
        self.request(Request::new("GET", path.to_string()))
    }

    pub fn post(&self, path: &str, body: Option<&Value>) -> Result<Response> {
        let mut req = Request::new("POST", path.to_string());
        if let Some(b) = body {
            req.body = ReqBody::Bytes(b.to_string().into_bytes(), "application/json");
        }
        self.request(req)
    }

    pub fn delete(&self, path: &str) -> Result<Response> {
        self.request(Request::new("DELETE", path.to_string()))
    }

    pub fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        json(self.get(path)?)
    }

    pub fn post_json<T: DeserializeOwned>(&self, path: &str, body: Option<&Value>) -> Result<T> {
        json(self.post(path, body)?)
    }

    /// GET returning the raw body bytes (inspect keeps the daemon's key order).
    pub fn get_raw(&self, path: &str) -> Result<Vec<u8>> {
        self.get(path)?
            .bytes(MAX_JSON)
            .map_err(|e| ClientError::Io(format!("reading {path}"), e))
    }
}

/// Docker's error body `{"message": ...}`, else the text.
fn daemon_error(r: Response) -> ClientError {
    let status = r.status;
    let body = r.bytes(1 << 20).unwrap_or_default();
    let message = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
    let message = if message.is_empty() {
        format!("{status} with an empty body")
    } else {
        message
    };
    ClientError::Daemon { status, message }
}

pub fn json<T: DeserializeOwned>(r: Response) -> Result<T> {
    let b = r
        .bytes(MAX_JSON)
        .map_err(|e| ClientError::Io("reading the response".into(), e))?;
    serde_json::from_slice(&b)
        .map_err(|e| ClientError::Decode(format!("invalid JSON from the daemon: {e}")))
}

/// Reads newline-delimited JSON messages, calling `f` for each.
pub fn json_lines(
    r: impl Read,
    mut f: impl FnMut(Value) -> std::result::Result<(), anyhow::Error>,
) -> anyhow::Result<()> {
    use std::io::BufRead;
    let mut rd = io::BufReader::new(r);
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = rd.by_ref().take(16 << 20).read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok(());
        }
        let t = line.trim_ascii();
        if t.is_empty() {
            continue;
        }
        // Several objects may share a line when the daemon does not add newlines.
        let mut de = serde_json::Deserializer::from_slice(t).into_iter::<Value>();
        for v in de.by_ref() {
            f(v.map_err(|e| anyhow::anyhow!("invalid JSON message from the daemon: {e}"))?)?;
        }
    }
}
