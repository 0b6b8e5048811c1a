//! The image endpoints: pull, push, list, inspect, history, tag, remove,
//! save, load, prune.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode};
use axum::Extension;
use axum::Json;
use base64::Engine as _;
use futures_util::StreamExt;
use kos_image::build::dangling;
use kos_image::progress::Progress;
use kos_image::registry::push::PushOptions;
use kos_image::{Credentials, ImageRef, PullOptions};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::params::Params;
use super::stream::{self, error_message, JsonTx};
use super::ApiVersion;
use crate::engine::Engine;
use crate::error::{ApiError, Result};
use crate::filters::Filters;
use crate::images::{self, familiar, normalize};

/// `docker load` archives above this are refused.
const MAX_LOAD: u64 = 16 << 30;

#[derive(serde::Deserialize, Default)]
struct AuthConfig {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    auth: String,
    #[serde(default)]
    registrytoken: String,
    #[serde(default)]
    identitytoken: String,
}

fn b64_any(s: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    [URL_SAFE, URL_SAFE_NO_PAD, STANDARD, STANDARD_NO_PAD]
        .iter()
        .find_map(|e| e.decode(s).ok())
}

/// Credentials from `X-Registry-Auth` (base64url JSON, as the CLI sends it).
pub fn registry_auth(headers: &HeaderMap) -> Result<Option<Credentials>> {
    let Some(v) = headers.get("X-Registry-Auth") else {
        return Ok(None);
    };
    let s = v
        .to_str()
        .map_err(|_| ApiError::bad("invalid X-Registry-Auth header: not ASCII"))?
        .trim();
    if s.is_empty() {
        return Ok(None);
    }
    let raw =
        b64_any(s).ok_or_else(|| ApiError::bad("invalid X-Registry-Auth header: not base64"))?;
    let a: AuthConfig = serde_json::from_slice(&raw)
        .map_err(|e| ApiError::bad(format!("invalid X-Registry-Auth header: {e}")))?;
    if !a.registrytoken.is_empty() {
        return Ok(Some(Credentials::Bearer(a.registrytoken)));
    }
    if !a.identitytoken.is_empty() {
        return Err(ApiError::bad(
            "identity tokens (OAuth refresh tokens) are not supported; log in with a password",
        ));
    }
    if !a.username.is_empty() {
        return Ok(Some(Credentials::Basic {
            username: a.username,
            password: a.password,
        }));
    }
    if !a.auth.is_empty() {
        let dec = b64_any(&a.auth)
            .and_then(|d| String::from_utf8(d).ok())
            .ok_or_else(|| ApiError::bad("invalid X-Registry-Auth header: bad auth field"))?;
        if let Some((u, p)) = dec.split_once(':') {
            return Ok(Some(Credentials::Basic {
                username: u.to_string(),
                password: p.to_string(),
            }));
        }
    }
    Ok(None)
}

fn short(d: &kos_image::Digest) -> String {
    d.hex()[..12].to_string()
}

fn progress_bar(done: u64, total: u64) -> String {
    let width = 50u64;
    let filled = (done.min(total) * width).checked_div(total).unwrap_or(0) as usize;

    let mut bar = "=".repeat(filled);
    if filled < width as usize {
        bar.push('>');
        bar.push_str(&" ".repeat(width as usize - filled - 1));
    }
    format!("[{bar}] {}/{}", human(done), human(total))
}

fn human(n: u64) -> String {
    let f = n as f64;
    if f >= 1e9 {
        format!("{:.2}GB", f / 1e9)
    } else if f >= 1e6 {
        format!("{:.2}MB", f / 1e6)
    } else if f >= 1e3 {
        format!("{:.2}kB", f / 1e3)
    } else {
        format!("{n}B")
    }
}

