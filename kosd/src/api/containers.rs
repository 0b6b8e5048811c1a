//! Container endpoints.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Response, StatusCode};
use axum::Json;
use bytes::Bytes;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::hijack;
use super::params::{JsonBody, Params};
use crate::containers::logs::{self, LogOptions};
use crate::containers::record::Status;
use crate::containers::runtime::{self, CreateBody, WaitCondition};
use crate::containers::view;
use crate::engine::Engine;
use crate::error::{ApiError, Result};
use crate::filters::Filters;

type E = State<Arc<Engine>>;

fn no_content() -> Response<Body> {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

pub async fn create(
    State(e): E,
    p: Params,
    JsonBody(body): JsonBody<CreateBody>,
) -> Result<Response<Body>> {
    let body =
        body.ok_or_else(|| ApiError::bad("config cannot be empty in order to create a container"))?;
    if p.non_empty("platform")
        .is_some_and(|pl| !pl.starts_with("linux"))
    {
        return Err(ApiError::bad("only linux containers are supported"));
    }
    let name = p.non_empty("name").map(str::to_string);
    let eng = e.clone();
    let c =
        tokio::task::spawn_blocking(move || runtime::create(&eng, name.as_deref(), body)).await??;
    runtime::prepare_ahead(&e, &c.id);
    let mut r =
        axum::response::IntoResponse::into_response(Json(json!({"Id": c.id, "Warnings": []})));
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}

pub async fn list(State(e): E, p: Params) -> Result<Response<Body>> {
    let f = Filters::parse(p.str("filters"), view::LIST_FILTERS)?;
    let all = p.bool("all")?;
    let size = p.bool("size")?;
    let limit = p.int("limit")?;
    // On this worker: the list takes well under a millisecond with a hundred containers,
    // less than handing it to a blocking thread and back costs. Sizes walk each
    // container's upper directory: that goes to a blocking thread.
    let body = if size {
        let eng = e.clone();
        tokio::task::spawn_blocking(move || view::list(&eng, all, limit, size, &f)).await??
    } else {
        view::list(&e, all, limit, size, &f)?
    };
    let mut r = Response::new(Body::from(body));
    r.headers_mut().insert(
        axum::http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Ok(r)
}

pub async fn inspect(
    State(e): E,
    Path(id): Path<String>,
    p: Params,
) -> Result<Json<serde_json::Value>> {
    let size = p.bool("size")?;
    let c = runtime::find(&e, &id)?;
    Ok(Json(view::inspect(&e, &c, size)))
}

pub async fn start(State(e): E, Path(id): Path<String>) -> Result<Response<Body>> {
    runtime::start(&e, &id).await?;
    Ok(no_content())
}

pub async fn stop(State(e): E, Path(id): Path<String>, p: Params) -> Result<Response<Body>> {
    runtime::stop(&e, &id, p.int("t")?, p.non_empty("signal")).await?;
    Ok(no_content())
}

pub async fn restart(State(e): E, Path(id): Path<String>, p: Params) -> Result<Response<Body>> {
    runtime::restart(&e, &id, p.int("t")?, p.non_empty("signal")).await?;
    Ok(no_content())
}

pub async fn kill(State(e): E, Path(id): Path<String>, p: Params) -> Result<Response<Body>> {
    runtime::kill(&e, &id, p.non_empty("signal")).await?;
    Ok(no_content())
}

pub async fn pause(State(e): E, Path(id): Path<String>) -> Result<Response<Body>> {
    runtime::pause(&e, &id, true).await?;
    Ok(no_content())
}

pub async fn unpause(State(e): E, Path(id): Path<String>) -> Result<Response<Body>> {
    runtime::pause(&e, &id, false).await?;
    Ok(no_content())
}

pub async fn remove(State(e): E, Path(id): Path<String>, p: Params) -> Result<Response<Body>> {
    if p.bool("link")? {
        return Err(ApiError::bad("legacy links are not supported"));
    }
    let c = runtime::find(&e, &id)?;
    runtime::remove(&e, &c.id, p.bool("force")?, p.bool("v")?).await?;
    e.execs.forget_container(&c.id);
    Ok(no_content())
}

pub async fn rename(State(e): E, Path(id): Path<String>, p: Params) -> Result<Response<Body>> {
    let name = p
        .non_empty("name")
        .ok_or_else(|| ApiError::bad("name is required"))?;
    runtime::rename(&e, &id, name).await?;
    Ok(no_content())
}

pub async fn wait(State(e): E, Path(id): Path<String>, p: Params) -> Result<Response<Body>> {
    let cond = match p.non_empty("condition") {
        None | Some("not-running") => WaitCondition::NotRunning,
        Some("next-exit") => WaitCondition::NextExit,
        Some("removed") => WaitCondition::Removed,
        Some(other) => return Err(ApiError::bad(format!("invalid condition: {other:?}"))),
    };
    let c = runtime::find(&e, &id)?;
    // Headers go out at once; the body comes when the condition holds.
    let (tx, rx) = tokio::sync::oneshot::channel::<Bytes>();
    tokio::spawn(async move {
        let body = match runtime::wait(&e, &c.id, cond).await {
            Ok(code) => json!({"StatusCode": code, "Error": null}),
            Err(err) => json!({"StatusCode": -1, "Error": {"Message": err.to_string()}}),
        };
        let _ = tx.send(Bytes::from(body.to_string() + "\n"));
    });
    let s = futures_util::stream::once(async move {
        Ok::<_, std::convert::Infallible>(rx.await.unwrap_or_default())
    });
    let mut r = Response::new(Body::from_stream(s));
    r.headers_mut()
        .insert("Content-Type", HeaderValue::from_static("application/json"));
    Ok(r)
}

fn log_options(p: &Params) -> Result<LogOptions> {
    Ok(LogOptions {
        stdout: p.bool("stdout")?,
        stderr: p.bool("stderr")?,
        since: p
            .non_empty("since")
            .filter(|s| *s != "0")
            .map(crate::timefmt::parse_timestamp)
            .transpose()?,
        until: p
            .non_empty("until")
            .filter(|s| *s != "0")
            .map(crate::timefmt::parse_timestamp)
            .transpose()?,
        timestamps: p.bool("timestamps")?,
        tail: match p.non_empty("tail") {
            None | Some("all") => None,
            Some(t) => Some(
                t.parse()
                    .map_err(|_| ApiError::bad(format!("invalid tail {t:?}")))?,
            ),
        },
    })
}

/// What a log pump sends: past entries, new ones, and whether it ends at the next exit (attach).
#[derive(Clone, Copy)]
struct Pump {
    history: bool,
    follow: bool,
    attach: bool,
    /// On a hijacked connection: let the client read the `101` answer before output
    /// arrives. Clients that read the answer through a buffer and then switch to the raw
    /// socket (docker-py's `attach(logs=True)`) lose what came in the same read.
    hijacked: bool,
}

/// How long a hijacked attach to a live container waits before its first output (see
/// [`Pump`]).
const HISTORY_SETTLE: Duration = Duration::from_millis(50);

/// Sends log entries to `out`: history (when asked), then new entries while
/// `follow` and the container lives. Returns when done or the client left.
async fn pump_logs(
    e: Arc<Engine>,
    id: String,
    o: LogOptions,
    tty: bool,
    mode: Pump,
    out: tokio::sync::mpsc::Sender<Vec<u8>>,
) {
    let Pump {
        history,
        follow,
        attach,
        hijacked,
    } = mode;
    let Ok(c) = runtime::load(&e, &id) else {
        return;
    };
    // An attach (often made before start) lasts until the next exit; logs -f until not running.
    let finished_before = c.state.finished_at;
    let path = c.log_path.clone();
    // Without history only the current file's end matters: no rotated files are looked
    // for and nothing is parsed (an attach made before start finds no file at all).
    let (past, cur) = match tokio::task::spawn_blocking({
        let (p, o) = (path.clone(), o.clone());
        move || {
            if history {
                logs::past(&p, &o)
            } else {
                logs::open_at_end(&p).map(|f| (Vec::new(), f))
            }
        }
    })
    .await
    {
        Ok(Ok(x)) => x,
        _ => (Vec::new(), None),
    };
    // An attach before start (`docker run`) has nothing to send yet; one to a live
    // container may have output at once.
    if hijacked && c.state.status.is_live() {
        tokio::time::sleep(HISTORY_SETTLE).await;
    }
    if history {
        for en in &past {
            if out.send(o.render(en, tty)).await.is_err() {
                return;
            }
        }
    }
    if !follow {
        return;
    }
    let mut cur = cur;
    let mut rx = e.rt.changed.subscribe();
    loop {
        if cur.is_none() {
            cur = std::fs::File::open(&path).ok();
        }
        if let Some(f) = cur.as_mut() {
            // A rotation makes the open file stale: reopen when the path changed.
            let rotated = match (f.metadata(), std::fs::metadata(&path)) {
                (Ok(a), Ok(b)) => {
                    use std::os::unix::fs::MetadataExt;
                    a.ino() != b.ino()
                }
                _ => false,
            };
            let new = logs::read_new(f).unwrap_or_default();
            for en in new.iter().filter(|en| o.wants(en)) {
                if out.send(o.render(en, tty)).await.is_err() {
                    return;
                }
            }
            if rotated {
                cur = std::fs::File::open(&path).ok();
                continue;
            }
        }
        let done = match runtime::load(&e, &id) {
            Err(_) => true,
            Ok(c) if attach => !c.state.status.is_live() && c.state.finished_at != finished_before,
            Ok(c) => !c.state.status.is_live(),
        };
        if done {
            // Whatever the shim wrote before the exit was recorded.
            if let Some(f) = cur.as_mut() {
                for en in logs::read_new(f)
                    .unwrap_or_default()
                    .iter()
                    .filter(|en| o.wants(en))
                {
                    if out.send(o.render(en, tty)).await.is_err() {
                        return;
                    }
                }
            }
            return;
        }
        if o.until.is_some_and(|u| crate::timefmt::now_nanos() > u) {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            _ = rx.recv() => {}
            _ = out.closed() => return,
        }
    }
}

pub async fn logs(State(e): E, Path(id): Path<String>, p: Params) -> Result<Response<Body>> {
    let c = runtime::find(&e, &id)?;
    let o = log_options(&p)?;
    if !o.stdout && !o.stderr {
        return Err(ApiError::bad("You must choose at least one stream"));
    }
    let tty = c.config.tty.unwrap_or(false);
    let follow = p.bool("follow")?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    tokio::spawn(pump_logs(
        e.clone(),
        c.id.clone(),
        o,
        tty,
        Pump {
            history: true,
            follow,
            attach: false,
            hijacked: false,
        },
        tx,
    ));
    let s = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|o| o.map(|v| Ok::<_, std::convert::Infallible>(Bytes::from(v))))
    });
    let mut r = Response::new(Body::from_stream(s));
    r.headers_mut().insert(
        "Content-Type",
        HeaderValue::from_static(hijack::content_type(tty)),
    );
    Ok(r)
}

