//! `GET /images/search` (`docker search`): a registry's search API (`/v1/search`, what
//! Docker Hub answers), else, for a registry without one (the distribution registry), the
//! repositories of its catalog whose names contain the term.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::Json;
use kos_image::Credentials;
use serde_json::{json, Value};

use super::params::Params;
use crate::engine::Engine;
use crate::error::{ApiError, Result};
use crate::filters::Filters;

/// Docker's default and largest `limit`.
const DEFAULT_LIMIT: usize = 25;
const MAX_LIMIT: usize = 100;
/// A search answer or catalog larger than this is refused.
const MAX_ANSWER: usize = 4 << 20;
const FILTERS: &[&str] = &["is-official", "is-automated", "stars"];

/// The registry a term names (`host[:port]/rest`) and what to search there; Docker Hub's
/// index for a term without one.
fn split_term(term: &str) -> (String, String) {
    if let Some((first, rest)) = term.split_once('/') {
        if first.contains('.') || first.contains(':') || first == "localhost" {
            return (first.to_string(), rest.to_string());
        }
    }
    ("index.docker.io".into(), term.to_string())
}

/// One result in Docker's shape.
fn result(name: &str, description: &str, stars: u64, official: bool, automated: bool) -> Value {
    json!({
        "name": name,
        "description": description,
        "star_count": stars,
        "is_official": official,
        "is_automated": automated,
    })
}

/// Catalog pages read at most (of [`CATALOG_PAGE`] repositories each).
const MAX_CATALOG_PAGES: usize = 20;
const CATALOG_PAGE: usize = 1000;

/// The `next` page a `Link` header names, as an absolute URL on `base`.
fn next_link(link: &str, base: &str) -> Option<String> {
    let part = link.split(',').find(|p| p.contains("rel=\"next\""))?;
    let target = part
        .split(';')
        .next()?
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>');
    Some(if target.starts_with("http") {
        target.to_string()
    } else {
        format!("{base}{target}")
    })
}

/// GETs `url` as JSON; `None` for a 404. Also the `Link` header.
async fn get_json(
    client: &reqwest::Client,
    url: &str,
    creds: &Credentials,
) -> Result<Option<(Value, Option<String>)>> {
    let mut req = client.get(url);
    if let Credentials::Basic { username, password } = creds {
        req = req.basic_auth(username, Some(password));
    }
    let r = req
        .send()
        .await
        .map_err(|err| ApiError::Internal(format!("Get \"{url}\": {err}")))?;
    if r.status() == reqwest::StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if r.status() == reqwest::StatusCode::UNAUTHORIZED {
        return Err(ApiError::Unauthorized(format!(
            "Get \"{url}\": unauthorized"
        )));
    }
    if !r.status().is_success() {
        return Err(ApiError::Internal(format!(
            "Get \"{url}\": unexpected status {}",
            r.status()
        )));
    }
    let link = r
        .headers()
        .get("link")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if r.content_length().is_some_and(|n| n > MAX_ANSWER as u64) {
        return Err(ApiError::Internal(format!(
            "Get \"{url}\": answer too large"
        )));
    }
    let mut body = Vec::new();
    let mut r = r;
    while let Some(chunk) = r
        .chunk()
        .await
        .map_err(|err| ApiError::Internal(format!("Get \"{url}\": {err}")))?
    {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_ANSWER {
            return Err(ApiError::Internal(format!(
                "Get \"{url}\": answer too large"
            )));
        }
    }
    serde_json::from_slice(&body)
        .map(|v| Some((v, link)))
        .map_err(|err| ApiError::Internal(format!("Get \"{url}\": invalid JSON: {err}")))
}