/// Turns kos-image progress into Docker's JSON messages. Byte counts are
/// throttled to one message per 512 KiB per blob.
fn progress_sink(
    pushing: bool,
) -> (
    kos_image::progress::ProgressFn,
    mpsc::UnboundedReceiver<serde_json::Value>,
) {
    let (ptx, prx) = mpsc::unbounded_channel();
    let last: Mutex<HashMap<String, u64>> = Mutex::new(HashMap::new());
    let f = move |p: Progress| {
        let msg = match p {
            Progress::Resolved { .. } => None,
            Progress::Started { digest, total, .. } => Some(json!({
                "status": if pushing { "Preparing" } else { "Pulling fs layer" },
                "progressDetail": {}, "id": short(&digest), "total": total})),
            Progress::Advanced {
                digest,
                done,
                total,
            } => {
                let id = short(&digest);
                let mut l = last.lock().unwrap_or_else(|p| p.into_inner());
                let prev = l.get(&id).copied().unwrap_or(0);
                if done < total && done.saturating_sub(prev) < 512 * 1024 {
                    None
                } else {
                    l.insert(id.clone(), done);
                    Some(json!({
                        "status": if pushing { "Pushing" } else { "Downloading" },
                        "progressDetail": {"current": done, "total": total},
                        "progress": progress_bar(done, total),
                        "id": id}))
                }
            }
            Progress::Finished { digest } => Some(json!({
                "status": if pushing { "Pushed" } else { "Pull complete" },
                "progressDetail": {}, "id": short(&digest)})),
            Progress::Skipped { digest } => Some(json!({
                "status": if pushing { "Layer already exists" } else { "Already exists" },
                "progressDetail": {}, "id": short(&digest)})),
        };
        if let Some(mut m) = msg {
            if let Some(o) = m.as_object_mut() {
                o.remove("total");
            }
            let _ = ptx.send(m);
        }
    };
    (Arc::new(f), prx)
}

async fn forward(mut prx: mpsc::UnboundedReceiver<serde_json::Value>, tx: JsonTx) {
    while let Some(m) = prx.recv().await {
        if tx.send(m).await.is_err() {
            break;
        }
    }
}

/// Credentials for a registry: the request's header, else the stored login.
pub fn credentials_for(e: &Engine, headers: &HeaderMap, reference: &str) -> Result<Credentials> {
    if let Some(c) = registry_auth(headers)? {
        return Ok(c);
    }
    // Otherwise the login kept by `docker login` (POST /auth), if any.
    let host = ImageRef::parse(reference)
        .map(|r| r.registry().to_string())
        .unwrap_or_default();
    match e.creds.get(&host) {
        Ok(Some((username, password))) => Ok(Credentials::Basic { username, password }),
        Ok(None) => Ok(Credentials::Anonymous),
        Err(err) => Err(ApiError::internal("reading stored credentials", err)),
    }
}

/// The reference `fromImage` + `tag` name.
pub fn pull_reference(from: &str, tag: Option<&str>) -> String {
    let has_tag = from.contains('@')
        || from
            .rsplit('/')
            .next()
            .is_some_and(|last| last.contains(':'));
    match tag {
        Some(t) if t.starts_with("sha256:") => format!("{from}@{t}"),
        Some(t) if !has_tag => format!("{from}:{t}"),
        _ => from.to_string(),
    }
}

/// Pulls `name` (already normalized) and reports progress on `tx`. Returns
/// whether it worked; failures are reported in the stream.
pub async fn pull_into(
    e: &Arc<Engine>,
    name: &str,
    creds: Credentials,
    platform: Option<kos_image::manifest::Platform>,
    tx: &JsonTx,
) -> bool {
    let r = match ImageRef::parse(name) {
        Ok(r) => r,
        Err(err) => {
            let _ = tx.send(error_message(&err.to_string())).await;
            return false;
        }
    };
    let shown_repo = familiar(&format!("{}/{}", r.registry(), r.repository()));
    let id = r
        .tag()
        .map(str::to_string)
        .or_else(|| r.digest().map(|d| d.to_string()))
        .unwrap_or_default();
    let _ = tx
        .send(json!({"status": format!("Pulling from {shown_repo}"), "id": id}))
        .await;
    let before = e.store.image_record(name).ok();
    let (pf, prx) = progress_sink(false);
    let fw = tokio::spawn(forward(prx, tx.clone()));
    let opts = PullOptions {
        credentials: creds,
        platform,
        progress: Some(pf),
        unpack: true,
    };
    // As dockerd: Docker Hub pulls go to the daemon's registry-mirrors first, in order,
    // and to Docker Hub itself when every mirror fails.
    let res = match kos_image::mirrors::Mirrors::from_registry_mirrors(&e.config.registry_mirrors)
        .and_then(|m| m.endpoints(r.registry()))
    {
        Ok(endpoints) => {
            kos_image::mirrors::pull_through(
                &e.registry.config,
                e.store.clone(),
                name,
                &endpoints,
                &opts,
            )
            .await
        }
        Err(err) => Err(err),
    };
    let res = res.map(|(rec, from, failed)| {
        for a in failed {
            tracing::warn!(image = %name, mirror = %a.endpoint.host, error = %a.error, "pull through a mirror failed; tried the next");
        }
        if !from.upstream {
            tracing::info!(image = %name, mirror = %from.host, "pulled through a registry mirror");
        }
        rec
    });
    drop(opts);
    let _ = fw.await;
    match res {
        Ok(rec) => {
            let _ = tx
                .send(json!({"status": format!("Digest: {}", rec.target)}))
                .await;
            let status = if before.is_some_and(|b| b.target == rec.target) {
                format!("Status: Image is up to date for {}", familiar(name))
            } else {
                format!("Status: Downloaded newer image for {}", familiar(name))
            };
            let _ = tx.send(json!({"status": status})).await;
            e.event(
                "image",
                "pull",
                &familiar(name),
                &[("name", &familiar(name))],
            );
            true
        }
        Err(err) => {
            let err: ApiError = err.into();
            let _ = tx.send(error_message(&err.to_string())).await;
            false
        }
    }
}

