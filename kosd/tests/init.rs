//! `docker run --init`: kos-init as pid 1 in front of the program, its exit
//! status passed on, and `docker stop` forwarded as SIGTERM.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn setup() -> (Kosd, Registry, String) {
    let k = Kosd::start(&[]);
    let reg = Registry::start();
    let img = reg.image("initimg:1");
    push_busybox(&img, &ImageSpec::default());
    k.docker_ok(&["pull", "-q", &img]);
    (k, reg, img)
}

#[test]
fn init_is_pid_1_and_passes_status_and_signals() {
    let (k, _reg, img) = setup();
    let ps = k.docker_ok(&[
        "run",
        "--rm",
        "--init",
        "--network",
        "none",
        &img,
        "ps",
        "-o",
        "pid,comm",
    ]);
    let rows: Vec<Vec<&str>> = ps
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.first(), Some(&vec!["1", "kos-init"]), "{ps}");
    assert!(rows.iter().any(|r| r.get(1) == Some(&"ps")), "{ps}");
    // Without --init the program is pid 1 itself.
    let ps = k.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        &img,
        "ps",
        "-o",
        "pid,comm",
    ]);
    assert!(
        ps.lines()
            .nth(1)
            .is_some_and(|l| l.split_whitespace().collect::<Vec<_>>() == ["1", "ps"]),
        "{ps}"
    );

    // An orphan (sleep, its parent shell gone) is re-parented to kos-init and reaped
    // when it ends: no zombie stays.
    let ps = k.docker_ok(&[
        "run",
        "--rm",
        "--init",
        "--network",
        "none",
        &img,
        "sh",
        "-c",
        "sh -c 'sleep 0.2 &'; sleep 1; ps -o stat,comm",
    ]);
    assert!(!ps.lines().any(|l| l.trim_start().starts_with('Z')), "{ps}");
    // Both sleeps are over and gone, the orphan reaped by kos-init.
    assert!(!ps.contains("sleep"), "{ps}");

    // The program's exit status is the container's.
    let o = k.docker(&[
        "run",
        "--init",
        "--name",
        "exit3",
        "--network",
        "none",
        &img,
        "sh",
        "-c",
        "exit 3",
    ]);
    assert_eq!(
        o.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let code = k.docker_ok(&["inspect", "-f", "{{.State.ExitCode}}", "exit3"]);
    assert_eq!(code.trim(), "3");

    // A program that is not there: 127, as a shell says.
    let o = k.docker(&[
        "run",
        "--rm",
        "--init",
        "--network",
        "none",
        &img,
        "no-such-program",
    ]);
    assert_eq!(
        o.status.code(),
        Some(127),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );

    // sleep as pid 1 would ignore SIGTERM; behind kos-init it gets it and dies at once.
    k.docker_ok(&[
        "run",
        "-d",
        "--init",
        "--name",
        "sleeper",
        "--network",
        "none",
        &img,
        "sleep",
        "1000",
    ]);
    // The program runs with no signal blocked (kos-init blocks them all for itself).
    let blk = k.docker_ok(&[
        "exec",
        "sleeper",
        "sh",
        "-c",
        "grep SigBlk /proc/$(pidof sleep)/status",
    ]);
    assert_eq!(
        blk.split_whitespace().nth(1),
        Some("0000000000000000"),
        "{blk}"
    );
    let t = Instant::now();
    k.docker_ok(&["stop", "-t", "20", "sleeper"]);
    let took = t.elapsed();
    assert!(took < Duration::from_secs(10), "stop took {took:?}");
    let code = k.docker_ok(&["inspect", "-f", "{{.State.ExitCode}}", "sleeper"]);
    assert_eq!(code.trim(), "143", "sleep ended by SIGTERM");
    k.docker_ok(&["rm", "-f", "exit3", "sleeper"]);
}
