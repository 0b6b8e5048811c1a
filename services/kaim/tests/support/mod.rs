//! What kaim's integration tests share: unique names, temp dirs, a recording fake upstream,
//! a cgroup standing in for a container, clients run inside it, and kaim itself.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub fn unique(what: &str) -> String {
    format!(
        "kaim-{what}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        let p = std::env::temp_dir().join(unique(what));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// One request as it reached the upstream.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A Docker-API-shaped fake on a unix socket that records every request it is sent.
pub struct FakeUpstream {
    pub path: PathBuf,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl FakeUpstream {
    pub fn start(dir: &Path) -> FakeUpstream {
        let path = dir.join("upstream.sock");
        let l = UnixListener::bind(&path).expect("bind upstream");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let s2 = seen.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(conn) = conn else { return };
                let seen = s2.clone();
                std::thread::spawn(move || serve(conn, seen));
            }
        });
        FakeUpstream { path, seen }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen").clone()
    }
}

fn serve(conn: UnixStream, seen: Arc<Mutex<Vec<Seen>>>) {
    let mut r = BufReader::new(conn.try_clone().expect("clone"));
    let mut w = conn;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut it = line.split_whitespace();
        let method = it.next().unwrap_or("").to_string();
        let target = it.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        let len = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let s = Seen {
            method,
            target: target.clone(),
            headers,
            body,
        };
        let chunked = s.header("transfer-encoding").is_some();
        seen.lock().expect("seen").push(s);
        if chunked {
            let _ = w.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
            return;
        }
        let path = target.split('?').next().unwrap_or("");
        if path.ends_with("/attach") {
            let _ = w.write_all(
                b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n",
            );
            // Echo what the client sends until it half-closes, then close.
            let mut buf = [0u8; 4096];
            loop {
                match r.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if w.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                }
            }
            let _ = w.shutdown(std::net::Shutdown::Both);
            return;
        }
        if path.ends_with("/events") {
            let _ = w.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n");
            for i in 0..3 {
                let ev = format!("{{\"seq\":{i}}}\n");
                let _ = write!(w, "{:x}\r\n{ev}\r\n", ev.len());
                let _ = w.flush();
                std::thread::sleep(Duration::from_millis(30));
            }
            let _ = w.write_all(b"0\r\n\r\n");
            continue;
        }
        let (status, body) = if path.ends_with("/_ping") {
            ("200 OK", "OK".to_string())
        } else if path.ends_with("/containers/create") {
            (
                "201 Created",
                "{\"Id\":\"fake\",\"Warnings\":[]}".to_string(),
            )
        } else {
            ("200 OK", format!("{{\"path\":{:?}}}", path))
        };
        let _ = write!(
            w,
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
    }
}

/// A cgroup made for the test (the v1 pids hierarchy on hybrid hosts, the unified one on v2),
/// standing in for a container's; removed with whatever still runs in it.
pub struct TestCgroup {
    pub dir: PathBuf,
    /// The path as /proc/PID/cgroup shows it.
    pub path: String,
}

impl TestCgroup {
    pub fn new(name: &str) -> TestCgroup {
        let root = if Path::new("/sys/fs/cgroup/pids/cgroup.procs").exists() {
            PathBuf::from("/sys/fs/cgroup/pids")
        } else {
            PathBuf::from("/sys/fs/cgroup")
        };
        let dir = root.join(name);
        std::fs::create_dir(&dir).expect("make cgroup");
        TestCgroup {
            dir,
            path: format!("/{name}"),
        }
    }

    /// A command that moves itself into this cgroup before it execs.
    pub fn command(&self, program: &str) -> Command {
        let procs =
            std::ffi::CString::new(self.dir.join("cgroup.procs").as_os_str().as_encoded_bytes())
                .expect("path");
        let mut c = Command::new(program);
        // SAFETY: between fork and exec only open/write/close are called, all async-signal-safe.
        unsafe {
            c.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let ok = libc::write(fd, b"0".as_ptr().cast(), 1) == 1;
                libc::close(fd);
                if ok {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            });
        }
        c
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        if let Ok(p) = std::fs::read_to_string(self.dir.join("cgroup.procs")) {
            for pid in p.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                // SAFETY: plain kill(2) on a pid read from the test's own cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::remove_dir(&self.dir).is_err() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Sends raw bytes over a unix socket and returns everything read back until the server
/// closes. `upgrade`: after the response head, send "ping\n", expect the echo, half-close.
pub const CLIENT_PY: &str = r#"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
s.sendall(sys.stdin.buffer.read())
data = b""
if len(sys.argv) > 2 and sys.argv[2] == "upgrade":
    while b"\r\n\r\n" not in data:
        c = s.recv(4096)
        if not c:
            break
        data += c
    s.sendall(b"ping\n")
    while not data.endswith(b"ping\n"):
        c = s.recv(4096)
        if not c:
            break
        data += c
    s.shutdown(socket.SHUT_WR)
while True:
    try:
        c = s.recv(65536)
    except ConnectionResetError:
        break
    if not c:
        break
    data += c
sys.stdout.buffer.write(data)
"#;

/// Runs the raw request through `cmd` (a python3 command, maybe inside a cgroup).
pub fn raw_request(mut cmd: Command, socket: &Path, request: &[u8], upgrade: bool) -> String {
    cmd.arg("-c").arg(CLIENT_PY).arg(socket);
    if upgrade {
        cmd.arg("upgrade");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn client");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(request)
        .expect("write request");
    let out = child.wait_with_output().expect("client");
    assert!(
        out.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn status_of(response: &str) -> u16 {
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// A running kaim, killed on drop.
pub struct Kaim {
    pub child: Child,
}

impl Kaim {
    pub fn start(args: &[String], sockets: &[&Path]) -> Kaim {
        let child = Command::new(env!("CARGO_BIN_EXE_kaim"))
            .args(args)
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn kaim");
        let mut k = Kaim { child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !sockets.iter().all(|s| s.exists()) {
            if let Ok(Some(st)) = k.child.try_wait() {
                panic!("kaim exited early: {st}");
            }
            assert!(Instant::now() < deadline, "kaim sockets never appeared");
            std::thread::sleep(Duration::from_millis(10));
        }
        k
    }
}

impl Drop for Kaim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn policy_path(name: &str) -> String {
    format!("{}/policies/{name}", env!("CARGO_MANIFEST_DIR"))
}
