//! kaim grants as a run flag: a container labelled `kos.kaim.policy=POLICY` (a policy name
//! in kaim's policy directory, or a path) gets its own kaim socket at /run/kos/kaim.sock,
//! where it speaks the Engine API judged by that policy. kosd asks kaim for the grant over
//! kaim's control socket (`--kaim-control`) each time the container starts, and binds the
//! grant's directory (not the socket itself, so a kaim restart that binds it again is seen)
//! into the container read-only.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};

use crate::error::{ApiError, Result};

/// The label naming the policy.
pub const LABEL: &str = "kos.kaim.policy";
/// Where the grant's directory appears in the container.
pub const MOUNT_POINT: &str = "/run/kos";
pub const SOCKET_NAME: &str = "kaim.sock";
/// Grants kosd made are named `kos-<container id>`.
const PREFIX: &str = "kos-";
const TIMEOUT: Duration = Duration::from_secs(10);
/// Largest control reply read.
const MAX_REPLY: u64 = 1 << 20;

/// kaim's control API over its unix socket: one request per connection.
pub struct Kaim {
    pub control: PathBuf,
}

impl Kaim {
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value)> {
        let fail = |e: std::io::Error| {
            ApiError::internal(
                &format!("kaim control {} ({method} {path})", self.control.display()),
                e,
            )
        };
        let mut s = UnixStream::connect(&self.control).map_err(fail)?;
        s.set_read_timeout(Some(TIMEOUT)).map_err(fail)?;
        s.set_write_timeout(Some(TIMEOUT)).map_err(fail)?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: kaim\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes()).map_err(fail)?;
        let mut reply = Vec::new();
        (&mut s)
            .take(MAX_REPLY)
            .read_to_end(&mut reply)
            .map_err(fail)?;
        let reply = String::from_utf8_lossy(&reply);
        let (head, body) = reply.split_once("\r\n\r\n").unwrap_or((&reply, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse::<u16>().ok())
            .ok_or_else(|| {
                ApiError::Internal(format!("kaim control: no HTTP status in {head:?}"))
            })?;
        Ok((status, serde_json::from_str(body).unwrap_or(Value::Null)))
    }

    /// Grants kosd made for containers that are gone are removed, with their directories.
    fn collect_stale(&self, grants_dir: &Path, exists: &dyn Fn(&str) -> bool) -> Result<()> {
        let (status, list) = self.call("GET", "/grants", None)?;
        if status != 200 {
            return Err(ApiError::Internal(format!(
                "kaim control: listing grants: status {status}"
            )));
        }
        for g in list.as_array().into_iter().flatten() {
            let Some(id) = g["name"].as_str().and_then(|n| n.strip_prefix(PREFIX)) else {
                continue;
            };
            if !exists(id) {
                let (status, _) = self.call("DELETE", &format!("/grants/{PREFIX}{id}"), None)?;
                if status != 204 && status != 404 {
                    tracing::warn!(id, status, "removing a stale kaim grant failed");
                }
                let _ = std::fs::remove_dir_all(grants_dir.join(dir_name(id)));
            }
        }
        Ok(())
    }

    /// Removes container `id`'s grant (if kaim has one) and its directory.
    pub fn revoke(&self, grants_dir: &Path, id: &str) -> Result<()> {
        let (status, reply) = self.call("DELETE", &format!("/grants/{PREFIX}{id}"), None)?;
        let _ = std::fs::remove_dir_all(grants_dir.join(dir_name(id)));
        match status {
            204 | 404 => Ok(()),
            s => Err(ApiError::Internal(format!(
                "kaim: removing the grant of {id}: status {s}: {}",
                reply["message"].as_str().unwrap_or("")
            ))),
        }
    }

    /// Asks kaim to serve container `id`'s grant under `policy`; returns the directory
    /// holding its socket.
    pub fn grant(
        &self,
        grants_dir: &Path,
        id: &str,
        policy: &str,
        exists: &dyn Fn(&str) -> bool,
    ) -> Result<PathBuf> {
        if policy.is_empty() {
            return Err(ApiError::bad(format!("label {LABEL} is empty")));
        }
        self.collect_stale(grants_dir, exists)?;
        let dir = grants_dir.join(dir_name(id));
        std::fs::create_dir_all(&dir)
            .map_err(|e| ApiError::internal(&format!("creating {}", dir.display()), e))?;
        let body = json!({
            "container_id": id,
            "policy": policy,
            "socket": dir.join(SOCKET_NAME),
        });
        let answer = self.call("PUT", &format!("/grants/{PREFIX}{id}"), Some(&body));
        if !matches!(answer, Ok((201, _))) {
            // Nothing is left of a grant kaim did not make.
            let _ = std::fs::remove_dir_all(&dir);
        }
        let (status, reply) = answer?;
        match status {
            201 => Ok(dir),
            400 => Err(ApiError::bad(format!(
                "kaim grant ({LABEL}={policy}): {}",
                reply["message"].as_str().unwrap_or("refused")
            ))),
            s => Err(ApiError::Internal(format!(
                "kaim grant ({LABEL}={policy}): status {s}: {}",
                reply["message"].as_str().unwrap_or("")
            ))),
        }
    }
}

/// A grant's directory: short, as the socket path inside must fit in `sun_path`.
pub fn dir_name(id: &str) -> &str {
    &id[..id.len().min(24)]
}

/// The read-only bind of the grant directory at /run/kos.
pub fn mount(dir: &Path) -> Value {
    json!({
        "destination": MOUNT_POINT,
        "type": "bind",
        "source": dir,
        "options": ["rbind", "ro", "nosuid", "nodev", "noexec"],
    })
}
