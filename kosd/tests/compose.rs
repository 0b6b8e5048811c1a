//! docker-compose 1.29 (Debian's) against kosd: a two-service app with a user
//! network, a named volume, a published port and depends_on.

mod common;

use std::io::{Read, Write};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

#[test]
fn compose_up_ps_logs_exec_down() {
    let k = Kosd::start(&[]);
    let reg = Registry::start();
    let img = reg.image("compose/bb:1");
    push_busybox(
        &img,
        &ImageSpec {
            files: vec![("/www/index.html".into(), "compose web\n".into())],
            ..Default::default()
        },
    );
    let port = kos_testsupport::free_port();
    let proj = k.dir.join(&format!("kc{}", std::process::id()));
    std::fs::create_dir_all(&proj).expect("project");
    std::fs::write(
        proj.join("docker-compose.yml"),
        format!(
            r#"version: "3.7"
services:
  db:
    image: {img}
    command: ["sh", "-c", "echo db ready; echo data > /data/f; sleep 1000"]
    volumes: ["dbdata:/data"]
  web:
    image: {img}
    command: ["httpd", "-f", "-p", "80", "-h", "/www"]
    ports: ["{port}:80"]
    depends_on: [db]
volumes:
  dbdata: {{}}
"#
        ),
    )
    .expect("compose file");
    let compose = |args: &[&str]| {
        Command::new("docker-compose")
            .args(args)
            .current_dir(&proj)
            .env("DOCKER_HOST", k.host())
            .env("DOCKER_CONFIG", k.dir.join("docker-config"))
            .env("COMPOSE_INTERACTIVE_NO_CLI", "1")
            .output()
            .expect("docker-compose")
    };
    let ok = |args: &[&str]| {
        let o = compose(args);
        assert!(
            o.status.success(),
            "docker-compose {args:?}: {}{}\n{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            tail(&k.log_text(), 30)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    ok(&["up", "-d"]);
    let ps = ok(&["ps"]);
    assert!(
        ps.contains("_db_1") && ps.contains("_web_1") && ps.matches("Up").count() >= 2,
        "{ps}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let got = std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
                s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n").ok()?;
                let mut b = String::new();
                s.read_to_string(&mut b).ok()?;
                Some(b)
            });
        if got.as_deref().is_some_and(|b| b.contains("compose web")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "published port {port} never answered"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let logs = ok(&["logs", "db"]);
    assert!(logs.contains("db ready"), "{logs}");
    let out = ok(&["exec", "-T", "db", "cat", "/data/f"]);
    assert_eq!(out.trim(), "data");
    ok(&["down", "-v"]);
    assert!(k.docker_ok(&["ps", "-aq"]).trim().is_empty());
    assert!(k.docker_ok(&["volume", "ls", "-q"]).trim().is_empty());
    let nets = k.docker_ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert_eq!(nets.lines().count(), 3, "{nets}");
}
