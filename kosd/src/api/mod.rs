//! The Docker Engine API over HTTP/1.1: version prefixes, routing, common
//! headers, and serving connections (with upgrades for attach and exec).

pub mod auth;
pub mod build;
pub mod containers;
pub mod devices;
pub mod exec;
pub mod hijack;
pub mod images;
pub mod networks;
pub mod params;
pub mod search;
pub mod stream;
pub mod system;
pub mod units;
pub mod volumes;

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode};
use axum::routing::{get, post};
use axum::Router;
use hyper::body::Incoming;
use tower::ServiceExt;

use crate::engine::Engine;
use crate::listen::Conn;

pub const API_VERSION: &str = "1.47";
pub const MIN_API_VERSION: &str = "1.24";
const MIN: (u32, u32) = (1, 24);
const MAX: (u32, u32) = (1, 47);

/// The API version a request asked for (the advertised one when unversioned).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion(pub u32, pub u32);

fn parse_version(s: &str) -> Option<(u32, u32)> {
    let (a, b) = s.split_once('.')?;
    Some((a.parse().ok()?, b.parse().ok()?))
}

/// Splits `/v1.43/containers/json` into the version and the unversioned path;
/// a version outside 1.24..=1.47 gets Docker's 400 message.
pub fn split_version(path: &str) -> Result<(ApiVersion, String), String> {
    if let Some(rest) = path.strip_prefix("/v") {
        let (ver, tail) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        if let Some(v) = parse_version(ver) {
            if v < MIN {
                return Err(format!(
                    "client version {ver} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
                ));
            }
            if v > MAX {
                return Err(format!(
                    "client version {ver} is too new. Maximum supported API version is {API_VERSION}"
                ));
            }
            let tail = if tail.is_empty() { "/" } else { tail };
            return Ok((ApiVersion(v.0, v.1), tail.to_string()));
        }
    }
    Ok((ApiVersion(MAX.0, MAX.1), path.to_string()))
}

pub fn router(engine: Arc<Engine>) -> Router {
    Router::new()
        .route("/_ping", get(system::ping).head(system::ping))
        .route("/version", get(system::version))
        .route("/info", get(system::info))
        .route("/events", get(system::events))
        .route("/system/df", get(system::df))
        .route("/auth", post(auth::login))
        .route("/build", post(build::build))
        .route("/build/prune", post(build::prune))
        .route("/images/json", get(images::list))
        .route("/images/create", post(images::pull))
        .route("/images/load", post(images::load))
        .route("/images/get", get(images::save_many))
        .route("/images/prune", post(images::prune))
        .route("/images/search", get(search::search))
        .route(
            "/images/{*rest}",
            get(images::get_dispatch)
                .post(images::post_dispatch)
                .delete(images::delete),
        )
        .route("/commit", post(images::commit))
        .route("/distribution/{*rest}", get(images::distribution))
        .route("/plugins", get(system::plugins))
        .route("/swarm", get(system::not_a_swarm))
        .route(
            "/swarm/{*rest}",
            get(system::not_a_swarm).post(system::not_a_swarm),
        )
        .route("/services", get(system::not_a_swarm))
        .route(
            "/services/{*rest}",
            get(system::not_a_swarm).post(system::not_a_swarm),
        )
        .route("/nodes", get(system::not_a_swarm))
        .route(
            "/nodes/{*rest}",
            get(system::not_a_swarm).post(system::not_a_swarm),
        )
        .route("/tasks", get(system::not_a_swarm))
        .route("/tasks/{*rest}", get(system::not_a_swarm))
        .route("/secrets", get(system::not_a_swarm))
        .route(
            "/secrets/{*rest}",
            get(system::not_a_swarm).post(system::not_a_swarm),
        )
        .route("/configs", get(system::not_a_swarm))
        .route(
            "/configs/{*rest}",
            get(system::not_a_swarm).post(system::not_a_swarm),
        )
        .route("/containers/create", post(containers::create))
        .route("/containers/json", get(containers::list))
        .route("/containers/prune", post(containers::prune))
        .route("/containers/{id}/json", get(containers::inspect))
        .route("/containers/{id}/start", post(containers::start))
        .route("/containers/{id}/stop", post(containers::stop))
        .route("/containers/{id}/restart", post(containers::restart))
        .route("/containers/{id}/kill", post(containers::kill))
        .route("/containers/{id}/pause", post(containers::pause))
        .route("/containers/{id}/unpause", post(containers::unpause))
        .route("/containers/{id}/rename", post(containers::rename))
        .route("/containers/{id}/wait", post(containers::wait))
        .route("/containers/{id}/logs", get(containers::logs))
        .route("/containers/{id}/attach", post(containers::attach))
        .route("/containers/{id}/resize", post(containers::resize))
        .route("/containers/{id}/top", get(containers::top))
        .route("/containers/{id}/exec", post(exec::create))
        .route("/containers/{id}/stats", get(containers::stats))
        .route("/containers/{id}/update", post(containers::update))
        .route("/containers/{id}/export", get(containers::export))
        .route("/containers/{id}/changes", get(containers::changes))
        .route(
            "/containers/{id}/archive",
            get(containers::archive_get)
                .head(containers::archive_head)
                .put(containers::archive_put),
        )
        .route(
            "/containers/{id}",
            axum::routing::delete(containers::remove),
        )
        .route("/exec/{id}/start", post(exec::start))
        .route("/exec/{id}/resize", post(exec::resize))
        .route("/exec/{id}/json", get(exec::inspect))
        .route("/networks", get(networks::list))
        .route("/networks/create", post(networks::create))
        .route("/networks/prune", post(networks::prune))
        .route(
            "/networks/{id}",
            get(networks::inspect).delete(networks::remove),
        )
        .route("/networks/{id}/connect", post(networks::connect))
        .route("/networks/{id}/disconnect", post(networks::disconnect))
        .route("/volumes", get(volumes::list))
        .route("/volumes/create", post(volumes::create))
        .route("/volumes/prune", post(volumes::prune))
        .route(
            "/volumes/{name}",
            get(volumes::inspect).delete(volumes::remove),
        )
        .route("/kos/units", get(units::list))
        .route("/kos/units/reload", post(units::reload))
        .route("/kos/units/{name}", get(units::inspect))
        .route("/kos/units/{name}/status", get(units::status))
        .route("/kos/units/{name}/file", get(units::file))
        .route("/kos/units/{name}/logs", get(units::logs_of))
        .route("/kos/units/{name}/{action}", post(units::action))
        .merge(devices::routes())
        .fallback(|| async { crate::error::ApiError::NotFound("page not found".into()) })
        .with_state(engine)
}

