//! The WebSocket transport: Kubernetes' channel protocols. Each message is one channel
//! byte and data (binary), or an ASCII channel digit and base64 data (text, the
//! `base64.` protocols). Exec/attach: 0 stdin, 1 stdout, 2 stderr, 3 error (a `Status`
//! from v4 on), 4 resize (`{"Width":..,"Height":..}`); v5 adds 255 "close channel".
//! Port forwarding: channels 2i (data) and 2i+1 (error) for the i-th port, each starting
//! with the port as two little-endian bytes.

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::logtail::Follower;
use super::session::{self, Out, Session, Wants};
use super::status;
use super::StreamRequest;
use crate::core::Core;

pub const V5: &str = "v5.channel.k8s.io";
pub const V4: &str = "v4.channel.k8s.io";
pub const V4_BASE64: &str = "v4.base64.channel.k8s.io";
pub const V1: &str = "channel.k8s.io";
pub const V1_BASE64: &str = "base64.channel.k8s.io";
/// What kubectl's port-forward names its protocol; served as the binary channel protocol.
pub const PORT_FORWARD: &str = "portforward.k8s.io";
/// SPDY carried in binary WebSocket messages (kubectl's port-forward since 1.30).
pub const SPDY_TUNNEL: &str = "SPDY/3.1+portforward.k8s.io";

const STDIN: u8 = 0;
const STDOUT: u8 = 1;
const STDERR: u8 = 2;
const ERROR: u8 = 3;
const RESIZE: u8 = 4;
const CLOSE: u8 = 255;

/// The negotiated channel protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channels {
    pub base64: bool,
    /// 1 (plain channel.k8s.io), 4 or 5.
    pub version: u8,
}

fn known_exec(p: &str) -> Option<Channels> {
    Some(match p {
        V5 => Channels {
            base64: false,
            version: 5,
        },
        V4 => Channels {
            base64: false,
            version: 4,
        },
        V4_BASE64 => Channels {
            base64: true,
            version: 4,
        },
        V1 | "" => Channels {
            base64: false,
            version: 1,
        },
        V1_BASE64 => Channels {
            base64: true,
            version: 1,
        },
        _ => return None,
    })
}

fn known_port_forward(p: &str) -> Option<Channels> {
    Some(match p {
        V4 | PORT_FORWARD | "" => Channels {
            base64: false,
            version: 4,
        },
        V4_BASE64 => Channels {
            base64: true,
            version: 4,
        },
        _ => return None,
    })
}

/// The first protocol the client offers that is served (the client's order decides, as
/// in Kubernetes' own server); no offer means the plain binary protocol.
pub fn negotiate(offered: &[String], port_forward: bool) -> Option<(String, Channels)> {
    let known = if port_forward {
        known_port_forward
    } else {
        known_exec
    };
    if offered.is_empty() {
        return known("").map(|c| (String::new(), c));
    }
    offered
        .iter()
        .find_map(|p| known(p).map(|c| (p.clone(), c)))
}

fn encode(c: Channels, channel: u8, data: &[u8]) -> Message {
    if c.base64 {
        let mut s = String::with_capacity(1 + data.len() * 4 / 3 + 4);
        s.push((b'0' + channel) as char);
        s.push_str(&base64::engine::general_purpose::STANDARD.encode(data));
        Message::text(s)
    } else {
        let mut v = Vec::with_capacity(data.len() + 1);
        v.push(channel);
        v.extend_from_slice(data);
        Message::binary(v)
    }
}

enum Incoming {
    Frame(u8, Bytes),
    Skip,
    End,
}

fn decode(c: Channels, m: Message) -> Incoming {
    match m {
        Message::Binary(b) if !c.base64 && !b.is_empty() => Incoming::Frame(b[0], b.slice(1..)),
        Message::Text(t) if c.base64 && !t.is_empty() => {
            let t = t.as_bytes();
            let ch = t[0].wrapping_sub(b'0');
            match base64::engine::general_purpose::STANDARD.decode(&t[1..]) {
                Ok(d) => Incoming::Frame(ch, Bytes::from(d)),
                Err(_) => Incoming::Skip,
            }
        }
        Message::Close(_) => Incoming::End,
        _ => Incoming::Skip,
    }
}

/// `{"Width":W,"Height":H}` from the resize channel.
pub fn parse_resize(data: &[u8]) -> Option<(u16, u16)> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Size {
        width: u16,
        height: u16,
    }
    let s: Size = serde_json::from_slice(data).ok()?;
    Some((s.width, s.height))
}

