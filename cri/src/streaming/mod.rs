//! The streaming server of Exec, Attach and PortForward, as kubelet expects of a runtime:
//! the CRI call only registers the request and answers with a URL on this server holding a
//! one-time token; the client (kubelet, crictl, kubectl through the API server) then
//! upgrades an HTTP request on that URL to WebSocket (`v5.channel.k8s.io` and older
//! channel protocols, port forwarding's data/error channel pairs) or SPDY/3.1 (streams
//! named by their `streamType` header).
//!
//! - [`tokens`]: the one-time tokens and what each stands for.
//! - [`http`]: the HTTP/1.1 server, routing and protocol negotiation.
//! - [`websocket`], [`spdy`]: the two transports.
//! - [`session`]: exec and attach against the container's shim, transport-agnostic.
//! - [`portforward`]: connections into the pod's network namespace.
//! - [`status`]: the Kubernetes `Status` object the error channel carries.

pub mod http;
pub mod logtail;
pub mod portforward;
pub mod session;
pub mod spdy;
pub mod status;
pub mod tokens;
pub mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;

use k8s_cri::v1 as cri;
use tokio::net::TcpListener;

use crate::core::Core;
use crate::error::{Error, Result};
use tokens::Tokens;

/// Where the streaming server listens unless its host says otherwise: loopback, a port
/// the kernel picks (kubelet proxies to whatever URL the CRI call returns).
pub const DEFAULT_ADDRESS: &str = "127.0.0.1:0";

/// What a token stands for.
#[derive(Debug, Clone)]
pub enum StreamRequest {
    Exec(cri::ExecRequest),
    Attach(cri::AttachRequest),
    PortForward(cri::PortForwardRequest),
}

impl StreamRequest {
    fn path(&self) -> &'static str {
        match self {
            StreamRequest::Exec(_) => "exec",
            StreamRequest::Attach(_) => "attach",
            StreamRequest::PortForward(_) => "portforward",
        }
    }
}

/// The registry of pending requests and the URL they are served on.
pub struct Streaming {
    base_url: String,
    tokens: Tokens,
}

impl Streaming {
    /// Registers `req` and returns the URL that serves it once.
    pub fn url_for(&self, req: StreamRequest) -> Result<String> {
        let path = req.path();
        let token = self.tokens.insert(req)?;
        Ok(format!("{}/{path}/{token}", self.base_url))
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }
}

/// Binds the streaming server's listener; the returned future serves it.
pub async fn bind(
    address: SocketAddr,
    token_ttl: std::time::Duration,
    core: Arc<Core>,
) -> Result<(Arc<Streaming>, impl std::future::Future<Output = ()>)> {
    let listener = TcpListener::bind(address)
        .await
        .map_err(|e| Error::io("binding the streaming server to", address.to_string(), e))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::io("reading the address of", address.to_string(), e))?;
    let streaming = Arc::new(Streaming {
        base_url: format!("http://{local}"),
        tokens: Tokens::with_ttl(token_ttl),
    });
    tracing::info!(address = %local, "CRI streaming server listening");
    let served = http::serve(listener, streaming.clone(), core);
    Ok((streaming, served))
}
