//! Daemon and system endpoints, driven by the real docker CLI and the SDK.

mod common;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use common::*;

#[test]
fn version_info_ping_and_api_versions() {
    let k = Kosd::start(&[]);
    let v = k.docker_ok(&["version", "--format", "{{json .Server}}"]);
    let v: serde_json::Value = serde_json::from_str(&v).expect("version json");
    assert_eq!(v["ApiVersion"], "1.47");
    assert_eq!(v["MinAPIVersion"], "1.24");
    let comps: Vec<&str> = v["Components"]
        .as_array()
        .expect("components")
        .iter()
        .map(|c| c["Name"].as_str().unwrap_or(""))
        .collect();
    assert!(
        comps.contains(&"Engine") && comps.contains(&"containerd-shim-kos-v2"),
        "{comps:?}"
    );

    let info = k.docker_ok(&["info", "--format", "{{json .}}"]);
    let info: serde_json::Value = serde_json::from_str(&info).expect("info json");
    assert_eq!(info["Driver"], "overlay2");
    assert_eq!(
        info["DockerRootDir"],
        k.data_root().to_string_lossy().as_ref()
    );
    // The CLI drops fields it does not know; KOS's host view is read raw.
    let (code, raw) = k.http("GET", "/v1.47/info", b"");
    assert_eq!(code, 200);
    let raw: serde_json::Value = serde_json::from_str(&raw).expect("info body");
    let kos = &raw["KOS"];
    assert!(["v1", "hybrid", "v2"].contains(&kos["CgroupLayout"].as_str().unwrap_or("")));
    assert!(!kos["CgroupControllers"]
        .as_array()
        .expect("controllers")
        .is_empty());
    assert!(kos["LandlockABI"].is_u64() && kos["NUMANodes"].is_u64() && kos["KVM"].is_boolean());
    assert_eq!(kos["Seccomp"], true);

    // Every version from 1.24 to 1.47 is accepted; others get Docker's 400.
    for v in [
        "/v1.24/version",
        "/v1.40/version",
        "/v1.47/version",
        "/version",
    ] {
        let (code, body) = k.http("GET", v, b"");
        assert_eq!(code, 200, "{v}: {body}");
    }
    let (code, body) = k.http("GET", "/v1.23/version", b"");
    assert_eq!(code, 400);
    assert!(
        body.contains("client version 1.23 is too old. Minimum supported API version is 1.24"),
        "{body}"
    );
    let (code, body) = k.http("GET", "/v1.48/version", b"");
    assert_eq!(code, 400);
    assert!(
        body.contains("is too new. Maximum supported API version is 1.47"),
        "{body}"
    );
    let (code, body) = k.http("HEAD", "/_ping", b"");
    assert_eq!((code, body.as_str()), (200, ""));
    let (code, body) = k.http("GET", "/v1.47/nothing/here", b"");
    assert_eq!(code, 404);
    assert!(body.contains("\"message\""), "{body}");

    // An old client pinned to 1.24 works.
    let o = Command::new(DOCKER)
        .args([
            "-H",
            &k.host(),
            "version",
            "--format",
            "{{.Server.APIVersion}}",
        ])
        .env("DOCKER_API_VERSION", "1.24")
        .env("DOCKER_CONFIG", k.dir.join("docker-config"))
        .output()
        .expect("docker");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));

    let py = k.python(
        "import docker; c = docker.from_env(); assert c.ping(); v = c.version(); print(v['ApiVersion']); i = c.info(); print(i['KOS']['CgroupLayout'])",
    );
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    assert!(String::from_utf8_lossy(&py.stdout).starts_with("1.47\n"));
    let df = k.docker_ok(&["system", "df"]);
    assert!(df.contains("Images") && df.contains("Containers"), "{df}");
}

#[test]
fn socket_lock_and_clean_shutdown() {
    let mut k = Kosd::start(&[]);
    let md = std::fs::metadata(&k.sock).expect("socket");
    assert_eq!(md.permissions().mode() & 0o777, 0o660);
    assert_eq!((md.uid(), md.gid()), (0, 0));
    // A second daemon on the same data root is refused with a clear message.
    let o = Command::new(env!("CARGO_BIN_EXE_kosd"))
        .args([
            "-H",
            &format!("unix://{}", k.dir.join("other.sock").display()),
        ])
        .arg("--data-root")
        .arg(k.data_root())
        .arg("--exec-root")
        .arg(k.dir.join("exec2"))
        .arg("--config-file")
        .arg(k.dir.join("daemon.json"))
        .output()
        .expect("kosd");
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("another kosd is already running"), "{err}");
    assert!(!k.dir.join("other.sock").exists());
    let st = k.stop().expect("status");
    assert!(st.success(), "kosd exit: {st}");
    assert!(!k.sock.exists(), "socket left behind");
    // It comes back on the same roots.
    k.spawn();
    k.docker_ok(&["version"]);
}

