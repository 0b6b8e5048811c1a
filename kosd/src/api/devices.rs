//! KOS's device endpoints (outside Docker's paths): the host's devices as kadcm sees them,
//! and device nodes hot-plugged into a running container and out again.
//!
//! - `GET /kos/devices`: every device node, network interface and PCI function.
//! - `GET /kos/containers/{id}/devices`: what is attached to the container now.
//! - `POST /kos/containers/{id}/devices` `{"Path":"/dev/fuse","PathInContainer":..,
//!   "Permissions":"rwm"}`: 201 with the attached device; 403 when the device policy
//!   refuses, 409 when the container is not running.
//! - `DELETE /kos/containers/{id}/devices?path=/dev/fuse` (the path in the container).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{Response, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use super::params::{JsonBody, Params};
use crate::devices::hotplug::{AttachRequest, Refused};
use crate::engine::Engine;
use crate::error::{ApiError, Result};

pub fn routes() -> Router<Arc<Engine>> {
    Router::new()
        .route("/kos/devices", get(host_devices))
        .route(
            "/kos/containers/{id}/devices",
            get(list).post(attach).delete(detach),
        )
}

fn refused(r: Refused) -> Result<Response<Body>> {
    match r {
        Refused::Api(e) => Err(e),
        Refused::Denied(msg) => {
            let mut resp = Json(json!({ "message": msg })).into_response();
            *resp.status_mut() = StatusCode::FORBIDDEN;
            Ok(resp)
        }
    }
}

async fn host_devices() -> Result<Json<serde_json::Value>> {
    let devices = tokio::task::spawn_blocking(|| {
        kadcm::sysfs::enumerate(std::path::Path::new(crate::devices::SYS_ROOT))
    })
    .await
    .map_err(|e| ApiError::internal("enumerating devices", e))?
    .map_err(|e| ApiError::internal("enumerating devices", e))?;
    Ok(Json(json!(devices)))
}

async fn list(
    State(e): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>> {
    let c = crate::containers::runtime::find(&e, &id)?;
    Ok(Json(json!(e.devices.hotplug.list(&c))))
}

async fn attach(
    State(e): State<Arc<Engine>>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<AttachRequest>,
) -> Result<Response<Body>> {
    let body = body.ok_or_else(|| ApiError::bad("a JSON body with Path is required"))?;
    let c = crate::containers::runtime::find(&e, &id)?;
    let cid = c.id.clone();
    let engine = e.clone();
    let config = crate::containers::runtime::bundle_file(&e, &c, "config.json");
    let done =
        tokio::task::spawn_blocking(move || engine.devices.hotplug.attach(&c, &config, &body))
            .await
            .map_err(|err| ApiError::internal("attaching a device", err))?;
    match done {
        Ok(a) => {
            e.event(
                "container",
                "device-attach",
                &cid,
                &[("device", &a.path_on_host), ("path", &a.path_in_container)],
            );
            let mut resp = Json(json!(a)).into_response();
            *resp.status_mut() = StatusCode::CREATED;
            Ok(resp)
        }
        Err(r) => refused(r),
    }
}

async fn detach(
    State(e): State<Arc<Engine>>,
    Path(id): Path<String>,
    p: Params,
) -> Result<Response<Body>> {
    let path = p
        .non_empty("path")
        .ok_or_else(|| {
            ApiError::bad(
                "the path query parameter (the device's path in the container) is required",
            )
        })?
        .to_string();
    let c = crate::containers::runtime::find(&e, &id)?;
    let cid = c.id.clone();
    let engine = e.clone();
    let config = crate::containers::runtime::bundle_file(&e, &c, "config.json");
    let done =
        tokio::task::spawn_blocking(move || engine.devices.hotplug.detach(&c, &config, &path))
            .await
            .map_err(|err| ApiError::internal("detaching a device", err))?;
    match done {
        Ok(a) => {
            e.event(
                "container",
                "device-detach",
                &cid,
                &[("device", &a.path_on_host), ("path", &a.path_in_container)],
            );
            let mut resp = Response::new(Body::empty());
            *resp.status_mut() = StatusCode::NO_CONTENT;
            Ok(resp)
        }
        Err(r) => refused(r),
    }
}
