//! Request inputs with Docker's conventions and KOS's bounds: query parameters
//! (`1`/`true` booleans, repeated keys) and size-bounded JSON bodies whose
//! errors are Docker's `{"message": ...}` 400s.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, Result};

/// JSON bodies above this are refused (a container config is a few KiB).
pub const MAX_JSON_BODY: usize = 4 << 20;

/// Query parameters.
#[derive(Debug, Default, Clone)]
pub struct Params(pub Vec<(String, String)>);

impl Params {
    pub fn parse(query: &str) -> Result<Params> {
        serde_urlencoded::from_str::<Vec<(String, String)>>(query)
            .map(Params)
            .map_err(|e| ApiError::bad(format!("invalid query string: {e}")))
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A non-empty value.
    pub fn non_empty(&self, key: &str) -> Option<&str> {
        self.str(key).filter(|s| !s.is_empty())
    }

    pub fn all(&self, key: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
            .collect()
    }

    /// Docker's boolean: absent, empty, `0`, `false`, `no` are false.
    pub fn bool(&self, key: &str) -> Result<bool> {
        match self.str(key) {
            None | Some("") => Ok(false),
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "1" | "true" | "yes" => Ok(true),
                "0" | "false" | "no" => Ok(false),
                _ => Err(ApiError::bad(format!(
                    "invalid value for {key}: {v:?} is not a boolean"
                ))),
            },
        }
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>> {
        match self.non_empty(key) {
            None => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::bad(format!("invalid value for {key}: {v:?} is not a number"))
            }),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self> {
        Params::parse(parts.uri.query().unwrap_or(""))
    }
}

/// A bounded JSON body; an empty body is `None`.
pub struct JsonBody<T>(pub Option<T>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;
    async fn from_request(req: Request, _: &S) -> Result<Self> {
        let body = axum::body::to_bytes(req.into_body(), MAX_JSON_BODY)
            .await
            .map_err(|_| {
                ApiError::bad(format!("request body is larger than {MAX_JSON_BODY} bytes"))
            })?;
        parse_json(&body).map(JsonBody)
    }
}

pub fn parse_json<T: DeserializeOwned>(body: &Bytes) -> Result<Option<T>> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body)
        .map(Some)
        .map_err(|e| ApiError::bad(format!("invalid JSON body: {e}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn query_conventions() {
        let p = Params::parse("force=1&v=true&x=no&names=a&names=b&t=10").unwrap();
        assert!(p.bool("force").unwrap() && p.bool("v").unwrap() && !p.bool("x").unwrap());
        assert!(!p.bool("missing").unwrap());
        assert_eq!(p.all("names"), vec!["a", "b"]);
        assert_eq!(p.int("t").unwrap(), Some(10));
        assert!(Params::parse("force=maybe").unwrap().bool("force").is_err());
        assert!(Params::parse("t=x").unwrap().int("t").is_err());
    }

    #[test]
    fn json_bodies() {
        let v: Option<serde_json::Value> = parse_json(&Bytes::from_static(b" ")).unwrap();
        assert!(v.is_none());
        let e = parse_json::<serde_json::Value>(&Bytes::from_static(b"{bad")).unwrap_err();
        assert!(e.to_string().starts_with("invalid JSON body"));
    }
}
