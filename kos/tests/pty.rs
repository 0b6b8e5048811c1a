//! Terminal behaviour through a real pty (a private tmux server): `run -it`
//! with raw mode, window size and SIGWINCH, detach keys, `exec -it`, and the
//! pull progress bars.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

/// A tmux server of the test's own (its socket in a directory of the test),
/// killed on drop.
struct Tmux {
    sock: String,
    _dir: TempDir,
}

impl Tmux {
    fn new(cols: u16, rows: u16, cmd: &str) -> Tmux {
        let dir = TempDir::new("tmux");
        let t = Tmux {
            sock: dir.path("sock").to_string_lossy().into_owned(),
            _dir: dir,
        };
        let ok = Command::new("tmux")
            .args([
                "-S",
                &t.sock,
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-s",
                "s",
            ])
            .args(["-x", &cols.to_string(), "-y", &rows.to_string()])
            .arg(cmd)
            .env_remove("TMUX")
            .status()
            .expect("tmux")
            .success();
        assert!(ok, "tmux new-session failed");
        t
    }

    fn tmux(&self, args: &[&str]) -> String {
        let o = Command::new("tmux")
            .args(["-S", &self.sock])
            .args(args)
            .output()
            .expect("tmux");
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p", "-t", "s"])
    }

    fn keys(&self, keys: &[&str]) {
        let mut a = vec!["send-keys", "-t", "s"];
        a.extend_from_slice(keys);
        self.tmux(&a);
    }

    fn wait_for(&self, what: &str) -> String {
        let mut last = String::new();
        let found = eventually(30, || {
            last = self.screen();
            last.contains(what)
        });
        assert!(found, "{what:?} never appeared; screen:\n{last}");
        last
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-S", &self.sock, "kill-server"])
            .status();
    }
}

fn kos_line(d: &Daemon, args: &str) -> String {
    format!(
        "{} -H {} {args}; echo EXIT=$?; sleep 60",
        bin("kos").display(),
        d.host()
    )
}

#[test]
fn run_it_raw_mode_resize_and_detach() {
    let (d, _r, img) = setup("pty");
    let t = Tmux::new(
        100,
        30,
        &kos_line(&d, &format!("run -it --name tty1 --network none {img} sh")),
    );
    // kosd streams attach output from the container's log, which holds whole
    // lines: the banner shows at once, the prompt only with the next line.
    t.wait_for("built-in shell");
    t.keys(&["stty size; echo $((6*7))", "Enter"]);
    let s = t.wait_for("42");
    assert!(s.contains("30 100"), "{s}");
    // The container sees a terminal, with our size.
    t.keys(&["tty; stty -a | grep -o 'icanon' | head -1", "Enter"]);
    t.wait_for("/dev/pts/");
    // SIGWINCH: the new size reaches the container.
    t.tmux(&["resize-window", "-t", "s", "-x", "120", "-y", "40"]);
    std::thread::sleep(Duration::from_millis(500));
    t.keys(&["clear; stty size", "Enter"]);
    t.wait_for("40 120");
    // ctrl-p ctrl-q detaches: kos exits 0 and the container keeps running.
    t.keys(&["C-p", "C-q"]);
    t.wait_for("EXIT=0");
    assert_eq!(
        d.kos_ok(&["inspect", "-f", "{{.State.Running}}", "tty1"]),
        "true\n"
    );

    // exec -it into it: a pty again; the exec's own exit code.
    let t2 = Tmux::new(80, 24, &kos_line(&d, "exec -it tty1 sh"));
    t2.wait_for("built-in shell");
    t2.keys(&["tty", "Enter"]);
    t2.wait_for("/dev/pts/");
    t2.keys(&["exit 3", "Enter"]);
    t2.wait_for("EXIT=3");

    // attach to a container started detached with a terminal (stdin kept
    // open), then the container's own exit code when its shell exits.
    d.kos_ok(&[
        "run",
        "-dit",
        "--name",
        "tty2",
        "--network",
        "none",
        &img,
        "sh",
    ]);
    let t3 = Tmux::new(80, 24, &kos_line(&d, "attach tty2"));
    std::thread::sleep(Duration::from_millis(500));
    t3.keys(&["echo attached-$((1+1))", "Enter"]);
    t3.wait_for("attached-2");
    t3.keys(&["exit 9", "Enter"]);
    t3.wait_for("EXIT=9");
    d.kos_ok(&["rm", "tty2"]);
    d.kos_ok(&["rm", "-f", "tty1"]);

    // run -it --rm: exit code of the shell, nothing left.
    let t4 = Tmux::new(
        80,
        24,
        &kos_line(
            &d,
            &format!("run -it --rm --network none {img} sh -c 'exit 5'"),
        ),
    );
    t4.wait_for("EXIT=5");
    assert_eq!(d.kos_ok(&["ps", "-aq"]), "");
}

#[test]
fn pull_draws_progress_bars_on_a_terminal() {
    let d = Daemon::start();
    let reg = Registry::start();
    let img = reg.name("bars:1");
    // A bigger layer so the download takes a while.
    let big: String = (0..(24 << 20) / 16)
        .map(|i| format!("{:015x}\n", (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15)))
        .collect();
    push_busybox(&img, &[("opt/big", &big)], serde_json::json!({}));
    let raw = TempDir::new("raw");
    let rawf = raw.path("pane.out");
    let t = Tmux::new(
        120,
        30,
        &format!("sleep 1; {}", kos_line(&d, &format!("pull {img}"))),
    );
    t.tmux(&[
        "pipe-pane",
        "-t",
        "s",
        "-o",
        &format!("cat >> {}", rawf.display()),
    ]);
    let s = t.wait_for("EXIT=0");
    assert!(s.contains(": Pull complete"), "{s}");
    assert!(
        s.contains(&format!("Status: Downloaded newer image for {img}")),
        "{s}"
    );
    assert!(s.contains(&img), "{s}");
    // Per-layer lines are redrawn in place (cursor movement), not appended.
    let bytes = std::fs::read(&rawf).expect("pane output");
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("\x1b["), "no terminal redraws: {text:?}");
    assert!(
        text.contains("Downloading") && text.contains("=>"),
        "no progress bar drawn: {text:?}"
    );
    assert!(
        !s.contains("Pulling fs layer"),
        "a finished bar still shows its first state:\n{s}"
    );
    // The same pull without a terminal: docker's plain lines.
    let d2 = Daemon::start();
    let plain = d2.kos_ok(&["pull", &img]);
    assert!(
        plain.contains(": Pulling fs layer\n") && !plain.contains("\x1b["),
        "{plain}"
    );
}

#[test]
fn stats_redraws_one_table_on_a_terminal() {
    let (d, _r, img) = setup("livestats");
    d.kos_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "live",
        &img,
        "sleep",
        "600",
    ]);
    let t = Tmux::new(140, 20, &kos_line(&d, "stats live"));
    t.wait_for("live");
    // Redrawn in place every second: over a few refreshes the screen never
    // holds two tables (a capture may fall between clearing and drawing).
    let mut whole = 0;
    for _ in 0..30 {
        let s = t.screen();
        let n = s.matches("CONTAINER ID").count();
        assert!(n <= 1, "tables appended, not redrawn:\n{s}");
        if n == 1 && s.matches(" live ").count() == 1 && s.contains("MEM USAGE / LIMIT") {
            whole += 1;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(whole > 0, "no complete table seen");
    t.keys(&["C-c"]);
    d.kos_ok(&["rm", "-f", "live"]);
}
