//! Unit-manager figures with the process runtime (bench/units.sh runs this):
//! 1. a target of N `Type=notify` units, from `start` to every unit ready, against the floor
//!    of spawning the same N processes and collecting their N READY=1 datagrams directly;
//! 2. restart latency: a unit's main process is SIGKILLed and `Restart=always`
//!    (`RestartSec=0`) brings it back, from the kill to running again (`Type=simple`) and to
//!    ready again (`Type=notify`).
//!
//! `units-bench KOS_NOTIFY_PATH [RUNS] [UNITS]`; prints one line per figure.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kos_units::runtime::process::{run_until, ProcessRuntime};
use kos_units::{ActiveState, EventLog, Manager, ManagerConfig, SystemClock, UnitPaths};

type M = Manager<ProcessRuntime, EventLog, SystemClock>;

fn stats(name: &str, mut v: Vec<Duration>) -> f64 {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let med = ms(v[v.len() / 2]);
    println!(
        "{name}: median {med:.2} ms, min {:.2} ms, p90 {:.2} ms ({} runs)",
        ms(v[0]),
        ms(v[(v.len() * 9 / 10).min(v.len() - 1)]),
        v.len()
    );
    med
}

fn manager(dir: &std::path::Path, units: &[(String, String)]) -> M {
    let lib = dir.join("units");
    std::fs::create_dir_all(&lib).expect("units dir");
    for (n, t) in units {
        std::fs::write(lib.join(n), t).expect("unit file");
    }
    let cfg = ManagerConfig {
        paths: UnitPaths {
            dirs: vec![lib],
            enable_dir: dir.join("enabled"),
        },
        notify_dir: dir.join("notify"),
        notify_dir_in_container: None,
    };
    Manager::new(
        cfg,
        ProcessRuntime::new(None),
        EventLog::default(),
        SystemClock::default(),
    )
    .expect("manager")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let notify = args
        .get(1)
        .expect("usage: units-bench KOS_NOTIFY [RUNS] [UNITS]")
        .clone();
    let runs: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(30);
    let n: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(5);
    let tmp = tempfile::tempdir().expect("tempdir");
    let script = "$N READY=1; exec sleep 1000";
    let exec = format!("Exec=/bin/sh -c '{script}'");

    // 1. target of n notify units (no start limit: the loop starts them many times a second)
    let mut units: Vec<(String, String)> = (0..n)
        .map(|i| {
            (
                format!("u{i}.container"),
                format!("[Unit]\nStartLimitIntervalSec=0\n[Container]\nImage=busybox\nEnvironment=N={notify}\n{exec}\n[Service]\nType=notify\n"),
            )
        })
        .collect();
    let wants: Vec<String> = (0..n).map(|i| format!("u{i}.container")).collect();
    units.push((
        "bench.target".into(),
        format!(
            "[Unit]\nStartLimitIntervalSec=0\nWants={}\n",
            wants.join(" ")
        ),
    ));
    let mut m = manager(&tmp.path().join("target"), &units);
    // the floor: the same processes, READY=1 read straight off one socket
    let sock_path = tmp.path().join("floor.sock");
    let sock = UnixDatagram::bind(&sock_path).expect("bind");
    let (mut up, mut floor) = (Vec::new(), Vec::new());
    // Interleaved, so the machine's load weighs on both sides alike.
    for _ in 0..runs {
        let t = Instant::now();
        m.start("bench.target").expect("start");
        let ok = run_until(&mut m, Duration::from_secs(10), |m| {
            m.active_state("bench.target") == Some(ActiveState::Active)
        });
        assert!(
            ok,
            "target not up: {}",
            kos_units::status::render_list(&m.list())
        );
        up.push(t.elapsed());
        m.stop_all().expect("stop");
        assert!(run_until(&mut m, Duration::from_secs(10), |m| m
            .list()
            .iter()
            .all(|u| u.active_state == ActiveState::Inactive)));

        let t = Instant::now();
        let mut children: Vec<_> = (0..n)
            .map(|_| {
                Command::new("/bin/sh")
                    .args(["-c", script])
                    .env_clear()
                    .env("N", &notify)
                    .env("NOTIFY_SOCKET", &sock_path)
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("spawn")
            })
            .collect();
        let mut buf = [0u8; 4096];
        let mut ready = 0;
        while ready < n {
            let len = sock.recv(&mut buf).expect("recv");
            // kos-notify's BARRIER=1 datagrams carry a descriptor we drop unread here, which
            // releases the sender as the manager would.
            if buf[..len].starts_with(b"READY=1") {
                ready += 1;
            }
        }
        floor.push(t.elapsed());
        for c in &mut children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
    drop(m);
    let a = stats(
        &format!("target of {n} notify units, start to all ready"),
        up,
    );
    let b = stats(
        &format!("floor: {n} processes spawned, {n} READY=1 received"),
        floor,
    );
    println!("manager/floor = {:.2}", a / b);

    // 2. restart latency
    for (kind, sub) in [("simple", ""), ("notify", "Type=notify\n")] {
        let unit = format!(
            "[Unit]\nStartLimitIntervalSec=0\n[Container]\nImage=busybox\nEnvironment=N={notify}\n{}\n[Service]\n{sub}Restart=always\nRestartSec=0\n",
            if kind == "notify" { exec.clone() } else { "Exec=/bin/sleep 1000".into() }
        );
        let mut m = manager(&tmp.path().join(kind), &[("r.container".into(), unit)]);
        m.start("r").expect("start");
        assert!(run_until(&mut m, Duration::from_secs(10), |m| m
            .active_state("r.container")
            == Some(ActiveState::Active)));
        let mut lat = Vec::new();
        for _ in 0..runs {
            let pid = m.status("r").expect("status").main_pid.expect("main pid");
            let t = Instant::now();
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .expect("kill");
            assert!(run_until(&mut m, Duration::from_secs(10), |m| {
                let s = m.status("r").expect("status");
                s.active_state == ActiveState::Active && s.main_pid.is_some_and(|p| p != pid)
            }));
            lat.push(t.elapsed());
        }
        stats(
            &format!("restart after SIGKILL, Type={kind}: kill to running again"),
            lat,
        );
    }
}
