//! `POST /auth` (`docker login`): checks the credentials against the registry
//! (Basic, or a bearer token from the registry's realm) and keeps them in the
//! encrypted store for later pulls and pushes.

use std::sync::Arc;

use axum::extract::State;
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::params::JsonBody;
use crate::credentials::host_key;
use crate::engine::Engine;
use crate::error::{ApiError, Result};

#[derive(Debug, Default, Deserialize)]
pub struct AuthBody {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    serveraddress: String,
}

fn challenge_param(h: &str, key: &str) -> Option<String> {
    let i = h.find(&format!("{key}=\""))? + key.len() + 2;
    let rest = &h[i..];
    Some(rest[..rest.find('"')?].to_string())
}

async fn check(e: &Engine, host: &str, user: &str, pass: &str) -> Result<()> {
    let (client, base) = e.registry.http_client_for(host).await?;
    let url = format!("{base}/v2/");
    let failed = |st: reqwest::StatusCode| {
        ApiError::Unauthorized(format!("login attempt to {url} failed with status: {st}"))
    };
    let r = client
        .get(&url)
        .basic_auth(user, Some(pass))
        .send()
        .await
        .map_err(|err| ApiError::internal(&format!("contacting {host}"), err))?;
    if r.status().is_success() {
        return Ok(());
    }
    let challenge = r
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if r.status() != reqwest::StatusCode::UNAUTHORIZED
        || !challenge.to_ascii_lowercase().starts_with("bearer")
    {
        return Err(failed(r.status()));
    }
    let realm = challenge_param(&challenge, "realm").ok_or_else(|| failed(r.status()))?;
    let mut q = vec![("account", user.to_string())];
    if let Some(s) = challenge_param(&challenge, "service") {
        q.push(("service", s));
    }
    let t = client
        .get(&realm)
        .query(&q)
        .basic_auth(user, Some(pass))
        .send()
        .await
        .map_err(|err| ApiError::internal(&format!("contacting {realm}"), err))?;
    if t.status().is_success() {
        Ok(())
    } else {
        Err(failed(t.status()))
    }
}

pub async fn login(
    State(e): State<Arc<Engine>>,
    JsonBody(b): JsonBody<AuthBody>,
) -> Result<Json<serde_json::Value>> {
    let b = b.ok_or_else(|| ApiError::bad("auth config is required"))?;
    if b.username.is_empty() {
        return Err(ApiError::bad("username is required"));
    }
    let host = host_key(if b.serveraddress.is_empty() {
        "docker.io"
    } else {
        &b.serveraddress
    });
    check(&e, &host, &b.username, &b.password).await?;
    e.creds
        .store(&host, &b.username, &b.password)
        .map_err(|err| ApiError::internal("storing credentials", err))?;
    Ok(Json(
        json!({"Status": "Login Succeeded", "IdentityToken": ""}),
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn challenge_parsing() {
        let h = r#"Bearer realm="https://auth.example/token",service="registry.example",scope="x""#;
        assert_eq!(
            super::challenge_param(h, "realm").as_deref(),
            Some("https://auth.example/token")
        );
        assert_eq!(
            super::challenge_param(h, "service").as_deref(),
            Some("registry.example")
        );
        assert_eq!(super::challenge_param(h, "nope"), None);
    }
}
