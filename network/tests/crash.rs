//! Crash safety: a helper process is killed (SIGKILL) between the steps of an attachment, and
//! reconcile removes everything it left; also 50 concurrent attachments.
#![allow(clippy::unwrap_used)]

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use kos_network::{AttachRequest, PortMapping};
use support::*;

fn kosnet() -> PathBuf {
    // Examples are built by `cargo test` next to the deps directory of this test binary.
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap();
    let path = dir.join("examples").join("kosnet");
    // `cargo test --test crash` neither builds examples nor rebuilds a stale one: build it
    // once per test process (a no-op when it is up to date).
    static BUILT: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let built = BUILT.get_or_init(|| {
        kos_testsupport::cargo()
            .args(["build", "--quiet", "--example", "kosnet", "--manifest-path"])
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
            .status()
            .is_ok_and(|s| s.success())
    });
    assert!(
        *built && path.exists(),
        "building the kosnet example failed"
    );
    path
}

/// A helper process killed on drop if still running.
struct Helper(Child);

impl Drop for Helper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `kosnet attach` pausing at `step`, waits until it says so, and kills it with SIGKILL.
fn attach_and_crash(env: &Env, id: &str, network: &str, step: &str) {
    let mut child = Helper(
        Command::new(kosnet())
            .args([
                "--root",
                env.root.path().to_str().unwrap(),
                "--table",
                env.table(),
                "--no-ip-forward",
            ])
            .args(["attach", id, network, "--port", "0:80", "--pause-at", step])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap(),
    );
    let mut line = String::new();
    BufReader::new(child.0.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "paused", "helper did not reach {step}");
    // std's Child::kill sends SIGKILL.
    child.0.kill().unwrap();
    child.0.wait().unwrap();
}

/// Ports of the bridge: links whose master is the bridge.
fn bridge_ports(bridge: &str) -> Vec<String> {
    let links = kos_network::netlink::Netlink::open()
        .unwrap()
        .links()
        .unwrap();
    let Some(br) = links.iter().find(|l| l.name == bridge) else {
        return Vec::new();
    };
    links
        .iter()
        .filter(|l| l.master == Some(br.index))
        .map(|l| l.name.clone())
        .collect()
}

#[test]
fn reconcile_cleans_up_after_a_crash_between_steps() {
    let env = Env::new();
    let net = env.bridge_network("k", |_| {});

    // Killed after the record and the port reservation, before anything in the kernel.
    attach_and_crash(&env, &env.id("r1"), &net.name, "recorded");
    // Killed with veth, addresses and DNAT entries made, record not yet marked complete.
    attach_and_crash(&env, &env.id("r2"), &net.name, "connected");
    assert_eq!(bridge_ports(&net.bridge).len(), 1);
    assert_eq!(env.nets.firewall().list_ports().unwrap().len(), 1);
    // Killed after everything was made, and then its record lost: only scans can find it.
    attach_and_crash(&env, &env.id("r3"), &net.name, "connected");
    let r3 = env
        .nets
        .attachment(&env.id("r3"), &net.name)
        .unwrap()
        .unwrap();
    std::fs::remove_file(
        env.root
            .path()
            .join("run/attachments")
            .join(format!("{}@{}.json", r3.container_id, net.name)),
    )
    .unwrap();
    // A complete attachment of a container that is still alive survives reconcile.
    let alive = env
        .nets
        .attach(&AttachRequest::new(&env.id("ok"), &net.name))
        .unwrap();

    let live_id = alive.container_id.clone();
    let report = env.nets.reconcile(&|id| id == live_id).unwrap();
    assert_eq!(report.attachments.len(), 2, "{report:?}");
    assert_eq!(report.veths, vec![r3.host_veth.clone()], "{report:?}");
    assert_eq!(report.port_rules, 1, "{report:?}");
    assert!(report.addresses >= 1, "{report:?}");
    let mut pins = report.pins.clone();
    pins.sort();
    assert_eq!(pins, vec![env.id("r1"), env.id("r2"), env.id("r3")]);

    // Only the live container is left, everywhere.
    assert_eq!(bridge_ports(&net.bridge), vec![alive.host_veth.clone()]);
    assert!(env.nets.firewall().list_ports().unwrap().is_empty());
    let recs = env.nets.attachments().unwrap();
    assert_eq!(recs.len(), 1);
    assert_eq!(
        env.nets.pins().list().unwrap(),
        vec![alive.container_id.clone()]
    );
    let ipam = kos_network::ipam::Ipam::new(env.root.path().join("run/ipam"));
    let owners: BTreeSet<String> = ipam.allocations(&net.name).unwrap().into_values().collect();
    assert_eq!(owners, BTreeSet::from([alive.owner()]));
    // The released port can be published again.
    let mut again = AttachRequest::new(&env.id("r4"), &net.name);
    again.ports = vec![PortMapping::tcp(0, 80)];
    env.nets.attach(&again).unwrap();

    // A flushed ruleset (another tool, a reboot of the firewall service) is put back whole.
    run("nft", &["delete", "table", "inet", env.table()]);
    let published = env
        .nets
        .attachments()
        .unwrap()
        .into_iter()
        .find(|r| !r.ports.is_empty())
        .unwrap();
    let _srv = Server::tcp(
        Some(&env.pin_path(&published.container_id)),
        sock(published.addresses[0].addr(), 80),
        "restored",
    );
    let port = published.ports[0].host_port;
    assert!(fetch(None, sock(std::net::Ipv4Addr::LOCALHOST.into(), port)).is_err());

    // A second reconcile finds nothing more to remove, and restores the rules.
    let live: BTreeSet<String> = env
        .nets
        .attachments()
        .unwrap()
        .into_iter()
        .map(|r| r.container_id)
        .collect();
    assert!(env
        .nets
        .reconcile(&|id| live.contains(id))
        .unwrap()
        .is_empty());
}

