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
    let mut running = exec::start(&e, &id).await?;
    let tty = running.tty || sb.tty;
    if sb.detach {
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
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::OK;
        return Ok(r);
    }
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    let mut stdin = running.stdin.take();
    let mut so = running.stdout.take();
    let mut se = running.stderr.take();
    let exit = running.exit.clone();
    let (cid, xid) = (running.container_id.clone(), running.exec_id.clone());
    let tx2 = tx.clone();
    let mut ex1 = exit.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        if let Some(s) = so.as_mut() {
            loop {
                let n = exec::read_chunk(s, &mut ex1, &mut buf).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                let data = if tty {
                    buf[..n].to_vec()
                } else {
                    frame(1, &buf[..n])
                };
                if tx2.send(data).await.is_err() {
                    break;
                }
            }
        }
    });
    let mut ex2 = exit.clone();
    let tx3 = tx.clone();
    tokio::spawn(async move {
        let mut buf = vec![0u8; 32 * 1024];
        if let Some(s) = se.as_mut() {
            loop {
                let n = exec::read_chunk(s, &mut ex2, &mut buf).await.unwrap_or(0);
                if n == 0 {
                    break;
                }
                if tx3.send(frame(2, &buf[..n])).await.is_err() {
                    break;
                }
            }
        }
    });
    // The stream ends only once the exit code is recorded, so the client's
    // exec inspect right after EOF sees it.
    let mut ex3 = exit.clone();
    tokio::spawn(async move {
        while ex3.borrow().is_none() {
            if ex3.changed().await.is_err() {
                break;
            }
        }
        drop(tx);
    });
    let keep = running;
    if !upgrade {
        drop(stdin);
        let s = futures_util::stream::poll_fn(move |cx| {
            let _ = &keep;
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
    tokio::spawn(async move {
        let _keep = keep;
        let Some(io) = hijack::finish(on).await else {
            return;
        };
        let (mut rd, mut wr) = tokio::io::split(io);
        let e2 = e.clone();
        if let Some(mut s) = stdin.take() {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 32 * 1024];
                loop {
                    match rd.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                }
                use std::os::fd::AsRawFd;
                crate::containers::fifo::drain(s.as_raw_fd()).await;
                drop(s);
                // The client half-closed: the process sees EOF on its stdin.
                if let Some(sh) = e2.rt.shim(&cid) {
                    let _ = sh.close_stdin(&cid, &xid).await;
                }
            });
        }
        while let Some(chunk) = rx.recv().await {
            if wr.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = wr.flush().await;
        let _ = wr.shutdown().await;
    });
    Ok(resp)
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
    sh.resize(&r.container_id, &id, w.max(0) as u32, h.max(0) as u32)
        .await?;
    Ok(axum::response::IntoResponse::into_response(StatusCode::OK))
}
