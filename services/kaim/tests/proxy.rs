//! kaim end to end: a fake upstream that records what reaches it, kaim in front of it, and
//! clients running inside a cgroup the test makes (standing in for a container), so that
//! SO_PEERCRED -> /proc/PID/cgroup identifies them for real.

mod support;

use std::path::PathBuf;
use std::process::Command;

use support::*;

struct Fixture {
    _dir: TempDir,
    upstream: FakeUpstream,
    cgroup: TestCgroup,
    ci: PathBuf,
    stats: PathBuf,
    users: PathBuf,
    audit: PathBuf,
    _kaim: Kaim,
}

fn fixture() -> Fixture {
    let dir = TempDir::new("proxy");
    let upstream = FakeUpstream::start(&dir.0);
    let cgroup = TestCgroup::new(&unique("ctr"));
    let ci = dir.0.join("ci.sock");
    let stats = dir.0.join("stats.sock");
    let users = dir.0.join("users.sock");
    let audit = dir.0.join("audit.log");
    let args = vec![
        "--upstream".to_string(),
        format!("unix://{}", upstream.path.display()),
        "--audit".into(),
        audit.display().to_string(),
        "--max-body".into(),
        "65536".into(),
        "--grant".into(),
        format!(
            "ci=ctr1:{}:{}:{}",
            policy_path("ci-create.rego"),
            ci.display(),
            cgroup.path
        ),
        "--grant".into(),
        format!(
            "mon=ctr1:{}:{}:{}",
            policy_path("stats-only.rego"),
            stats.display(),
            cgroup.path
        ),
        "--users-socket".into(),
        users.display().to_string(),
        "--user-policy".into(),
        format!("0={}", policy_path("stats-only.rego")),
    ];
    let kaim = Kaim::start(&args, &[&ci, &stats, &users]);
    Fixture {
        _dir: dir,
        upstream,
        cgroup,
        ci,
        stats,
        users,
        audit,
        _kaim: kaim,
    }
}

impl Fixture {
    /// A request from a process inside the test's container cgroup.
    fn inside(&self, socket: &std::path::Path, req: &str) -> String {
        raw_request(
            self.cgroup.command("python3"),
            socket,
            req.as_bytes(),
            false,
        )
    }

    fn outside(&self, socket: &std::path::Path, req: &str) -> String {
        raw_request(Command::new("python3"), socket, req.as_bytes(), false)
    }

    fn reached(&self, needle: &str) -> bool {
        self.upstream
            .seen()
            .iter()
            .any(|s| s.target.contains(needle) || String::from_utf8_lossy(&s.body).contains(needle))
    }
}