pub async fn attach(
    State(e): E,
    Path(id): Path<String>,
    p: Params,
    mut req: Request,
) -> Result<Response<Body>> {
    let c = runtime::find(&e, &id)?;
    let tty = c.config.tty.unwrap_or(false);
    let stdin = p.bool("stdin")?;
    e.event(
        "container",
        "attach",
        &c.id,
        &[("name", &c.name), ("image", &c.image)],
    );
    let o = LogOptions {
        stdout: p.bool("stdout")?,
        stderr: p.bool("stderr")?,
        ..Default::default()
    };
    let history = p.bool("logs")?;
    let stream = p.bool("stream")?;
    let keys = hijack::detach_keys(p.str("detachKeys").unwrap_or(""))?;
    if !hijack::wants_upgrade(&req) {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
        tokio::spawn(pump_logs(
            e.clone(),
            c.id.clone(),
            o,
            tty,
            Pump {
                history,
                follow: stream,
                attach: true,
                hijacked: false,
            },
            tx,
        ));
        let s = futures_util::stream::poll_fn(move |cx| {
            rx.poll_recv(cx)
                .map(|o| o.map(|v| Ok::<_, std::convert::Infallible>(Bytes::from(v))))
        });
        let mut r = Response::new(Body::from_stream(s));
        r.headers_mut().insert(
            "Content-Type",
            HeaderValue::from_static(hijack::content_type(tty)),
        );
        return Ok(r);
    }
    let (on, resp) = hijack::upgrade(&mut req, tty);
    let stdin_once = c.config.stdin_once.unwrap_or(false);
    let open_stdin = c.config.open_stdin.unwrap_or(false);
    let fifo = crate::containers::runtime::bundle_file(&e, &c, "init-stdin");
    tokio::spawn(async move {
        let Some(io) = hijack::finish(on).await else {
            return;
        };
        let (mut rd, mut wr) = tokio::io::split(io);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
        tokio::spawn(pump_logs(
            e.clone(),
            c.id.clone(),
            o,
            tty,
            Pump {
                history,
                follow: stream,
                attach: true,
                hijacked: true,
            },
            tx,
        ));
        // With a terminal, the detach keys or the client's end of input end this attach
        // and leave the container's stdin open for the next one (as dockerd).
        let (detached_tx, detached) = tokio::sync::oneshot::channel::<()>();
        if stdin && open_stdin {
            let e2 = e.clone();
            let cid = c.id.clone();
            let mut scan = hijack::DetachScanner::new(keys);
            tokio::spawn(async move {
                // Wait until the container's stdin fifo exists (attach comes before start).
                let mut sender = None;
                for _ in 0..600 {
                    if let Ok(s) = tokio::net::unix::pipe::OpenOptions::new().open_sender(&fifo) {
                        sender = Some(s);
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                let Some(mut s) = sender else { return };
                let mut buf = vec![0u8; 32 * 1024];
                let mut pass = Vec::new();
                loop {
                    match rd.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            pass.clear();
                            let detach = if tty {
                                scan.scan(&buf[..n], &mut pass)
                            } else {
                                pass.extend_from_slice(&buf[..n]);
                                false
                            };
                            if s.write_all(&pass).await.is_err() || detach {
                                break;
                            }
                        }
                    }
                }
                if tty {
                    let _ = detached_tx.send(());
                } else if stdin_once {
                    use std::os::fd::AsRawFd;
                    crate::containers::fifo::drain(s.as_raw_fd()).await;
                    if let Some(sh) = e2.rt.shim(&cid) {
                        let _ = sh.close_stdin(&cid, "").await;
                    }
                }
            });
        }
        let mut detached = std::pin::pin!(async {
            if detached.await.is_err() {
                std::future::pending::<()>().await;
            }
        });
        loop {
            let chunk = tokio::select! {
                c = rx.recv() => c,
                _ = &mut detached => {
                    e.event("container", "detach", &c.id, &[("name", &c.name)]);
                    None
                }
            };
            let Some(chunk) = chunk else { break };
            if wr.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = wr.flush().await;
        let _ = wr.shutdown().await;
    });
    Ok(resp)
}

pub async fn resize(State(e): E, Path(id): Path<String>, p: Params) -> Result<Response<Body>> {
    let c = runtime::find(&e, &id)?;
    let (h, w) = (p.int("h")?.unwrap_or(0), p.int("w")?.unwrap_or(0));
    let sh =
        e.rt.shim(&c.id)
            .ok_or_else(|| ApiError::Conflict(format!("Container {} is not running", c.id)))?;
    sh.resize_pty(&c.id, "", w.max(0) as u32, h.max(0) as u32)
        .await?;
    Ok(axum::response::IntoResponse::into_response(StatusCode::OK))
}

/// `ps` output kosd reads at most for `top` (the host's whole process table).
const MAX_PS_OUTPUT: usize = 16 << 20;

/// `GET /containers/{id}/top?ps_args=`: the host's `ps` (default `-ef`) with only the
/// container's processes, as dockerd; from /proc when the host has no `ps`.
pub async fn top(
    State(e): E,
    Path(id): Path<String>,
    p: Params,
) -> Result<Json<serde_json::Value>> {
    let c = runtime::find(&e, &id)?;
    let sh =
        e.rt.shim(&c.id)
            .filter(|_| c.state.status.is_live())
            .ok_or_else(|| ApiError::Conflict(format!("Container {} is not running", c.id)))?;
    let pids = sh.pids(&c.id).await?;
    let args = p.non_empty("ps_args").unwrap_or("-ef");
    let out = tokio::process::Command::new("ps")
        .args(args.split_whitespace())
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output()
        .await;
    let out = match out {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound && args == "-ef" => {
            top_event(&e, &c);
            return Ok(Json(view::top(&pids)));
        }
        Err(err) => return Err(ApiError::internal("running ps", err)),
        Ok(o) => o,
    };
    if !out.status.success() {
        return Err(ApiError::Internal(format!(
            "ps: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    if out.stdout.len() > MAX_PS_OUTPUT {
        return Err(ApiError::Internal("ps printed too much".into()));
    }
    let v =
        view::parse_ps(&String::from_utf8_lossy(&out.stdout), &pids).map_err(ApiError::Internal)?;
    top_event(&e, &c);
    Ok(Json(v))
}

fn top_event(e: &Engine, c: &crate::containers::Container) {
    e.event(
        "container",
        "top",
        &c.id,
        &[("name", &c.name), ("image", &c.image)],
    );
}

pub async fn prune(State(e): E, p: Params) -> Result<Json<serde_json::Value>> {
    let f = Filters::parse(p.str("filters"), &["until", "label", "label!"])?;
    let until = f
        .get("until")
        .first()
        .map(|u| crate::timefmt::parse_timestamp(u))
        .transpose()?;
    let mut deleted = Vec::new();
    let mut space = 0i64;
    for c in crate::containers::all(&e) {
        if c.state.status.is_live() || c.state.status == Status::Removing {
            continue;
        }
        let labels = c.config.labels.clone().unwrap_or_default();
        if !f.labels_match("label", |k| labels.get(k).map(String::as_str))
            || until.is_some_and(|u| c.created > u)
        {
            continue;
        }
        if f.get("label!").iter().any(|l| match l.split_once('=') {
            Some((k, v)) => labels.get(k).map(String::as_str) == Some(v),
            None => labels.contains_key(l.as_str()),
        }) {
            continue;
        }
        space += c.size_rw();
        if runtime::remove(&e, &c.id, false, false).await.is_ok() {
            deleted.push(c.id.clone());
        }
    }
    e.event(
        "container",
        "prune",
        "",
        &[("reclaimed", &space.to_string())],
    );
    Ok(Json(
        json!({"ContainersDeleted": if deleted.is_empty() { serde_json::Value::Null } else { json!(deleted) }, "SpaceReclaimed": space}),
    ))
}

pub async fn stats(State(e): E, Path(id): Path<String>, p: Params) -> Result<Response<Body>> {
    let c = runtime::find(&e, &id)?;
    let stream = match p.str("stream") {
        None | Some("") => true,
        _ => p.bool("stream")?,
    };
    let one_shot = p.bool("one-shot")?;
    let ncpu = e.host.ncpu;
    let mem_total = e.host.mem_total;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(4);
    tokio::spawn(async move {
        let mut prev: Option<serde_json::Value> = None;
        loop {
            let Ok(c) = runtime::load(&e, &c.id) else {
                return;
            };
            let cur = if c.state.status.is_live() {
                crate::containers::stats::sample(
                    &c,
                    &crate::containers::cgroups_path(&e, &c),
                    ncpu,
                    mem_total,
                )
            } else {
                None
            };
            let mut v = cur
                .clone()
                .unwrap_or_else(|| crate::containers::stats::empty(&c));
            if let Some(pv) = &prev {
                v["preread"] = pv["read"].clone();
                v["precpu_stats"] = pv["cpu_stats"].clone();
            } else if cur.is_some() && !stream && !one_shot {
                // A single sample needs a previous one to compute CPU use: take it first.
                prev = cur;
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            } else {
                v["preread"] = json!(crate::timefmt::ZERO_TIME);
                v["precpu_stats"] = json!({"cpu_usage": {"total_usage": 0}, "throttling_data": {}});
            }
            let mut line = v.to_string().into_bytes();
            line.push(b'\n');
            if tx.send(line).await.is_err() || !stream || cur.is_none() {
                return;
            }
            prev = cur;
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let s = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|o| o.map(|v| Ok::<_, std::convert::Infallible>(Bytes::from(v))))
    });
    let mut r = Response::new(Body::from_stream(s));
    r.headers_mut()
        .insert("Content-Type", HeaderValue::from_static("application/json"));
    Ok(r)
}

/// Mounts the rootfs of a container that has none mounted (a stopped one), as a start
/// would (the same shared layer); whether it did, so the caller unmounts after.
async fn mount_rootfs_if_stopped(
    e: &Arc<Engine>,
    c: &crate::containers::Container,
) -> Result<bool> {
    if kos_image::snapshot::overlay::is_mounted(&c.dir.join("rootfs")) {
        return Ok(false);
    }
    let store = e.store.clone();
    let n = crate::containers::image_use::store_name(&store, c);
    let (i, d) = (c.id.clone(), c.dir.clone());
    tokio::task::spawn_blocking(move || {
        store.prepare_rootfs_with_mount_points(
            &n,
            &i,
            &d,
            kos_image::RootfsStrategy::Overlay,
            kos_image::RootfsOptions::default(),
            &runtime::shared_layer_entries(),
        )
    })
    .await??;
    Ok(true)
}

/// Runs `f` with the container's rootfs mounted (mounting it for a stopped
/// container and unmounting after), under the container lock.
async fn with_rootfs<T: Send + 'static>(
    e: &Arc<Engine>,
    id: &str,
    f: impl FnOnce(std::path::PathBuf) -> Result<T> + Send + 'static,
) -> Result<T> {
    let lock = e.rt.lock(id);
    let _g = lock.lock().await;
    let c = runtime::load(e, id)?;
    let rootfs = c.dir.join("rootfs");
    let mounted_here = mount_rootfs_if_stopped(e, &c).await?;
    let r2 = rootfs.clone();
    let r = tokio::task::spawn_blocking(move || f(r2)).await;
    if mounted_here {
        let _ = kos_image::snapshot::overlay::unmount(&rootfs);
    }
    r?
}

pub async fn archive_head(
    State(e): E,
    Path(id): Path<String>,
    p: Params,
) -> Result<Response<Body>> {
    let c = runtime::find(&e, &id)?;
    let path = p
        .non_empty("path")
        .ok_or_else(|| ApiError::bad("path is required"))?
        .to_string();
    let stat = with_rootfs(&e, &c.id, move |root| {
        let r = crate::containers::files::resolve(&root, &path, false)?;
        crate::containers::files::path_stat(&r, &path)
    })
    .await?;
    let mut r = Response::new(Body::empty());
    r.headers_mut().insert(
        "X-Docker-Container-Path-Stat",
        HeaderValue::from_str(&stat).map_err(|err| ApiError::internal("stat header", err))?,
    );
    Ok(r)
}

async fn tar_response(
    e: &Arc<Engine>,
    id: &str,
    path: String,
    stat: bool,
) -> Result<Response<Body>> {
    let lock = e.rt.lock(id);
    let guard = lock.clone().lock_owned().await;
    let c = runtime::load(e, id)?;
    let rootfs = c.dir.join("rootfs");
    let mounted_here = mount_rootfs_if_stopped(e, &c).await?;
    let unmount = move || {
        if mounted_here {
            let _ = kos_image::snapshot::overlay::unmount(&rootfs);
        }
    };
    let root2 = c.dir.join("rootfs");
    let prepared = (|| -> Result<_> {
        let header = if stat {
            let r = crate::containers::files::resolve(&root2, &path, false)?;
            Some(crate::containers::files::path_stat(&r, &path)?)
        } else {
            None
        };
        let (mut cmd, held) = crate::containers::files::tar_command(&root2, &path)?;
        let child = cmd
            .spawn()
            .map_err(|err| ApiError::internal("running tar", err))?;
        Ok((header, child, held))
    })();
    let (header, mut child, held) = match prepared {
        Ok(x) => x,
        Err(err) => {
            unmount();
            return Err(err);
        }
    };
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| ApiError::Internal("tar has no stdout".into()))?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8);
    tokio::spawn(async move {
        let _held = held;
        let _guard = guard;
        let mut out = stdout;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match out.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).await.is_err() {
                        let _ = child.kill().await;
                        break;
                    }
                }
            }
        }
        let _ = child.wait().await;
        unmount();
    });
    let s = futures_util::stream::poll_fn(move |cx| {
        rx.poll_recv(cx)
            .map(|o| o.map(|v| Ok::<_, std::convert::Infallible>(Bytes::from(v))))
    });
    let mut r = Response::new(Body::from_stream(s));
    r.headers_mut().insert(
        "Content-Type",
        HeaderValue::from_static("application/x-tar"),
    );
    if let Some(h) = header {
        r.headers_mut().insert(
            "X-Docker-Container-Path-Stat",
            HeaderValue::from_str(&h).map_err(|err| ApiError::internal("stat header", err))?,
        );
    }
    Ok(r)
}