async fn close<S>(sink: &mut futures_util::stream::SplitSink<WebSocketStream<S>, Message>)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        })))
        .await;
    let _ = sink.flush().await;
}

/// Serves one exec or attach on an upgraded connection.
pub async fn serve_stream<S>(
    ws: WebSocketStream<S>,
    c: Channels,
    req: StreamRequest,
    log: Option<Follower>,
    core: Arc<Core>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (w, cmd) = match &req {
        StreamRequest::Exec(r) => (Wants::of_exec(r), r.cmd.clone()),
        StreamRequest::Attach(r) => (Wants::of_attach(r), Vec::new()),
        StreamRequest::PortForward(_) => return,
    };
    let (mut sink, mut stream) = ws.split();
    let (stdin_tx, stdin_rx) = mpsc::channel::<Bytes>(16);
    let (resize_tx, resize_rx) = mpsc::channel(4);
    let (out_tx, mut out_rx) = mpsc::channel(32);
    let (gone_tx, gone_rx) = oneshot::channel::<()>();
    let mut reader = tokio::spawn(async move {
        let _gone = gone_tx;
        let mut stdin = w.stdin.then_some(stdin_tx);
        while let Some(Ok(m)) = stream.next().await {
            match decode(c, m) {
                Incoming::End => break,
                Incoming::Skip => {}
                Incoming::Frame(STDIN, d) => {
                    if let Some(tx) = &stdin {
                        if tx.send(d).await.is_err() {
                            stdin = None;
                        }
                    }
                }
                Incoming::Frame(RESIZE, d) => {
                    if let Some(size) = parse_resize(&d) {
                        let _ = resize_tx.try_send(size);
                    }
                }
                Incoming::Frame(CLOSE, d) if c.version >= 5 => {
                    if d.first() == Some(&STDIN) {
                        stdin = None;
                    }
                }
                Incoming::Frame(..) => {}
            }
        }
    });
    let s = Session {
        stdin: stdin_rx,
        resize: resize_rx,
        out: out_tx,
        gone: gone_rx,
        log,
    };
    let run = session::run(core, req, s);
    let write = async {
        // An empty first message on the lowest output channel tells the client the
        // streams are ready.
        let first = if w.stdout {
            STDOUT
        } else if w.stderr {
            STDERR
        } else {
            ERROR
        };
        let mut ok = sink.send(encode(c, first, &[])).await.is_ok();
        while let Some((tag, data)) = out_rx.recv().await {
            if ok {
                let ch = if tag == Out::Stdout { STDOUT } else { STDERR };
                ok = sink.send(encode(c, ch, &data)).await.is_ok();
            }
        }
        ok
    };
    let (outcome, ok) = tokio::join!(run, write);
    if ok {
        if c.version >= 4 {
            let st = status::for_outcome(&outcome, &cmd).to_string();
            let _ = sink.send(encode(c, ERROR, st.as_bytes())).await;
        } else if let Some(t) = status::text_for_outcome(&outcome) {
            let _ = sink.send(encode(c, ERROR, t.as_bytes())).await;
        }
        close(&mut sink).await;
        // The client answers the close; reading it first means unread input never turns
        // the end of the connection into a reset that could drop the status.
        let _ = tokio::time::timeout(CLOSE_WAIT, &mut reader).await;
    }
    reader.abort();
}

