//! Hijacked connections for attach and exec: `101 UPGRADED` with
//! `Upgrade: tcp`, then raw bytes both ways (half-close aware).

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, Response, StatusCode};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::error::ApiError;

pub type Upgraded = TokioIo<hyper::upgrade::Upgraded>;

/// Whether the client asked to take over the connection.
pub fn wants_upgrade(req: &Request) -> bool {
    req.headers()
        .get("Upgrade")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("tcp"))
}

pub fn content_type(tty: bool) -> &'static str {
    if tty {
        "application/vnd.docker.raw-stream"
    } else {
        "application/vnd.docker.multiplexed-stream"
    }
}

/// Takes the upgrade handle; returns it with the 101 response to send.
pub fn upgrade(req: &mut Request, tty: bool) -> (OnUpgrade, Response<Body>) {
    let on = hyper::upgrade::on(req);
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert("Connection", HeaderValue::from_static("Upgrade"));
    h.insert("Upgrade", HeaderValue::from_static("tcp"));
    h.insert("Content-Type", HeaderValue::from_static(content_type(tty)));
    (on, r)
}

pub async fn finish(on: OnUpgrade) -> Option<Upgraded> {
    match on.await {
        Ok(u) => Some(TokioIo::new(u)),
        Err(e) => {
            tracing::debug!(error = %e, "upgrade failed");
            None
        }
    }
}

/// Docker's default detach sequence: ctrl-p, ctrl-q.
pub const DEFAULT_DETACH_KEYS: [u8; 2] = [0x10, 0x11];

/// Parses a detach sequence as Docker writes it (`ctrl-p,ctrl-q`, `a,ctrl-@`);
/// empty means the default.
pub fn detach_keys(spec: &str) -> Result<Vec<u8>, ApiError> {
    if spec.is_empty() {
        return Ok(DEFAULT_DETACH_KEYS.to_vec());
    }
    let bad = || ApiError::bad(format!("Invalid detach keys ({spec}) provided"));
    let mut out = Vec::new();
    for key in spec.split(',') {
        if key.len() == 1 {
            out.push(key.as_bytes()[0]);
            continue;
        }
        let key = key.to_ascii_lowercase();
        let c = match key.strip_prefix("ctrl-").map(str::as_bytes) {
            Some([c]) => *c,
            _ => return Err(bad()),
        };
        out.push(match c {
            b'a'..=b'z' => c - b'a' + 1,
            b'@' => 0,
            b'[' => 27,
            b'\\' => 28,
            b']' => 29,
            b'^' => 30,
            b'_' => 31,
            _ => return Err(bad()),
        });
    }
    Ok(out)
}

/// Watches a terminal's input for the detach sequence. Bytes that may start the sequence
/// are held until the next byte tells; the sequence itself is never passed on.
pub struct DetachScanner {
    keys: Vec<u8>,
    matched: usize,
}

impl DetachScanner {
    pub fn new(keys: Vec<u8>) -> DetachScanner {
        DetachScanner { keys, matched: 0 }
    }

    /// Appends to `out` what may go to the process; true once the sequence is complete
    /// (what follows it in `data` is dropped: the client has detached).
    pub fn scan(&mut self, data: &[u8], out: &mut Vec<u8>) -> bool {
        if self.keys.is_empty() {
            out.extend_from_slice(data);
            return false;
        }
        for &b in data {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    self.matched = 0;
                    return true;
                }
                continue;
            }
            // Not the sequence after all: what was held goes through.
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = usize::from(b == self.keys[0]);
            if self.matched == 0 {
                out.push(b);
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_detach_keys() {
        assert_eq!(detach_keys("").expect("keys"), vec![0x10, 0x11]);
        assert_eq!(
            detach_keys("ctrl-p,ctrl-q").expect("keys"),
            vec![0x10, 0x11]
        );
        assert_eq!(
            detach_keys("a,CTRL-@,ctrl-[,ctrl-_").expect("keys"),
            vec![b'a', 0, 27, 31]
        );
        for bad in ["ctrl-", "ctrl-1", "alt-x", "ab", ",", "ctrl-p,"] {
            assert!(detach_keys(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scanner_passes_input_and_stops_at_the_sequence() {
        let mut s = DetachScanner::new(vec![0x10, 0x11]);
        let mut out = Vec::new();
        assert!(!s.scan(b"ab\x10", &mut out));
        assert_eq!(out, b"ab");
        // A held ctrl-p followed by something else goes through.
        assert!(!s.scan(b"c\x10\x10", &mut out));
        assert_eq!(out, b"ab\x10c\x10");
        assert!(s.scan(b"\x11after", &mut out));
        assert_eq!(out, b"ab\x10c\x10");
    }
}