pub async fn archive_get(State(e): E, Path(id): Path<String>, p: Params) -> Result<Response<Body>> {
    let c = runtime::find(&e, &id)?;
    let path = p
        .non_empty("path")
        .ok_or_else(|| ApiError::bad("path is required"))?
        .to_string();
    tar_response(&e, &c.id, path, true).await
}

pub async fn export(State(e): E, Path(id): Path<String>) -> Result<Response<Body>> {
    let c = runtime::find(&e, &id)?;
    let r = tar_response(&e, &c.id, "/".into(), false).await?;
    e.event(
        "container",
        "export",
        &c.id,
        &[("name", &c.name), ("image", &c.image)],
    );
    Ok(r)
}

/// `docker cp` uploads are bounded like image loads.
const MAX_ARCHIVE: u64 = 16 << 30;

pub async fn archive_put(
    State(e): E,
    Path(id): Path<String>,
    p: Params,
    req: Request,
) -> Result<Response<Body>> {
    let c = runtime::find(&e, &id)?;
    let path = p
        .non_empty("path")
        .ok_or_else(|| ApiError::bad("path is required"))?
        .to_string();
    if c.host_config.readonly_rootfs.unwrap_or(false) {
        return Err(ApiError::Conflict(
            "container rootfs is marked read-only".into(),
        ));
    }
    // Spool the upload (bounded), then extract it inside the root.
    let spool = e.config.data_root.join("tmp");
    std::fs::create_dir_all(&spool).map_err(|err| ApiError::internal("creating tmp dir", err))?;
    let sp = spool.join(format!("cp-{}", crate::engine::random_id()?));
    let mut f = tokio::fs::File::options()
        .create_new(true)
        .read(true)
        .write(true)
        .open(&sp)
        .await
        .map_err(|err| ApiError::internal("spooling archive", err))?;
    let _ = tokio::fs::remove_file(&sp).await;
    let mut body = req.into_body().into_data_stream();
    let mut total = 0u64;
    use futures_util::StreamExt;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|err| ApiError::bad(format!("reading request body: {err}")))?;
        total += chunk.len() as u64;
        if total > MAX_ARCHIVE {
            return Err(ApiError::bad(format!(
                "archive is larger than {MAX_ARCHIVE} bytes"
            )));
        }
        f.write_all(&chunk)
            .await
            .map_err(|err| ApiError::internal("spooling archive", err))?;
    }
    let mut f = f.into_std().await;
    with_rootfs(&e, &c.id, move |root| {
        use std::io::Seek;
        f.seek(std::io::SeekFrom::Start(0))
            .map_err(|err| ApiError::internal("rewinding archive", err))?;
        crate::containers::files::extract(&root, &path, std::io::BufReader::new(f))
    })
    .await?;
    Ok(axum::response::IntoResponse::into_response(StatusCode::OK))
}

