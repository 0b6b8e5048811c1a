//! Exec, attach and port forwarding over a SPDY connection.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};

use super::frame::header;
use super::{start, Conn, NewStream, Session};
use crate::core::Core;
use crate::streaming::logtail::Follower;
use crate::streaming::portforward;
use crate::streaming::session::{self, Out, Wants};
use crate::streaming::status;
use crate::streaming::websocket::parse_resize;
use crate::streaming::StreamRequest;

/// How long the client may take to open the streams it asked for (kubelet's default).
const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the client may take to close the connection once everything is sent.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

/// Resize messages are JSON objects one after another on the resize stream.
fn resize_pump(mut data: mpsc::Receiver<Bytes>, tx: mpsc::Sender<(u16, u16)>) {
    tokio::spawn(async move {
        let mut buf: Vec<u8> = Vec::new();
        while let Some(b) = data.recv().await {
            buf.extend_from_slice(&b);
            loop {
                let mut it =
                    serde_json::Deserializer::from_slice(&buf).into_iter::<serde_json::Value>();
                match it.next() {
                    Some(Ok(v)) => {
                        let used = it.byte_offset();
                        if let Some(size) = parse_resize(v.to_string().as_bytes()) {
                            let _ = tx.try_send(size);
                        }
                        buf.drain(..used);
                    }
                    Some(Err(e)) if e.is_eof() => break,
                    None => break,
                    Some(Err(_)) => {
                        buf.clear();
                        break;
                    }
                }
            }
            if buf.len() > 64 * 1024 {
                buf.clear();
            }
        }
    });
}

fn stdin_pump(mut data: mpsc::Receiver<Bytes>, tx: mpsc::Sender<Bytes>) {
    tokio::spawn(async move {
        while let Some(b) = data.recv().await {
            if tx.send(b).await.is_err() {
                return;
            }
        }
        // The client's FIN on stdin: dropping `tx` is the end of input.
    });
}

/// Ends a connection: our side of every stream closed, then the client's close awaited.
async fn finish(s: Session, ids: &[u32]) {
    for id in ids {
        s.conn.fin(*id).await;
    }
    let Session {
        conn,
        mut reader,
        writer,
        ..
    } = s;
    let _ = tokio::time::timeout(CLOSE_WAIT, &mut reader).await;
    reader.abort();
    drop(conn);
    let _ = tokio::time::timeout(CLOSE_WAIT, writer).await;
}

/// Serves one exec or attach; `version` is the negotiated channel protocol (1..4).
pub async fn serve_stream<S>(
    io: S,
    version: u8,
    req: StreamRequest,
    log: Option<Follower>,
    core: Arc<Core>,
) where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (w, cmd) = match &req {
        StreamRequest::Exec(r) => (Wants::of_exec(r), r.cmd.clone()),
        StreamRequest::Attach(r) => (Wants::of_attach(r), Vec::new()),
        StreamRequest::PortForward(_) => return,
    };
    let mut s = match start(io) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "starting a SPDY session failed");
            return;
        }
    };
    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(16);
    let (resize_tx, resize_rx) = mpsc::channel(4);
    let mut stdin_tx = Some(stdin_tx);
    let mut ids: HashMap<String, u32> = HashMap::new();
    let complete = |ids: &HashMap<String, u32>| {
        ids.contains_key("error")
            && (!w.stdin || ids.contains_key("stdin"))
            && (!w.stdout || ids.contains_key("stdout"))
            && (!w.stderr || ids.contains_key("stderr"))
    };
    let mut take = move |ns: NewStream, ids: &mut HashMap<String, u32>| {
        let kind = header(&ns.headers, "streamtype").unwrap_or("").to_string();
        match kind.as_str() {
            "stdin" => {
                if let Some(tx) = stdin_tx.take() {
                    stdin_pump(ns.data, tx);
                }
            }
            "resize" => resize_pump(ns.data, resize_tx.clone()),
            _ => {}
        }
        ids.insert(kind, ns.id);
    };
    let waited = tokio::time::timeout(STREAM_CREATION_TIMEOUT, async {
        while !complete(&ids) {
            match s.streams.recv().await {
                Some(ns) => take(ns, &mut ids),
                None => return false,
            }
        }
        true
    })
    .await;
    if waited != Ok(true) {
        tracing::debug!("the client did not open the streams it asked for");
        s.reader.abort();
        return;
    }
    // Streams that come later (resize) are still taken.
    let mut streams = std::mem::replace(&mut s.streams, mpsc::channel(1).1);
    let late = tokio::spawn(async move {
        let mut ids = HashMap::new();
        while let Some(ns) = streams.recv().await {
            take(ns, &mut ids);
        }
    });
    let (out_tx, mut out_rx) = mpsc::channel(32);
    let (gone_tx, gone_rx) = oneshot::channel::<()>();
    let sess = session::Session {
        stdin: stdin_rx,
        resize: resize_rx,
        out: out_tx,
        gone: gone_rx,
        log,
    };
    let run = session::run(core, req, sess);
    let conn = s.conn.clone();
    let (stdout_id, stderr_id) = (ids.get("stdout").copied(), ids.get("stderr").copied());
    let write = async {
        while let Some((tag, data)) = out_rx.recv().await {
            let id = if tag == Out::Stdout {
                stdout_id
            } else {
                stderr_id
            };
            if let Some(id) = id {
                conn.data(id, data).await;
            }
        }
    };
    let outcome = {
        let both = async { tokio::join!(run, write) };
        tokio::pin!(both);
        tokio::select! {
            (o, ()) = &mut both => o,
            _ = &mut s.reader => {
                // The client went away: the session ends (an exec is killed), unsent.
                drop(gone_tx);
                let _ = both.await;
                late.abort();
                return;
            }
        }
    };
    late.abort();
    let error_id = ids["error"];
    let msg = if version >= 4 {
        Some(status::for_outcome(&outcome, &cmd).to_string())
    } else {
        status::text_for_outcome(&outcome)
    };
    if let Some(m) = msg {
        conn.data(error_id, Bytes::from(m)).await;
    }
    let all: Vec<u32> = ids.values().copied().collect();
    finish(s, &all).await;
}

