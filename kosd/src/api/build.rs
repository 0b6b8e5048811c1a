//! `POST /build`: the legacy builder's contract (what the docker CLI uses with
//! `DOCKER_BUILDKIT=0`) over kos-image's builder. The tar context is spooled to
//! a bounded scratch file, the build runs on a blocking thread, and its progress
//! streams back as dockerd's JSON lines (`stream`, `aux`, `errorDetail`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Response;
use axum::Json;
use futures_util::StreamExt;
use kos_image::build::{BuildEvent, BuildOptions, Builder, NetworkMode, RegistryPuller};
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::params::Params;
use super::stream::{self, error_message};
use crate::engine::Engine;
use crate::error::{ApiError, Result};

/// The largest build context accepted (bytes of the request body).
pub const MAX_CONTEXT: u64 = 2 << 30;

/// A JSON object parameter (`buildargs`, `labels`) as a string map; a null
/// value (an arg given without one) is skipped, as dockerd does.
fn json_map(p: &Params, key: &str) -> Result<BTreeMap<String, String>> {
    let Some(s) = p.non_empty(key) else {
        return Ok(BTreeMap::new());
    };
    let m: BTreeMap<String, Option<String>> = serde_json::from_str(s)
        .map_err(|e| ApiError::bad(format!("invalid {key} parameter: {e}")))?;
    Ok(m.into_iter()
        .filter_map(|(k, v)| v.map(|v| (k, v)))
        .collect())
}

fn options(p: &Params) -> Result<BuildOptions> {
    // rm/forcerm name intermediate containers dockerd keeps; KOS's build
    // containers are always removed, so both are accepted and have no effect.
    p.bool("rm")?;
    p.bool("forcerm")?;
    let network = NetworkMode::parse(p.str("networkmode").unwrap_or(""))
        .map_err(|e| ApiError::bad(e.to_string()))?;
    Ok(BuildOptions {
        dockerfile: p
            .non_empty("dockerfile")
            .unwrap_or("Dockerfile")
            .to_string(),
        tags: p.all("t").into_iter().filter(|t| !t.is_empty()).collect(),
        build_args: json_map(p, "buildargs")?,
        target: p.non_empty("target").map(str::to_string),
        no_cache: p.bool("nocache")?,
        labels: json_map(p, "labels")?,
        pull: p.bool("pull")?,
        network,
        quiet: p.bool("q")?,
        platform: p
            .non_empty("platform")
            .map(kos_image::manifest::Platform::parse)
            .transpose()
            .map_err(|e| ApiError::bad(format!("invalid platform: {e}")))?,
        max_context_bytes: MAX_CONTEXT,
        ..Default::default()
    })
}

fn builder(e: &Arc<Engine>) -> Builder {
    Builder::new(e.store.clone())
        .with_cgroup_parent(e.config.cgroup_parent.clone())
        .with_kosrun(crate::containers::runtime::runtime_binary(
            &e.config.default_runtime,
        ))
        .with_network(Arc::new(crate::build_network::DefaultBridge::new(
            e.nets.clone(),
        )))
        .with_puller(Arc::new(RegistryPuller {
            registry: e.registry.clone(),
            options: Default::default(),
        }))
}

