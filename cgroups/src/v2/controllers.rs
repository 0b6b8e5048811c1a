//! Enabling v2 controllers down the tree: a controller's files appear in a cgroup only when
//! every ancestor lists it in cgroup.subtree_control.

use std::path::Path;

use crate::error::{Error, Result};
use crate::fsutil::{self, Writer};

/// Controllers the root offers.
pub(crate) fn available(root: &Path) -> Result<Vec<String>> {
    Ok(fsutil::read_string(&root.join("cgroup.controllers"))?
        .split_whitespace()
        .map(str::to_string)
        .collect())
}

/// Makes `wanted` available in `dir` by adding them to cgroup.subtree_control of the root
/// and every ancestor between. Returns an error naming `field` when one cannot be enabled.
pub(crate) fn enable(root: &Path, dir: &Path, wanted: &[&str], field: &str) -> Result<()> {
    let Ok(rel) = dir.strip_prefix(root) else {
        return Err(Error::Layout(format!(
            "{} is not under {}",
            dir.display(),
            root.display()
        )));
    };
    let mut cur = root.to_path_buf();
    let mut w = Writer::new(false);
    for comp in rel.components() {
        let have = fsutil::read_string(&cur.join("cgroup.subtree_control"))?;
        let missing: Vec<String> = wanted
            .iter()
            .filter(|c| !have.split_whitespace().any(|h| h == **c))
            .map(|c| format!("+{c}"))
            .collect();
        if !missing.is_empty() {
            let offered = fsutil::read_string(&cur.join("cgroup.controllers"))?;
            if let Some(c) = wanted
                .iter()
                .find(|c| !offered.split_whitespace().any(|o| o == **c))
            {
                return Err(Error::unsupported(
                    field,
                    format!("the {c} controller is not available in {}", cur.display()),
                ));
            }
            w.write_only(
                field,
                &cur.join("cgroup.subtree_control"),
                &missing.join(" "),
            )?;
        }
        cur.push(comp);
    }
    Ok(())
}

/// Enables every controller the root offers down to `dir`, as a freshly made container
/// cgroup needs: per level one read of cgroup.subtree_control and one write. A controller
/// the kernel refuses somewhere (a parent with processes of its own, a realtime task
/// blocking cpu) is logged and skipped: a limit that needs it fails later with an error
/// naming its field.
pub(crate) fn enable_all(root: &Path, dir: &Path) {
    let Ok(rel) = dir.strip_prefix(root) else {
        return;
    };
    let mut offered = match available(root) {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list cgroup v2 controllers");
            return;
        }
    };
    let mut cur = root.to_path_buf();
    for comp in rel.components() {
        let sc = cur.join("cgroup.subtree_control");
        let have = match fsutil::read_string(&sc) {
            Ok(h) => h,
            Err(e) => {
                tracing::warn!(error = %e, "cannot read cgroup.subtree_control");
                return;
            }
        };
        let missing: Vec<String> = offered
            .iter()
            .filter(|c| !have.split_whitespace().any(|h| h == c.as_str()))
            .map(|c| format!("+{c}"))
            .collect();
        if !missing.is_empty() && fsutil::write_raw(&sc, &missing.join(" ")).is_err() {
            for m in &missing {
                if let Err(e) = fsutil::write_raw(&sc, m) {
                    tracing::debug!(path = %sc.display(), controller = %m, error = %e, "cgroup v2 controller not enabled");
                    offered.retain(|c| *c != m[1..]);
                }
            }
        }
        cur.push(comp);
    }
}
