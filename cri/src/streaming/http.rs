//! The streaming server's HTTP/1.1 side: `/exec/TOKEN`, `/attach/TOKEN` and
//! `/portforward/TOKEN`, each answered once with a protocol upgrade (WebSocket or
//! SPDY/3.1); an unknown, used or expired token is 404.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, UPGRADE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, warn};

use super::logtail::Follower;
use super::session::{self, Wants};
use super::websocket::{self, MAX_PORTS};
use super::{portforward, spdy, StreamRequest, Streaming};
use crate::core::Core;
use crate::error::Error;

type Resp = Response<Full<Bytes>>;

const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Largest WebSocket message accepted from a client.
const MAX_MESSAGE: usize = 4 * 1024 * 1024;

pub async fn serve(listener: TcpListener, streaming: Arc<Streaming>, core: Arc<Core>) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "accepting a streaming connection failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let (st, core) = (streaming.clone(), core.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(req, st.clone(), core.clone()));
            // A client that never finishes its request head is not waited for forever.
            if let Err(e) = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(tcp), svc)
                .with_upgrades()
                .await
            {
                debug!(%peer, error = %e, "streaming connection ended");
            }
        });
    }
}

fn plain(code: StatusCode, msg: impl Into<String>) -> Resp {
    let mut body = msg.into();
    body.push('\n');
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn error_response(e: Error) -> Resp {
    let code = match e {
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::InvalidArgument(_) => StatusCode::BAD_REQUEST,
        Error::FailedPrecondition(_) => StatusCode::CONFLICT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    plain(code, tonic::Status::from(e).message())
}

/// Every value of a comma-separated header, trimmed.
fn list(req: &Request<Incoming>, name: &str) -> Vec<String> {
    req.headers()
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// `?ports=80,8080&ports=9090` (the WebSocket form; SPDY names ports per stream).
pub fn parse_ports(query: Option<&str>) -> Result<Vec<u16>, String> {
    let mut ports = Vec::new();
    for pair in query.unwrap_or("").split('&') {
        let Some(v) = pair.strip_prefix("ports=") else {
            continue;
        };
        for p in v.split("%2C").flat_map(|s| s.split(',')) {
            let n: u16 = p
                .parse()
                .map_err(|_| format!("unable to parse {p:?} as a port"))?;
            if n == 0 {
                return Err("port 0 cannot be forwarded".into());
            }
            ports.push(n);
        }
    }
    if ports.is_empty() {
        return Err("query parameter \"ports\" is required".into());
    }
    if ports.len() > MAX_PORTS {
        return Err(format!("at most {MAX_PORTS} ports per connection"));
    }
    Ok(ports)
}

/// What a request needs beyond itself, made before the upgrade.
#[derive(Default)]
pub struct Prepared {
    /// Port forwarding: the pod's network namespace (`None`: the host's).
    pub netns: Option<std::path::PathBuf>,
    /// Attach: the container log, opened at its end now.
    pub log: Option<Follower>,
}

/// Checks that make a request fail before the upgrade, with an HTTP status.
fn precheck(core: &Core, req: &StreamRequest) -> Result<Prepared, Error> {
    match req {
        StreamRequest::Exec(r) => {
            session::check(core, &r.container_id, Wants::of_exec(r)).map(|_| Prepared::default())
        }
        StreamRequest::Attach(r) => {
            let w = Wants::of_attach(r);
            let rec = session::check(core, &r.container_id, w)?;
            session::check_attach(&rec, w)?;
            let log = if w.stdout || w.stderr {
                Some(session::open_log(&rec)?)
            } else {
                None
            };
            Ok(Prepared { netns: None, log })
        }
        StreamRequest::PortForward(r) => Ok(Prepared {
            netns: portforward::pod_netns(core, &r.pod_sandbox_id)?,
            log: None,
        }),
    }
}

async fn handle(
    mut req: Request<Incoming>,
    st: Arc<Streaming>,
    core: Arc<Core>,
) -> Result<Resp, Infallible> {
    let path = req.uri().path().to_string();
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let (kind, token) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let Some(sreq) = st.tokens.take(token).filter(|r| r.path() == kind) else {
        return Ok(plain(
            StatusCode::NOT_FOUND,
            format!("{path}: unknown or expired streaming request"),
        ));
    };
    let prepared = match precheck(&core, &sreq) {
        Ok(p) => p,
        Err(e) => return Ok(error_response(e)),
    };
    let upgrade = req
        .headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if upgrade == "websocket" {
        return Ok(websocket_upgrade(&mut req, sreq, prepared, core));
    }
    if upgrade == "spdy/3.1" {
        return Ok(spdy_upgrade(&mut req, sreq, prepared, core));
    }
    Ok(plain(
        StatusCode::BAD_REQUEST,
        "expected an Upgrade to websocket or SPDY/3.1",
    ))
}

fn switching(key: &HeaderValue, proto: &str) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert("sec-websocket-accept", v);
    }
    if !proto.is_empty() {
        if let Ok(v) = HeaderValue::from_str(proto) {
            h.insert("sec-websocket-protocol", v);
        }
    }
    r
}

fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE))
}