pub async fn search(
    State(e): State<Arc<Engine>>,
    headers: HeaderMap,
    p: Params,
) -> Result<Json<Value>> {
    let term = p
        .non_empty("term")
        .ok_or_else(|| ApiError::bad("term is required"))?
        .to_string();
    let limit = match p.int("limit")? {
        None | Some(0) => DEFAULT_LIMIT,
        Some(n) if (1..=MAX_LIMIT as i64).contains(&n) => n as usize,
        Some(n) => {
            return Err(ApiError::bad(format!(
                "limit {n} is outside the range of [1, {MAX_LIMIT}]"
            )))
        }
    };
    let f = Filters::parse(p.str("filters"), FILTERS)?;
    let official = f.bool_value("is-official")?;
    let automated = f.bool_value("is-automated")?;
    let min_stars: u64 = match f.get("stars").first() {
        None => 0,
        Some(v) => v
            .parse()
            .map_err(|_| ApiError::bad(format!("invalid filter 'stars={v}'")))?,
    };
    let (host, q) = split_term(&term);
    let creds = super::images::credentials_for(&e, &headers, &format!("{host}/{q}"))
        .unwrap_or(Credentials::Anonymous);
    let (client, base) = e.registry.http_client_for(&host).await?;
    let mut out: Vec<Value> = Vec::new();
    let v1 = reqwest::Url::parse_with_params(
        &format!("{base}/v1/search"),
        [("q", q.as_str()), ("n", &limit.to_string())],
    )
    .map_err(|e| ApiError::bad(format!("search term {term:?}: {e}")))?
    .to_string();
    if let Some((v, _)) = get_json(&client, &v1, &creds).await? {
        for r in v["results"].as_array().into_iter().flatten() {
            let name = r["name"].as_str().unwrap_or_default();
            let shown = if host == "index.docker.io" {
                name.to_string()
            } else {
                format!("{host}/{name}")
            };
            out.push(result(
                &shown,
                r["description"].as_str().unwrap_or_default(),
                r["star_count"].as_u64().unwrap_or(0),
                r["is_official"].as_bool().unwrap_or(false),
                r["is_automated"].as_bool().unwrap_or(false),
            ));
        }
    } else {
        // No search API: the catalog, filtered by the term, page by page.
        let mut url = format!("{base}/v2/_catalog?n={CATALOG_PAGE}");
        let needle = q.to_ascii_lowercase();
        for page in 0..MAX_CATALOG_PAGES {
            let Some((v, link)) = get_json(&client, &url, &creds).await? else {
                if page == 0 {
                    return Err(ApiError::NotFound(format!(
                        "{host} offers neither a search API nor a catalog"
                    )));
                }
                break;
            };
            for name in v["repositories"].as_array().into_iter().flatten() {
                let name = name.as_str().unwrap_or_default();
                if name.to_ascii_lowercase().contains(&needle) {
                    out.push(result(&format!("{host}/{name}"), "", 0, false, false));
                }
            }
            match link.as_deref().and_then(|l| next_link(l, &base)) {
                Some(next) if out.len() < limit => url = next,
                _ => break,
            }
        }
    }
    out.retain(|r| {
        official.is_none_or(|o| r["is_official"] == o)
            && automated.is_none_or(|a| r["is_automated"] == a)
            && r["star_count"].as_u64().unwrap_or(0) >= min_stars
    });
    out.truncate(limit);
    Ok(Json(Value::Array(out)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_name_their_registry() {
        assert_eq!(
            split_term("127.0.0.1:5000/busy"),
            ("127.0.0.1:5000".into(), "busy".into())
        );
        assert_eq!(
            split_term("localhost/x/y"),
            ("localhost".into(), "x/y".into())
        );
        assert_eq!(
            split_term("library/busybox"),
            ("index.docker.io".into(), "library/busybox".into())
        );
        assert_eq!(
            split_term("busybox"),
            ("index.docker.io".into(), "busybox".into())
        );
        assert_eq!(
            next_link("</v2/_catalog?last=b&n=2>; rel=\"next\"", "http://h:1").as_deref(),
            Some("http://h:1/v2/_catalog?last=b&n=2")
        );
        assert_eq!(next_link("<x>; rel=\"prev\"", "http://h"), None);
    }
}
