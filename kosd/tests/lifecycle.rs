//! Restart policies, live-restore and daemon restarts, wait conditions,
//! health checks, events from containers.

mod common;

use std::time::{Duration, Instant};

use common::*;

fn wait_for(k: &Kosd, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}\n{}",
            tail(&k.log_text(), 60)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn restart_policies_and_daemon_restart() {
    let mut k = Kosd::start(&[]);
    let reg = Registry::start();
    let img = pulled_busybox(&k, &reg, "rp", &ImageSpec::default());
    // on-failure:2 restarts twice, then stays exited.
    k.docker_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "flaky",
        "--restart",
        "on-failure:2",
        &img,
        "sh",
        "-c",
        "exit 5",
    ]);
    wait_for(&k, "two restarts", || {
        k.docker_ok(&[
            "inspect",
            "-f",
            "{{.RestartCount}} {{.State.Status}}",
            "flaky",
        ])
        .trim()
            == "2 exited"
    });
    // always: a container that exits 0 comes back.
    k.docker_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "always",
        "--restart",
        "always",
        &img,
        "sh",
        "-c",
        "sleep 0.3",
    ]);
    wait_for(&k, "a restart", || {
        k.docker_ok(&["inspect", "-f", "{{.RestartCount}}", "always"])
            .trim()
            .parse::<i64>()
            .unwrap_or(0)
            >= 1
    });
    // unless-stopped, stopped by the user, stays down across a daemon restart;
    // always comes back after the daemon restarts.
    k.docker_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "us",
        "--restart",
        "unless-stopped",
        &img,
        "sleep",
        "1000",
    ]);
    k.docker_ok(&["stop", "-t", "0", "us"]);
    k.docker_ok(&["update", "--restart", "no", "always"]);
    assert_eq!(
        k.docker_ok(&[
            "inspect",
            "-f",
            "{{.HostConfig.RestartPolicy.Name}}",
            "always"
        ])
        .trim(),
        "no"
    );
    k.docker_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "persist",
        "--restart",
        "always",
        &img,
        "sleep",
        "1000",
    ]);
    let st = k.stop().expect("kosd stopped");
    assert!(st.success());
    // Without live-restore the daemon stopped its containers.
    assert!(
        k.leftover_processes().is_empty(),
        "{:?}",
        k.leftover_processes()
    );
    k.spawn();
    wait_for(&k, "persist running again", || {
        k.docker_ok(&["inspect", "-f", "{{.State.Running}}", "persist"])
            .trim()
            == "true"
    });
    assert_eq!(
        k.docker_ok(&["inspect", "-f", "{{.State.Running}}", "us"])
            .trim(),
        "false"
    );
    k.docker_ok(&["rm", "-f", "flaky", "always", "us", "persist"]);
}

#[test]
fn live_restore_survives_kill_9() {
    let mut k = Kosd::start(&["--live-restore"]);
    let reg = Registry::start();
    let img = pulled_busybox(&k, &reg, "lr", &ImageSpec::default());
    k.docker_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "keeper",
        &img,
        "sh",
        "-c",
        "i=0; while true; do echo line $i; i=$((i+1)); sleep 0.1; done",
    ]);
    let pid = k
        .docker_ok(&["inspect", "-f", "{{.State.Pid}}", "keeper"])
        .trim()
        .to_string();
    k.kill9();
    std::thread::sleep(Duration::from_millis(800));
    // The container kept running (and logging) with kosd gone.
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "container died with kosd"
    );
    k.spawn();
    assert_eq!(
        k.docker_ok(&["inspect", "-f", "{{.State.Pid}}", "keeper"])
            .trim(),
        pid
    );
    let logs = k.docker_ok(&["logs", "keeper"]);
    assert!(logs.lines().count() >= 8, "{logs}");
    // Reattached: stop works and the exit is seen.
    k.docker_ok(&["stop", "-t", "1", "keeper"]);
    assert_eq!(
        k.docker_ok(&["inspect", "-f", "{{.State.Status}}", "keeper"])
            .trim(),
        "exited"
    );
    // A clean stop with live-restore leaves containers running too.
    k.docker_ok(&["start", "keeper"]);
    k.stop();
    k.spawn();
    assert_eq!(
        k.docker_ok(&["inspect", "-f", "{{.State.Running}}", "keeper"])
            .trim(),
        "true"
    );
    k.docker_ok(&["rm", "-f", "keeper"]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        k.leftover_processes().is_empty(),
        "{:?}",
        k.leftover_processes()
    );
}

