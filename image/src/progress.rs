//! Progress of pulls and pushes, reported through a callback.

use std::sync::Arc;

use crate::digest::Digest;

/// One step of a transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// A manifest or index was resolved.
    Resolved { reference: String, digest: Digest },
    /// A blob transfer starts (`offset` > 0 when a partial download resumes).
    Started {
        digest: Digest,
        total: u64,
        offset: u64,
    },
    /// `done` of `total` bytes transferred.
    Advanced {
        digest: Digest,
        done: u64,
        total: u64,
    },
    /// The blob (and for layers, its snapshot) is complete.
    Finished { digest: Digest },
    /// The blob was already there.
    Skipped { digest: Digest },
}

/// Receives progress; must be cheap, it runs on the transfer path.
pub type ProgressFn = Arc<dyn Fn(Progress) + Send + Sync>;

pub(crate) fn report(p: &Option<ProgressFn>, ev: Progress) {
    if let Some(f) = p {
        f(ev);
    }
}
