//! `POST /commit` (`docker commit`): a new image from a container's own layer on top of the
//! image it was made from, its config the container's (overridden by the request's config
//! and `changes`), as dockerd does.

use std::path::PathBuf;

use kos_image::{Digest, ImageRecord, Store};
use serde_json::{json, Map, Value};

use crate::containers::record::Container;
use crate::error::{ApiError, Result};

/// The container-config fields an image config carries (and `run` reads back).
const IMAGE_CONFIG_KEYS: [&str; 13] = [
    "User",
    "ExposedPorts",
    "Env",
    "Entrypoint",
    "Cmd",
    "Volumes",
    "WorkingDir",
    "Labels",
    "StopSignal",
    "Healthcheck",
    "OnBuild",
    "Shell",
    "ArgsEscaped",
];

/// What `POST /commit` asked for.
pub struct CommitRequest {
    /// The store name to give the image; `None` keeps it untagged (dangling).
    pub name: Option<String>,
    pub comment: String,
    pub author: String,
    pub changes: Vec<String>,
    /// The request body's container config (fields set there override the container's).
    pub config: Map<String, Value>,
}

/// The image config of the container `c` as `req` asks: the container's config fields,
/// those the request's body sets, then the `changes`.
pub fn image_config(c: &Container, req: &CommitRequest) -> Result<Map<String, Value>> {
    let from = serde_json::to_value(&c.config)
        .map_err(|e| ApiError::internal("encoding the container config", e))?;
    let mut cfg = Map::new();
    for k in IMAGE_CONFIG_KEYS {
        let v = req
            .config
            .get(k)
            .filter(|v| is_set(v))
            .or_else(|| from.get(k).filter(|v| !v.is_null()));
        if let Some(v) = v {
            cfg.insert(k.to_string(), v.clone());
        }
    }
    crate::image_import::apply_changes(&mut cfg, &req.changes)?;
    Ok(cfg)
}

fn is_set(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        _ => true,
    }
}

/// Writes the container's layer and the new image into `store`, names it, and makes its
/// snapshot; returns the image record and its id (the config digest). The caller has
/// paused the container where asked.
pub fn commit(
    store: &Store,
    c: &Container,
    base_name: &str,
    req: &CommitRequest,
) -> Result<(ImageRecord, Digest)> {
    if c.rootfs_kind != "overlay" {
        return Err(ApiError::Internal(format!(
            "container {} has a copied root filesystem ({}), which kosd cannot commit: only overlay containers have a layer of their own",
            c.id, c.rootfs_kind
        )));
    }
    let base = store.image(base_name)?;
    let cfg = image_config(c, req)?;
    let stubs: Vec<PathBuf> = crate::containers::files::MOUNT_POINT_STUBS
        .iter()
        .map(PathBuf::from)
        .collect();
    let layer =
        kos_image::build::layer::commit_layer_without(store, &c.dir.join("upper"), true, &stubs)?;

    let mut config: Value = serde_json::from_slice(&base.config_bytes)
        .map_err(|e| ApiError::internal("reading the image config", e))?;
    let now = crate::timefmt::rfc3339_go(crate::timefmt::now_nanos());
    let obj = config
        .as_object_mut()
        .ok_or_else(|| ApiError::Internal("the image config is not a JSON object".into()))?;
    obj.insert("created".into(), json!(now));
    obj.insert("config".into(), Value::Object(cfg));
    if !req.author.is_empty() {
        obj.insert("author".into(), json!(req.author));
    }
    obj.insert("comment".into(), json!(req.comment));
    let rootfs = obj
        .entry("rootfs")
        .or_insert_with(|| json!({"type": "layers", "diff_ids": []}));
    match rootfs.get_mut("diff_ids").and_then(Value::as_array_mut) {
        Some(ids) => ids.push(json!(layer.diff_id.to_string())),
        None => rootfs["diff_ids"] = json!([layer.diff_id.to_string()]),
    }
    let mut step = json!({"created": now, "created_by": c.command_line()});
    if !req.author.is_empty() {
        step["author"] = json!(req.author);
    }
    if !req.comment.is_empty() {
        step["comment"] = json!(req.comment);
    }
    match obj.get_mut("history").and_then(Value::as_array_mut) {
        Some(h) => h.push(step),
        None => {
            obj.insert("history".into(), json!([step]));
        }
    }
    let mut layers: Vec<Value> = base
        .manifest
        .layers
        .iter()
        .map(serde_json::to_value)
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| ApiError::internal("encoding layers", e))?;
    layers.push(
        serde_json::to_value(&layer.descriptor)
            .map_err(|e| ApiError::internal("encoding layer", e))?,
    );
    crate::image_import::store_image(store, &config, layers, req.name.clone()).map_err(
        |e| match e {
            crate::image_import::StoreImageError::Unpack(e) => {
                ApiError::Internal(format!("the committed layer cannot be unpacked: {e}"))
            }
            crate::image_import::StoreImageError::Api(e) => e,
        },
    )
}
