//! Bridge networking through kos-network: the default bridge, published
//! ports, user networks, and the network endpoints.

mod common;

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use common::*;

fn setup(tag: &str) -> (Kosd, Registry, String) {
    let k = Kosd::start(&[]);
    let reg = Registry::start();
    let img = reg.image(&format!("{tag}:1"));
    push_busybox(
        &img,
        &ImageSpec {
            files: vec![("/www/index.html".into(), "hello from kos\n".into())],
            ..Default::default()
        },
    );
    k.docker_ok(&["pull", "-q", &img]);
    (k, reg, img)
}

fn http_get(addr: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            if !out.is_empty() {
                return out;
            }
        }
        assert!(Instant::now() < deadline, "no answer from {addr}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn default_bridge_published_ports_and_cleanup() {
    let (k, _reg, img) = setup("br");
    // The default network: an address on the daemon's bridge, a default route.
    let out = k.docker_ok(&[
        "run",
        "--rm",
        &img,
        "sh",
        "-c",
        "ip -4 addr show eth0 | grep inet; ip route | grep default",
    ]);
    assert!(
        out.contains("inet ") && out.contains("default via"),
        "{out}"
    );
    let port = kos_testsupport::free_port();
    let publish = format!("{port}:80");
    k.docker_ok(&[
        "run", "-d", "--name", "web", "-p", &publish, &img, "httpd", "-f", "-p", "80", "-h", "/www",
    ]);
    let ip = k
        .docker_ok(&[
            "inspect",
            "-f",
            "{{.NetworkSettings.Networks.bridge.IPAddress}}",
            "web",
        ])
        .trim()
        .to_string();
    assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "{ip:?}");
    assert!(http_get(&format!("{ip}:80")).contains("hello from kos"));
    let ports = k.docker_ok(&["port", "web"]);
    assert!(
        ports.contains(&format!("80/tcp -> 0.0.0.0:{port}")),
        "{ports}"
    );
    let ps = k.docker_ok(&["ps", "--format", "{{.Ports}}"]);
    assert!(ps.contains(&format!("{port}->80/tcp")), "{ps}");
    // The published port answers on the host's own addresses.
    let host_ip = std::process::Command::new("hostname")
        .arg("-I")
        .output()
        .expect("hostname");
    let host_ip = String::from_utf8_lossy(&host_ip.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string();
    if !host_ip.is_empty() {
        assert!(http_get(&format!("{host_ip}:{port}")).contains("hello from kos"));
    }
    // The port is taken: a second container asking for it fails cleanly.
    let o = k.docker(&[
        "run", "-d", "--name", "web2", "-p", &publish, &img, "httpd", "-f",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&port.to_string()), "{err}");
    k.docker_ok(&["rm", "-f", "web", "web2"]);
    // Nothing of the container's networking is left: no pin, no veth in the bridge.
    let pins = std::fs::read_dir(k.exec_root().join("netns"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(pins, 0);
    // The veths are set down at the removal and deleted right after it (a link deletion
    // waits for an RCU barrier, which `rm` does not wait for).
    let ports = std::fs::read_dir(format!("/sys/class/net/{}/brif", k.bridge))
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name())
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    for p in ports {
        let p = p.to_string_lossy();
        // Gone meanwhile is fine; still there, it is down (IFF_UP clear).
        if let Ok(flags) = std::fs::read_to_string(format!("/sys/class/net/{p}/flags")) {
            let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap_or(1);
            assert_eq!(
                flags & 1,
                0,
                "{p} is still up after its container was removed"
            );
        }
    }
    let brif = || {
        std::fs::read_dir(format!("/sys/class/net/{}/brif", k.bridge))
            .map(|d| d.count())
            .unwrap_or(0)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while brif() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(brif(), 0);
}

#[test]
fn user_networks_and_endpoints() {
    let (k, _reg, img) = setup("un");
    let net = format!("kn{}", std::process::id());
    let net_id = k
        .docker_ok(&["network", "create", "--label", "t=1", &net])
        .trim()
        .to_string();
    // A network has a 64-hex ID, as dockerd's, which finds it whole or by a prefix.
    assert!(
        net_id.len() == 64 && net_id.chars().all(|c| c.is_ascii_hexdigit()),
        "{net_id}"
    );
    assert_eq!(
        k.docker_ok(&[
            "network",
            "inspect",
            "-f",
            "{{.Id}} {{.Name}}",
            &net_id[..10]
        ])
        .trim(),
        format!("{net_id} {net}")
    );
    let ls = k.docker_ok(&["network", "ls", "--format", "{{.Name}}"]);
    for n in ["bridge", "host", "none", net.as_str()] {
        assert!(ls.lines().any(|l| l == n), "{ls}");
    }
    let ids = k.docker_ok(&["network", "ls", "-q", "--no-trunc"]);
    assert_eq!(ids.lines().count(), ls.lines().count(), "{ids}");
    assert!(ids.lines().all(|l| l.len() == 64), "{ids}");
    assert_eq!(
        k.docker_ok(&[
            "network",
            "ls",
            "-q",
            "--no-trunc",
            "--filter",
            &format!("id={}", &net_id[..12])
        ])
        .trim(),
        net_id
    );
    let o = k.docker(&["network", "create", &net]);
    assert!(!o.status.success());
    k.docker_ok(&[
        "run",
        "-d",
        "--name",
        "srv",
        "--network",
        &net,
        &img,
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    let ip = k
        .docker_ok(&[
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"{net}\").IPAddress}}}}"),
            "srv",
        ])
        .trim()
        .to_string();
    let out = k.docker_ok(&[
        "run",
        "--rm",
        "--network",
        &net,
        &img,
        "wget",
        "-q",
        "-O",
        "-",
        &format!("http://{ip}/index.html"),
    ]);
    assert_eq!(out, "hello from kos\n");
    let insp: serde_json::Value =
        serde_json::from_str(&k.docker_ok(&["network", "inspect", &net])).expect("json");
    assert_eq!(insp[0]["Driver"], "bridge");
    assert_eq!(insp[0]["Labels"]["t"], "1");
    assert!(
        insp[0]["Containers"]
            .as_object()
            .map(|m| m.len())
            .unwrap_or(0)
            == 1,
        "{insp}"
    );
    let o = k.docker(&["network", "rm", &net]);
    assert!(!o.status.success());
    // connect / disconnect a running container.
    k.docker_ok(&["run", "-d", "--name", "cli", &img, "sleep", "1000"]);
    k.docker_ok(&["network", "connect", &net_id[..12], "cli"]);
    // The endpoint names its network by ID; ps filters by it.
    assert_eq!(
        k.docker_ok(&[
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"{net}\").NetworkID}}}}"),
            "cli",
        ])
        .trim(),
        net_id
    );
    let on_net = k.docker_ok(&[
        "ps",
        "--filter",
        &format!("network={}", &net_id[..12]),
        "--format",
        "{{.Names}}",
    ]);
    assert!(on_net.lines().any(|l| l == "cli"), "{on_net}");
    let out = k.docker_ok(&[
        "exec",
        "cli",
        "wget",
        "-q",
        "-O",
        "-",
        &format!("http://{ip}/index.html"),
    ]);
    assert_eq!(out, "hello from kos\n");
    k.docker_ok(&["network", "disconnect", &net_id, "cli"]);
    k.docker_ok(&["rm", "-f", "srv", "cli"]);
    k.docker_ok(&["network", "rm", &net_id[..12]]);
    let o = k.docker(&["network", "inspect", &net]);
    assert!(!o.status.success(), "the network is gone");
    let o = k.docker(&["run", "--rm", "--network", "nosuchnet", &img, "true"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("not found"));
}

/// Runs `docker exec` until it succeeds (kos-dns reloads its table on SIGHUP, and starts
/// with kosd), returning the last output.
fn exec_until_ok(k: &Kosd, args: &[&str]) -> std::process::Output {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let o = k.docker(args);
        if o.status.success() || Instant::now() > deadline {
            return o;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn container_names_and_aliases_resolve_through_kos_dns() {
    let (mut k, _reg, img) = setup("dns");
    let net_a = format!("kd{}a", std::process::id());
    let net_b = format!("kd{}b", std::process::id());
    k.docker_ok(&["network", "create", &net_a]);
    k.docker_ok(&["network", "create", &net_b]);
    k.docker_ok(&[
        "run",
        "-d",
        "--name",
        "bravo",
        "--network",
        &net_a,
        "--network-alias",
        "bee",
        &img,
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/www",
    ]);
    k.docker_ok(&[
        "run",
        "-d",
        "--name",
        "alpha",
        "--network",
        &net_a,
        &img,
        "sleep",
        "1000",
    ]);
    let ip_b = k
        .docker_ok(&[
            "inspect",
            "-f",
            &format!("{{{{(index .NetworkSettings.Networks \"{net_a}\").IPAddress}}}}"),
            "bravo",
        ])
        .trim()
        .to_string();
    let gw_a = k
        .docker_ok(&[
            "network",
            "inspect",
            "-f",
            "{{(index .IPAM.Config 0).Gateway}}",
            &net_a,
        ])
        .trim()
        .to_string();
    // The nameserver is kos-dns on the network's gateway (Docker's is 127.0.0.11).
    let rc = k.docker_ok(&["exec", "alpha", "cat", "/etc/resolv.conf"]);
    assert!(rc.contains(&format!("nameserver {gw_a}\n")), "{rc}");

    for name in ["bravo", "bee"] {
        let o = exec_until_ok(&k, &["exec", "alpha", "nslookup", name]);
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(
            o.status.success() && out.contains(&ip_b),
            "nslookup {name}: {out}{}\n{}",
            String::from_utf8_lossy(&o.stderr),
            tail(&k.log_text(), 30)
        );
        let url = format!("http://{name}/index.html");
        assert_eq!(
            k.docker_ok(&["exec", "alpha", "wget", "-q", "-O", "-", &url]),
            "hello from kos\n"
        );
    }
    let ping = k.docker_ok(&["exec", "alpha", "ping", "-c1", "-W", "5", "bravo"]);
    assert!(ping.contains(&ip_b), "{ping}");

    // From another network the name is not there, while that network's own names are.
    let o = k.docker(&[
        "run",
        "--rm",
        "--name",
        "charlie",
        "--network",
        &net_b,
        &img,
        "sh",
        "-c",
        "nslookup charlie >/dev/null || exit 7; nslookup bravo; ping -c1 -W 2 bravo",
    ]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert_eq!(o.status.code(), Some(1), "from {net_b}: {out}");
    assert!(!out.contains(&ip_b), "{out}");

    // A removed container's name goes away.
    k.docker_ok(&["rm", "-f", "bravo"]);
    let o = k.docker(&["exec", "alpha", "nslookup", "bee"]);
    assert!(!String::from_utf8_lossy(&o.stdout).contains(&ip_b));

    k.docker_ok(&["rm", "-f", "alpha"]);
    k.docker_ok(&["network", "rm", &net_a, &net_b]);
    let pid_file = k.exec_root().join("dns/kos-dns.pid");
    assert!(pid_file.exists(), "kos-dns did not write its pid file");
    k.stop();
    // kos-dns stopped with kosd.
    let left: Vec<_> = k
        .leftover_processes()
        .into_iter()
        .filter(|(_, c)| c.contains("kos-dns"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(!pid_file.exists());
}

fn dns_pid(k: &Kosd) -> Option<i32> {
    std::fs::read_to_string(k.exec_root().join("dns/kos-dns.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn alive(pid: i32) -> bool {
    // Zombies count as gone: kosd reaps its child, the test does not.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            !s.rsplit(')')
                .next()
                .unwrap_or("")
                .trim_start()
                .starts_with('Z')
        })
        .unwrap_or(false)
}

fn wait_new_dns(k: &Kosd, old: Option<i32>) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(p) = dns_pid(k).filter(|p| Some(*p) != old && alive(*p)) {
            return p;
        }
        assert!(
            Instant::now() < deadline,
            "no new kos-dns after {old:?}\n{}",
            tail(&k.log_text(), 30)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn kos_dns_is_restarted_and_a_stale_one_ended() {
    let mut k = Kosd::start(&[]);
    let first = wait_new_dns(&k, None);
    // Killed: kosd starts it again.
    // SAFETY: killing the kos-dns of this test's daemon.
    unsafe { libc::kill(first, libc::SIGKILL) };
    let second = wait_new_dns(&k, Some(first));
    // kosd killed: its kos-dns outlives it, and the next kosd on the roots ends it.
    k.kill9();
    assert!(alive(second));
    k.spawn();
    let third = wait_new_dns(&k, Some(second));
    let deadline = Instant::now() + Duration::from_secs(5);
    while alive(second) {
        assert!(
            Instant::now() < deadline,
            "stale kos-dns {second} still runs"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    k.stop();
    assert!(!alive(third));
    assert!(
        k.leftover_processes().is_empty(),
        "{:?}",
        k.leftover_processes()
    );
}
