//! docker login against a registry with htpasswd auth: credentials checked by
//! kosd, kept encrypted, used for pulls; the docker CLI keeps its own logins in
//! the same store through docker-credential-kos.

mod common;

use std::process::Command;

use common::*;

fn bcrypt(password: &str) -> String {
    let o = Command::new("python3")
        .args([
            "-W",
            "ignore",
            "-c",
            "import crypt,sys; print(crypt.crypt(sys.argv[1], '$2b$05$kosKOSkosKOSkosKOSkosO'))",
            password,
        ])
        .output()
        .expect("python3");
    let s = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(s.starts_with("$2b$"), "no bcrypt: {s}");
    s
}

#[test]
fn login_encrypted_store_and_credential_helper() {
    let dir = Scratch::new("htpasswd");
    let htpasswd = dir.join("htpasswd");
    std::fs::write(&htpasswd, format!("kos:{}\n", bcrypt("s3cret"))).expect("htpasswd");
    let reg = Registry::start_with(&format!(
        "auth:\n  htpasswd:\n    realm: kos-realm\n    path: {}\n",
        htpasswd.display()
    ));
    let img = reg.image("private/bb:1");
    // Push with skopeo using the credentials (the test's own setup).
    push_busybox_with_creds(&img, "kos:s3cret");
    let k = Kosd::start(&[]);
    // The CLI's logins go into KOS's encrypted store via the helper.
    let cfg = k.dir.join("docker-config");
    std::fs::create_dir_all(&cfg).expect("config dir");
    std::fs::write(cfg.join("config.json"), r#"{"credsStore": "kos"}"#).expect("config");
    let helper_dir = std::path::Path::new(env!("CARGO_BIN_EXE_docker-credential-kos"))
        .parent()
        .expect("dir")
        .to_path_buf();
    let cli_store = k.dir.join("cli-creds");
    let path = format!(
        "{}:{}",
        helper_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let docker = |args: &[&str]| {
        Command::new(DOCKER)
            .args(["-H", &k.host()])
            .args(args)
            .env("DOCKER_CONFIG", &cfg)
            .env("PATH", &path)
            .env("KOS_CREDENTIALS_DIR", &cli_store)
            .output()
            .expect("docker")
    };
    let o = docker(&["pull", &img]);
    assert!(!o.status.success(), "pull without login must fail");
    let o = docker(&["login", "-u", "kos", "-p", "wrong", &reg.addr]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("401"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = docker(&["login", "-u", "kos", "-p", "s3cret", &reg.addr]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("Login Succeeded"));
    let o = docker(&["pull", &img]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Neither store holds the password in plain text.
    for store in [
        cli_store.join("store.json"),
        k.data_root().join("credentials/store.json"),
    ] {
        let raw = std::fs::read_to_string(&store).expect("store written");
        assert!(!raw.contains("s3cret") && !raw.contains("\"kos\""), "{raw}");
    }
    // kosd's own stored login serves a pull that carries no credentials.
    k.docker_ok(&["rmi", &img]);
    let (code, body) = k.http(
        "POST",
        &format!(
            "/v1.47/images/create?fromImage={}&tag=1",
            reg.image("private/bb")
        ),
        b"",
    );
    assert_eq!(code, 200);
    assert!(body.contains("Downloaded newer image"), "{body}");
    // The helper protocol: list, get, erase.
    let helper = |cmd: &str, input: &str| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_docker-credential-kos"))
            .arg(cmd)
            .env("KOS_CREDENTIALS_DIR", &cli_store)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("helper");
        use std::io::Write;
        c.stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write");
        c.wait_with_output().expect("helper")
    };
    let l = helper("list", "");
    assert!(String::from_utf8_lossy(&l.stdout).contains(&reg.addr));
    let g = helper("get", &reg.addr);
    let v: serde_json::Value = serde_json::from_slice(&g.stdout).expect("get json");
    assert_eq!(
        (v["Username"].as_str(), v["Secret"].as_str()),
        (Some("kos"), Some("s3cret"))
    );
    let o = docker(&["logout", &reg.addr]);
    assert!(o.status.success());
    let g = helper("get", &reg.addr);
    assert!(!g.status.success());
    assert!(String::from_utf8_lossy(&g.stdout).contains("credentials not found"));
}
