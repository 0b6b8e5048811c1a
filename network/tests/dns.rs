//! Containers reach each other by name through kos-dns, which serves the table kos-network
//! rewrites on every attach and detach; and the container's /etc files.
#![allow(clippy::unwrap_used)]

mod support;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kos_network::{AttachRequest, EtcSpec};
use support::*;

/// The kos-dns binary of this workspace, built when missing.
fn kos_dns() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let path = exe.parent().unwrap().parent().unwrap().join("kos-dns");
    // Built here so that a stale or missing binary is never what is tested (a no-op when it
    // is up to date).
    let status = kos_testsupport::cargo()
        .args(["build", "--quiet", "--bin", "kos-dns", "--manifest-path"])
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/dns/Cargo.toml"))
        .status()
        .unwrap();
    assert!(status.success() && path.exists(), "building kos-dns failed");
    path
}

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `busybox nslookup NAME SERVER` inside a namespace: the addresses it printed after the
/// answer's "Name:" line, or None when the name was not found.
fn lookup(pin: &std::path::Path, name: &str, server: &str) -> Option<String> {
    let out = busybox_in(pin, &["nslookup", "-timeout=1", "-retry=1", name, server]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let answer = text.split_once("Name:")?.1.to_string();
    out.status.success().then_some(answer)
}

#[test]
fn containers_reach_each_other_by_name_on_their_network_only() {
    let env = Env::with(|opts, root| {
        if let Some(d) = opts.dns.as_mut() {
            d.pid_file = Some(root.join("kos-dns.pid"));
        }
    });
    let a = env.bridge_network("a", |_| {});
    let b = env.bridge_network("b", |_| {});
    let name = |tag: &str| format!("{tag}-{}", env.sfx);
    let attach = |tag: &str, net: &kos_network::Network| {
        let mut req = AttachRequest::new(&env.id(tag), &net.name);
        req.name = Some(name(tag));
        req.aliases = vec![format!("{tag}-alias-{}", env.sfx)];
        env.nets.attach(&req).unwrap()
    };
    let web = attach("web", &a);
    let app = attach("app", &a);
    let other = attach("other", &b);

    let dns = env.nets.options().dns.clone().unwrap();
    let daemon = Daemon(
        Command::new(kos_dns())
            .arg("--table")
            .arg(&dns.table)
            .args([
                "--port",
                "53",
                "--poll-ms",
                "600000",
                "--upstream",
                "127.0.0.1:9",
            ])
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::fs::write(dns.pid_file.as_ref().unwrap(), daemon.0.id().to_string()).unwrap();

    let gw_a = a.subnets[0].gateway.to_string();
    let gw_b = b.subnets[0].gateway.to_string();
    let app_pin = env.pin_path(&app.container_id);
    let web_ip = web.addresses[0].addr().to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        if let Some(ans) = lookup(&app_pin, &name("web"), &gw_a) {
            break ans;
        }
        assert!(
            Instant::now() < deadline,
            "kos-dns never answered on {gw_a}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(first.contains(&web_ip), "{first}");
    // Aliases resolve too, and a name leads to a working connection.
    let alias = lookup(&app_pin, &format!("web-alias-{}", env.sfx), &gw_a).unwrap();
    assert!(alias.contains(&web_ip), "{alias}");
    let _srv = Server::tcp(
        Some(&env.pin_path(&web.container_id)),
        sock(web.addresses[0].addr(), 8080),
        "by-name",
    );
    let out = busybox_in(&app_pin, &["nc", "-w", "2", &web_ip, "8080"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "by-name");

    // Not across networks: neither through its own network's server nor through the other's.
    let other_pin = env.pin_path(&other.container_id);
    assert!(lookup(&other_pin, &name("web"), &gw_b).is_none());
    assert!(lookup(&other_pin, &name("web"), &gw_a).is_none());

    // A container attached while kos-dns runs is served after the SIGHUP (the file poll is
    // ten minutes here).
    let late = attach("late", &a);
    let ans = lookup(&app_pin, &name("late"), &gw_a).unwrap();
    assert!(ans.contains(&late.addresses[0].addr().to_string()), "{ans}");

    // Detach removes the name.
    env.nets.detach(&web.container_id, &a.name).unwrap();
    assert!(lookup(&app_pin, &name("web"), &gw_a).is_none());

    // The container's /etc files point at kos-dns and name its own address.
    let etc = tempfile::tempdir().unwrap();
    env.nets
        .write_etc_files(
            &app.container_id,
            etc.path(),
            &EtcSpec {
                hostname: "apphost",
                ..EtcSpec::default()
            },
        )
        .unwrap();
    let resolv = std::fs::read_to_string(etc.path().join("resolv.conf")).unwrap();
    assert!(resolv.contains(&format!("nameserver {gw_a}")), "{resolv}");
    let hosts = std::fs::read_to_string(etc.path().join("hosts")).unwrap();
    let own = app.addresses[0].addr().to_string();
    assert!(
        hosts
            .lines()
            .any(|l| l.starts_with(&own) && l.contains("apphost") && l.contains(&name("app"))),
        "{hosts}"
    );
    assert_eq!(
        std::fs::read_to_string(etc.path().join("hostname"))
            .unwrap()
            .trim(),
        "apphost"
    );
    // Asked for the host's resolvers (kosd's default bridge): kos-dns is not named.
    env.nets
        .write_etc_files(
            &app.container_id,
            etc.path(),
            &EtcSpec {
                hostname: "apphost",
                host_resolvers: true,
                ..EtcSpec::default()
            },
        )
        .unwrap();
    let resolv = std::fs::read_to_string(etc.path().join("resolv.conf")).unwrap();
    assert!(!resolv.contains(&gw_a.to_string()), "{resolv}");
}