pub async fn pull(
    State(e): State<Arc<Engine>>,
    headers: HeaderMap,
    p: Params,
    req: Request,
) -> Result<Response<Body>> {
    if let Some(src) = p.non_empty("fromSrc") {
        return import(e, &p, src, req).await;
    }
    let from = p
        .non_empty("fromImage")
        .ok_or_else(|| ApiError::bad("fromImage is required"))?;
    let name = normalize(&pull_reference(from, p.non_empty("tag")))?;
    let platform = p
        .non_empty("platform")
        .map(kos_image::manifest::Platform::parse)
        .transpose()?;
    let creds = credentials_for(&e, &headers, &name)?;
    let (tx, resp) = stream::json_lines(64);
    tokio::spawn(async move {
        pull_into(&e, &name, creds, platform, &tx).await;
    });
    Ok(resp)
}

/// `POST /images/create?fromSrc=-` (`docker import`): the body is the root filesystem
/// archive; `repo`/`tag` name the image, `changes` set its config, `message` its comment.
async fn import(e: Arc<Engine>, p: &Params, src: &str, req: Request) -> Result<Response<Body>> {
    if src != "-" {
        return Err(ApiError::bad(format!(
            "importing from a URL ({src}) is not supported by kosd: send the archive as the request body (fromSrc=-)"
        )));
    }
    // Checked before the body is spooled, so bad parameters cost no disk. The body is still
    // read (and dropped, bounded): a client that is still sending the archive then gets this
    // answer instead of a broken pipe.
    let ireq = match import_request(p) {
        Ok(r) => r,
        Err(err) => {
            drain(req, MAX_LOAD).await;
            return Err(err);
        }
    };
    let f = spool(&e, "import", req, MAX_LOAD).await?;
    let eng = e.clone();
    let (rec, id) = tokio::task::spawn_blocking(move || {
        crate::image_import::import(&eng.store, std::io::BufReader::new(f), MAX_LOAD, &ireq)
    })
    .await??;
    let shown = if kos_image::build::dangling::is_dangling(&rec.name) {
        id.to_string()
    } else {
        familiar(&rec.name)
    };
    e.event("image", "import", &id.to_string(), &[("name", &shown)]);
    let mut r = Response::new(Body::from(
        json!({"status": id.to_string()}).to_string() + "\n",
    ));
    r.headers_mut()
        .insert("Content-Type", HeaderValue::from_static("application/json"));
    Ok(r)
}

/// The parameters of an import, validated (the changes are applied to a scratch config).
fn import_request(p: &Params) -> Result<crate::image_import::ImportRequest> {
    let name = match p.non_empty("repo") {
        None => None,
        Some(repo) => Some(normalize(&pull_reference(repo, p.non_empty("tag")))?),
    };
    let platform = p
        .non_empty("platform")
        .map(kos_image::manifest::Platform::parse)
        .transpose()?;
    let ireq = crate::image_import::ImportRequest {
        name,
        message: p.str("message").unwrap_or("").to_string(),
        changes: p.all("changes"),
        platform,
    };
    crate::image_import::apply_changes(&mut serde_json::Map::new(), &ireq.changes)?;
    Ok(ireq)
}

/// Reads and drops a request body, at most `max` bytes.
async fn drain(req: Request, max: u64) {
    let mut body = req.into_body().into_data_stream();
    let mut total: u64 = 0;
    while let Some(Ok(chunk)) = body.next().await {
        total += chunk.len() as u64;
        if total > max {
            break;
        }
    }
}