/// Serves port forwarding: each (error, data) stream pair the client opens, with the same
/// `requestID`, is one connection to the pair's `port` inside the pod.
pub async fn serve_port_forward<S>(io: S, sandbox: String, netns: Option<PathBuf>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let mut s = match start(io) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "starting a SPDY session failed");
            return;
        }
    };
    struct Half {
        error: Option<u32>,
        data: Option<(u32, mpsc::Receiver<Bytes>)>,
        port: String,
    }
    let mut pending: HashMap<String, Half> = HashMap::new();
    let mut tasks = Vec::new();
    while let Some(ns) = s.streams.recv().await {
        let kind = header(&ns.headers, "streamtype").unwrap_or("").to_string();
        let port = header(&ns.headers, "port").unwrap_or("").to_string();
        // Old clients send no requestID: the data stream then follows its error stream.
        let rid = match header(&ns.headers, "requestid") {
            Some(r) => r.to_string(),
            None if kind == "data" => ns.id.saturating_sub(2).to_string(),
            None => ns.id.to_string(),
        };
        if !pending.contains_key(&rid) && pending.len() >= super::MAX_STREAMS {
            // Half pairs that never complete are not kept without bound.
            s.conn.fin(ns.id).await;
            continue;
        }
        let h = pending.entry(rid.clone()).or_insert(Half {
            error: None,
            data: None,
            port: port.clone(),
        });
        match kind.as_str() {
            "error" => h.error = Some(ns.id),
            "data" => h.data = Some((ns.id, ns.data)),
            _ => {
                // Not a port-forward stream: closed at once.
                s.conn.fin(ns.id).await;
                continue;
            }
        }
        if h.error.is_some() && h.data.is_some() {
            let Some(Half {
                error: Some(error),
                data: Some((data, inbox)),
                port,
            }) = pending.remove(&rid)
            else {
                continue;
            };
            tasks.push(tokio::spawn(forward(
                s.conn.clone(),
                netns.clone(),
                sandbox.clone(),
                port,
                error,
                data,
                inbox,
            )));
        }
        tasks.retain(|t| !t.is_finished());
    }
    for t in tasks {
        t.abort();
    }
    finish(s, &[]).await;
}

async fn forward(
    conn: Conn,
    netns: Option<PathBuf>,
    sandbox: String,
    port: String,
    error: u32,
    data: u32,
    inbox: mpsc::Receiver<Bytes>,
) {
    let fail = |m: String| {
        Bytes::from(format!(
            "error forwarding port {port} to pod {sandbox}: {m}"
        ))
    };
    let p = match port.parse::<u16>() {
        Ok(p) if p > 0 => p,
        _ => {
            conn.data(error, fail(format!("invalid port {port:?}")))
                .await;
            conn.fin(error).await;
            conn.fin(data).await;
            return;
        }
    };
    let tcp = match portforward::connect(netns, p).await {
        Ok(t) => t,
        Err(e) => {
            conn.data(error, fail(tonic::Status::from(e).message().to_string()))
                .await;
            conn.fin(error).await;
            conn.fin(data).await;
            return;
        }
    };
    let c = &conn;
    let (failed, up) = portforward::pipe(tcp, inbox, move |b| c.data(data, b)).await;
    if let Some(e) = failed {
        conn.data(error, fail(e.to_string())).await;
    }
    conn.fin(data).await;
    conn.fin(error).await;
    up.abort();
}