/// Port forwarding as SPDY inside WebSocket (`SPDY/3.1+portforward.k8s.io`).
fn spdy_tunnel_upgrade(
    req: &mut Request<Incoming>,
    sreq: StreamRequest,
    prepared: Prepared,
    key: &HeaderValue,
) -> Resp {
    let StreamRequest::PortForward(r) = sreq else {
        return plain(StatusCode::BAD_REQUEST, "not a port-forward request");
    };
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Some(ws) = accept_websocket(on_upgrade).await else {
            return;
        };
        websocket::serve_spdy_tunnel(ws, r.pod_sandbox_id, prepared.netns).await;
    });
    switching(key, websocket::SPDY_TUNNEL)
}

fn spdy_upgrade(
    req: &mut Request<Incoming>,
    sreq: StreamRequest,
    prepared: Prepared,
    core: Arc<Core>,
) -> Resp {
    let pf = matches!(sreq, StreamRequest::PortForward(_));
    let offered = list(req, "x-stream-protocol-version");
    let (proto, version) = if offered.is_empty() {
        // Clients from before protocol negotiation speak the first version.
        (String::new(), if pf { 0 } else { 1 })
    } else {
        match spdy::negotiate(&offered, pf) {
            Some(x) => x,
            None => {
                return plain(
                    StatusCode::FORBIDDEN,
                    format!("unable to upgrade: no common stream protocol in {offered:?}"),
                )
            }
        }
    };
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let up = match on_upgrade.await {
            Ok(u) => TokioIo::new(u),
            Err(e) => {
                debug!(error = %e, "SPDY upgrade failed");
                return;
            }
        };
        match sreq {
            StreamRequest::PortForward(r) => {
                spdy::streams::serve_port_forward(up, r.pod_sandbox_id, prepared.netns).await
            }
            other => spdy::streams::serve_stream(up, version, other, prepared.log, core).await,
        }
    });
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("SPDY/3.1"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if !proto.is_empty() {
        if let Ok(v) = HeaderValue::from_str(&proto) {
            h.insert("x-stream-protocol-version", v);
        }
    }
    r
}

/// The server side of a WebSocket on the connection hyper hands over after the 101
/// answer; `None` (logged) when the upgrade failed.
async fn accept_websocket(
    on_upgrade: hyper::upgrade::OnUpgrade,
) -> Option<WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>> {
    let up = match on_upgrade.await {
        Ok(u) => u,
        Err(e) => {
            debug!(error = %e, "websocket upgrade failed");
            return None;
        }
    };
    Some(WebSocketStream::from_raw_socket(TokioIo::new(up), Role::Server, Some(ws_config())).await)
}

fn websocket_upgrade(
    req: &mut Request<Incoming>,
    sreq: StreamRequest,
    prepared: Prepared,
    core: Arc<Core>,
) -> Resp {
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return plain(StatusCode::BAD_REQUEST, "Sec-WebSocket-Key is missing");
    };
    let pf = matches!(sreq, StreamRequest::PortForward(_));
    let offered = list(req, "sec-websocket-protocol");
    if pf && offered.iter().any(|p| p == websocket::SPDY_TUNNEL) {
        return spdy_tunnel_upgrade(req, sreq, prepared, &key);
    }
    let Some((proto, chans)) = websocket::negotiate(&offered, pf) else {
        return plain(
            StatusCode::BAD_REQUEST,
            format!("requested protocol(s) are not supported: {offered:?}"),
        );
    };
    let ports = if pf {
        match parse_ports(req.uri().query()) {
            Ok(p) => p,
            Err(e) => return plain(StatusCode::BAD_REQUEST, e),
        }
    } else {
        Vec::new()
    };
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Some(ws) = accept_websocket(on_upgrade).await else {
            return;
        };
        match sreq {
            StreamRequest::PortForward(r) => {
                websocket::serve_port_forward(ws, chans, r.pod_sandbox_id, prepared.netns, ports)
                    .await
            }
            other => websocket::serve_stream(ws, chans, other, prepared.log, core).await,
        }
    });
    switching(&key, &proto)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ports_come_from_the_query() {
        assert_eq!(
            parse_ports(Some("ports=80,8080&ports=9")),
            Ok(vec![80, 8080, 9])
        );
        assert_eq!(parse_ports(Some("ports=80%2C81")), Ok(vec![80, 81]));
        assert!(parse_ports(None).is_err());
        assert!(parse_ports(Some("ports=0")).is_err());
        assert!(parse_ports(Some("ports=x")).is_err());
        assert!(parse_ports(Some("ports=70000")).is_err());
    }
}
