//! The proxy: each connection's peer is identified once, each request is read whole,
//! normalised, judged and audited, and only then forwarded; the upstream's answer streams back
//! unchanged, including hijacked attach/exec sessions (101 upgrade) and chunked streams.

use std::collections::HashMap;
use std::convert::Infallible;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{UnixListener, UnixStream};

use crate::audit::{self, Audit, Record};
use crate::body;
use crate::identity::{self, Client, ContainerMatch};
use crate::input::authz_input;
use crate::normalize;
use crate::policy::{Decision, Policy};

pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// A client that has not sent a whole request head by then is dropped.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Largest request head (line and headers) accepted.
const MAX_HEAD: usize = 64 * 1024;

/// What every listener shares.
pub struct Shared {
    pub upstream: PathBuf,
    pub audit: Audit,
    pub max_body: usize,
}

/// How a listener tells who its peer is and which policy applies.
pub enum Identify {
    /// A socket granted to one container.
    Grant {
        name: String,
        matcher: ContainerMatch,
        policy: Arc<Policy>,
    },
    /// A socket shared by unix users, a policy per uid.
    Users {
        policies: HashMap<u32, Arc<Policy>>,
        default: Option<Arc<Policy>>,
    },
}

impl Identify {
    /// Every policy this listener applies.
    pub fn policies(&self) -> Vec<Arc<Policy>> {
        match self {
            Identify::Grant { policy, .. } => vec![policy.clone()],
            Identify::Users { policies, default } => {
                policies.values().chain(default.iter()).cloned().collect()
            }
        }
    }
}

/// The verdict on a connection's peer: who it is and the policy to apply, or why none does.
struct Peer {
    client: Client,
    policy: Result<Arc<Policy>, String>,
}

fn identify(ident: &Identify, stream: &UnixStream) -> Peer {
    let cred = stream.peer_cred();
    let (pid, uid, gid) = match &cred {
        Ok(c) => (c.pid().unwrap_or(0), c.uid(), c.gid()),
        Err(_) => (0, u32::MAX, u32::MAX),
    };
    match ident {
        Identify::Grant {
            name,
            matcher,
            policy,
        } => {
            let mut client = Client {
                kind: "container",
                name: name.clone(),
                container_id: Some(matcher.container_id.clone()),
                pid,
                uid,
                gid,
                verified: false,
            };
            if let Err(e) = cred {
                return Peer {
                    client,
                    policy: Err(format!("no peer credentials: {e}")),
                };
            }
            if pid <= 0 {
                return Peer {
                    client,
                    policy: Err("peer pid not visible in kaim's pid namespace".into()),
                };
            }
            // The pidfd is the kernel's handle on the process that connected: if it is gone
            // by the time /proc/PID/cgroup has been read, that file may describe a process
            // that took over the pid, so the peer is not trusted.
            let process = identity::peer_process(stream.as_raw_fd());
            if matches!(process, identity::PeerProcess::Gone) {
                return Peer {
                    client,
                    policy: Err("peer exited before it could be identified".into()),
                };
            }
            match identity::read_cgroups(pid) {
                Ok(lines) if matcher.matches(&lines) => {
                    if let identity::PeerProcess::Pidfd(fd) = &process {
                        if !identity::pidfd_alive(fd) {
                            return Peer {
                                client,
                                policy: Err("peer exited before it could be identified".into()),
                            };
                        }
                    }
                    client.verified = true;
                    Peer {
                        client,
                        policy: Ok(policy.clone()),
                    }
                }
                Ok(_) => Peer {
                    client,
                    policy: Err(format!(
                        "peer pid {pid} is not in container {}",
                        matcher.container_id
                    )),
                },
                Err(e) => Peer {
                    client,
                    policy: Err(format!("reading /proc/{pid}/cgroup: {e}")),
                },
            }
        }
        Identify::Users { policies, default } => {
            let client = Client {
                kind: "user",
                name: format!("uid:{uid}"),
                container_id: None,
                pid,
                uid,
                gid,
                verified: cred.is_ok(),
            };
            let policy = match cred {
                Err(e) => Err(format!("no peer credentials: {e}")),
                Ok(_) => policies
                    .get(&uid)
                    .or(default.as_ref())
                    .cloned()
                    .ok_or_else(|| format!("no policy for uid {uid}")),
            };
            Peer { client, policy }
        }
    }
}

/// Accepts connections until the listener fails.
pub async fn serve(listener: UnixListener, ident: Arc<Identify>, shared: Arc<Shared>) {
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let peer = Arc::new(identify(&ident, &stream));
        let shared = shared.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let peer = peer.clone();
                let shared = shared.clone();
                async move { Ok::<_, Infallible>(handle(req, &peer, &shared).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .max_buf_size(MAX_HEAD)
                .half_close(true)
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await
            {
                tracing::debug!("connection: {e}");
            }
        });
    }
}