/// Writes a request body into an unlinked scratch file (at most `max` bytes) and
/// returns it rewound.
async fn spool(e: &Engine, what: &str, req: Request, max: u64) -> Result<std::fs::File> {
    let path = scratch_path(e, what)?;
    let mut f = tokio::fs::File::options()
        .create_new(true)
        .read(true)
        .write(true)
        .open(&path)
        .await
        .map_err(|err| ApiError::internal(&format!("creating {what} file"), err))?;
    let _ = tokio::fs::remove_file(&path).await;
    let mut body = req.into_body().into_data_stream();
    let mut total: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|err| ApiError::bad(format!("reading request body: {err}")))?;
        total += chunk.len() as u64;
        if total > max {
            return Err(ApiError::bad(format!(
                "the {what} archive is larger than {max} bytes"
            )));
        }
        f.write_all(&chunk)
            .await
            .map_err(|err| ApiError::internal(&format!("writing {what} file"), err))?;
    }
    f.flush()
        .await
        .map_err(|err| ApiError::internal(&format!("writing {what} file"), err))?;
    use std::io::{Seek, SeekFrom};
    let mut f = f.into_std().await;
    f.seek(SeekFrom::Start(0))
        .map_err(|err| ApiError::internal(&format!("rewinding {what} file"), err))?;
    Ok(f)
}

/// Before API 1.44 images also had `VirtualSize` (their size); before 1.45, inspect also had
/// the `Container` and `ContainerConfig` of the build step that made them (empty for the
/// images kosd has), as dockerd answered those versions.
fn legacy_image_fields(v: &mut serde_json::Value, ver: ApiVersion, inspect: bool) {
    if ver < ApiVersion(1, 44) {
        v["VirtualSize"] = v["Size"].clone();
    }
    if inspect && ver < ApiVersion(1, 45) {
        v["Container"] = json!("");
        let mut cc = json!({});
        crate::containers::inspect_shape::complete_image_config(&mut cc);
        v["ContainerConfig"] = cc;
    }
}

pub async fn list(
    State(e): State<Arc<Engine>>,
    Extension(ver): Extension<ApiVersion>,
    p: Params,
) -> Result<Json<serde_json::Value>> {
    let f = Filters::parse(p.str("filters"), images::IMAGE_LIST_FILTERS)?;
    let eng = e.clone();
    let list = tokio::task::spawn_blocking(move || {
        let users = crate::containers::image_use::counts(&eng);
        images::list(&eng.store, &f, &users)
    })
    .await??;
    let mut v = serde_json::to_value(list).map_err(|e| ApiError::internal("encoding", e))?;
    for img in v.as_array_mut().into_iter().flatten() {
        legacy_image_fields(img, ver, false);
    }
    Ok(Json(v))
}

fn split_suffix<'a>(rest: &'a str, suffixes: &[&'static str]) -> Option<(&'a str, &'static str)> {
    suffixes.iter().find_map(|s| {
        rest.strip_suffix(s)
            .filter(|n| !n.is_empty())
            .map(|n| (n, &s[1..]))
    })
}

pub async fn get_dispatch(
    State(e): State<Arc<Engine>>,
    Extension(ver): Extension<ApiVersion>,
    Path(rest): Path<String>,
) -> Result<Response<Body>> {
    let Some((name, op)) = split_suffix(&rest, &["/json", "/history", "/get"]) else {
        return Err(ApiError::NotFound("page not found".into()));
    };
    let name = name.to_string();
    match op {
        "json" => {
            let eng = e.clone();
            let mut v = tokio::task::spawn_blocking(move || {
                let r = images::resolve(&eng.store, &name)?;
                images::inspect(&eng.store, &r)
            })
            .await??;
            legacy_image_fields(&mut v, ver, true);
            Ok(Json(v).into_response_body())
        }
        "history" => {
            let eng = e.clone();
            let v = tokio::task::spawn_blocking(move || {
                let r = images::resolve(&eng.store, &name)?;
                images::history(&eng.store, &r)
            })
            .await??;
            Ok(Json(v).into_response_body())
        }
        _ => save(e, vec![name]).await,
    }
}

trait IntoBody {
    fn into_response_body(self) -> Response<Body>;
}
impl<T: serde::Serialize> IntoBody for Json<T> {
    fn into_response_body(self) -> Response<Body> {
        axum::response::IntoResponse::into_response(self)
    }
}

