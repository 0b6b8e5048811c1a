//! Volume endpoints.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{Response, StatusCode};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::params::{JsonBody, Params};
use crate::engine::Engine;
use crate::error::Result;
use crate::filters::Filters;
use crate::volumes;

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CreateBody {
    #[serde(default)]
    name: String,
    #[serde(default)]
    driver: String,
    #[serde(default)]
    driver_opts: Option<HashMap<String, String>>,
    #[serde(default)]
    labels: Option<HashMap<String, String>>,
}

pub async fn create(
    State(e): State<Arc<Engine>>,
    JsonBody(b): JsonBody<CreateBody>,
) -> Result<Response<Body>> {
    let b = b.unwrap_or_default();
    let v = volumes::create(
        &e,
        Some(&b.name).filter(|n| !n.is_empty()).map(String::as_str),
        Some(&b.driver),
        b.labels.unwrap_or_default(),
        b.driver_opts.unwrap_or_default(),
    )?;
    let mut r = axum::response::IntoResponse::into_response(Json(volumes::to_json(&e, &v)));
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}

fn matches(e: &Engine, v: &volumes::Volume, f: &Filters) -> Result<bool> {
    let dangling = f.bool_value("dangling")?;
    let used = !volumes::users(e, &v.name).is_empty();
    Ok(dangling.is_none_or(|d| d != used)
        && f.any_or_unset("name", |n| v.name.contains(n))
        && f.any_or_unset("driver", |d| d == "local")
        && f.labels_match("label", |k| v.labels.get(k).map(String::as_str)))
}

pub async fn list(State(e): State<Arc<Engine>>, p: Params) -> Result<Json<serde_json::Value>> {
    let f = Filters::parse(p.str("filters"), &["dangling", "name", "driver", "label"])?;
    let mut out = Vec::new();
    for v in volumes::list(&e)? {
        if matches(&e, &v, &f)? {
            out.push(volumes::to_json(&e, &v));
        }
    }
    Ok(Json(json!({"Volumes": out, "Warnings": []})))
}

pub async fn inspect(
    State(e): State<Arc<Engine>>,
    Path(name): Path<String>,
) -> Result<Json<serde_json::Value>> {
    Ok(Json(volumes::to_json(&e, &volumes::get(&e, &name)?)))
}

pub async fn remove(
    State(e): State<Arc<Engine>>,
    Path(name): Path<String>,
    p: Params,
) -> Result<Response<Body>> {
    volumes::remove(&e, &name, p.bool("force")?)?;
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    Ok(r)
}

pub async fn prune(State(e): State<Arc<Engine>>, p: Params) -> Result<Json<serde_json::Value>> {
    let f = Filters::parse(p.str("filters"), &["label", "all"])?;
    let all = f.bool_value("all")?.unwrap_or(false);
    let mut deleted = Vec::new();
    let mut space = 0u64;
    for v in volumes::list(&e)? {
        if !volumes::users(&e, &v.name).is_empty() || (!all && !v.anonymous) {
            continue;
        }
        if !f.labels_match("label", |k| v.labels.get(k).map(String::as_str)) {
            continue;
        }
        space += volumes::size(&e, &v.name).max(0) as u64;
        if volumes::remove(&e, &v.name, false).is_ok() {
            deleted.push(v.name);
        }
    }
    Ok(Json(
        json!({"VolumesDeleted": deleted, "SpaceReclaimed": space}),
    ))
}
