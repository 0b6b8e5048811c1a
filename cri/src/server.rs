//! The gRPC server on a unix socket.

use std::path::Path;

use std::sync::Arc;

use k8s_cri::v1::image_service_server::ImageServiceServer;
use k8s_cri::v1::runtime_service_server::RuntimeServiceServer;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tracing::info;

use crate::config::CriConfig;
use crate::error::{Error, Result};
use crate::images::{mirrors::Mirrors, Images};

/// Largest gRPC message accepted (kubelet's own limit is 16 MiB).
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// Serves the CRI on `socket_path` until the process ends.
pub async fn serve(socket_path: &Path, config: CriConfig) -> Result<()> {
    serve_with_shutdown(socket_path, config, std::future::pending()).await
}

/// Serves the CRI on `socket_path` until `shutdown` completes; removes the socket after.
pub async fn serve_with_shutdown(
    socket_path: &Path,
    config: CriConfig,
    shutdown: impl std::future::Future<Output = ()> + Send,
) -> Result<()> {
    let images = Images {
        store: config.store.clone(),
        registry: kos_image::Registry::new(config.registry.clone()),
        mirrors: Mirrors::new(&config.registry_config_dir),
        in_use: config.image_in_use.clone(),
    };
    let (stream_address, token_ttl) = (config.stream_address, config.stream_token_ttl);
    let core = Arc::new(crate::core::Core::open(config, images.clone())?);
    let (streaming, stream_server) =
        crate::streaming::bind(stream_address, token_ttl, core.clone()).await?;
    let runtime = crate::runtime::Runtime { core, streaming };
    runtime.recover();
    if let Some(dir) = socket_path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating socket directory", dir, e))?;
    }
    // Placed with its mode (a stale socket of a dead server replaced), never seen without it.
    let listener = kos_statefile::bind_unix(socket_path, 0o660)
        .map_err(|e| Error::io(e.step, socket_path, e.source))
        .and_then(|l| {
            l.set_nonblocking(true)
                .and_then(|()| UnixListener::from_std(l))
                .map_err(|e| Error::io("registering the listener", socket_path, e))
        })?;
    info!(socket = %socket_path.display(), "CRI server listening");
    // The streaming server lives as long as the gRPC server.
    let stream_task = tokio::spawn(stream_server);
    let result = tonic::transport::Server::builder()
        .add_service(
            RuntimeServiceServer::new(runtime)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        )
        .add_service(
            ImageServiceServer::new(images)
                .max_decoding_message_size(MAX_MESSAGE)
                .max_encoding_message_size(MAX_MESSAGE),
        )
        .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await;
    stream_task.abort();
    let _ = std::fs::remove_file(socket_path);
    result.map_err(|e| Error::Internal {
        step: "serving the CRI",
        message: e.to_string(),
    })
}