#[test]
fn fifty_concurrent_attachments_get_distinct_addresses_and_detach_leaves_nothing() {
    let env = Env::new();
    let net = env.bridge_network("c", |_| {});
    let ids: Vec<String> = (0..50).map(|i| env.id(&format!("x{i}"))).collect();
    let results: Vec<kos_network::Attachment> = std::thread::scope(|s| {
        let handles: Vec<_> = ids
            .iter()
            .map(|id| {
                let env = &env;
                let net = &net;
                s.spawn(move || {
                    let mut req = AttachRequest::new(id, &net.name);
                    req.ports = vec![PortMapping::tcp(0, 80)];
                    env.nets.attach(&req)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap().unwrap())
            .collect()
    });
    let addrs: BTreeSet<_> = results.iter().map(|r| r.addresses[0].addr()).collect();
    assert_eq!(addrs.len(), 50);
    let ports: BTreeSet<_> = results.iter().map(|r| r.ports[0].host_port).collect();
    assert_eq!(ports.len(), 50);
    assert_eq!(bridge_ports(&net.bridge).len(), 50);
    assert_eq!(env.nets.firewall().list_ports().unwrap().len(), 50);
    // Each one has exactly its address inside its namespace.
    for r in results.iter().take(5) {
        let out = busybox_in(
            &env.pin_path(&r.container_id),
            &["ip", "-o", "-4", "addr", "show", "eth0"],
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains(&r.addresses[0].to_string()));
    }

    std::thread::scope(|s| {
        for id in &ids {
            let env = &env;
            let net = &net;
            s.spawn(move || env.nets.detach(id, &net.name).unwrap());
        }
    });
    assert!(bridge_ports(&net.bridge).is_empty());
    assert!(env.nets.firewall().list_ports().unwrap().is_empty());
    assert!(env.nets.attachments().unwrap().is_empty());
    let ipam = kos_network::ipam::Ipam::new(env.root.path().join("run/ipam"));
    assert!(ipam.allocations(&net.name).unwrap().is_empty());
}

#[test]
fn reconcile_removes_a_bridge_whose_network_was_never_saved() {
    let env = Env::new();
    let kept = env.bridge_network("s", |_| {});
    let lost = env.bridge_network("l", |_| {});
    // As if the process died after making the bridge and its rules, before saving the network.
    std::fs::remove_file(
        env.root
            .path()
            .join("data/networks")
            .join(format!("{}.json", lost.name)),
    )
    .unwrap();
    let mut bridges = env.nets.firewall().list_bridges().unwrap();
    bridges.sort();
    let mut both = vec![kept.bridge.clone(), lost.bridge.clone()];
    both.sort();
    assert_eq!(bridges, both);

    let report = env.nets.reconcile(&|_| true).unwrap();
    assert_eq!(report.bridges, vec![lost.bridge.clone()]);
    assert!(!host_links().contains(&lost.bridge));
    assert!(host_links().contains(&kept.bridge));
    assert_eq!(
        env.nets.firewall().list_bridges().unwrap(),
        vec![kept.bridge.clone()]
    );
    // The name can be used again.
    let mut spec = kos_network::NetworkSpec::bridge(&lost.name)
        .with_subnet(&lost.subnets[0].subnet.to_string());
    spec.bridge_name = Some(lost.bridge.clone());
    env.nets.create(&spec).unwrap();
}

#[test]
fn concurrent_processes_never_share_an_address() {
    let env = Env::new();
    let net = env.bridge_network("m", |_| {});
    let children: Vec<Helper> = (0..12)
        .map(|i| {
            Helper(
                Command::new(kosnet())
                    .args([
                        "--root",
                        env.root.path().to_str().unwrap(),
                        "--table",
                        env.table(),
                        "--no-ip-forward",
                    ])
                    .args([
                        "attach",
                        &env.id(&format!("p{i}")),
                        &net.name,
                        "--port",
                        "0:80",
                    ])
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .unwrap(),
            )
        })
        .collect();
    let mut addrs = BTreeSet::new();
    for mut child in children {
        let out = std::mem::replace(&mut child.0, Command::new("true").spawn().unwrap())
            .wait_with_output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rec: kos_network::Attachment = serde_json::from_slice(&out.stdout).unwrap();
        addrs.insert(rec.addresses[0].addr());
    }
    assert_eq!(addrs.len(), 12);
    assert_eq!(bridge_ports(&net.bridge).len(), 12);
    assert_eq!(env.nets.firewall().list_ports().unwrap().len(), 12);
}

#[test]
fn reconcile_survives_torn_state_files() {
    let env = Env::new();
    let net = env.bridge_network("t", |_| {});
    let mut req = AttachRequest::new(&env.id("alive"), &net.name);
    req.ports = vec![PortMapping::tcp(0, 80)];
    let alive = env.nets.attach(&req).unwrap();
    attach_and_crash(&env, &env.id("torn"), &net.name, "connected");
    let run = env.root.path().join("run");
    // As after a power loss on a /run that is not a tmpfs: empty or half-written files.
    std::fs::write(
        run.join("attachments")
            .join(format!("{}@{}.json", env.id("torn"), net.name)),
        b"{\"container_id\": \"to",
    )
    .unwrap();
    std::fs::write(run.join("ipam").join(format!("{}.json", net.name)), b"").unwrap();
    std::fs::write(run.join("ports.json"), b"\0\0\0").unwrap();
    assert!(matches!(
        env.nets.attachments(),
        Err(kos_network::Error::Corrupt { .. })
    ));

    let live_id = alive.container_id.clone();
    let report = env.nets.reconcile(&|id| id == live_id).unwrap();
    assert_eq!(report.corrupt_files.len(), 3, "{report:?}");
    // What the torn record made is found by the scans.
    assert_eq!(report.veths.len(), 1, "{report:?}");
    assert_eq!(report.port_rules, 1, "{report:?}");
    assert_eq!(bridge_ports(&net.bridge), vec![alive.host_veth.clone()]);
    // The rebuilt pool and registry still hold the live container's address and port.
    let ipam = kos_network::ipam::Ipam::new(run.join("ipam"));
    let pool = ipam.allocations(&net.name).unwrap();
    assert_eq!(pool.get(&alive.addresses[0].addr()), Some(&alive.owner()));
    assert_eq!(pool.len(), 1);
    let mut clash = AttachRequest::new(&env.id("new"), &net.name);
    clash.ports = vec![PortMapping::tcp(alive.ports[0].host_port, 80)];
    assert!(matches!(
        env.nets.attach(&clash),
        Err(kos_network::Error::PortConflict { .. })
    ));
    let fresh = env
        .nets
        .attach(&AttachRequest::new(&env.id("new"), &net.name))
        .unwrap();
    assert_ne!(fresh.addresses[0].addr(), alive.addresses[0].addr());
}
