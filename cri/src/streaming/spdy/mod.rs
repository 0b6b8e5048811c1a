//! The SPDY/3.1 transport (`Upgrade: SPDY/3.1`), what kubelet's proxy and kubectl's older
//! clients speak: the client opens one stream per purpose, named by its `streamType`
//! header (exec/attach: error, stdin, stdout, stderr, resize; port forwarding: an error
//! and a data stream per connection, paired by `requestID`, with the `port`). The
//! protocol version is negotiated with `X-Stream-Protocol-Version`.

pub mod dictionary;
pub mod frame;
pub mod streams;

use std::collections::HashMap;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use frame::{Decoder, Encoder, Frame, Headers};

pub const V4: &str = "v4.channel.k8s.io";
pub const V3: &str = "v3.channel.k8s.io";
pub const V2: &str = "v2.channel.k8s.io";
pub const V1: &str = "channel.k8s.io";
pub const PORT_FORWARD: &str = "portforward.k8s.io";

/// The first protocol the client offers that is served; its version number (1..4, or 0
/// for port forwarding).
pub fn negotiate(offered: &[String], port_forward: bool) -> Option<(String, u8)> {
    offered.iter().find_map(|p| {
        let v = match (p.as_str(), port_forward) {
            (PORT_FORWARD, true) => 0,
            (V4, false) => 4,
            (V3, false) => 3,
            (V2, false) => 2,
            (V1, false) => 1,
            _ => return None,
        };
        Some((p.clone(), v))
    })
}

/// A stream the client opened.
pub struct NewStream {
    pub id: u32,
    pub headers: Headers,
    /// Its data; ends when the client half-closes (FIN) or resets it.
    pub data: mpsc::Receiver<Bytes>,
}

/// Sends frames on the connection (the writer task encodes them in order).
#[derive(Clone)]
pub struct Conn {
    out: mpsc::Sender<Frame>,
}

impl Conn {
    pub async fn data(&self, id: u32, data: Bytes) -> bool {
        self.out
            .send(Frame::Data {
                id,
                fin: false,
                data,
            })
            .await
            .is_ok()
    }

    /// Half-closes our side of a stream.
    pub async fn fin(&self, id: u32) {
        let _ = self
            .out
            .send(Frame::Data {
                id,
                fin: true,
                data: Bytes::new(),
            })
            .await;
    }
}

/// A running connection: frames out through `conn`, new streams in through `streams`.
pub struct Session {
    pub conn: Conn,
    pub streams: mpsc::Receiver<NewStream>,
    pub reader: JoinHandle<()>,
    pub writer: JoinHandle<()>,
}

/// Most messages of one stream's data queued for its consumer (the reader waits beyond).
const INBOX: usize = 64;
/// Most streams a client may hold open on one connection.
pub const MAX_STREAMS: usize = 256;

async fn read_loop<S: AsyncRead>(
    mut rd: ReadHalf<S>,
    out: mpsc::Sender<Frame>,
    streams: mpsc::Sender<NewStream>,
) {
    let mut dec = Decoder::new();
    let mut inboxes: HashMap<u32, mpsc::Sender<Bytes>> = HashMap::new();
    loop {
        let f = match dec.read(&mut rd).await {
            Ok(f) => f,
            Err(e) => {
                tracing::debug!(error = %e, "SPDY connection ended");
                return;
            }
        };
        match f {
            Frame::SynStream { id, fin, headers } => {
                // Client streams have odd ids; anything else, or one too many, is refused.
                if id % 2 == 0 || inboxes.contains_key(&id) || inboxes.len() >= MAX_STREAMS {
                    let _ = out
                        .send(Frame::RstStream {
                            id,
                            status: frame::RST_PROTOCOL_ERROR,
                        })
                        .await;
                    continue;
                }
                let _ = out
                    .send(Frame::SynReply {
                        id,
                        fin: false,
                        headers: Vec::new(),
                    })
                    .await;
                let (tx, rx) = mpsc::channel(INBOX);
                if !fin {
                    inboxes.insert(id, tx);
                }
                if streams
                    .send(NewStream {
                        id,
                        headers,
                        data: rx,
                    })
                    .await
                    .is_err()
                {
                    let _ = out
                        .send(Frame::RstStream {
                            id,
                            status: frame::RST_REFUSED_STREAM,
                        })
                        .await;
                }
            }
            Frame::Data { id, fin, data } => {
                let len = data.len() as u32;
                if !data.is_empty() {
                    if let Some(tx) = inboxes.get(&id) {
                        if tx.send(data).await.is_err() {
                            inboxes.remove(&id);
                        }
                    }
                    // Peers that keep SPDY/3.1's flow control get their window back.
                    let _ = out.send(Frame::WindowUpdate { id, delta: len }).await;
                    let _ = out.send(Frame::WindowUpdate { id: 0, delta: len }).await;
                }
                if fin {
                    inboxes.remove(&id);
                }
            }
            Frame::RstStream { id, .. } => {
                inboxes.remove(&id);
            }
            Frame::Ping(id) => {
                let _ = out.send(Frame::Ping(id)).await;
            }
            Frame::GoAway { .. } => return,
            Frame::SynReply { .. }
            | Frame::Settings
            | Frame::Headers { .. }
            | Frame::WindowUpdate { .. }
            | Frame::Unknown => {}
        }
    }
}

/// Starts the reader and writer of an upgraded connection.
pub fn start<S>(io: S) -> Result<Session, frame::FrameError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, mut wr) = tokio::io::split(io);
    let mut enc = Encoder::new()?;
    let (out_tx, mut out_rx) = mpsc::channel::<Frame>(64);
    let (streams_tx, streams_rx) = mpsc::channel(16);
    let writer = tokio::spawn(async move {
        while let Some(f) = out_rx.recv().await {
            let bytes = match enc.encode(&f) {
                Ok(b) => b,
                Err(e) => {
                    tracing::debug!(error = %e, "encoding a SPDY frame failed");
                    return;
                }
            };
            if wr.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = wr.shutdown().await;
    });
    let reader = tokio::spawn(read_loop(rd, out_tx.clone(), streams_tx));
    Ok(Session {
        conn: Conn { out: out_tx },
        streams: streams_rx,
        reader,
        writer,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn protocols_negotiate_in_the_clients_order() {
        let o = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(negotiate(&o(&[V4, V3]), false), Some((V4.into(), 4)));
        assert_eq!(negotiate(&o(&["x", V2]), false), Some((V2.into(), 2)));
        assert_eq!(negotiate(&o(&[V4]), true), None);
        assert_eq!(
            negotiate(&o(&[PORT_FORWARD]), true),
            Some((PORT_FORWARD.into(), 0))
        );
        assert_eq!(negotiate(&[], false), None);
    }
}