fn post_create(path: &str, body: &str, extra: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

const GOOD: &str =
    r#"{"Image":"registry.local/ci/build:1","Cmd":["true"],"HostConfig":{"Binds":[]}}"#;

#[test]
fn allowed_requests_reach_upstream_as_judged() {
    let f = fixture();
    let r = f.inside(
        &f.ci,
        "GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&r), 200, "{r}");
    assert!(r.ends_with("OK"), "{r}");

    let r = f.inside(
        &f.ci,
        &post_create("/v1.47/containers/create?name=job1", GOOD, ""),
    );
    assert_eq!(status_of(&r), 201, "{r}");
    let seen = f.upstream.seen();
    let create = seen
        .iter()
        .find(|s| s.target.contains("create"))
        .expect("create reached upstream");
    assert_eq!(create.target, "/v1.47/containers/create?name=job1");
    assert_eq!(create.body, GOOD.as_bytes());
    assert_eq!(
        create.header("content-length"),
        Some(GOOD.len().to_string().as_str())
    );

    // Odd spellings of the same path are forwarded in the canonical form that was judged.
    let r = f.inside(&f.ci, "GET //v1.47//containers/./abc/../abc/json HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n");
    assert_eq!(status_of(&r), 200, "{r}");
    assert!(f
        .upstream
        .seen()
        .iter()
        .any(|s| s.target == "/v1.47/containers/abc/json"));
}

#[test]
fn body_checks_deny_and_nothing_reaches_upstream() {
    let f = fixture();
    let cases = [
        (
            r#"{"Image":"docker.io/library/evil1"}"#,
            "",
            "image must be",
        ),
        (
            r#"{"Image":"registry.local/ci/x","HostConfig":{"Privileged":true},"Labels":{"m":"evil2"}}"#,
            "",
            "privileged",
        ),
        (
            r#"{"image":"registry.local/ci/x","hostconfig":{"privileged":true},"Labels":{"m":"evil3"}}"#,
            "",
            "privileged",
        ),
        (
            r#"{"Image":"registry.local/ci/x","HostConfig":{"Binds":["/:/host"]},"Labels":{"m":"evil4"}}"#,
            "",
            "host binds",
        ),
        (
            r#"{"Image":"registry.local/ci/x","HostConfig":{"CapAdd":["SYS_ADMIN"]},"Labels":{"m":"evil5"}}"#,
            "",
            "capabilities",
        ),
        // Wrong Content-Type does not hide JSON from the check.
        (
            r#"{"Image":"registry.local/ci/x","HostConfig":{"Privileged":true},"Labels":{"m":"evil6"}}"#,
            "X-Ct: x\r\n",
            "privileged",
        ),
        // Duplicate keys: which one the daemon would take is not guessed.
        (
            r#"{"Image":"registry.local/ci/x","HostConfig":{"Privileged":false,"privileged":true},"Labels":{"m":"evil7"}}"#,
            "",
            "twice",
        ),
    ];
    for (body, extra, why) in cases {
        let req = if extra.is_empty() {
            post_create("/containers/create", body, "")
        } else {
            post_create("/containers/create", body, "").replace("application/json", "text/plain")
        };
        let r = f.inside(&f.ci, &req);
        assert!(matches!(status_of(&r), 400 | 403), "{body}: {r}");
        assert!(r.contains(why), "{body}: {r}");
    }
    for n in 1..=7 {
        assert!(
            !f.reached(&format!("evil{n}")),
            "evil{n} reached the upstream"
        );
    }
    assert!(!f.reached("create"), "a denied create reached the upstream");
}

#[test]
fn crafted_requests_cannot_skip_the_body_check() {
    let f = fixture();
    let evil = r#"{"Image":"registry.local/ci/x","HostConfig":{"Privileged":true},"Labels":{"m":"smuggled"}}"#;
    // CVE-2024-41110: Content-Length 0 with the body behind it.
    let r = f.inside(
        &f.ci,
        &format!("POST /containers/create HTTP/1.1\r\nHost: d\r\nContent-Type: application/json\r\nContent-Length: 0\r\n\r\n{evil}"),
    );
    assert!(matches!(status_of(&r), 400 | 403), "{r}");
    // Chunked body.
    let chunked = format!(
        "POST /containers/create HTTP/1.1\r\nHost: d\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{evil}\r\n0\r\n\r\n",
        evil.len()
    );
    let r = f.inside(&f.ci, &chunked);
    assert_eq!(status_of(&r), 403, "{r}");
    assert!(r.contains("privileged"), "{r}");
    // Both framings at once: refused by the parser, never forwarded.
    let both = format!(
        "POST /containers/create HTTP/1.1\r\nHost: d\r\nConnection: close\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{evil}\r\n0\r\n\r\n",
        evil.len()
    );
    let r = f.inside(&f.ci, &both);
    assert!(status_of(&r) != 201, "{r}");
    // A body on a method that normally has none is judged too.
    let r = f.inside(
        &f.ci,
        &format!("GET /containers/json HTTP/1.1\r\nHost: d\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{evil}", evil.len()),
    );
    assert_eq!(status_of(&r), 403, "{r}");
    // Chunked beyond the bound: refused before the policy, not forwarded.
    let big = format!(
        "{{\"Image\":\"registry.local/ci/x\",\"Labels\":{{\"m\":\"smuggled\",\"pad\":\"{}\"}}}}",
        "a".repeat(70_000)
    );
    let req = format!(
        "POST /containers/create HTTP/1.1\r\nHost: d\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
        big.len()
    );
    let r = f.inside(&f.ci, &req);
    assert_eq!(status_of(&r), 413, "{r}");
    // A compressed body cannot be inspected: opaque, and this policy refuses opaque bodies.
    let r = f.inside(
        &f.ci,
        &post_create("/containers/create", evil, "Content-Encoding: gzip\r\n"),
    );
    assert_eq!(status_of(&r), 403, "{r}");
    assert!(r.contains("not JSON"), "{r}");
    // Truncated JSON.
    let r = f.inside(
        &f.ci,
        &post_create(
            "/containers/create",
            r#"{"Image":"registry.local/ci/x","#,
            "",
        ),
    );
    assert_eq!(status_of(&r), 400, "{r}");
    // Path tricks reach the same rule.
    for p in [
        "//containers/./create",
        "/v1.47/containers/%63reate",
        "/containers/x/../create/",
    ] {
        let r = f.inside(&f.ci, &post_create(p, evil, ""));
        assert_eq!(status_of(&r), 403, "{p}: {r}");
    }
    assert!(
        !f.reached("smuggled"),
        "a smuggled body reached the upstream"
    );
    assert!(
        !f.reached("/containers/json"),
        "GET with a body reached the upstream"
    );
}

#[test]
fn peers_outside_the_container_and_per_user_policy() {
    let f = fixture();
    let r = f.outside(
        &f.ci,
        "GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&r), 403, "{r}");
    assert!(r.contains("not in container ctr1"), "{r}");
    // The users socket: uid 0 gets the stats-only policy.
    let r = f.outside(
        &f.users,
        "GET /v1.41/containers/abc/stats?stream=0 HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&r), 200, "{r}");
    let r = f.outside(&f.users, &post_create("/containers/create", GOOD, ""));
    assert_eq!(status_of(&r), 403, "{r}");
    // A second grant of the same container with another policy.
    let r = f.inside(&f.stats, &post_create("/containers/create", GOOD, ""));
    assert_eq!(status_of(&r), 403, "{r}");
    assert_eq!(
        f.upstream
            .seen()
            .iter()
            .filter(|s| s.target.contains("create"))
            .count(),
        0
    );
}

#[test]
fn streams_and_upgrades_pass_through() {
    let f = fixture();
    let r = f.inside(
        &f.stats,
        "GET /v1.47/events HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&r), 200, "{r}");
    for i in 0..3 {
        assert!(r.contains(&format!("{{\"seq\":{i}}}")), "{r}");
    }
    let req = "POST /v1.47/containers/abc/attach?stream=1&stdin=1&stdout=1 HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n";
    let r = raw_request(f.cgroup.command("python3"), &f.ci, req.as_bytes(), true);
    assert_eq!(status_of(&r), 101, "{r}");
    assert!(r.to_ascii_lowercase().contains("upgrade: tcp"), "{r}");
    assert!(
        r.ends_with("ping\n"),
        "no echo through the upgraded stream: {r}"
    );
}

#[test]
fn every_decision_is_audited() {
    let f = fixture();
    f.inside(
        &f.ci,
        "GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n",
    );
    f.inside(
        &f.ci,
        &post_create("/containers/create", r#"{"Image":"busybox"}"#, ""),
    );
    let log = std::fs::read_to_string(&f.audit).expect("audit log");
    let recs: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(recs.len(), 2, "{log}");
    assert_eq!(recs[0]["decision"], "allow");
    assert_eq!(recs[0]["path"], "/_ping");
    assert_eq!(recs[0]["method"], "GET");
    assert_eq!(recs[0]["client"]["container_id"], "ctr1");
    assert_eq!(recs[0]["client"]["verified"], true);
    assert!(recs[0]["client"]["pid"].as_i64().unwrap_or(0) > 0);
    assert_eq!(recs[1]["decision"], "deny");
    assert!(recs[1]["reason"]
        .as_str()
        .unwrap_or("")
        .contains("image must be"));
    assert!(recs[1]["time"].as_str().unwrap_or("").ends_with('Z'));
    assert!(recs[1]["policy"]
        .as_str()
        .unwrap_or("")
        .ends_with("ci-create.rego"));
}

#[test]
fn bad_policy_or_config_fails_with_one_line() {
    let dir = TempDir::new("bad");
    let bad = dir.0.join("bad.rego");
    std::fs::write(&bad, "package kaim\nallow if {{{\n").expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_kaim"))
        .args([
            "--audit",
            &dir.0.join("a.log").display().to_string(),
            "--grant",
        ])
        .arg(format!(
            "x=c:{}:{}",
            bad.display(),
            dir.0.join("x.sock").display()
        ))
        .output()
        .expect("run kaim");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("kaim: compiling policy"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(!dir.0.join("x.sock").exists(), "socket left behind");
    let out = Command::new(env!("CARGO_BIN_EXE_kaim"))
        .args(["--grant", "nonsense"])
        .output()
        .expect("run kaim");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("grant \"nonsense\""));
}

#[test]
fn notifies_ready_and_watchdog() {
    let dir = TempDir::new("notify");
    let upstream = FakeUpstream::start(&dir.0);
    let notify = dir.0.join("notify.sock");
    let rx = std::os::unix::net::UnixDatagram::bind(&notify).expect("notify socket");
    rx.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    let users = dir.0.join("users.sock");
    let child = Command::new(env!("CARGO_BIN_EXE_kaim"))
        .arg("--upstream")
        .arg(&upstream.path)
        .arg("--audit")
        .arg(dir.0.join("audit.log"))
        .arg("--users-socket")
        .arg(&users)
        .arg("--user-policy")
        .arg(format!("default={}", policy_path("stats-only.rego")))
        .env("NOTIFY_SOCKET", &notify)
        .env("WATCHDOG_USEC", "200000")
        .spawn()
        .expect("kaim");
    let mut k = Kaim { child };
    let mut buf = [0u8; 256];
    let n = rx.recv(&mut buf).expect("READY");
    let ready = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(ready.starts_with("READY=1"), "{ready}");
    assert!(users.exists(), "READY before the socket was bound");
    let n = rx.recv(&mut buf).expect("WATCHDOG");
    assert_eq!(&buf[..n], b"WATCHDOG=1");
    // SIGTERM: STOPPING=1, exit 0, socket removed.
    // SAFETY: kill(2) of our own child.
    unsafe { libc::kill(k.child.id() as i32, libc::SIGTERM) };
    let status = k.child.wait().expect("wait");
    assert!(status.success(), "{status}");
    rx.set_read_timeout(Some(std::time::Duration::from_millis(100)))
        .expect("timeout");
    let mut stopping = false;
    while let Ok(n) = rx.recv(&mut buf) {
        stopping |= &buf[..n] == b"STOPPING=1";
    }
    assert!(stopping);
    assert!(!users.exists(), "socket left behind");
}

#[test]
fn config_file_form() {
    let dir = TempDir::new("cfg");
    let upstream = FakeUpstream::start(&dir.0);
    let cgroup = TestCgroup::new(&unique("cfg"));
    let grant = dir.0.join("g.sock");
    let users = dir.0.join("u.sock");
    let cfg = serde_json::json!({
        "upstream": format!("unix://{}", upstream.path.display()),
        "audit": dir.0.join("audit.log"),
        "max_body": 4096,
        "socket_mode": 0o660,
        "grants": [{
            "name": "mon", "container_id": "c9", "cgroup": cgroup.path,
            "policy": policy_path("stats-only.rego"), "socket": grant,
        }],
        "users": {"socket": users, "policies": {"default": policy_path("ci-create.rego")}},
    });
    let path = dir.0.join("kaim.json");
    std::fs::write(&path, cfg.to_string()).expect("config");
    let _k = Kaim::start(
        &["--config".into(), path.display().to_string()],
        &[&grant, &users],
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&grant)
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o660);
    let r = raw_request(
        cgroup.command("python3"),
        &grant,
        b"GET /v1.47/events HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n",
        false,
    );
    assert_eq!(status_of(&r), 200, "{r}");
    let r = raw_request(
        Command::new("python3"),
        &users,
        post_create("/containers/create", GOOD, "").as_bytes(),
        false,
    );
    assert_eq!(status_of(&r), 201, "{r}");
    // Over max_body from the file.
    let big = format!(
        "{{\"Image\":\"registry.local/ci/x\",\"Labels\":{{\"p\":\"{}\"}}}}",
        "a".repeat(5000)
    );
    let r = raw_request(
        Command::new("python3"),
        &users,
        post_create("/containers/create", &big, "").as_bytes(),
        false,
    );
    assert_eq!(status_of(&r), 413, "{r}");
}

#[test]
fn sighup_reloads_policies_and_keeps_a_broken_one_out() {
    let dir = TempDir::new("hup");
    let upstream = FakeUpstream::start(&dir.0);
    let policy = dir.0.join("p.rego");
    std::fs::write(
        &policy,
        "package kaim\nallow if input.RequestPath == \"/_ping\"\n",
    )
    .expect("policy");
    let users = dir.0.join("u.sock");
    let k = Kaim::start(
        &[
            "--upstream".into(),
            upstream.path.display().to_string(),
            "--audit".into(),
            dir.0.join("a.log").display().to_string(),
            "--users-socket".into(),
            users.display().to_string(),
            "--user-policy".into(),
            format!("default={}", policy.display()),
        ],
        &[&users],
    );
    let get = |path: &str| {
        let req = format!("GET {path} HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n");
        status_of(&raw_request(
            Command::new("python3"),
            &users,
            req.as_bytes(),
            false,
        ))
    };
    let hup = || {
        // SAFETY: kill(2) of our own child.
        unsafe { libc::kill(k.child.id() as i32, libc::SIGHUP) };
    };
    assert_eq!(get("/_ping"), 200);
    assert_eq!(get("/version"), 403);
    std::fs::write(
        &policy,
        "package kaim\nallow if input.RequestPath == \"/version\"\n",
    )
    .expect("policy");
    hup();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while get("/version") != 200 {
        assert!(std::time::Instant::now() < deadline, "policy not reloaded");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(get("/_ping"), 403);
    // A policy that no longer compiles: the one in force stays.
    std::fs::write(&policy, "package kaim\nallow if {{{\n").expect("policy");
    hup();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(get("/version"), 200);
    assert_eq!(get("/_ping"), 403);
}
