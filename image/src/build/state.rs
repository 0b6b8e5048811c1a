//! The image as it stands after each step: config JSON (kept whole, so
//! fields KOS does not model, such as Healthcheck or OnBuild, survive) and
//! the layer descriptors. A state's digest keys the build cache.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::digest::Digest;
use crate::manifest::{Descriptor, Platform};

/// The media type of a layer descriptor whose blob is still being
/// compressed (its digest is the diff id); never written to a manifest or
/// the cache.
pub const PENDING_LAYER: &str = "application/vnd.kos.build.pending-layer";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub config: Value,
    pub layers: Vec<Descriptor>,
}

impl State {
    /// The empty image of `FROM scratch`.
    pub fn scratch(platform: &Platform) -> Self {
        let mut config = json!({
            "architecture": platform.architecture,
            "os": platform.os,
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [],
        });
        if let Some(v) = &platform.variant {
            config["variant"] = Value::String(v.clone());
        }
        State {
            config,
            layers: Vec::new(),
        }
    }

    /// Starts from a base image's config bytes and layers.
    pub fn from_image(config_bytes: &[u8], layers: Vec<Descriptor>) -> Result<Self, String> {
        let mut config: Value =
            serde_json::from_slice(config_bytes).map_err(|e| format!("base image config: {e}"))?;
        let Some(obj) = config.as_object_mut() else {
            return Err("base image config is not a JSON object".into());
        };
        // Docker-only leftovers of the base's own build.
        obj.remove("container");
        obj.remove("container_config");
        obj.remove("docker_version");
        if !obj.get("config").is_some_and(Value::is_object) {
            obj.insert("config".into(), json!({}));
        }
        if !obj.get("history").is_some_and(Value::is_array) {
            obj.insert("history".into(), json!([]));
        }
        Ok(State { config, layers })
    }

    /// The image ID this state would have: the digest of its config, which
    /// names the layers by diff id, so a layer still being compressed does
    /// not change it. Cache keys and the printed step IDs use it.
    pub fn id(&self) -> Digest {
        Digest::of(&serde_json::to_vec(&self.config).unwrap_or_default())
    }

    /// Whether a layer blob of this state is still being written.
    pub fn has_pending(&self) -> bool {
        self.layers.iter().any(|l| l.media_type == PENDING_LAYER)
    }

    /// Sets a run config field (`config.KEY` of the image config, an object
    /// by construction: see `scratch` and `from_image`).
    pub fn set_rc(&mut self, key: &str, value: Value) {
        self.config["config"][key] = value;
    }

    pub fn remove_rc(&mut self, key: &str) {
        if let Some(m) = self.config["config"].as_object_mut() {
            m.remove(key);
        }
    }

    pub fn rc_get(&self, key: &str) -> Option<&Value> {
        self.config.get("config").and_then(|c| c.get(key))
    }

    pub fn env(&self) -> Vec<String> {
        strings(self.rc_get("Env"))
    }

    pub fn set_env(&mut self, key: &str, value: &str) {
        let mut env = self.env();
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(format!("{key}={value}"));
        self.set_rc("Env", json!(env));
    }

    pub fn diff_ids(&self) -> Vec<Digest> {
        self.config
            .get("rootfs")
            .and_then(|r| r.get("diff_ids"))
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(|v| v.as_str()?.parse().ok()).collect())
            .unwrap_or_default()
    }

    pub fn push_layer(&mut self, desc: Descriptor, diff_id: &Digest) {
        self.layers.push(desc);
        let mut ids: Vec<String> = self.diff_ids().iter().map(Digest::to_string).collect();
        ids.push(diff_id.to_string());
        self.config["rootfs"] = json!({"type": "layers", "diff_ids": ids});
    }

    /// Records a history entry and the step's time.
    pub fn history(&mut self, created_by: &str, empty_layer: bool) {
        let now = now_rfc3339();
        let mut h = json!({"created": now, "created_by": created_by});
        if empty_layer {
            h["empty_layer"] = Value::Bool(true);
        }
        self.config["created"] = Value::String(now);
        match self.config.get_mut("history") {
            Some(Value::Array(a)) => a.push(h),
            _ => self.config["history"] = json!([h]),
        }
    }
}

pub fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// The current time as RFC 3339 with nanoseconds, UTC.
pub fn now_rfc3339() -> String {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs() as i64, d.subsec_nanos())
}

pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn time_format() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(rfc3339(1_796_036_400, 0), "2026-11-30T11:00:00.000000000Z");
    }

    #[test]
    fn env_and_layers() {
        let mut s = State::scratch(&Platform::host());
        s.set_env("A", "1");
        s.set_env("B", "2");
        s.set_env("A", "3");
        assert_eq!(s.env(), vec!["B=2", "A=3"]);
        let d = Digest::of(b"x");
        s.push_layer(
            Descriptor {
                media_type: "t".into(),
                digest: d.clone(),
                size: 1,
                platform: None,
                annotations: None,
            },
            &d,
        );
        assert_eq!(s.diff_ids(), vec![d]);
        s.history("x", true);
        assert_eq!(s.config["history"][0]["empty_layer"], json!(true));
    }
}
