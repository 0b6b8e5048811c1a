//! `state` and `list`: what a container is doing now.

use std::path::Path;

use crate::container::Container;
use crate::error::Result;
use crate::store::{list_ids, read_saved, Saved, Status};

// Where other commands (events) still name them here.
pub use crate::container::{require_not_stopped, status_of};

pub fn state(root: &Path, id: &str) -> Result<(Saved, Status)> {
    let c = Container::load(root, id)?;
    let status = c.status();
    Ok((c.saved, status))
}

/// Every container under root. Unreadable entries are skipped: one broken
/// container must not hide the others.
pub fn list(root: &Path) -> Result<Vec<(Saved, Status)>> {
    let mut out = Vec::new();
    for id in list_ids(root)? {
        if let Ok(saved) = read_saved(&root.join(&id), &id) {
            let status = status_of(&saved);
            out.push((saved, status));
        }
    }
    Ok(out)
}