#[test]
fn bad_flags_and_config_are_refused() {
    let dir = Scratch::new("flags");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kosd"))
            .args(args)
            .arg("--data-root")
            .arg(dir.join("data"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .output()
            .expect("kosd")
    };
    let cfg = dir.join("daemon.json");
    std::fs::write(&cfg, r#"{"data-root": "/somewhere"}"#).expect("cfg");
    let o = run(&["--config-file", cfg.to_str().expect("utf8")]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("both as a flag and in the configuration file"),
        "{e}"
    );
    std::fs::write(&cfg, "{}").expect("cfg");
    let c = cfg.to_str().expect("utf8");
    let o = run(&["--config-file", c, "-H", "tcp://127.0.0.1:2399"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("mutual TLS"), "{e}");
    let o = run(&["--config-file", c, "--default-ulimit", "nofile=9:1"]);
    assert!(!o.status.success());
    let o = run(&["--config-file", c, "--log-level", "chatty"]);
    assert!(!o.status.success());
    let o = run(&["--config-file", &dir.join("missing.json").to_string_lossy()]);
    assert!(!o.status.success());
    // Nothing was left listening or half made.
    assert!(!dir.join("exec/kos.sock").exists());
}

fn openssl(args: &[&str], cwd: &std::path::Path) {
    let o = Command::new("openssl")
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("openssl");
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn tcp_needs_mutual_tls() {
    let certs = Scratch::new("tls");
    let d = &certs.0;
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=kos-test-ca",
        ],
        d,
    );
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    .expect("ext");
    for who in ["server", "client"] {
        openssl(
            &[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{who}.key"),
                "-out",
                &format!("{who}.csr"),
                "-subj",
                &format!("/CN={who}"),
            ],
            d,
        );
        openssl(
            &[
                "x509",
                "-req",
                "-in",
                &format!("{who}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{who}.pem"),
                "-days",
                "2",
                "-extfile",
                "ext.cnf",
            ],
            d,
        );
    }
    let port = kos_testsupport::free_port();
    let p = |f: &str| d.join(f).to_string_lossy().into_owned();
    let tcp = format!("tcp://127.0.0.1:{port}");
    let k = Kosd::start(&[
        "-H",
        &tcp,
        "--tlsverify",
        "--tlscacert",
        &p("ca.pem"),
        "--tlscert",
        &p("server.pem"),
        "--tlskey",
        &p("server.key"),
    ]);
    let docker = |extra: &[&str]| {
        Command::new(DOCKER)
            .args(["-H", &tcp])
            .args(extra)
            .args(["version", "--format", "{{.Server.APIVersion}}"])
            .env("DOCKER_CONFIG", k.dir.join("docker-config"))
            .env_remove("DOCKER_TLS_VERIFY")
            .env_remove("DOCKER_CERT_PATH")
            .output()
            .expect("docker")
    };
    let ok = docker(&[
        "--tlsverify",
        "--tlscacert",
        &p("ca.pem"),
        "--tlscert",
        &p("client.pem"),
        "--tlskey",
        &p("client.key"),
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), "1.47");
    // Without a client certificate the handshake is refused.
    let no_cert = docker(&["--tls", "--tlscacert", &p("ca.pem")]);
    assert!(!no_cert.status.success());
    // Plain HTTP on the TLS port gets nothing.
    let plain = docker(&[]);
    assert!(!plain.status.success());
    // The unix socket still serves.
    k.docker_ok(&["version"]);
}

#[test]
fn events_stream_with_since_until_and_filters() {
    let k = Kosd::start(&[]);
    let reg = Registry::start();
    let img = reg.image("evbox:1");
    push_busybox(&img, &ImageSpec::default());
    let t0 = k.docker_ok(&["version", "--format", "{{.Server.Version}}"]);
    assert!(!t0.is_empty());
    let since = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_secs()
            - 1
    );
    k.docker_ok(&["pull", "-q", &img]);
    k.docker_ok(&["tag", &img, "evbox:other"]);
    let until = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_secs()
            + 1
    );
    let out = k.docker_ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--format",
        "{{.Type}} {{.Action}} {{.Actor.ID}}",
    ]);
    assert!(out.contains(&format!("image pull {img}")), "{out}");
    assert!(out.contains("image tag evbox:other"), "{out}");
    let out = k.docker_ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "event=tag",
        "--format",
        "{{.Action}}",
    ]);
    assert_eq!(out.trim(), "tag");
    let o = k.docker(&[
        "events", "--since", &since, "--until", &until, "--filter", "bogus=1",
    ]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid filter 'bogus'"));
    // A live reader sees an event that happens after it subscribed.
    let py = k.python(&format!(
        r#"
import docker, threading, time
c = docker.from_env()
def later():
    time.sleep(0.5)
    c.images.get("{img}").tag("evbox", "live")
threading.Thread(target=later).start()
for ev in c.events(decode=True, filters={{"event": "tag"}}):
    print(ev["Actor"]["ID"]); break
"#
    ));
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&py.stdout).trim(), "evbox:live");
}
