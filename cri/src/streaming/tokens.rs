//! One-time tokens: each names one registered request, is served at most once and
//! expires unused after [`TOKEN_TTL`] (kubelet's own streaming server does the same).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::StreamRequest;
use crate::error::{Error, Result};

/// How long a URL returned by Exec/Attach/PortForward stays valid.
pub const TOKEN_TTL: Duration = Duration::from_secs(60);
/// Pending requests at most; more is refused rather than grown without bound.
pub const MAX_PENDING: usize = 1000;

pub struct Tokens {
    ttl: Duration,
    pending: Mutex<HashMap<String, (StreamRequest, Instant)>>,
}

impl Default for Tokens {
    fn default() -> Self {
        Self::new()
    }
}

impl Tokens {
    pub fn new() -> Tokens {
        Tokens::with_ttl(TOKEN_TTL)
    }

    pub fn with_ttl(ttl: Duration) -> Tokens {
        Tokens {
            ttl,
            pending: Mutex::new(HashMap::new()),
        }
    }

    pub fn insert(&self, req: StreamRequest) -> Result<String> {
        // 128 random bits, URL-safe as hex.
        let token = crate::core::new_id()?[..32].to_string();
        let now = Instant::now();
        let mut g = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        g.retain(|_, (_, at)| now.duration_since(*at) < self.ttl);
        if g.len() >= MAX_PENDING {
            return Err(Error::Internal {
                step: "registering a streaming request",
                message: format!("{MAX_PENDING} requests are already waiting for their client"),
            });
        }
        g.insert(token.clone(), (req, now));
        Ok(token)
    }

    /// The request of `token`, removed; `None` when unknown, used or expired.
    pub fn take(&self, token: &str) -> Option<StreamRequest> {
        let mut g = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let (req, at) = g.remove(token)?;
        (at.elapsed() < self.ttl).then_some(req)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use k8s_cri::v1 as cri;

    fn req() -> StreamRequest {
        StreamRequest::Exec(cri::ExecRequest::default())
    }

    #[test]
    fn a_token_serves_once() {
        let t = Tokens::new();
        let a = t.insert(req()).unwrap();
        let b = t.insert(req()).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(t.take(&a).is_some());
        assert!(t.take(&a).is_none());
        assert!(t.take("nope").is_none());
        assert!(t.take(&b).is_some());
    }

    #[test]
    fn an_expired_token_is_gone() {
        let t = Tokens::with_ttl(Duration::from_millis(1));
        let a = t.insert(req()).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(t.take(&a).is_none());
    }
}