pub async fn post_dispatch(
    State(e): State<Arc<Engine>>,
    Path(rest): Path<String>,
    headers: HeaderMap,
    p: Params,
) -> Result<Response<Body>> {
    let Some((name, op)) = split_suffix(&rest, &["/push", "/tag"]) else {
        return Err(ApiError::NotFound("page not found".into()));
    };
    match op {
        "tag" => tag(e, name, &p).await,
        _ => push(e, name, &headers, &p).await,
    }
}

async fn tag(e: Arc<Engine>, name: &str, p: &Params) -> Result<Response<Body>> {
    let repo = p
        .non_empty("repo")
        .ok_or_else(|| ApiError::bad("repository name is required"))?;
    let target = normalize(&pull_reference(
        repo,
        Some(p.non_empty("tag").unwrap_or("latest")),
    ))?;
    if target.contains('@') {
        return Err(ApiError::bad(
            "refusing to create a tag with a digest reference",
        ));
    }
    let name = name.to_string();
    let eng = e.clone();
    let t = target.clone();
    tokio::task::spawn_blocking(move || -> Result<()> {
        let r = images::resolve(&eng.store, &name)?;
        eng.store.tag(&r.any().name, &t)?;
        // Named again, an image kept unnamed (for its containers, or by a build) is
        // no longer dangling, so removing this tag later deletes it as usual.
        let unnamed = dangling::name(&r.config);
        if r.records.iter().any(|x| x.name == unnamed) {
            eng.store.remove_image(&unnamed)?;
        }
        Ok(())
    })
    .await??;
    e.event(
        "image",
        "tag",
        &familiar(&target),
        &[("name", &familiar(&target))],
    );
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}

async fn push(
    e: Arc<Engine>,
    name: &str,
    headers: &HeaderMap,
    p: &Params,
) -> Result<Response<Body>> {
    let repo = ImageRef::parse(&normalize(name)?)?;
    let repo_name = format!("{}/{}", repo.registry(), repo.repository());
    let locals: Vec<String> = match p.non_empty("tag") {
        Some(t) => vec![normalize(&format!("{repo_name}:{t}"))?],
        None if name.rsplit('/').next().is_some_and(|l| l.contains(':')) => vec![normalize(name)?],
        None => {
            let mut v: Vec<String> = e
                .store
                .images()?
                .into_iter()
                .map(|r| r.name)
                .filter(|n| {
                    ImageRef::parse(n).is_ok_and(|r| {
                        format!("{}/{}", r.registry(), r.repository()) == repo_name
                            && r.tag().is_some()
                    })
                })
                .collect();
            v.sort();
            v
        }
    };
    if locals.is_empty() || locals.iter().any(|l| e.store.image_record(l).is_err()) {
        return Err(ApiError::NotFound(format!(
            "An image does not exist locally with the tag: {}",
            familiar(&repo_name)
        )));
    }
    let creds = credentials_for(&e, headers, &locals[0])?;
    let (tx, resp) = stream::json_lines(64);
    tokio::spawn(async move {
        let _ = tx
            .send(json!({"status": format!("The push refers to repository [{}]", familiar(&repo_name))}))
            .await;
        for local in locals {
            let (pf, prx) = progress_sink(true);
            let fw = tokio::spawn(forward(prx, tx.clone()));
            let opts = PushOptions {
                credentials: creds.clone(),
                progress: Some(pf),
            };
            let res = e
                .registry
                .push(e.store.clone(), &local, &local, &opts)
                .await;
            drop(opts);
            let _ = fw.await;
            match res {
                Ok(d) => {
                    let size = e.store.manifest(&d).map(|(_, b)| b.len()).unwrap_or(0);
                    let tag = ImageRef::parse(&local)
                        .ok()
                        .and_then(|r| r.tag().map(str::to_string))
                        .unwrap_or_default();
                    let _ = tx
                        .send(json!({"status": format!("{tag}: digest: {d} size: {size}")}))
                        .await;
                    let _ = tx
                        .send(json!({"progressDetail": {}, "aux": {"Tag": tag, "Digest": d.to_string(), "Size": size}}))
                        .await;
                    e.event(
                        "image",
                        "push",
                        &familiar(&local),
                        &[("name", &familiar(&local))],
                    );
                }
                Err(err) => {
                    let err: ApiError = err.into();
                    let _ = tx.send(error_message(&err.to_string())).await;
                    return;
                }
            }
        }
    });
    Ok(resp)
}

