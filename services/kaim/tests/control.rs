//! kaim's control socket: grants added, replaced, listed and removed while kaim runs, as
//! kosd does for containers labelled `kos.kaim.policy`; only root may use it.

mod support;

use std::process::Command;

use support::*;

fn put(path: &str, body: &str) -> String {
    format!(
        "PUT {path} HTTP/1.1\r\nHost: kaim\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn plain(method: &str, path: &str) -> String {
    format!("{method} {path} HTTP/1.1\r\nHost: kaim\r\nConnection: close\r\n\r\n")
}

#[test]
fn grants_come_and_go_through_the_control_socket() {
    let dir = TempDir::new("control");
    let upstream = FakeUpstream::start(&dir.0);
    let cgroup = TestCgroup::new(&unique("ctr"));
    let control = dir.0.join("control.sock");
    let grant_sock = dir.0.join("grants/g1.sock");
    let args = vec![
        "--upstream".to_string(),
        format!("unix://{}", upstream.path.display()),
        "--audit".into(),
        dir.0.join("audit.log").display().to_string(),
        "--control-socket".into(),
        control.display().to_string(),
        "--policy-dir".into(),
        format!("{}/policies", env!("CARGO_MANIFEST_DIR")),
    ];
    let _kaim = Kaim::start(&args, &[&control]);
    let ctl = |req: &str| raw_request(Command::new("python3"), &control, req.as_bytes(), false);
    let grant = |policy: &str| {
        serde_json::json!({
            "container_id": "ctr1",
            "cgroup": cgroup.path,
            "policy": policy,
            "socket": grant_sock,
        })
        .to_string()
    };

    // A grant by policy name: served to the container's processes only.
    let r = ctl(&put("/grants/g1", &grant("allow-all")));
    assert_eq!(status_of(&r), 201, "{r}");
    assert!(grant_sock.exists());
    let ping = plain("GET", "/v1.47/containers/json");
    let inside = raw_request(
        cgroup.command("python3"),
        &grant_sock,
        ping.as_bytes(),
        false,
    );
    assert_eq!(status_of(&inside), 200, "{inside}");
    let outside = raw_request(Command::new("python3"), &grant_sock, ping.as_bytes(), false);
    assert_eq!(status_of(&outside), 403, "{outside}");

    // Replaced by a stricter policy (by path): the same request is now judged by it.
    let stats_only = format!("{}/policies/stats-only.rego", env!("CARGO_MANIFEST_DIR"));
    let r = ctl(&put("/grants/g1", &grant(&stats_only)));
    assert_eq!(status_of(&r), 201, "{r}");
    let create = "POST /v1.47/containers/create HTTP/1.1\r\nHost: d\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
    let denied = raw_request(
        cgroup.command("python3"),
        &grant_sock,
        create.as_bytes(),
        false,
    );
    assert_eq!(status_of(&denied), 403, "{denied}");

    // Bad grants are refused and make nothing.
    let other_sock = dir.0.join("grants/g2.sock");
    for (policy, why) in [
        ("../etc/x", "neither an absolute path nor a policy name"),
        ("no-such-policy", "no-such-policy.rego"),
    ] {
        let body = serde_json::json!({
            "container_id": "ctr2", "policy": policy, "socket": other_sock,
        })
        .to_string();
        let r = ctl(&put("/grants/g2", &body));
        assert_eq!(status_of(&r), 400, "{r}");
        assert!(r.contains(why), "{r}");
        assert!(!other_sock.exists());
    }
    let r = ctl(&put(
        "/grants/g3",
        r#"{"container_id":"c","policy":"allow-all","socket":"/x.sock","bogus":1}"#,
    ));
    assert_eq!(status_of(&r), 400, "{r}");
    // One socket cannot serve two grants.
    let r = ctl(&put("/grants/g4", &grant("allow-all")));
    assert_eq!(status_of(&r), 400, "{r}");

    let list = ctl(&plain("GET", "/grants"));
    assert_eq!(status_of(&list), 200, "{list}");
    assert!(
        list.contains("\"g1\"") && list.contains("stats-only.rego") && !list.contains("\"g2\""),
        "{list}"
    );

    // Only root manages grants: the socket is root's alone (and kaim checks the peer).
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&control)
        .expect("control")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // Removed: the socket goes.
    let r = ctl(&plain("DELETE", "/grants/g1"));
    assert_eq!(status_of(&r), 204, "{r}");
    assert!(!grant_sock.exists());
    let r = ctl(&plain("DELETE", "/grants/g1"));
    assert_eq!(status_of(&r), 404, "{r}");
}
