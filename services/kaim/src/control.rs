//! Grants added and removed while kaim runs: the engine (kosd) asks for a grant when it
//! starts a container labelled for one, and removes it when the container is gone. The
//! control socket speaks a small HTTP/1.1 API and only to root (SO_PEERCRED):
//!
//! - `PUT /grants/NAME` `{"container_id","cgroup"?,"policy","socket"}`: compiles the policy,
//!   binds the socket and serves it (replacing a grant of the same name); 201.
//! - `DELETE /grants/NAME`: stops serving and removes the socket; 204, 404 when unknown.
//! - `GET /grants`: the grants served now.
//!
//! A policy given as a bare name (`ci-create`) is `POLICY_DIR/NAME.rego`; an absolute path
//! is used as it is.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::UnixListener;

use crate::config::Grant;
use crate::error::{Error, Result};
use crate::identity::ContainerMatch;
use crate::policy::Policy;
use crate::proxy::{self, Identify, Shared};

/// A control client that has not sent its request head by then is dropped.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
/// Largest control request body.
const MAX_CONTROL_BODY: usize = 64 * 1024;

/// Binds a unix socket at `path` (replacing a stale socket, never another kind of file)
/// with `mode`.
pub fn bind_socket(path: &Path, mode: u32) -> Result<UnixListener> {
    let err = |op: &'static str, source: std::io::Error| Error::Socket {
        op,
        path: path.to_path_buf(),
        source,
    };
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_socket() => {
            std::fs::remove_file(path).map_err(|e| err("removing stale socket", e))?
        }
        Ok(_) => {
            return Err(Error::Config(format!(
                "{} exists and is not a socket",
                path.display()
            )))
        }
        Err(_) => {}
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err("creating the directory of", e))?;
    }
    let l = UnixListener::bind(path).map_err(|e| err("binding", e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| err("chmod", e))?;
    Ok(l)
}

/// A grant as the control API takes it (the name is in the path).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantRequest {
    pub container_id: String,
    #[serde(default)]
    pub cgroup: Option<String>,
    pub policy: String,
    pub socket: PathBuf,
}

/// A grant as the control API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct GrantInfo {
    pub name: String,
    pub container_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    pub policy: PathBuf,
    pub socket: PathBuf,
}

struct Live {
    grant: Grant,
    policy: Arc<Policy>,
    task: tokio::task::JoinHandle<()>,
}

/// The grants added through the control socket.
pub struct Grants {
    shared: Arc<Shared>,
    socket_mode: u32,
    policy_dir: PathBuf,
    live: Mutex<BTreeMap<String, Live>>,
}

fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 128
        && n.starts_with(|c: char| c.is_ascii_alphanumeric())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