pub async fn changes(State(e): E, Path(id): Path<String>) -> Result<Json<serde_json::Value>> {
    let c = runtime::find(&e, &id)?;
    let img = e
        .store
        .image(&crate::containers::image_use::store_name(&e.store, &c))?;
    let store = e.store.clone();
    let upper = c.dir.join("upper");
    let v = tokio::task::spawn_blocking(move || -> Result<Vec<serde_json::Value>> {
        // A path existed before when any layer has it; check the snapshots top down.
        let chain = img.chain_ids();
        let mut all =
            crate::containers::files::changes(&upper, std::path::Path::new("/nonexistent"));
        for ch in all.iter_mut() {
            if ch["Kind"] == 1 {
                let p = ch["Path"]
                    .as_str()
                    .unwrap_or("")
                    .trim_start_matches('/')
                    .to_string();
                if chain
                    .iter()
                    .any(|cid| std::fs::symlink_metadata(store.snapshot_dir(cid).join(&p)).is_ok())
                {
                    ch["Kind"] = json!(0);
                }
            }
        }
        Ok(all)
    })
    .await??;
    Ok(Json(if v.is_empty() {
        serde_json::Value::Null
    } else {
        json!(v)
    }))
}

pub async fn update(
    State(e): E,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<serde_json::Value>,
) -> Result<Json<serde_json::Value>> {
    let body = body.ok_or_else(|| ApiError::bad("update body is required"))?;
    let w = runtime::update(&e, &id, body).await?;
    Ok(Json(json!({"Warnings": w})))
}
