//! Connections to a port inside a pod: made from a short-lived thread that joins the pod's
//! network namespace (setns acts on the calling thread only, and pooled threads must never
//! be left in a pod's namespace), then used from anywhere.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use nix::sched::{setns, CloneFlags};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::core::Core;
use crate::error::{Error, Result};
use crate::state::SandboxState;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The pod's network namespace (`None`: the host's, for a host-network pod).
pub fn pod_netns(core: &Core, sandbox_id: &str) -> Result<Option<PathBuf>> {
    let sb = core.sandbox(sandbox_id)?;
    if sb.state != SandboxState::Ready {
        return Err(Error::FailedPrecondition(format!(
            "pod sandbox {} is not ready",
            sb.id
        )));
    }
    Ok(sb.netns)
}

fn connect_here(port: u16) -> std::io::Result<TcpStream> {
    // localhost as the pod sees it: IPv4 first, then IPv6.
    let v4 = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    match TcpStream::connect_timeout(&v4, CONNECT_TIMEOUT) {
        Ok(s) => Ok(s),
        Err(e4) => {
            let v6 = SocketAddr::from((Ipv6Addr::LOCALHOST, port));
            TcpStream::connect_timeout(&v6, CONNECT_TIMEOUT).map_err(|_| e4)
        }
    }
}

/// Connects to `port` on the pod's loopback.
pub async fn connect(netns: Option<PathBuf>, port: u16) -> Result<tokio::net::TcpStream> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let ns = netns.clone();
    std::thread::Builder::new()
        .name("kos-cri-portfwd".into())
        .spawn(move || {
            let r = (|| -> Result<TcpStream> {
                if let Some(p) = &ns {
                    let fd = kos_network::netns::open(p).map_err(|e| Error::Network {
                        step: "opening the pod's network namespace".into(),
                        source: e,
                    })?;
                    setns(&fd, CloneFlags::CLONE_NEWNET)
                        .map_err(|e| Error::sys("entering the pod's network namespace", e))?;
                }
                let s = connect_here(port).map_err(|e| Error::Internal {
                    step: "connecting inside the pod",
                    message: format!("127.0.0.1:{port}: {e}"),
                })?;
                s.set_nonblocking(true)
                    .map_err(|e| Error::io("setting non-blocking", "port-forward socket", e))?;
                Ok(s)
            })();
            let _ = tx.send(r);
        })
        .map_err(|e| Error::io("spawning a thread for", "port forwarding", e))?;
    let s = rx.await.map_err(|_| Error::Internal {
        step: "connecting inside the pod",
        message: "the connecting thread ended without an answer".into(),
    })??;
    tokio::net::TcpStream::from_std(s)
        .map_err(|e| Error::io("registering", "port-forward socket", e))
}

/// Pipes a connected pod port both ways: what arrives on `inbox` is written to the port,
/// which is half-closed when the inbox ends; what the port sends goes to `deliver` until
/// the port closes or `deliver` says the client is gone. Returns the port's read error, if
/// that ended it, and the writing task, which the caller aborts once its own streams are
/// closed.
pub async fn pipe<F, D>(
    tcp: tokio::net::TcpStream,
    mut inbox: mpsc::Receiver<Bytes>,
    mut deliver: F,
) -> (Option<std::io::Error>, JoinHandle<()>)
where
    F: FnMut(Bytes) -> D,
    D: std::future::Future<Output = bool>,
{
    let (mut r, mut w) = tcp.into_split();
    let up = tokio::spawn(async move {
        while let Some(b) = inbox.recv().await {
            if w.write_all(&b).await.is_err() {
                return;
            }
        }
        let _ = w.shutdown().await;
    });
    let mut buf = vec![0u8; 32 * 1024];
    let failed = loop {
        match r.read(&mut buf).await {
            Ok(0) => break None,
            Ok(n) => {
                if !deliver(Bytes::copy_from_slice(&buf[..n])).await {
                    break None;
                }
            }
            Err(e) => break Some(e),
        }
    };
    (failed, up)
}