async fn handle(
    mut req: Request<hyper::body::Incoming>,
    peer: &Peer,
    shared: &Shared,
) -> Response<ProxyBody> {
    let method = req.method().as_str().to_string();
    let raw_path = req.uri().path().to_string();
    let policy_name = match &peer.policy {
        Ok(p) => p.path().display().to_string(),
        Err(_) => String::new(),
    };
    let deny = |path: &str, status: StatusCode, reason: String| {
        audit_write(
            shared,
            &peer.client,
            &method,
            path,
            false,
            &reason,
            &policy_name,
        );
        error_response(status, &reason)
    };

    let target = match normalize::normalize(&raw_path, req.uri().query()) {
        Ok(t) => t,
        Err(e) => return deny(&raw_path, StatusCode::BAD_REQUEST, e.to_string()),
    };
    let policy = match &peer.policy {
        Ok(p) => p.clone(),
        Err(why) => return deny(&target.path, StatusCode::FORBIDDEN, why.clone()),
    };
    let wants_upgrade = req.headers().contains_key(header::UPGRADE);
    let client_upgrade = wants_upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, incoming) = req.into_parts();
    let bytes = match body::read_bounded(incoming, shared.max_body).await {
        Ok(b) => b,
        Err(e) => {
            let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
            return deny(&target.path, status, e.to_string());
        }
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let content_encoding = parts
        .headers
        .get(header::CONTENT_ENCODING)
        .map(|v| v.to_str().unwrap_or("unreadable"));
    let view = match body::interpret_encoded(content_type, content_encoding, &bytes) {
        Ok(v) => v,
        Err(e) => return deny(&target.path, StatusCode::BAD_REQUEST, e.to_string()),
    };
    let input = authz_input(&peer.client, &method, &target, &parts.headers, &view);
    let Decision { allow, reason } = policy.evaluate(input);
    if !allow {
        return deny(&target.path, StatusCode::FORBIDDEN, reason);
    }
    audit_write(
        shared,
        &peer.client,
        &method,
        &target.path,
        true,
        &reason,
        &policy_name,
    );

    let uri = target.forward_uri();
    match forward(shared, parts, uri, bytes, client_upgrade).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!("upstream: {e}");
            error_response(StatusCode::BAD_GATEWAY, &format!("upstream: {e}"))
        }
    }
}

fn audit_write(
    shared: &Shared,
    client: &Client,
    method: &str,
    path: &str,
    allow: bool,
    reason: &str,
    policy: &str,
) {
    let rec = Record {
        time: audit::now_rfc3339(),
        client,
        method,
        path,
        decision: if allow { "allow" } else { "deny" },
        reason,
        policy,
    };
    if let Err(e) = shared.audit.write(&rec) {
        tracing::error!("{e}");
    }
}

/// Headers that describe one hop, never copied across: the body is re-framed by kaim.
const HOP: &[HeaderName] = &[
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::CONTENT_LENGTH,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
    header::EXPECT,
    header::PROXY_AUTHORIZATION,
];

fn copy_end_to_end(from: &HeaderMap, to: &mut HeaderMap) {
    for (k, v) in from {
        if HOP.contains(k) || k.as_str() == "keep-alive" || k.as_str() == "proxy-connection" {
            continue;
        }
        to.append(k.clone(), v.clone());
    }
}

#[derive(Debug, thiserror::Error)]
enum ForwardError {
    #[error("connecting to {path}: {source}")]
    Connect {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Http(#[from] hyper::Error),
    #[error("building request: {0}")]
    Build(#[from] hyper::http::Error),
}

async fn forward(
    shared: &Shared,
    parts: hyper::http::request::Parts,
    uri: String,
    bytes: Bytes,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
) -> Result<Response<ProxyBody>, ForwardError> {
    let stream = UnixStream::connect(&shared.upstream)
        .await
        .map_err(|source| ForwardError::Connect {
            path: shared.upstream.display().to_string(),
            source,
        })?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("upstream connection: {e}");
        }
    });

    let mut req = Request::new(Full::new(bytes.clone()));
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = uri
        .parse::<hyper::Uri>()
        .map_err(hyper::http::Error::from)?;
    let headers = req.headers_mut();
    copy_end_to_end(&parts.headers, headers);
    if !headers.contains_key(header::HOST) {
        headers.insert(header::HOST, HeaderValue::from_static("docker"));
    }
    if !bytes.is_empty() || matches!(parts.method.as_str(), "POST" | "PUT" | "PATCH") {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    }
    if client_upgrade.is_some() {
        if let Some(up) = parts.headers.get(header::UPGRADE) {
            headers.insert(header::UPGRADE, up.clone());
            headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        }
    }
    let mut resp = sender.send_request(req).await?;

    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        if let Some(client_upgrade) = client_upgrade {
            tokio::spawn(async move {
                match tokio::try_join!(client_upgrade, upstream_upgrade) {
                    Ok((c, u)) => {
                        let mut c = TokioIo::new(c);
                        let mut u = TokioIo::new(u);
                        if let Err(e) = tokio::io::copy_bidirectional(&mut c, &mut u).await {
                            tracing::debug!("upgraded stream: {e}");
                        }
                    }
                    Err(e) => tracing::debug!("upgrade: {e}"),
                }
            });
        }
        let (rp, _) = resp.into_parts();
        let mut out = Response::builder().status(rp.status);
        if let Some(h) = out.headers_mut() {
            copy_end_to_end(&rp.headers, h);
            if let Some(up) = rp.headers.get(header::UPGRADE) {
                h.insert(header::UPGRADE, up.clone());
            }
            h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        }
        return Ok(out.body(empty())?);
    }

    let (rp, body) = resp.into_parts();
    let mut out = Response::builder().status(rp.status).version(rp.version);
    if let Some(h) = out.headers_mut() {
        copy_end_to_end(&rp.headers, h);
        if let Some(cl) = rp.headers.get(header::CONTENT_LENGTH) {
            h.insert(header::CONTENT_LENGTH, cl.clone());
        }
    }
    Ok(out.body(body.boxed())?)
}

fn empty() -> ProxyBody {
    Full::new(Bytes::new()).map_err(|n| match n {}).boxed()
}

/// Docker's error shape: `{"message": "..."}`.
pub fn error_response(status: StatusCode, reason: &str) -> Response<ProxyBody> {
    let body = serde_json::json!({ "message": format!("kaim: {reason}") }).to_string();
    let mut r = Response::new(Full::new(Bytes::from(body)).map_err(|n| match n {}).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}
