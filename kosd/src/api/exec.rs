//! Exec endpoints.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderValue, Response, StatusCode};
use axum::Json;
use bytes::Bytes;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::hijack;
use super::params::{parse_json, Params, MAX_JSON_BODY};
use crate::containers::exec::{self, ExecConfig};
use crate::containers::logs::frame;
use crate::engine::Engine;
use crate::error::{ApiError, Result};

pub async fn create(
    State(e): State<Arc<Engine>>,
    Path(id): Path<String>,
    super::params::JsonBody(body): super::params::JsonBody<ExecConfig>,
) -> Result<Response<Body>> {
    let cfg = body.ok_or_else(|| ApiError::bad("exec config is required"))?;
    let xid = exec::create(&e, &id, cfg)?;
    let mut r = axum::response::IntoResponse::into_response(Json(serde_json::json!({"Id": xid})));
    *r.status_mut() = StatusCode::CREATED;
    Ok(r)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StartBody {
    #[serde(default)]
    detach: bool,
    #[serde(default)]
    tty: bool,
}

pub async fn start(
    State(e): State<Arc<Engine>>,
    Path(id): Path<String>,
    mut req: Request,
) -> Result<Response<Body>> {
    let upgrade = hijack::wants_upgrade(&req);
    let (parts, body) = std::mem::replace(&mut req, Request::new(Body::empty())).into_parts();
    let bytes = axum::body::to_bytes(body, MAX_JSON_BODY)
        .await
        .map_err(|_| ApiError::bad("request body too large"))?;
    let sb: StartBody = parse_json(&bytes)?.unwrap_or_default();
    let mut req = Request::from_parts(parts, Body::empty());
    if sb.detach {
        let mut running = exec::start(&e, &id).await?;
        tokio::spawn(async move {
            // Keep the fifos read so the process never blocks on a full pipe.
            let mut exit = running.exit.clone();
            let mut buf = [0u8; 8192];
            if let Some(mut so) = running.stdout.take() {
                while exec::read_chunk(&mut so, &mut exit, &mut buf)
                    .await
                    .unwrap_or(0)
                    > 0
                {}
            }
            drop(running);
        });
        return Ok(Response::new(Body::empty()));
    }
    if !upgrade {
        let running = exec::start(&e, &id).await?;
        let tty = running.tty || sb.tty;
        let (mut rx, _) = output(running, tty, None, e.clone());
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
    // As dockerd: check, answer 101, and only then start the process, so no
    // output can arrive in the same read as the response headers.
    exec::check_startable(&e, &id)?;
    let rec = e.execs.get(&id)?;
    let tty = rec.config.tty || sb.tty;
    // With a terminal, the detach keys end the stream and leave the process running.
    let keys = tty
        .then(|| hijack::detach_keys(&rec.config.detach_keys))
        .transpose()?;
    let (on, resp) = hijack::upgrade(&mut req, tty);
    tokio::spawn(async move {
        let Some(io) = hijack::finish(on).await else {
            return;
        };
        let (rd, mut wr) = tokio::io::split(io);
        match exec::start(&e, &id).await {
            Err(err) => {
                // After the 101 the stream is the only way to tell the client; as
                // dockerd, the message is a stdout frame unless there is a terminal.
                let text = format!("{err}\r\n");
                let msg = if tty {
                    text.into_bytes()
                } else {
                    frame(1, text.as_bytes())
                };
                let _ = wr.write_all(&msg).await;
            }
            Ok(running) => {
                let cid = running.container_id.clone();
                let (mut rx, detached) = output(running, tty, Some((rd, keys)), e.clone());
                let mut detached = std::pin::pin!(async {
                    match detached.await {
                        Ok(keys) => keys,
                        Err(_) => std::future::pending::<bool>().await,
                    }
                });
                let mut ended_early = None;
                loop {
                    let chunk = tokio::select! {
                        c = rx.recv() => c,
                        keys = &mut detached => {
                            ended_early = Some(keys);
                            None
                        }
                    };
                    let Some(chunk) = chunk else { break };
                    if wr.write_all(&chunk).await.is_err() {
                        ended_early = Some(false);
                        break;
                    }
                }
                if ended_early.is_some() {
                    // The process keeps running: its output is still read (and dropped),
                    // so it never blocks on a full terminal or pipe.
                    tokio::spawn(async move { while rx.recv().await.is_some() {} });
                }
                if ended_early == Some(true) {
                    let (name, image) = e
                        .db()
                        .get::<crate::containers::Container>(crate::state::Table::Containers, &cid)
                        .ok()
                        .flatten()
                        .map(|c| (c.name, c.image))
                        .unwrap_or_default();
                    e.event(
                        "container",
                        "exec_detach",
                        &cid,
                        &[("name", &name), ("image", &image), ("execID", &id)],
                    );
                }
            }
        }
        let _ = wr.flush().await;
        let _ = wr.shutdown().await;
    });
    Ok(resp)
}

/// The client's side of a hijacked exec: its input, and the detach keys watched for in it
/// (with a terminal only).
type Input = (tokio::io::ReadHalf<hijack::Upgraded>, Option<Vec<u8>>);

/// Moves a started exec's output (framed unless tty) into a channel, and the
/// client's input into its stdin; the channel closes once the exit code is known.
/// The second receiver fires, with a terminal, when the client typed the detach keys
/// (true) or its input ended (false).
fn output(
    mut running: exec::Running,
    tty: bool,
    input: Option<Input>,
    e: Arc<Engine>,
) -> (
    tokio::sync::mpsc::Receiver<Vec<u8>>,
    tokio::sync::oneshot::Receiver<bool>,
) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    let (detached_tx, detached_rx) = tokio::sync::oneshot::channel::<bool>();
    let exit = running.exit.clone();
    let streams = [(running.stdout.take(), 1u8), (running.stderr.take(), 2u8)];
    for (pipe, n) in streams {
        let Some(mut pipe) = pipe else { continue };
        let (tx, mut ex) = (tx.clone(), exit.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                let got = exec::read_chunk(&mut pipe, &mut ex, &mut buf)
                    .await
                    .unwrap_or(0);
                if got == 0 {
                    break;
                }
                let data = if tty {
                    buf[..got].to_vec()
                } else {
                    frame(n, &buf[..got])
                };
                if tx.send(data).await.is_err() {
                    break;
                }
            }
        });
    }
    if let (Some((mut rd, keys)), Some(mut s)) = (input, running.stdin.take()) {
        let (cid, xid) = (running.container_id.clone(), running.exec_id.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            let mut scan = keys.map(hijack::DetachScanner::new);
            let mut pass = Vec::new();
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        pass.clear();
                        let detach = match scan.as_mut() {
                            Some(sc) => sc.scan(&buf[..n], &mut pass),
                            None => {
                                pass.extend_from_slice(&buf[..n]);
                                false
                            }
                        };
                        if s.write_all(&pass).await.is_err() {
                            break;
                        }
                        if detach {
                            // As dockerd: the terminal's stdin stays open for the process.
                            let _ = detached_tx.send(true);
                            return;
                        }
                    }
                }
            }
            if scan.is_some() {
                // As dockerd: with a terminal, the end of the client's input ends this
                // stream but not the process, whose terminal stays open.
                let _ = detached_tx.send(false);
                return;
            }
            use std::os::fd::AsRawFd;
            crate::containers::fifo::drain(s.as_raw_fd()).await;
            drop(s);
            // The client half-closed: the process sees EOF on its stdin.
            if let Some(sh) = e.rt.shim(&cid) {
                let _ = sh.close_stdin(&cid, &xid).await;
            }
        });
    }
    // The stream ends only once the exit code is recorded, so the client's
    // exec inspect right after EOF sees it.
    let mut ex = exit;
    tokio::spawn(async move {
        let _keep = running;
        while ex.borrow().is_none() {
            if ex.changed().await.is_err() {
                break;
            }
        }
        drop(tx);
    });
    (rx, detached_rx)
}

pub async fn inspect(
    State(e): State<Arc<Engine>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>> {
    Ok(Json(exec::inspect(&e, &id)?))
}

pub async fn resize(
    State(e): State<Arc<Engine>>,
    Path(id): Path<String>,
    p: Params,
) -> Result<Response<Body>> {
    let r = e.execs.get(&id)?;
    let (h, w) = (p.int("h")?.unwrap_or(0), p.int("w")?.unwrap_or(0));
    let sh = e.rt.shim(&r.container_id).ok_or_else(|| {
        ApiError::Conflict(format!("Container {} is not running", r.container_id))
    })?;
    sh.resize_pty(&r.container_id, &id, w.max(0) as u32, h.max(0) as u32)
        .await?;
    Ok(axum::response::IntoResponse::into_response(StatusCode::OK))
}