#[test]
fn wait_health_and_container_events() {
    let k = Kosd::start(&[]);
    let reg = Registry::start();
    let img = pulled_busybox(&k, &reg, "hw", &ImageSpec::default());
    let since = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_secs()
            - 1
    );
    k.docker_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "ww",
        &img,
        "sh",
        "-c",
        "sleep 0.5; exit 4",
    ]);
    assert_eq!(k.docker_ok(&["wait", "ww"]).trim(), "4");
    // Health: healthy once the file exists, from run flags.
    k.docker_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "hh",
        "--health-cmd",
        "test -f /tmp/ok",
        "--health-interval",
        "200ms",
        "--health-retries",
        "2",
        &img,
        "sh",
        "-c",
        "sleep 1; touch /tmp/ok; sleep 1000",
    ]);
    assert_eq!(
        k.docker_ok(&["inspect", "-f", "{{.State.Health.Status}}", "hh"])
            .trim(),
        "starting"
    );
    wait_for(&k, "healthy", || {
        k.docker_ok(&["inspect", "-f", "{{.State.Health.Status}}", "hh"])
            .trim()
            == "healthy"
    });
    assert!(
        k.docker_ok(&["ps", "--filter", "health=healthy", "-q"])
            .trim()
            .len()
            == 12
    );
    k.docker_ok(&["exec", "hh", "rm", "/tmp/ok"]);
    wait_for(&k, "unhealthy", || {
        k.docker_ok(&["inspect", "-f", "{{.State.Health.Status}}", "hh"])
            .trim()
            == "unhealthy"
    });
    k.docker_ok(&["top", "hh"]);
    k.docker_ok(&["stop", "-t", "0", "hh"]);
    k.docker_ok(&["start", "hh"]);
    k.docker_ok(&["rm", "-f", "hh", "ww"]);
    let until = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_secs()
            + 1
    );
    let ev = k.docker_ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--filter",
        "type=container",
        "--format",
        "{{.Action}} {{.Actor.Attributes.name}} {{.Actor.Attributes.image}} {{.Actor.Attributes.signal}}",
    ]);
    let ev: Vec<&str> = ev
        .lines()
        .map(|l| l.trim_end_matches(" <no value>"))
        .collect();
    let ev = ev.join("\n");
    let exec = format!("exec_create: rm /tmp/ok hh {img}");
    for want in [
        "create ww",
        "start ww",
        "die ww",
        "destroy ww",
        "health_status: healthy hh",
        "health_status: unhealthy hh",
        // As dockerd: every exec, top and delivered signal (stop's, then rm -f's) has
        // its event, with the container's name and image.
        &exec,
        &format!("exec_die hh {img}"),
        &format!("top hh {img}"),
        &format!("kill hh {img} 15"),
        &format!("stop hh {img}"),
        &format!("kill hh {img} 9"),
    ] {
        assert!(
            ev.lines().any(|l| l.starts_with(want)),
            "missing {want:?} in\n{ev}"
        );
    }
    // The whole unfiltered stream of one container on a user network, in dockerd's order:
    // the network events around start and exit, and none of KOS's device events.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time");
    let since = format!("{}.{:09}", now.as_secs(), now.subsec_nanos());
    k.docker_ok(&["network", "create", "evnet"]);
    k.docker_ok(&[
        "run",
        "--rm",
        "--name",
        "evc",
        "--network",
        "evnet",
        &img,
        "true",
    ]);
    k.docker_ok(&["network", "rm", "evnet"]);
    let until = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_secs()
            + 1
    );
    let all = k.docker_ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &until,
        "--format",
        "{{.Type}} {{.Action}}",
    ]);
    let got: Vec<&str> = all.lines().collect();
    assert_eq!(
        got,
        [
            "network create",
            "container create",
            "container attach",
            "network connect",
            "container start",
            "container die",
            "network disconnect",
            "container destroy",
            "network destroy",
        ],
        "{all}"
    );
    // With --network none, as dockerd: the container is on the `none` network while it
    // runs (inspect, network inspect) and the events say so, with the null driver.
    let none_id = k.docker_ok(&["network", "inspect", "-f", "{{.Id}}", "none"]);
    let none_id = none_id.trim();
    let since = now_arg();
    k.docker_ok(&[
        "run",
        "-d",
        "--name",
        "nonec",
        "--network",
        "none",
        &img,
        "sleep",
        "30",
    ]);
    let ep = k.docker_ok(&[
        "inspect",
        "-f",
        "{{.NetworkSettings.Networks.none.NetworkID}} {{.NetworkSettings.Networks.none.EndpointID}}",
        "nonec",
    ]);
    let (net_id, ep_id) = ep.trim().split_once(' ').expect("two fields");
    assert_eq!(net_id, none_id, "{ep}");
    assert_eq!(ep_id.len(), 64, "{ep}");
    let members = k.docker_ok(&[
        "network",
        "inspect",
        "-f",
        "{{range $id, $c := .Containers}}{{$c.Name}} {{$c.EndpointID}} [{{$c.IPv4Address}}]{{end}}",
        "none",
    ]);
    assert_eq!(members.trim(), format!("nonec {ep_id} []"));
    k.docker_ok(&["stop", "-t", "0", "nonec"]);
    assert_eq!(
        k.docker_ok(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.Networks.none.EndpointID}}|",
            "nonec"
        ]),
        "|\n"
    );
    k.docker_ok(&["rm", "nonec"]);
    let stream = k.docker_ok(&[
        "events",
        "--since",
        &since,
        "--until",
        &now_arg(),
        "--filter",
        "type=network",
        "--format",
        "{{.Action}} {{.Actor.ID}} {{.Actor.Attributes.type}} {{.Actor.Attributes.name}}",
    ]);
    let got: Vec<&str> = stream.lines().collect();
    assert_eq!(
        got,
        [
            format!("connect {none_id} null none"),
            format!("disconnect {none_id} null none"),
        ],
        "{stream}"
    );
    // Likewise --network host, on the `host` network.
    let host_id = k.docker_ok(&["network", "inspect", "-f", "{{.Id}}", "host"]);
    k.docker_ok(&[
        "run",
        "-d",
        "--name",
        "hostc",
        "--network",
        "host",
        &img,
        "sleep",
        "30",
    ]);
    assert_eq!(
        k.docker_ok(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.Networks.host.NetworkID}}",
            "hostc"
        ]),
        host_id
    );
    assert_eq!(
        k.docker_ok(&[
            "network",
            "inspect",
            "-f",
            "{{range .Containers}}{{.Name}}{{end}}",
            "host"
        ])
        .trim(),
        "hostc"
    );
    k.docker_ok(&["rm", "-f", "hostc"]);
}

/// Now, as `docker events --since/--until` take it (seconds.nanoseconds).
fn now_arg() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time");
    format!("{}.{:09}", now.as_secs(), now.subsec_nanos())
}
