//! Debian's docker-registry on a loopback port, started for one test.
//!
//! A free port is only known free when it is asked for: between that and the registry's
//! bind, another test's server (a published container port, another registry) may take it,
//! and a readiness probe that only looks for an HTTP answer then talks to the wrong server.
//! So each registry answers with a header carrying a token of its own, the probe waits for
//! that token, and a registry that lost its port is started again on another one.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::port::free_port;

const BINARY: &str = "/usr/bin/docker-registry";
const TOKEN_HEADER: &str = "x-kos-test-registry";
/// Fresh ports tried before giving up when each is lost to another server.
const PORT_ATTEMPTS: u32 = 8;
const READY_WITHIN: Duration = Duration::from_secs(20);

/// A running docker-registry, killed (and reaped) on drop.
pub struct RegistryProcess {
    child: Child,
    port: u16,
    /// Serves HTTPS (a `tls:` section in the extra YAML).
    tls: bool,
}

/// What the probe found on the port.
enum Probe {
    Ours,
    /// Some other server answers there.
    Foreign,
    /// Nothing answers yet.
    Silent,
}

impl RegistryProcess {
    /// Writes the registry's configuration to `config` (storage under `storage`, `extra`
    /// appended as further top-level YAML, e.g. an `auth:` section) and starts it, on `port`
    /// or on a free loopback port. Returns once the registry itself answers `/v2/`.
    pub fn spawn(config: &Path, storage: &Path, port: Option<u16>, extra: &str) -> Self {
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let p = port.unwrap_or_else(free_port);
            let token = unique_token();
            write_config(config, storage, p, &token, extra);
            let child = Command::new(BINARY)
                .arg("serve")
                .arg(config)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("start {BINARY}: {e}"));
            let mut reg = RegistryProcess {
                child,
                port: p,
                tls: extra.lines().any(|l| l.trim() == "tls:"),
            };
            match reg.wait_ready(&token) {
                Ok(()) => return reg,
                Err(why) => last = why,
            }
            // The registry lost its port: a fixed port may free up, a free one is chosen anew.
            drop(reg);
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("docker-registry did not come up: {last}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, the registry's host part of an image reference.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn wait_ready(&mut self, token: &str) -> Result<(), String> {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            match probe(self.port, token, self.tls) {
                Probe::Ours => return Ok(()),
                Probe::Foreign => {
                    return Err(format!("another server answers on port {}", self.port))
                }
                Probe::Silent => {}
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "it exited ({status}) before answering on port {}",
                    self.port
                ));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "nothing answered on port {} within {READY_WITHIN:?}",
                    self.port
                ));
            }
            std::thread::sleep(Duration::from_millis(30));
        }
    }
}

impl Drop for RegistryProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The extra YAML that makes a registry serve HTTPS with a fresh self-signed certificate
/// for 127.0.0.1, written (with its key) into `dir`.
pub fn self_signed_tls(dir: &Path) -> String {
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .unwrap_or_else(|e| panic!("run openssl: {e}"));
    assert!(made.success(), "openssl could not make a certificate");
    format!(
        "  tls:\n    certificate: {}\n    key: {}\n",
        cert.display(),
        key.display()
    )
}

