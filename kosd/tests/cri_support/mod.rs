//! What the tests driving kosd's CRI socket share: the socket once it accepts, a gRPC
//! channel over it, and an image spec.

#![allow(dead_code)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::ImageSpec;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tower::service_fn;

use crate::common::Kosd;

pub async fn channel(sock: PathBuf) -> Channel {
    Endpoint::try_from("http://[::]:50051")
        .expect("endpoint")
        .connect_with_connector(service_fn(move |_: Uri| {
            let p = sock.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(p).await?)) }
        }))
        .await
        .expect("connect to kosd's CRI socket")
}

/// kosd's CRI socket, once it accepts (the CRI starts beside the Docker API).
pub fn cri_socket(k: &Kosd) -> PathBuf {
    let sock = k.exec_root().join("cri.sock");
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::os::unix::net::UnixStream::connect(&sock).is_err() {
        assert!(
            Instant::now() < deadline,
            "no CRI socket at {}: {}",
            sock.display(),
            k.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    sock
}

pub fn spec(image: &str) -> Option<ImageSpec> {
    Some(ImageSpec {
        image: image.into(),
        ..Default::default()
    })
}