pub async fn delete(
    State(e): State<Arc<Engine>>,
    Path(name): Path<String>,
    p: Params,
) -> Result<Json<serde_json::Value>> {
    let force = p.bool("force")?;
    let eng = e.clone();
    let out = tokio::task::spawn_blocking(move || -> Result<_> {
        let r = images::resolve(&eng.store, &name)?;
        let users = crate::containers::image_use::users_of(&eng, &r.id());
        let out = images::remove(&eng.store, &name, force, &users)?;
        if out.iter().any(|o| o.get("Deleted").is_some()) {
            // Content nobody names any more goes now, as Docker frees it on rmi.
            if let Err(err) = eng.store.gc() {
                tracing::warn!(error = %err, "image gc after rmi failed");
            }
        }
        Ok(out)
    })
    .await??;
    for o in &out {
        if let Some(u) = o.get("Untagged").and_then(|v| v.as_str()) {
            e.event("image", "untag", u, &[("name", u)]);
        }
        if let Some(d) = o.get("Deleted").and_then(|v| v.as_str()) {
            e.event("image", "delete", d, &[("name", d)]);
        }
    }
    Ok(Json(serde_json::Value::Array(out)))
}

pub async fn save_many(State(e): State<Arc<Engine>>, p: Params) -> Result<Response<Body>> {
    let names = p.all("names");
    if names.is_empty() {
        return Err(ApiError::bad("no image names given"));
    }
    save(e, names).await
}

pub(crate) fn scratch_path(e: &Engine, what: &str) -> Result<std::path::PathBuf> {
    let dir = e.config.data_root.join("tmp");
    std::fs::create_dir_all(&dir).map_err(|err| ApiError::internal("creating tmp dir", err))?;
    Ok(dir.join(format!("{what}-{}", crate::engine::random_id()?)))
}

async fn save(e: Arc<Engine>, names: Vec<String>) -> Result<Response<Body>> {
    let path = scratch_path(&e, "save")?;
    let eng = e.clone();
    let p2 = path.clone();
    let file = tokio::task::spawn_blocking(move || -> Result<std::fs::File> {
        let mut store_names: Vec<String> = Vec::new();
        for n in &names {
            let r = images::resolve(&eng.store, n)?;
            match &r.by_name {
                Some(rec) => store_names.push(rec.name.clone()),
                None => store_names.extend(r.records.iter().map(|x| x.name.clone())),
            }
        }
        let f = std::fs::File::options()
            .create_new(true)
            .read(true)
            .write(true)
            .open(&p2)
            .map_err(|err| ApiError::internal("creating archive file", err))?;
        // The open file is all we need; the name goes at once so nothing is left behind.
        let _ = std::fs::remove_file(&p2);
        let refs: Vec<&str> = store_names.iter().map(String::as_str).collect();
        let mut f = kos_image::archive::docker::save(&eng.store, &refs, f)?;
        use std::io::Seek;
        f.seek(std::io::SeekFrom::Start(0))
            .map_err(|err| ApiError::internal("rewinding archive", err))?;
        Ok(f)
    })
    .await?;
    let file = match file {
        Ok(f) => f,
        Err(err) => {
            let _ = std::fs::remove_file(&path);
            return Err(err);
        }
    };
    let s = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(file));
    let mut r = Response::new(Body::from_stream(s));
    r.headers_mut().insert(
        "Content-Type",
        HeaderValue::from_static("application/x-tar"),
    );
    Ok(r)
}

pub async fn load(State(e): State<Arc<Engine>>, p: Params, req: Request) -> Result<Response<Body>> {
    // `quiet` only silences progress, which a local load does not have; the
    // "Loaded image" lines are the result and always go out, as dockerd does.
    p.bool("quiet")?;
    let f = spool(&e, "load", req, MAX_LOAD).await?;
    let eng = e.clone();
    let recs = tokio::task::spawn_blocking(move || -> Result<Vec<kos_image::ImageRecord>> {
        use std::io::{Seek, SeekFrom};
        let mut f = f;
        f.seek(SeekFrom::Start(0))
            .map_err(|err| ApiError::internal("rewinding load file", err))?;
        let docker = kos_image::archive::docker::load(&eng.store, std::io::BufReader::new(&f));
        match docker {
            Ok(r) => Ok(r),
            Err(kos_image::Error::InvalidArchive(first)) => {
                f.seek(SeekFrom::Start(0))
                    .map_err(|err| ApiError::internal("rewinding load file", err))?;
                kos_image::archive::oci_layout::load_tar(
                    &eng.store,
                    std::io::BufReader::new(&f),
                    None,
                    None,
                )
                .map_err(|second| {
                    ApiError::bad(format!(
                        "not a docker save archive ({first}) nor an OCI layout ({second})"
                    ))
                })
            }
            Err(err) => Err(err.into()),
        }
    })
    .await??;
    let mut seen = HashSet::new();
    let mut lines = Vec::new();
    for r in &recs {
        let shown = familiar(&r.name);
        if seen.insert(shown.clone()) {
            e.event("image", "load", &shown, &[("name", &shown)]);
            lines.push(json!({"stream": format!("Loaded image: {shown}\n")}).to_string());
        }
    }
    let body = lines.join("\n") + "\n";
    let mut r = Response::new(Body::from(body));
    r.headers_mut()
        .insert("Content-Type", HeaderValue::from_static("application/json"));
    Ok(r)
}