fn unique_token() -> String {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{}-{}-{nanos}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

fn write_config(config: &Path, storage: &Path, port: u16, token: &str, extra: &str) {
    let yaml = format!(
        "version: 0.1\n\
         log:\n  level: error\n  accesslog:\n    disabled: true\n\
         storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
         http:\n  addr: 127.0.0.1:{port}\n  headers:\n    X-Kos-Test-Registry: [\"{token}\"]\n\
         {extra}",
        storage.display()
    );
    std::fs::write(config, yaml)
        .unwrap_or_else(|e| panic!("write registry config {}: {e}", config.display()));
}

/// One `GET /v2/`: whose answer is it? The header is set on every answer, 401s included.
fn probe(port: u16, token: &str, tls: bool) -> Probe {
    let head = if tls {
        https_head(port)
    } else {
        http_head(port)
    };
    match head {
        None => Probe::Silent,
        Some(text) if carries_token(&text, token) => Probe::Ours,
        Some(_) => Probe::Foreign,
    }
}

/// The answer's head over plain HTTP; None when nothing answers.
fn http_head(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    s.write_all(b"GET /v2/ HTTP/1.0\r\nHost: registry\r\n\r\n")
        .ok()?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while head.len() < 16 * 1024 && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    (!head.is_empty()).then(|| String::from_utf8_lossy(&head).into_owned())
}

/// The answer's head over TLS (the test's own certificate, so unverified), through curl;
/// None when nothing listens. A server that is not TLS gives an empty head: not ours.
fn https_head(port: u16) -> Option<String> {
    let out = Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-D", "-", "--max-time", "2"])
        .arg(format!("https://127.0.0.1:{port}/v2/"))
        .output()
        .unwrap_or_else(|e| panic!("run curl: {e}"));
    // 7: could not connect; 28: timed out.
    match out.status.code() {
        Some(7) | Some(28) => None,
        _ => Some(String::from_utf8_lossy(&out.stdout).into_owned()),
    }
}

fn carries_token(head: &str, token: &str) -> bool {
    head.lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case(TOKEN_HEADER) && value.trim() == token
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn tokens_differ_within_a_process() {
        assert_ne!(unique_token(), unique_token());
    }

    /// A server that answers every connection with a bare 404, as a container's httpd would.
    fn foreign_server() -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = l.local_addr().expect("addr").port();
        std::thread::spawn(move || {
            for mut s in l.incoming().flatten() {
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf);
                let _ = s.write_all(b"HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n");
            }
        });
        port
    }

    #[test]
    fn the_probe_tells_its_registry_from_another_server() {
        let port = foreign_server();
        assert!(matches!(probe(port, "t", false), Probe::Foreign));
        let unused = free_port();
        assert!(matches!(probe(unused, "t", false), Probe::Silent));

        let dir = std::env::temp_dir().join(format!("kos-testsupport-{}", unique_token()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let reg = RegistryProcess::spawn(&dir.join("config.yml"), &dir.join("storage"), None, "");
        let yaml = std::fs::read_to_string(dir.join("config.yml")).expect("config");
        let token = yaml
            .lines()
            .find_map(|l| l.trim().strip_prefix("X-Kos-Test-Registry: [\""))
            .and_then(|rest| rest.strip_suffix("\"]"))
            .expect("token in the config")
            .to_string();
        assert!(matches!(probe(reg.port(), &token, false), Probe::Ours));
        assert!(matches!(
            probe(reg.port(), "another", false),
            Probe::Foreign
        ));
        drop(reg);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_tls_registry_is_known_by_its_token_over_https() {
        let dir = std::env::temp_dir().join(format!("kos-testsupport-{}", unique_token()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let extra = self_signed_tls(&dir);
        let reg =
            RegistryProcess::spawn(&dir.join("config.yml"), &dir.join("storage"), None, &extra);
        assert!(reg.tls);
        assert!(matches!(probe(reg.port(), "another", true), Probe::Foreign));
        // A plain HTTP server probed as TLS is not ours either.
        assert!(matches!(probe(foreign_server(), "t", true), Probe::Foreign));
        drop(reg);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_registry_whose_fixed_port_is_held_gives_up_with_the_reason() {
        let port = foreign_server();
        let dir = std::env::temp_dir().join(format!("kos-testsupport-{}", unique_token()));
        std::fs::create_dir_all(&dir).expect("scratch dir");
        let (config, storage) = (dir.join("config.yml"), dir.join("storage"));
        let outcome = std::panic::catch_unwind(|| {
            RegistryProcess::spawn(&config, &storage, Some(port), "");
        });
        let _ = std::fs::remove_dir_all(&dir);
        let message = outcome.expect_err("the port is another server's");
        let text = message
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default();
        assert!(text.contains("another server answers on port"), "{text}");
    }
}