pub async fn build(
    State(e): State<Arc<Engine>>,
    p: Params,
    req: Request,
) -> Result<Response<Body>> {
    let opts = options(&p)?;
    if p.non_empty("remote").is_some() {
        return Err(ApiError::bad("remote build contexts are not supported"));
    }
    let path = super::images::scratch_path(&e, "build")?;
    let mut f = tokio::fs::File::options()
        .create_new(true)
        .read(true)
        .write(true)
        .open(&path)
        .await
        .map_err(|err| ApiError::internal("creating build context file", err))?;
    // Unlinked at once: the open file is all that is needed, and nothing is left behind.
    let _ = tokio::fs::remove_file(&path).await;
    let mut body = req.into_body().into_data_stream();
    let mut total: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|err| ApiError::bad(format!("reading build context: {err}")))?;
        total += chunk.len() as u64;
        if total > MAX_CONTEXT {
            return Err(ApiError::bad(format!(
                "build context is larger than {MAX_CONTEXT} bytes"
            )));
        }
        f.write_all(&chunk)
            .await
            .map_err(|err| ApiError::internal("writing build context file", err))?;
    }
    f.flush()
        .await
        .map_err(|err| ApiError::internal("writing build context file", err))?;
    let f = f.into_std().await;
    let (tx, resp) = stream::json_lines(64);
    let eng = e.clone();
    tokio::spawn(async move {
        let progress_tx = tx.clone();
        let res = tokio::task::spawn_blocking(move || {
            use std::io::{Seek, SeekFrom};
            let mut f = f;
            f.seek(SeekFrom::Start(0))
                .map_err(|err| format!("rewinding build context: {err}"))?;
            let mut progress = |ev: BuildEvent| {
                let v = match ev {
                    BuildEvent::Stream(s) => json!({ "stream": s }),
                    BuildEvent::Aux { id } => json!({ "aux": { "ID": id } }),
                };
                // A client that went away only loses progress; the build finishes.
                let _ = progress_tx.blocking_send(v);
            };
            builder(&eng)
                .build(std::io::BufReader::new(f), &opts, &mut progress)
                .map_err(|err| err.to_string())
        })
        .await;
        match res {
            Ok(Ok(r)) => {
                for t in &r.tags {
                    e.event("image", "tag", &r.image_id.to_string(), &[("name", t)]);
                }
            }
            Ok(Err(msg)) => {
                tracing::info!(error = %msg, "build failed");
                let _ = tx.send(error_message(&msg)).await;
            }
            Err(join) => {
                let _ = tx
                    .send(error_message(&format!("build task failed: {join}")))
                    .await;
            }
        }
    });
    Ok(resp)
}

/// `POST /build/prune` (`docker builder prune`): the build cache entries
/// whose layers image removal took, or every entry with `all`. The layers
/// belong to images and go with them (`image prune`).
pub async fn prune(State(e): State<Arc<Engine>>, p: Params) -> Result<Json<serde_json::Value>> {
    let all = p.bool("all")?;
    let store = e.store.clone();
    let report = tokio::task::spawn_blocking(move || kos_image::build::cache::prune(&store, all))
        .await
        .map_err(|err| ApiError::Internal(format!("build cache prune task: {err}")))?
        .map_err(|err| ApiError::internal("pruning the build cache", err))?;
    Ok(Json(
        json!({"CachesDeleted": serde_json::Value::Null, "SpaceReclaimed": report.bytes}),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(q: &str) -> Params {
        Params::parse(q).expect("query")
    }

    #[test]
    fn query_to_options() {
        let o = options(&params(
            "t=a%3A1&t=b&dockerfile=sub%2FDf&buildargs=%7B%22X%22%3A%221%22%2C%22Y%22%3Anull%7D&target=s1&nocache=1&labels=%7B%22l%22%3A%22v%22%7D&pull=true&q=1&networkmode=none&rm=1&forcerm=0",
        ))
        .expect("options");
        assert_eq!(o.tags, vec!["a:1".to_string(), "b".to_string()]);
        assert_eq!(o.dockerfile, "sub/Df");
        assert_eq!(o.build_args.get("X").map(String::as_str), Some("1"));
        assert!(!o.build_args.contains_key("Y"));
        assert_eq!(o.target.as_deref(), Some("s1"));
        assert!(o.no_cache && o.pull && o.quiet);
        assert_eq!(o.labels.get("l").map(String::as_str), Some("v"));
        assert_eq!(o.network, NetworkMode::None);
        assert_eq!(o.max_context_bytes, MAX_CONTEXT);
        assert!(o.platform.is_none());
        let p = options(&params("platform=linux%2Farm64")).expect("platform");
        assert_eq!(
            p.platform.map(|p| p.to_string()).as_deref(),
            Some("linux/arm64")
        );
        assert!(options(&params("platform=linux")).is_err());
    }

    #[test]
    fn bad_query_is_refused() {
        assert!(options(&params("buildargs=%5B1%5D")).is_err());
        assert!(options(&params("networkmode=container%3Ax")).is_err());
        assert!(options(&params("nocache=maybe")).is_err());
        let d = options(&params("")).expect("defaults");
        assert_eq!(d.dockerfile, "Dockerfile");
        assert!(d.tags.is_empty() && d.build_args.is_empty());
    }
}