/// How long the client may take to answer a close.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Port forwarding over SPDY tunnelled in WebSocket binary messages: the messages are the
/// SPDY connection's bytes, served as a plain SPDY/3.1 port-forward connection.
pub async fn serve_spdy_tunnel<S>(ws: WebSocketStream<S>, sandbox: String, netns: Option<PathBuf>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (inner, outer) = tokio::io::duplex(64 * 1024);
    let (mut from_spdy, mut to_spdy) = tokio::io::split(outer);
    let (mut sink, mut stream) = ws.split();
    let inbound = async move {
        while let Some(Ok(m)) = stream.next().await {
            match m {
                Message::Binary(d) if to_spdy.write_all(&d).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = to_spdy.shutdown().await;
    };
    let outbound = async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            match from_spdy.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink.send(Message::binary(buf[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            }
        }
        close(&mut sink).await;
    };
    let serve = super::spdy::streams::serve_port_forward(inner, sandbox, netns);
    let out = tokio::spawn(outbound);
    tokio::join!(serve, inbound);
    let _ = tokio::time::timeout(CLOSE_WAIT, out).await;
}

/// Most ports one port-forward connection may name (two channels each, in one byte).
pub const MAX_PORTS: usize = 64;

/// Pipes one port: data channel `data_ch`, its errors on `data_ch + 1`.
pub(crate) async fn forward_port(
    netns: Option<PathBuf>,
    sandbox: String,
    port: u16,
    inbox: mpsc::Receiver<Bytes>,
    out: mpsc::Sender<(u8, Bytes)>,
    data_ch: u8,
) {
    let err_ch = data_ch + 1;
    let fail = |e: String| {
        Bytes::from(format!(
            "error forwarding port {port} to pod {sandbox}: {e}"
        ))
    };
    let tcp = match super::portforward::connect(netns, port).await {
        Ok(t) => t,
        Err(e) => {
            let _ = out
                .send((err_ch, fail(tonic::Status::from(e).message().into())))
                .await;
            return;
        }
    };
    let o = &out;
    let (failed, up) = super::portforward::pipe(tcp, inbox, move |b| async move {
        o.send((data_ch, b)).await.is_ok()
    })
    .await;
    if let Some(e) = failed {
        let _ = out.send((err_ch, fail(e.to_string()))).await;
    }
    up.abort();
}

/// Serves port forwarding for `ports` of a pod on an upgraded connection.
pub async fn serve_port_forward<S>(
    ws: WebSocketStream<S>,
    c: Channels,
    sandbox: String,
    netns: Option<PathBuf>,
    ports: Vec<u16>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sink, mut stream) = ws.split();
    // Each channel starts with its port, before any data.
    for (i, p) in ports.iter().enumerate() {
        for ch in [2 * i as u8, 2 * i as u8 + 1] {
            if sink.send(encode(c, ch, &p.to_le_bytes())).await.is_err() {
                return;
            }
        }
    }
    let (out_tx, mut out_rx) = mpsc::channel::<(u8, Bytes)>(32);
    let mut inboxes = Vec::new();
    let mut tasks = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        let (tx, rx) = mpsc::channel(16);
        inboxes.push(tx);
        tasks.push(tokio::spawn(forward_port(
            netns.clone(),
            sandbox.clone(),
            *p,
            rx,
            out_tx.clone(),
            2 * i as u8,
        )));
    }
    drop(out_tx);
    let mut reader = tokio::spawn(async move {
        while let Some(Ok(m)) = stream.next().await {
            match decode(c, m) {
                Incoming::End => break,
                Incoming::Frame(ch, d) if ch % 2 == 0 => {
                    if let Some(tx) = inboxes.get((ch / 2) as usize) {
                        let _ = tx.send(d).await;
                    }
                }
                _ => {}
            }
        }
    });
    let write = async {
        while let Some((ch, d)) = out_rx.recv().await {
            if sink.send(encode(c, ch, &d)).await.is_err() {
                return false;
            }
        }
        true
    };
    let open = tokio::select! {
        ok = write => ok,
        _ = &mut reader => false,
    };
    for t in &tasks {
        t.abort();
    }
    if open {
        close(&mut sink).await;
        let _ = tokio::time::timeout(CLOSE_WAIT, &mut reader).await;
    }
    reader.abort();
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn protocols_negotiate_in_the_clients_order() {
        let o = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let (p, c) = negotiate(&o(&[V5, V4]), false).unwrap();
        assert_eq!((p.as_str(), c.version), (V5, 5));
        let (p, c) = negotiate(&o(&["x", V4_BASE64]), false).unwrap();
        assert_eq!(p, V4_BASE64);
        assert!(c.base64);
        assert!(negotiate(&o(&["nope"]), false).is_none());
        assert_eq!(negotiate(&[], false).unwrap().1.version, 1);
        assert!(negotiate(&o(&[V5]), true).is_none());
        assert_eq!(
            negotiate(&o(&[PORT_FORWARD]), true).unwrap().0,
            PORT_FORWARD
        );
    }

    #[test]
    fn frames_round_trip_in_both_codecs() {
        for base64 in [false, true] {
            let c = Channels { base64, version: 4 };
            match decode(c, encode(c, 2, b"hi\x00")) {
                Incoming::Frame(2, d) => assert_eq!(&d[..], b"hi\x00"),
                _ => panic!("frame lost"),
            }
        }
        assert_eq!(parse_resize(br#"{"Width":80,"Height":24}"#), Some((80, 24)));
        assert_eq!(parse_resize(b"{}"), None);
    }
}
