//! Hijacked connections for attach and exec: `101 UPGRADED` with
//! `Upgrade: tcp`, then raw bytes both ways (half-close aware).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

pub type Upgraded = TokioIo<hyper::upgrade::Upgraded>;

/// Whether the client asked to take over the connection.
pub fn wants_upgrade(req: &Request) -> bool {
    req.headers()
        .get("Upgrade")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("tcp"))
}

pub fn content_type(tty: bool) -> &'static str {
    if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    }
}

/// Takes the upgrade handle; returns it with the 101 response to send.
pub fn upgrade(req: &mut Request, tty: bool) -> (OnUpgrade, Response<Body>) {
    let on = hyper::upgrade::on(req);
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert("Connection", HeaderValue::from_static("Upgrade"));
    h.insert("Upgrade", HeaderValue::from_static("tcp"));
    h.insert("Content-Type", HeaderValue::from_static(content_type(tty)));
    (on, r)
}

pub async fn finish(on: OnUpgrade) -> Option<Upgraded> {
    match on.await {
        Ok(u) => Some(TokioIo::new(u)),
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            None
        }
    }
}
