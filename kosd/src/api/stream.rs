//! Streamed response bodies: newline-delimited JSON fed from a channel.

use axum::body::Body;
use axum::http::{HeaderValue, Response};
use bytes::Bytes;
use tokio::sync::mpsc;

/// A sender of JSON messages for a streamed response.
pub type JsonTx = mpsc::Sender<serde_json::Value>;

/// A response whose body is every value sent on the returned sender, one per line.
pub fn json_lines(buffer: usize) -> (JsonTx, Response<Body>) {
    let (tx, rx) = mpsc::channel::<serde_json::Value>(buffer);
    let s = futures_util::stream::unfold(rx, |mut rx| async move {
        let v = rx.recv().await?;
        let mut line = v.to_string().into_bytes();
        line.push(b'\n');
        Some((Ok::<_, std::convert::Infallible>(Bytes::from(line)), rx))
    });
    let mut r = Response::new(Body::from_stream(s));
    r.headers_mut()
        .insert("Content-Type", HeaderValue::from_static("application/json"));
    (tx, r)
}

/// Docker's in-stream error message.
pub fn error_message(msg: &str) -> serde_json::Value {
    serde_json::json!({"errorDetail": {"message": msg}, "error": msg})
}
