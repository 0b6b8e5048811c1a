//! The shipped example policies decide as their comments say.

use std::path::Path;

use kaim::body::interpret;
use kaim::identity::Client;
use kaim::input::authz_input;
use kaim::normalize::normalize;
use kaim::Policy;

fn policy(name: &str) -> Policy {
    Policy::from_file(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("policies")
            .join(name),
    )
    .expect("policy compiles")
}

fn decide(p: &Policy, method: &str, path: &str, body: &str) -> kaim::Decision {
    let client = Client {
        kind: "container",
        name: "ci".into(),
        container_id: Some("c".into()),
        pid: 1,
        uid: 0,
        gid: 0,
        verified: true,
    };
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let t = normalize(path, query).expect("target");
    let b = interpret(Some("application/json"), body.as_bytes()).expect("body");
    p.evaluate(authz_input(
        &client,
        method,
        &t,
        &hyper::HeaderMap::new(),
        &b,
    ))
}

#[test]
fn ci_create_policy() {
    let p = policy("ci-create.rego");
    let ok = r#"{"Image":"registry.local/ci/build:1","HostConfig":{"Binds":[],"CapAdd":null}}"#;
    let d = decide(&p, "POST", "/v1.47/containers/create", ok);
    assert!(d.allow, "{}", d.reason);
    assert!(decide(&p, "GET", "/_ping", "").allow);
    assert!(decide(&p, "POST", "/containers/abc/start", "").allow);
    for (body, why) in [
        (r#"{"Image":"docker.io/evil"}"#, "image must be"),
        (r#"{"Image":"registry.local/ci/../x"}"#, "image must be"),
        (r#"{"Image":["registry.local/ci/x"]}"#, "image must be"),
        (
            r#"{"Image":"registry.local/ci/x","HostConfig":{"Privileged":true}}"#,
            "privileged",
        ),
        (
            r#"{"image":"registry.local/ci/x","hostconfig":{"privileged":true}}"#,
            "privileged",
        ),
        (
            r#"{"Image":"registry.local/ci/x","HostConfig":{"Binds":["/:/host"]}}"#,
            "host binds",
        ),
        (
            r#"{"Image":"registry.local/ci/x","HostConfig":{"Mounts":[{"Type":"bind","Source":"/","Target":"/h"}]}}"#,
            "host binds",
        ),
        (
            r#"{"Image":"registry.local/ci/x","HostConfig":{"CapAdd":["SYS_ADMIN"]}}"#,
            "capabilities",
        ),
        (
            r#"{"Image":"registry.local/ci/x","HostConfig":{"PidMode":"host"}}"#,
            "pidmode",
        ),
        (
            r#"{"Image":"registry.local/ci/x","HostConfig":{"Devices":[{"PathOnHost":"/dev/sda"}]}}"#,
            "devices",
        ),
        ("", "image must be"),
    ] {
        let d = decide(&p, "POST", "/containers/create", body);
        assert!(!d.allow, "{body} allowed");
        assert!(d.reason.contains(why), "{body}: {}", d.reason);
    }
    assert!(!decide(&p, "POST", "/containers/abc/exec", r#"{"Cmd":["sh"]}"#).allow);
    assert!(!decide(&p, "GET", "/_ping", r#"{"x":1}"#).allow);
    assert!(!decide(&p, "POST", "/images/create?fromImage=x", "").allow);
}

#[test]
fn stats_only_policy() {
    let p = policy("stats-only.rego");
    assert!(decide(&p, "GET", "/containers/abc/stats?stream=0", "").allow);
    assert!(decide(&p, "GET", "/v1.41/events", "").allow);
    assert!(!decide(&p, "POST", "/containers/create", r#"{"Image":"x"}"#).allow);
    assert!(!decide(&p, "DELETE", "/containers/abc", "").allow);
    assert!(!decide(&p, "GET", "/containers/abc/stats", r#"{"a":1}"#).allow);
}