pub async fn prune(State(e): State<Arc<Engine>>, p: Params) -> Result<Json<serde_json::Value>> {
    let f = Filters::parse(p.str("filters"), &["dangling", "until", "label", "label!"])?;
    let dangling_only = f.bool_value("dangling")?.unwrap_or(true);
    let until = f
        .get("until")
        .first()
        .map(|u| crate::timefmt::parse_timestamp(u))
        .transpose()?;
    let eng = e.clone();
    let (deleted, bytes) = tokio::task::spawn_blocking(move || -> Result<_> {
        let mut deleted: Vec<serde_json::Value> = Vec::new();
        // Without `-a` only dangling images (the builder's untagged results
        // and images a rebuild's tag moved away from); with it every image
        // no container uses.
        {
            // The CRI's containers too: a pod's image is not the Docker side's to drop.
            let used = crate::containers::image_use::counts(&eng);
            let mut groups: HashMap<String, Vec<kos_image::ImageRecord>> = HashMap::new();
            for r in eng.store.images()? {
                groups.entry(r.config.to_string()).or_default().push(r);
            }
            for (id, recs) in groups {
                if used.contains_key(&id) {
                    continue;
                }
                if dangling_only && !recs.iter().all(|r| dangling::is_dangling(&r.name)) {
                    continue;
                }
                let d = images::details(&eng.store, &recs[0])?;
                let labels: HashMap<String, String> = d.config_json["config"]["Labels"]
                    .as_object()
                    .map(|m| {
                        m.iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                            .collect()
                    })
                    .unwrap_or_default();
                if !f.labels_match("label", |k| labels.get(k).map(String::as_str)) {
                    continue;
                }
                if f.has("label!")
                    && !f.get("label!").iter().all(|l| match l.split_once('=') {
                        Some((k, v)) => labels.get(k).map(String::as_str) != Some(v),
                        None => !labels.contains_key(l.as_str()),
                    })
                {
                    continue;
                }
                if until.is_some_and(|u| recs[0].created * 1_000_000_000 > u) {
                    continue;
                }
                for r in &recs {
                    eng.store.remove_image(&r.name)?;
                    if !dangling::is_dangling(&r.name) {
                        deleted.push(json!({"Untagged": familiar(&r.name)}));
                    }
                }
                deleted.push(json!({"Deleted": id}));
            }
        }
        let report = eng.store.gc()?;
        // Build cache entries of the layers gc took are of no use any more.
        kos_image::build::cache::prune(&eng.store, false)
            .map_err(|e| ApiError::Internal(format!("pruning the build cache: {e}")))?;
        Ok((deleted, report.bytes))
    })
    .await??;
    for d in &deleted {
        if let Some(id) = d.get("Deleted").and_then(|v| v.as_str()) {
            e.event("image", "delete", id, &[("name", id)]);
        }
    }
    Ok(Json(
        json!({"ImagesDeleted": if deleted.is_empty() { serde_json::Value::Null } else { json!(deleted) }, "SpaceReclaimed": bytes}),
    ))
}