fn add_common_headers(resp: &mut Response<Body>) {
    let h = resp.headers_mut();
    h.insert("Api-Version", HeaderValue::from_static(API_VERSION));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert(
        "Server",
        HeaderValue::from_static(concat!("KOS/", env!("CARGO_PKG_VERSION"), " (linux)")),
    );
}

/// Handles one request: strips the version prefix, routes, adds common headers.
pub async fn handle(
    router: Router,
    mut req: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let path = req.uri().path().to_string();
    let mut resp = match split_version(&path) {
        Err(msg) => {
            let mut r = Response::new(Body::from(
                serde_json::json!({ "message": msg }).to_string(),
            ));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            r.headers_mut()
                .insert("Content-Type", HeaderValue::from_static("application/json"));
            r
        }
        Ok((ver, tail)) => {
            let pq = match req.uri().query() {
                Some(q) => format!("{tail}?{q}"),
                None => tail,
            };
            match pq.parse() {
                Ok(uri) => {
                    *req.uri_mut() = uri;
                    req.extensions_mut().insert(ver);
                    tracing::debug!(method = %req.method(), uri = %req.uri(), "request");
                    let t0 = std::time::Instant::now();
                    let r = match router.oneshot(req.map(Body::new)).await {
                        Ok(r) => r,
                        Err(e) => match e {},
                    };
                    // When the head is answered; a streamed body (logs, attach, wait) goes on.
                    tracing::debug!(
                        path = %path,
                        status = r.status().as_u16(),
                        micros = t0.elapsed().as_micros() as u64,
                        "answer"
                    );
                    r
                }
                Err(_) => {
                    let mut r = Response::new(Body::from(r#"{"message":"invalid request path"}"#));
                    *r.status_mut() = StatusCode::BAD_REQUEST;
                    r
                }
            }
        }
    };
    add_common_headers(&mut resp);
    Ok(resp)
}

/// Serves HTTP/1.1 (with upgrades) on one connection until it closes.
pub async fn serve_conn(router: Router, conn: Box<dyn Conn>) {
    let io = hyper_util::rt::TokioIo::new(conn);
    let svc = hyper::service::service_fn(move |req| handle(router.clone(), req));
    let r = hyper::server::conn::http1::Builder::new()
        .serve_connection(io, svc)
        .with_upgrades()
        .await;
    if let Err(e) = r {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn version_prefixes() {
        let (v, p) = split_version("/v1.43/containers/json").unwrap();
        assert_eq!((v, p.as_str()), (ApiVersion(1, 43), "/containers/json"));
        let (v, p) = split_version("/_ping").unwrap();
        assert_eq!((v, p.as_str()), (ApiVersion(1, 47), "/_ping"));
        let (_, p) = split_version("/v1.24/version").unwrap();
        assert_eq!(p, "/version");
        let e = split_version("/v1.23/version").unwrap_err();
        assert!(e.contains("too old") && e.contains("1.24"), "{e}");
        let e = split_version("/v1.48/version").unwrap_err();
        assert!(e.contains("too new") && e.contains("1.47"), "{e}");
        // A path that merely starts with v is not a version.
        let (_, p) = split_version("/volumes").unwrap();
        assert_eq!(p, "/volumes");
    }
}
