//! The policy input, in the shape of Docker's AuthZ plugin request (`RequestMethod`,
//! `RequestURI`, `RequestHeaders`, `RequestBody`, `User`) plus what kaim knows beyond it: the
//! canonical path, the decoded query, the API version and the client's identity.

use hyper::HeaderMap;
use serde_json::{json, Map, Value};

use crate::body::BodyView;
use crate::identity::Client;
use crate::normalize::Target;

/// Headers that carry credentials: neither the policy nor the audit log gets them.
const SECRET_HEADERS: &[&str] = &[
    "authorization",
    "x-registry-auth",
    "x-registry-config",
    "cookie",
];

pub fn authz_input(
    client: &Client,
    method: &str,
    target: &Target,
    headers: &HeaderMap,
    body: &BodyView,
) -> Value {
    let mut hdrs = Map::new();
    for name in headers.keys() {
        let n = name.as_str();
        if SECRET_HEADERS.contains(&n) {
            continue;
        }
        let joined = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join(", ");
        hdrs.insert(canonical_header(n), Value::String(joined));
    }
    json!({
        "RequestMethod": method,
        "RequestURI": target.policy_uri(),
        "RequestPath": target.path,
        "RequestQuery": target.query_map(),
        "ApiVersion": target.version,
        "RequestHeaders": hdrs,
        "RequestBody": body.json,
        "RequestBodyFolded": body.folded,
        "RequestBodyOpaque": body.opaque,
        "RequestBodySize": body.size,
        "User": client.name,
        "UserAuthNMethod": "peercred",
        "Client": client,
    })
}

/// `content-type` -> `Content-Type`, as Go's net/http presents header names.
fn canonical_header(n: &str) -> String {
    n.split('-')
        .map(|p| {
            let mut c = p.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_and_secrets() {
        let client = Client {
            kind: "container",
            name: "ci".into(),
            container_id: Some("c1".into()),
            pid: 7,
            uid: 0,
            gid: 0,
            verified: true,
        };
        let t = crate::normalize::normalize("/v1.47/containers/create", Some("name=x")).expect("t");
        let mut h = HeaderMap::new();
        h.insert("content-type", "application/json".parse().expect("h"));
        h.insert("x-registry-auth", "secret".parse().expect("h"));
        let body = crate::body::interpret(None, br#"{"Image":"a"}"#).expect("b");
        let v = authz_input(&client, "POST", &t, &h, &body);
        assert_eq!(v["RequestURI"], "/containers/create?name=x");
        assert_eq!(v["RequestPath"], "/containers/create");
        assert_eq!(v["ApiVersion"], "1.47");
        assert_eq!(v["RequestHeaders"]["Content-Type"], "application/json");
        assert!(v["RequestHeaders"].get("X-Registry-Auth").is_none());
        assert_eq!(v["RequestBody"]["Image"], "a");
        assert_eq!(v["RequestBodyFolded"]["image"], "a");
        assert_eq!(v["Client"]["container_id"], "c1");
        assert_eq!(v["RequestQuery"]["name"], json!(["x"]));
    }
}
