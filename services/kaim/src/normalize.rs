//! Request targets reduced to one canonical form before the policy sees them, so that
//! `/v1.47/containers/create`, `//containers/./create` and `/containers/%63reate` are judged
//! alike, and the form judged is the form forwarded.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};

use crate::error::{Error, Result};

/// Characters re-encoded in a path segment when the canonical target is written back out.
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'/')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'\\')
    .add(b'^')
    .add(b'|');

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// API version from a `/vX.Y` prefix, without the `v`.
    pub version: Option<String>,
    /// Decoded, dot-free, single-slash path starting with `/`, without the version prefix.
    pub path: String,
    /// The raw query string, unchanged (forwarded as received).
    pub query: Option<String>,
}

impl Target {
    /// The request target sent upstream: the canonical path re-encoded, with the version prefix.
    pub fn forward_uri(&self) -> String {
        let mut s = String::new();
        if let Some(v) = &self.version {
            s.push_str("/v");
            s.push_str(v);
        }
        if self.path == "/" && self.version.is_some() {
            // "/v1.47" alone: keep it as the client wrote it.
        } else {
            for seg in self.path.split('/').filter(|s| !s.is_empty()) {
                s.push('/');
                s.extend(utf8_percent_encode(seg, SEGMENT));
            }
            if s.is_empty() || self.path == "/" {
                s.push('/');
            }
        }
        if let Some(q) = &self.query {
            s.push('?');
            s.push_str(q);
        }
        s
    }

    /// The path and query as the policy sees them (`RequestURI`).
    pub fn policy_uri(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        }
    }

    /// Query parameters decoded (`+` as space), each name with all its values in order.
    pub fn query_map(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        let Some(q) = &self.query else { return m };
        for pair in q.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let k = decode_query(k);
            let v = decode_query(v);
            let entry = m
                .entry(k)
                .or_insert_with(|| serde_json::Value::Array(Vec::new()));
            if let serde_json::Value::Array(a) = entry {
                a.push(serde_json::Value::String(v));
            }
        }
        m
    }
}

fn decode_query(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_decode_str(&plus).decode_utf8_lossy().into_owned()
}

/// Canonicalises a request path (the part before `?`) and splits off the version prefix.
pub fn normalize(path: &str, query: Option<&str>) -> Result<Target> {
    let bad = |reason| Error::Target {
        target: path.to_string(),
        reason,
    };
    if !path.starts_with('/') {
        return Err(bad("not an absolute path"));
    }
    let decoded = percent_decode_str(path)
        .decode_utf8()
        .map_err(|_| bad("percent-encoding does not decode to UTF-8"))?;
    if decoded.chars().any(|c| c == '\0' || c.is_control()) {
        return Err(bad("control character in path"));
    }
    let mut segs: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segs.pop();
            }
            s => segs.push(s),
        }
    }
    let mut version = None;
    if let Some(first) = segs.first() {
        if let Some(v) = first.strip_prefix('v') {
            if is_version(v) {
                version = Some(v.to_string());
                segs.remove(0);
            }
        }
    }
    Ok(Target {
        version,
        path: format!("/{}", segs.join("/")),
        query: query.map(str::to_string),
    })
}

fn is_version(v: &str) -> bool {
    let mut parts = v.split('.');
    let ok =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    ok(parts.next()) && parts.next().is_none_or(|p| ok(Some(p))) && parts.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> String {
        normalize(s, None).expect("normalize").path
    }

    #[test]
    fn variants_of_one_path_agree() {
        for s in [
            "/v1.47/containers/create",
            "//containers/./create",
            "/containers/create/",
            "/v1.24/containers/x/../create",
            "/containers/%63reate",
            "/%2Fcontainers%2Fcreate",
            "/v1.47//containers///create",
        ] {
            assert_eq!(p(s), "/containers/create", "{s}");
        }
    }

    #[test]
    fn version_split_off_and_forwarded() {
        let t = normalize("/v1.47//containers/json", Some("all=1")).expect("normalize");
        assert_eq!(t.version.as_deref(), Some("1.47"));
        assert_eq!(t.forward_uri(), "/v1.47/containers/json?all=1");
        assert_eq!(t.policy_uri(), "/containers/json?all=1");
        let t = normalize("/_ping", None).expect("normalize");
        assert_eq!(t.version, None);
        assert_eq!(t.forward_uri(), "/_ping");
    }

    #[test]
    fn dotdot_cannot_climb_above_root() {
        assert_eq!(p("/../../containers/create"), "/containers/create");
        assert_eq!(p("/v1.41/.."), "/");
        assert_eq!(p("/"), "/");
    }

    #[test]
    fn not_a_version() {
        assert_eq!(p("/v1.x/containers"), "/v1.x/containers");
        assert_eq!(p("/volumes/create"), "/volumes/create");
    }

    #[test]
    fn special_characters_are_reencoded() {
        let t = normalize("/containers/a%20b%3Fc/json", None).expect("normalize");
        assert_eq!(t.path, "/containers/a b?c/json");
        assert_eq!(t.forward_uri(), "/containers/a%20b%3Fc/json");
    }

    #[test]
    fn bad_targets_rejected() {
        assert!(normalize("containers", None).is_err());
        assert!(normalize("/a%00b", None).is_err());
        assert!(normalize("/a%ff", None).is_err());
    }

    #[test]
    fn query_decoded_with_repeats() {
        let t = normalize(
            "/containers/json",
            Some("filters=%7B%22a%22%7D&all=1&all=0&x+y=1+2"),
        )
        .expect("normalize");
        let m = t.query_map();
        assert_eq!(m["filters"], serde_json::json!(["{\"a\"}"]));
        assert_eq!(m["all"], serde_json::json!(["1", "0"]));
        assert_eq!(m["x y"], serde_json::json!(["1 2"]));
    }
}
