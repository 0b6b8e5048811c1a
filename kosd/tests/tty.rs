//! `docker run -it` through a real pty (tmux): typed input reaches the shell,
//! its output comes back, window size is passed, exit ends the session.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

struct Tmux(String);

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .status();
    }
}

fn capture(s: &str) -> String {
    let o = Command::new("tmux")
        .args(["capture-pane", "-p", "-t", s])
        .output()
        .expect("tmux");
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn tmux_keys(session: &str, keys: &[&str]) {
    let st = Command::new("tmux")
        .args(["send-keys", "-t", session])
        .args(keys)
        .status()
        .expect("send-keys");
    assert!(st.success());
}

fn tmux_session(session: &str, cmd: &str) {
    let st = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-s",
            session,
            "-x",
            "100",
            "-y",
            "30",
            cmd,
        ])
        .status()
        .expect("tmux");
    assert!(st.success());
}

fn wait_screen(k: &Kosd, s: &str, want: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let screen = capture(s);
        if screen.contains(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "screen never showed {want:?}:\n{screen}\n{}",
            tail(&k.log_text(), 20)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn run_interactive_tty() {
    let k = Kosd::start(&[]);
    let reg = Registry::start();
    let img = reg.image("tty:1");
    push_busybox(&img, &ImageSpec::default());
    k.docker_ok(&["pull", "-q", &img]);
    let session = unique("tty");
    let _t = Tmux(session.clone());
    let cmd = format!(
        "DOCKER_CONFIG={} {DOCKER} -H {} run -it --rm --network none --name ttybox {img} sh; echo exited-$?; sleep 30",
        k.dir.join("docker-config").display(),
        k.host()
    );
    let st = Command::new("tmux")
        .args([
            "new-session",
            "-d",
            "-s",
            &session,
            "-x",
            "100",
            "-y",
            "30",
            &cmd,
        ])
        .status()
        .expect("tmux");
    assert!(st.success());
    std::thread::sleep(Duration::from_millis(500));
    // The prompt ('/ # ', trailing space trimmed by tmux) has no newline: it shows before
    // anything is typed only if the shim logs
    // a terminal's output as it comes.
    wait_screen(&k, &session, "\n/ #");
    let send = |keys: &str| {
        Command::new("tmux")
            .args(["send-keys", "-t", &session, keys, "Enter"])
            .status()
            .expect("send-keys");
    };
    send("echo tty-$((40+2)); tty; stty size");
    wait_screen(&k, &session, "tty-42");
    let screen = capture(&session);
    assert!(screen.contains("/dev/pts/"), "{screen}");
    assert!(
        screen.contains("30 100"),
        "window size not passed:\n{screen}"
    );
    send("exit 3");
    wait_screen(&k, &session, "exited-3");
    assert!(k.docker_ok(&["ps", "-aq"]).trim().is_empty());
}

/// ctrl-p ctrl-q leaves the container running with its stdin open; a later attach
/// gets the shell back and typed input reaches it.
#[test]
fn detach_keys_leave_the_container_running() {
    let k = Kosd::start(&[]);
    let reg = Registry::start();
    let img = reg.image("detach:1");
    push_busybox(&img, &ImageSpec::default());
    k.docker_ok(&["pull", "-q", &img]);
    let name = unique("det");
    let docker = format!(
        "DOCKER_CONFIG={} {DOCKER} -H {}",
        k.dir.join("docker-config").display(),
        k.host()
    );
    let s1 = unique("tty1");
    let _t1 = Tmux(s1.clone());
    tmux_session(
        &s1,
        &format!(
            "{docker} run -it --network none --name {name} {img} sh; echo detached-$?; sleep 30"
        ),
    );
    wait_screen(&k, &s1, "\n/ #");
    tmux_keys(&s1, &["C-p", "C-q"]);
    wait_screen(&k, &s1, "detached-0");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let ps = k.docker_ok(&["ps", "--format", "{{.Names}} {{.State}}"]);
    assert!(ps.contains(&format!("{name} running")), "{ps}");

    let s2 = unique("tty2");
    let _t2 = Tmux(s2.clone());
    tmux_session(
        &s2,
        &format!("{docker} attach {name}; echo attach-ended-$?; sleep 30"),
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    tmux_keys(&s2, &["echo again-$((40+2))", "Enter"]);
    wait_screen(&k, &s2, "again-42");
    // Detach once more; the container still runs, then goes with rm -f.
    tmux_keys(&s2, &["C-p", "C-q"]);
    // (The CLI's attach reports the detach as "read escape sequence"; the point is that
    // the stream ended and the container did not.)
    wait_screen(&k, &s2, "attach-ended-");
    let ps = k.docker_ok(&["ps", "--format", "{{.Names}} {{.State}}"]);
    assert!(ps.contains(&format!("{name} running")), "{ps}");

    // A client that sends the keys itself (here custom ones): kosd ends the stream.
    let (st, _) = k.http(
        "POST",
        &format!("/containers/{name}/attach?stream=1&stdin=1&stdout=1&detachKeys=ctrl-x,alt-y"),
        b"",
    );
    assert_eq!(st, 400, "bad detach keys are refused");
    let got = raw_attach_and_detach(&k, &name);
    assert!(got.contains("raw-42"), "{got}");
    let ps = k.docker_ok(&["ps", "--format", "{{.Names}} {{.State}}"]);
    assert!(ps.contains(&format!("{name} running")), "{ps}");
    k.docker_ok(&["rm", "-f", &name]);
}

/// A hijacked attach with detachKeys=ctrl-x,y that types a command, then the keys;
/// returns what came back before kosd ended the stream.
fn raw_attach_and_detach(k: &Kosd, name: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(&k.sock).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    write!(
        s,
        "POST /containers/{name}/attach?stream=1&stdin=1&stdout=1&stderr=1&detachKeys=ctrl-x,y HTTP/1.1\r\n\
         Host: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
    )
    .expect("request");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        let n = s.read(&mut buf).expect("101 response");
        assert!(n > 0, "closed before the response");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(b"echo raw-$((40+2))\n").expect("type");
    std::thread::sleep(Duration::from_millis(500));
    s.write_all(b"\x18y").expect("detach keys");
    // The stream must end by itself (the read timeout fails the test otherwise).
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!(
                "kosd did not end the attach on the detach keys ({e}): {}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// `docker exec -it --detach-keys` through a pty: the keys end the CLI's stream and the
/// exec's shell keeps running (with its terminal); a raw client's keys make kosd end the
/// stream itself and say `exec_detach`.
#[test]
fn exec_detach_keys_leave_the_process_running() {
    let k = Kosd::start(&[]);
    let reg = Registry::start();
    let img = reg.image("execdetach:1");
    push_busybox(&img, &ImageSpec::default());
    k.docker_ok(&["pull", "-q", &img]);
    let name = unique("xdet");
    k.docker_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        &name,
        &img,
        "sleep",
        "300",
    ]);
    // Bad keys are refused when the exec is created.
    let (st, body) = k.http(
        "POST",
        &format!("/containers/{name}/exec"),
        br#"{"Cmd":["true"],"DetachKeys":"ctrl-x,alt-y"}"#,
    );
    assert_eq!(st, 400, "{body}");
    assert!(body.contains("detach keys"), "{body}");

    let docker = format!(
        "DOCKER_CONFIG={} {DOCKER} -H {}",
        k.dir.join("docker-config").display(),
        k.host()
    );
    let s = unique("xtty");
    let _t = Tmux(s.clone());
    tmux_session(
        &s,
        &format!(
            "{docker} exec -it --detach-keys ctrl-x,y {name} sh; echo exec-ended-$?; sleep 30"
        ),
    );
    wait_screen(&k, &s, "/ #");
    tmux_keys(
        &s,
        &["echo $$ > /tmp/exec-pid; echo in-exec-$((40+2))", "Enter"],
    );
    wait_screen(&k, &s, "in-exec-42");
    // ctrl-x alone is held, then passed on when the next key is not `y`.
    tmux_keys(&s, &["C-x", "C-x", "y"]);
    wait_screen(&k, &s, "exec-ended-");
    let pid = k.docker_ok(&["exec", &name, "cat", "/tmp/exec-pid"]);
    let pid = pid.trim();
    assert!(!pid.is_empty());
    // The exec's shell is still there, still on its terminal.
    std::thread::sleep(Duration::from_millis(300));
    let stat = k.docker_ok(&["exec", &name, "cat", &format!("/proc/{pid}/cmdline")]);
    assert!(stat.starts_with("sh"), "exec shell gone: {stat:?}");
    let tty = k.docker_ok(&["exec", &name, "readlink", &format!("/proc/{pid}/fd/0")]);
    assert!(tty.trim().starts_with("/dev/pts/"), "{tty}");

    // A raw client that sends the keys itself: kosd ends the stream, the exec runs on.
    let (st, body) = k.http(
        "POST",
        &format!("/containers/{name}/exec"),
        br#"{"Cmd":["sh"],"Tty":true,"AttachStdin":true,"AttachStdout":true,"DetachKeys":"ctrl-x,y"}"#,
    );
    assert_eq!(st, 201, "{body}");
    let xid = serde_json::from_str::<serde_json::Value>(&body).expect("json")["Id"]
        .as_str()
        .expect("Id")
        .to_string();
    let got = raw_exec_and_detach(&k, &xid);
    assert!(got.contains("raw-42"), "{got}");
    std::thread::sleep(Duration::from_millis(300));
    let (_, body) = k.http("GET", &format!("/exec/{xid}/json"), b"");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["Running"], true, "{body}");
    // kosd saw the keys itself (the CLI may end its side first): it says so.
    // `--until 0s` is the client's clock in whole seconds: let this second pass.
    std::thread::sleep(Duration::from_millis(1100));
    let ev = k.docker_ok(&[
        "events",
        "--since",
        "0",
        "--until",
        "0s",
        "--filter",
        &format!("container={name}"),
        "--format",
        "{{.Action}}",
    ]);
    assert!(ev.lines().any(|l| l == "exec_detach"), "{ev}");
    k.docker_ok(&["rm", "-f", &name]);
}

/// A hijacked exec start that types a command, then ctrl-x,y; returns what came back
/// before kosd ended the stream (the read timeout fails the test if it never does).
fn raw_exec_and_detach(k: &Kosd, xid: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(&k.sock).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let body = r#"{"Detach":false,"Tty":true}"#;
    write!(
        s,
        "POST /exec/{xid}/start HTTP/1.1\r\nHost: d\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("request");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\r\n\r\n") {
        let n = s.read(&mut buf).expect("101 response");
        assert!(n > 0, "closed before the response");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(
        String::from_utf8_lossy(&got).starts_with("HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    s.write_all(b"echo raw-$((40+2))\n").expect("type");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&got).contains("raw-42") && Instant::now() < deadline {
        let n = s.read(&mut buf).expect("output");
        got.extend_from_slice(&buf[..n]);
    }
    s.write_all(b"\x18y").expect("detach keys");
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => panic!(
                "kosd did not end the exec stream on the detach keys ({e}): {}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}