impl Grants {
    pub fn new(shared: Arc<Shared>, socket_mode: u32, policy_dir: PathBuf) -> Grants {
        Grants {
            shared,
            socket_mode,
            policy_dir,
            live: Mutex::new(BTreeMap::new()),
        }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Live>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The policy file a grant names: a bare name in the policy directory, or a path.
    pub fn policy_path(&self, policy: &str) -> Result<PathBuf> {
        if policy.starts_with('/') {
            return Ok(PathBuf::from(policy));
        }
        if !valid_name(policy) {
            return Err(Error::Config(format!(
                "policy {policy:?}: neither an absolute path nor a policy name"
            )));
        }
        Ok(self.policy_dir.join(format!("{policy}.rego")))
    }

    /// Serves a grant (must run inside the tokio runtime): the policy compiles before the
    /// socket is bound, so a bad policy makes nothing; a grant of the same name is replaced.
    pub fn add(&self, name: &str, req: GrantRequest) -> Result<GrantInfo> {
        if !valid_name(name) || req.container_id.is_empty() {
            return Err(Error::Config(format!(
                "grant {name:?}: a name of [A-Za-z0-9_.-] and a container id are required"
            )));
        }
        if !req.socket.is_absolute() {
            return Err(Error::Config(format!(
                "grant {name:?}: socket {} is not an absolute path",
                req.socket.display()
            )));
        }
        let policy_path = self.policy_path(&req.policy)?;
        let policy = Arc::new(Policy::from_file(&policy_path)?);
        let grant = Grant {
            name: name.to_string(),
            container_id: req.container_id,
            cgroup: req.cgroup,
            policy: policy_path,
            socket: req.socket,
        };
        {
            let live = self.live();
            if let Some((other, _)) = live
                .iter()
                .find(|(n, l)| n.as_str() != name && l.grant.socket == grant.socket)
            {
                return Err(Error::Config(format!(
                    "socket {} is already grant {other:?}'s",
                    grant.socket.display()
                )));
            }
        }
        // The old grant goes first: it may hold the very socket path asked for again.
        self.remove(name);
        let listener = bind_socket(&grant.socket, self.socket_mode)?;
        let ident = Identify::Grant {
            name: grant.name.clone(),
            matcher: ContainerMatch {
                container_id: grant.container_id.clone(),
                cgroup: grant.cgroup.clone(),
            },
            policy: policy.clone(),
        };
        let task = tokio::spawn(proxy::serve(listener, Arc::new(ident), self.shared.clone()));
        let info = info(&grant);
        self.live().insert(
            name.to_string(),
            Live {
                grant,
                policy,
                task,
            },
        );
        Ok(info)
    }

    /// Stops serving a grant and removes its socket; false when there was none.
    pub fn remove(&self, name: &str) -> bool {
        let Some(old) = self.live().remove(name) else {
            return false;
        };
        old.task.abort();
        let _ = std::fs::remove_file(&old.grant.socket);
        true
    }

    pub fn list(&self) -> Vec<GrantInfo> {
        self.live().values().map(|l| info(&l.grant)).collect()
    }

    /// Every policy of the grants served now (for SIGHUP's reload).
    pub fn policies(&self) -> Vec<Arc<Policy>> {
        self.live().values().map(|l| l.policy.clone()).collect()
    }

    /// Stops every grant and removes its socket (at shutdown).
    pub fn clear(&self) {
        let names: Vec<String> = self.live().keys().cloned().collect();
        for n in names {
            self.remove(&n);
        }
    }
}

fn info(g: &Grant) -> GrantInfo {
    GrantInfo {
        name: g.name.clone(),
        container_id: g.container_id.clone(),
        cgroup: g.cgroup.clone(),
        policy: g.policy.clone(),
        socket: g.socket.clone(),
    }
}

type Body = Full<Bytes>;

fn reply(status: StatusCode, v: serde_json::Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(v.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    r
}

fn message(status: StatusCode, m: impl std::fmt::Display) -> Response<Body> {
    reply(status, serde_json::json!({ "message": m.to_string() }))
}

async fn handle(req: Request<Incoming>, grants: &Grants) -> Response<Body> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    if path == "/grants" && method == Method::GET {
        return reply(StatusCode::OK, serde_json::json!(grants.list()));
    }
    let Some(name) = path.strip_prefix("/grants/").filter(|n| !n.contains('/')) else {
        return message(StatusCode::NOT_FOUND, format!("no such endpoint {path}"));
    };
    let name = name.to_string();
    match method {
        Method::PUT => {
            let body = match Limited::new(req.into_body(), MAX_CONTROL_BODY)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(e) => return message(StatusCode::BAD_REQUEST, format!("reading body: {e}")),
            };
            let g: GrantRequest = match serde_json::from_slice(&body) {
                Ok(g) => g,
                Err(e) => return message(StatusCode::BAD_REQUEST, format!("grant: {e}")),
            };
            match grants.add(&name, g) {
                Ok(info) => reply(StatusCode::CREATED, serde_json::json!(info)),
                Err(e) => message(StatusCode::BAD_REQUEST, e),
            }
        }
        Method::DELETE => {
            if grants.remove(&name) {
                Response::builder()
                    .status(StatusCode::NO_CONTENT)
                    .body(Full::new(Bytes::new()))
                    .unwrap_or_else(|_| message(StatusCode::INTERNAL_SERVER_ERROR, "response"))
            } else {
                message(StatusCode::NOT_FOUND, format!("no grant {name:?}"))
            }
        }
        _ => message(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{method} {path} is not served"),
        ),
    }
}

/// Serves the control API on `listener` until the task is dropped. Only root, or kaim's
/// own user, may use it: a grant hands out the engine's API.
pub async fn serve(listener: UnixListener, grants: Arc<Grants>) {
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    loop {
        let stream = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!("control accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let allowed = stream
            .peer_cred()
            .map(|c| c.uid() == 0 || c.uid() == me)
            .unwrap_or(false);
        let grants = grants.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let grants = grants.clone();
                async move {
                    if !allowed {
                        return Ok::<_, Infallible>(message(
                            StatusCode::FORBIDDEN,
                            "kaim control: only root may manage grants",
                        ));
                    }
                    Ok::<_, Infallible>(handle(req, &grants).await)
                }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                tracing::debug!("control connection: {e}");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_names_and_paths() {
        let g = Grants::new(
            Arc::new(Shared {
                upstream: PathBuf::from("/u.sock"),
                audit: crate::audit::Audit::open(
                    &std::env::temp_dir()
                        .join(format!("kaim-control-audit-{}", std::process::id())),
                )
                .expect("audit"),
                max_body: 1024,
            }),
            0o666,
            PathBuf::from("/etc/kos/kaim/policies"),
        );
        assert_eq!(
            g.policy_path("ci-create").expect("name"),
            PathBuf::from("/etc/kos/kaim/policies/ci-create.rego")
        );
        assert_eq!(
            g.policy_path("/p/x.rego").expect("path"),
            PathBuf::from("/p/x.rego")
        );
        for bad in ["../x", "a/b", "", ".hidden"] {
            assert!(g.policy_path(bad).is_err(), "{bad}");
        }
        let _ = std::fs::remove_file(
            std::env::temp_dir().join(format!("kaim-control-audit-{}", std::process::id())),
        );
    }
}