/// `POST /commit` (`docker commit`): a new image from the container's layer. The container
/// is paused meanwhile unless `pause=false` (dockerd's default is to pause).
pub async fn commit(
    State(e): State<Arc<Engine>>,
    p: Params,
    super::params::JsonBody(body): super::params::JsonBody<serde_json::Value>,
) -> Result<Response<Body>> {
    use crate::containers::record::Status;
    use crate::containers::runtime;
    let key = p
        .non_empty("container")
        .ok_or_else(|| ApiError::bad("container is required"))?;
    let c = runtime::find(&e, key)?;
    let name = match p.non_empty("repo") {
        None => None,
        Some(repo) => Some(normalize(&pull_reference(repo, p.non_empty("tag")))?),
    };
    if name.as_ref().is_some_and(|n| n.contains('@')) {
        return Err(ApiError::bad(
            "refusing to create a tag with a digest reference",
        ));
    }
    let config = match body {
        None | Some(serde_json::Value::Null) => serde_json::Map::new(),
        Some(serde_json::Value::Object(m)) => m,
        Some(_) => return Err(ApiError::bad("the commit config must be a JSON object")),
    };
    let req = crate::commit::CommitRequest {
        name,
        comment: p.str("comment").unwrap_or("").to_string(),
        author: p.str("author").unwrap_or("").to_string(),
        changes: p.all("changes"),
        config,
    };
    crate::image_import::apply_changes(&mut serde_json::Map::new(), &req.changes)?;
    let pause = p.str("pause").is_none() || p.bool("pause")?;
    let paused_here =
        pause && c.state.status == Status::Running && runtime::pause(&e, &c.id, true).await.is_ok();
    let base = crate::containers::image_use::store_name(&e.store, &c);
    let (eng, c2) = (e.clone(), c.clone());
    let done =
        tokio::task::spawn_blocking(move || crate::commit::commit(&eng.store, &c2, &base, &req))
            .await;
    if paused_here {
        if let Err(err) = runtime::pause(&e, &c.id, false).await {
            tracing::warn!(id = %c.id, error = %err, "resuming the container after commit");
        }
    }
    let (rec, id) = done??;
    let id = id.to_string();
    let shown = if dangling::is_dangling(&rec.name) {
        String::new()
    } else {
        familiar(&rec.name)
    };
    e.event(
        "container",
        "commit",
        &c.id,
        &[
            ("comment", p.str("comment").unwrap_or("")),
            ("imageID", &id),
            ("imageRef", &shown),
            ("name", &c.name),
            ("image", &c.image),
        ],
    );
    let mut r = axum::response::IntoResponse::into_response(Json(json!({"Id": id})));
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}

/// `GET /distribution/{name}/json`: the registry's descriptor and platforms for `name`,
/// without pulling it (`X-Registry-Auth` honoured as for a pull).
pub async fn distribution(
    State(e): State<Arc<Engine>>,
    Path(rest): Path<String>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>> {
    let name = rest
        .strip_suffix("/json")
        .filter(|n| !n.is_empty())
        .ok_or_else(|| ApiError::NotFound("page not found".into()))?;
    let name = normalize(&pull_reference(name, None))?;
    let creds = credentials_for(&e, &headers, &name)?;
    let d = e.registry.inspect(&name, &creds).await?;
    Ok(Json(json!({
        "Descriptor": {
            "mediaType": d.media_type,
            "digest": d.digest.to_string(),
            "size": d.size,
        },
        "Platforms": d.platforms,
    })))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn auth_header_decoding() {
        let mut h = HeaderMap::new();
        assert!(registry_auth(&h).unwrap().is_none());
        let enc = base64::engine::general_purpose::URL_SAFE
            .encode(br#"{"username":"u","password":"p?>","serveraddress":"r"}"#);
        h.insert("X-Registry-Auth", enc.parse().unwrap());
        match registry_auth(&h).unwrap() {
            Some(Credentials::Basic { username, password }) => {
                assert_eq!((username.as_str(), password.as_str()), ("u", "p?>"))
            }
            other => panic!("{other:?}"),
        }
        h.insert("X-Registry-Auth", "e30=".parse().unwrap());
        assert!(registry_auth(&h).unwrap().is_none());
        h.insert("X-Registry-Auth", "!!!".parse().unwrap());
        assert!(registry_auth(&h).is_err());
    }

    #[test]
    fn references_and_bars() {
        assert_eq!(pull_reference("bb", Some("1")), "bb:1");
        assert_eq!(
            pull_reference("127.0.0.1:5000/bb", Some("1")),
            "127.0.0.1:5000/bb:1"
        );
        assert_eq!(
            pull_reference("127.0.0.1:5000/bb:2", Some("1")),
            "127.0.0.1:5000/bb:2"
        );
        assert_eq!(pull_reference("bb", Some("sha256:abc")), "bb@sha256:abc");
        assert!(progress_bar(5, 10).starts_with("[=========================>"));
        assert_eq!(human(1500), "1.50kB");
    }
}
