//! Request bodies, read whole (bounded) before the policy runs, so that exactly the bytes
//! judged are the bytes forwarded. Nothing about the body is taken from headers: a
//! `Content-Length: 0` with bytes behind it, a chunked body, or a body on a GET is read and
//! judged like any other (the CVE-2024-41110 class cannot skip the check).

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// Why a body was refused before the policy ran.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("request body larger than {limit} bytes")]
    TooLarge { limit: usize },
    #[error("reading request body: {0}")]
    Read(String),
    #[error("request body is not valid JSON: {0}")]
    NotJson(String),
}

impl BodyError {
    pub fn status(&self) -> u16 {
        match self {
            BodyError::TooLarge { .. } => 413,
            _ => 400,
        }
    }
}

/// Reads the whole body, refusing more than `limit` bytes.
pub async fn read_bounded(body: Incoming, limit: usize) -> Result<Bytes, BodyError> {
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(BodyError::TooLarge { limit })
            } else {
                Err(BodyError::Read(e.to_string()))
            }
        }
    }
}

/// The body as the policy sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct BodyView {
    /// Parsed JSON, keys as sent; Null when empty or not JSON.
    pub json: Value,
    /// The same JSON with every object key lower-cased: the daemon's Go JSON decoder matches
    /// field names case-insensitively, so a policy written against these keys cannot be
    /// dodged with `{"hostconfig":{"privileged":true}}`.
    pub folded: Value,
    /// Non-empty bytes that are not JSON (a tar stream for build or archive upload, say).
    pub opaque: bool,
    pub size: usize,
}

/// Interprets the bytes: JSON whenever they parse as JSON, whatever the Content-Type says;
/// bytes that claim to be JSON (or claim nothing) but do not parse are refused; anything else
/// is opaque and left to the policy.
pub fn interpret(content_type: Option<&str>, bytes: &[u8]) -> Result<BodyView, BodyError> {
    interpret_encoded(content_type, None, bytes)
}

/// As `interpret`, honouring Content-Encoding: an encoded (compressed) body cannot be
/// inspected, so it is opaque whatever it decodes to, and the policy decides on that.
pub fn interpret_encoded(
    content_type: Option<&str>,
    content_encoding: Option<&str>,
    bytes: &[u8],
) -> Result<BodyView, BodyError> {
    let encoded = content_encoding.is_some_and(|e| {
        e.split(',')
            .map(str::trim)
            .any(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"))
    });
    if encoded && !bytes.is_empty() {
        return Ok(BodyView {
            json: Value::Null,
            folded: Value::Null,
            opaque: true,
            size: bytes.len(),
        });
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        // Whitespace alone decodes as "no body" in every JSON decoder the daemon may use.
        return Ok(BodyView {
            json: Value::Null,
            folded: Value::Null,
            opaque: false,
            size: bytes.len(),
        });
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = Strict::deserialize(&mut de).and_then(|v| de.end().map(|_| v));
    match parsed {
        Ok(Strict(json)) => {
            let folded = fold(&json);
            Ok(BodyView {
                json,
                folded,
                opaque: false,
                size: bytes.len(),
            })
        }
        Err(e) => {
            let essence = content_type
                .map(|c| {
                    c.split(';')
                        .next()
                        .unwrap_or("")
                        .trim()
                        .to_ascii_lowercase()
                })
                .unwrap_or_default();
            let claims_json = essence.is_empty()
                || essence == "application/json"
                || essence.ends_with("+json")
                || essence == "text/json";
            if claims_json {
                Err(BodyError::NotJson(e.to_string()))
            } else {
                Ok(BodyView {
                    json: Value::Null,
                    folded: Value::Null,
                    opaque: true,
                    size: bytes.len(),
                })
            }
        }
    }
}

fn fold(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.to_lowercase(), fold(v)))
                .collect::<Map<_, _>>(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(fold).collect()),
        other => other.clone(),
    }
}

/// JSON that refuses objects with a key given twice (also differing only in case): which of
/// the two the daemon would use is not something to guess.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        let mut seen = std::collections::HashSet::new();
        while let Some(k) = map.next_key::<String>()? {
            if !seen.insert(k.to_lowercase()) {
                return Err(serde::de::Error::custom(format!(
                    "key {k:?} given twice (names are matched case-insensitively)"
                )));
            }
            let Strict(v) = map.next_value()?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_parsed_whatever_the_content_type() {
        for ct in [
            Some("application/json"),
            Some("text/plain"),
            None,
            Some("application/x-tar"),
        ] {
            let v = interpret(ct, br#"{"HostConfig":{"Privileged":true}}"#).expect("json");
            assert_eq!(v.json["HostConfig"]["Privileged"], Value::Bool(true));
            assert_eq!(v.folded["hostconfig"]["privileged"], Value::Bool(true));
            assert!(!v.opaque);
        }
    }

    #[test]
    fn case_variants_fold_together() {
        let v = interpret(None, br#"{"hostconfig":{"PRIVILEGED":true}}"#).expect("json");
        assert_eq!(v.folded["hostconfig"]["privileged"], Value::Bool(true));
    }

    #[test]
    fn duplicate_keys_refused() {
        assert!(interpret(None, br#"{"Image":"a","Image":"b"}"#).is_err());
        assert!(interpret(None, br#"{"Image":"a","image":"b"}"#).is_err());
        assert!(interpret(None, br#"{"A":{"x":1,"X":2}}"#).is_err());
    }

    #[test]
    fn broken_json_refused_when_claimed_or_unlabelled() {
        assert!(interpret(Some("application/json"), b"{\"Image\":").is_err());
        assert!(interpret(None, b"{\"Image\":").is_err());
        assert!(interpret(Some("application/json; charset=utf-8"), b"xx").is_err());
        // Trailing bytes after a value are not ignored.
        assert!(interpret(None, b"{} {\"Privileged\":true}").is_err());
    }

    #[test]
    fn other_bytes_are_opaque() {
        let v = interpret(Some("application/x-tar"), b"\x00\x01tar").expect("opaque");
        assert!(v.opaque);
        assert_eq!(v.json, Value::Null);
        assert_eq!(v.size, 5);
    }

    #[test]
    fn encoded_bodies_are_opaque() {
        let v = interpret_encoded(None, Some("gzip"), br#"{"Image":"a"}"#).expect("opaque");
        assert!(v.opaque);
        assert_eq!(v.json, Value::Null);
        let v = interpret_encoded(None, Some("identity"), br#"{"Image":"a"}"#).expect("json");
        assert_eq!(v.json["Image"], "a");
    }

    #[test]
    fn empty_is_null() {
        let v = interpret(Some("application/json"), b"").expect("empty");
        assert_eq!(v.json, Value::Null);
        assert!(!v.opaque);
    }
}
