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
    // The shell's banner shows the session is attached. (The prompt itself has no newline;
    // the shim's json-file log holds a partial line until one comes, so it shows up with
    // the next line.)
    wait_screen(&k, &session, "built-in shell");
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
