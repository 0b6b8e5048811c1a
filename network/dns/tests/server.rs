//! kos-dns as a process in a test-made network namespace, asked by busybox nslookup and by
//! hickory-proto clients from a second namespace on the other end of a veth pair.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::io::Write;
use std::net::Shutdown;
use std::os::unix::net::UnixDatagram;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use nix::sys::signal::Signal;

use support::*;

struct Setup {
    link: Link,
    dir: TempDir,
    table: std::path::PathBuf,
    upstream: FakeUpstream,
    dns: KosDns,
}

fn setup(extra: &[&str]) -> Setup {
    let link = Link::new();
    let dir = TempDir::new();
    let table = dir.0.join("dns.json");
    std::fs::write(&table, front_table()).unwrap();
    let upstream = FakeUpstream::start(&link.server);
    let up = upstream.addr();
    let mut args = vec!["--upstream", &up, "--upstream-timeout-ms", "1000"];
    args.extend_from_slice(extra);
    let dns = KosDns::start(&link.server, &table, &args, &[]);
    Setup {
        link,
        dir,
        table,
        upstream,
        dns,
    }
}

#[test]
fn busybox_nslookup_finds_names_aliases_and_addresses() {
    let s = setup(&[]);
    for name in [
        "web",
        "www",
        "api",
        "web.dns.kos",
        "WWW.DNS.KOS",
        "a1b2c3d4e5f6",
    ] {
        let (ok, out) = nslookup(&s.link.client, &[name, GW4]);
        assert!(ok, "nslookup {name}: {out}");
        assert!(out.contains("10.77.0.10"), "nslookup {name}: {out}");
        assert!(out.contains("fd77::10"), "nslookup {name} (AAAA): {out}");
    }
    let (ok, out) = nslookup(&s.link.client, &["db", GW6]);
    assert!(
        ok && out.contains("10.77.0.11"),
        "over IPv6 transport: {out}"
    );
    let (ok, out) = nslookup(&s.link.client, &["10.77.0.10", GW4]);
    assert!(ok && out.contains("web.dns.kos"), "PTR: {out}");
    let (ok, out) = nslookup(&s.link.client, &["fd77::10", GW4]);
    assert!(ok && out.contains("web.dns.kos"), "PTR v6: {out}");
    let (ok, out) = nslookup(&s.link.client, &["nosuch.dns.kos", GW4]);
    assert!(
        !ok && out.contains("NXDOMAIN"),
        "unknown name in our domain: {out}"
    );
    let (ok, out) = nslookup(&s.link.client, &["outside.example", GW4]);
    assert!(ok && out.contains("192.0.2.77"), "forwarded: {out}");
}

#[test]
fn answers_a_aaaa_ptr_over_udp_and_tcp() {
    let s = setup(&[]);
    let sock = udp_client(&s.link.client, CLIENT4);
    let r = ask_udp(&sock, GW4, &query(1, "web.", RecordType::A));
    assert_eq!(r.metadata.id, 1);
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.metadata.authoritative);
    assert_eq!(a_records(&r), vec!["10.77.0.10"]);
    let r = ask_udp(&sock, GW4, &query(2, "api.dns.kos.", RecordType::AAAA));
    assert_eq!(a_records(&r), vec!["fd77::10"]);
    // db has no IPv6 address: NOERROR, no data (not NXDOMAIN, which would hide its A record).
    let r = ask_udp(&sock, GW4, &query(3, "db.", RecordType::AAAA));
    assert_eq!(r.metadata.response_code, ResponseCode::NoError);
    assert!(r.answers.is_empty());
    let r = ask_udp(
        &sock,
        GW4,
        &query(4, "11.0.77.10.in-addr.arpa.", RecordType::PTR),
    );
    assert_eq!(a_records(&r), vec!["db.dns.kos."]);
    // An unassigned address in our subnet is answered here, not asked upstream.
    let before = s.upstream.queries.load(Ordering::SeqCst);
    let r = ask_udp(
        &sock,
        GW4,
        &query(5, "99.0.77.10.in-addr.arpa.", RecordType::PTR),
    );
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(s.upstream.queries.load(Ordering::SeqCst), before);

    // The same over TCP from the v6 address, two queries on one connection.
    let mut tcp = tcp_client(&s.link.client, GW6);
    write_tcp(&mut tcp, &query(6, "www.", RecordType::A)).unwrap();
    let r = Message::from_vec(&read_tcp(&mut tcp).unwrap()).unwrap();
    assert_eq!(
        (r.metadata.id, a_records(&r)),
        (6, vec!["10.77.0.10".to_owned()])
    );
    write_tcp(&mut tcp, &query(7, "outside.example.", RecordType::A)).unwrap();
    let r = Message::from_vec(&read_tcp(&mut tcp).unwrap()).unwrap();
    assert_eq!(
        (r.metadata.id, a_records(&r)),
        (7, vec!["192.0.2.77".to_owned()])
    );
}

#[test]
fn askers_outside_the_network_are_refused() {
    let s = setup(&[]);
    let outsider = udp_client(&s.link.client, OUTSIDER4);
    for (i, name) in ["web.", "outside.example."].iter().enumerate() {
        let r = ask_udp(&outsider, GW4, &query(10 + i as u16, name, RecordType::A));
        assert_eq!(r.metadata.response_code, ResponseCode::Refused, "{name}");
        assert!(r.answers.is_empty());
    }
    assert_eq!(
        s.upstream.queries.load(Ordering::SeqCst),
        0,
        "an outsider's query must not be forwarded (no open resolver)"
    );
    // The same server still answers the insider.
    let insider = udp_client(&s.link.client, CLIENT4);
    let r = ask_udp(&insider, GW4, &query(12, "web.", RecordType::A));
    assert_eq!(a_records(&r), vec!["10.77.0.10"]);
}

#[test]
fn unknown_names_are_forwarded_and_large_answers_truncated() {
    let s = setup(&[]);
    let sock = udp_client(&s.link.client, CLIENT4);
    let r = ask_udp(&sock, GW4, &query(20, "outside.example.", RecordType::A));
    assert_eq!(a_records(&r), vec!["192.0.2.77"]);
    assert!(
        !r.metadata.authoritative,
        "relayed answer stays the upstream's"
    );
    let r = ask_udp(&sock, GW4, &query(21, "missing.example.", RecordType::A));
    assert_eq!(r.metadata.response_code, ResponseCode::NXDomain);
    let names = s.upstream.names.lock().unwrap().clone();
    assert!(names.contains(&"missing.example.".to_owned()), "{names:?}");

    // 60 A records do not fit 512 bytes: TC set, and the full answer comes over TCP.
    let r = ask_udp(&sock, GW4, &query(22, "big.example.", RecordType::A));
    assert!(r.metadata.truncation && r.answers.is_empty(), "{r:?}");
    let mut tcp = tcp_client(&s.link.client, GW4);
    write_tcp(&mut tcp, &query(23, "big.example.", RecordType::A)).unwrap();
    let r = Message::from_vec(&read_tcp(&mut tcp).unwrap()).unwrap();
    assert_eq!(r.answers.len(), 60);
    // With EDNS (1232 bytes) the 60 records (~1 KiB) fit over UDP.
    let mut msg = Message::new(24, MessageType::Query, OpCode::Query);
    msg.add_query(Query::query(
        Name::from_ascii("big.example.").unwrap(),
        RecordType::A,
    ));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    msg.set_edns(edns);
    let r = ask_udp(&sock, GW4, &msg.to_vec().unwrap());
    assert_eq!(r.answers.len(), 60);
}

#[test]
fn unreachable_upstream_gives_servfail() {
    let link = Link::new();
    let dir = TempDir::new();
    let table = dir.0.join("dns.json");
    std::fs::write(&table, front_table()).unwrap();
    // Nothing listens on this port in the fresh namespace.
    let dns = KosDns::start(
        &link.server,
        &table,
        &["--upstream", "127.0.0.1:9", "--upstream-timeout-ms", "300"],
        &[],
    );
    let sock = udp_client(&link.client, CLIENT4);
    let r = ask_udp(&sock, GW4, &query(30, "outside.example.", RecordType::A));
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
    let r = ask_udp(&sock, GW4, &query(31, "web.", RecordType::A));
    assert_eq!(
        a_records(&r),
        vec!["10.77.0.10"],
        "local names do not need upstreams"
    );
    drop(dns);
}

#[test]
fn upstreams_from_resolv_conf_skip_loopback_and_follow_reloads() {
    let link = Link::new();
    link.server
        .ip(&["addr", "add", "10.99.0.53/32", "dev", "lo"]);
    link.server
        .ip(&["addr", "add", "10.99.0.54/32", "dev", "lo"]);
    let upstream = FakeUpstream::start_at(&link.server, "10.99.0.53:53");
    let dir = TempDir::new();
    let table = dir.0.join("dns.json");
    std::fs::write(&table, front_table()).unwrap();
    let resolv = dir.0.join("resolv.conf");
    // Nobody answers on .54; the loopback stub is never used from another namespace.
    std::fs::write(&resolv, "nameserver 127.0.0.53\nnameserver 10.99.0.54\n").unwrap();
    let resolv_arg = resolv.to_str().unwrap().to_owned();
    let dns = KosDns::start(
        &link.server,
        &table,
        &["--resolv-conf", &resolv_arg, "--upstream-timeout-ms", "300"],
        &[],
    );
    dns.wait_log("upstreams=[10.99.0.54:53]");
    let sock = udp_client(&link.client, CLIENT4);
    let r = ask_udp(&sock, GW4, &query(60, "outside.example.", RecordType::A));
    assert_eq!(r.metadata.response_code, ResponseCode::ServFail);

    std::fs::write(&resolv, "nameserver 127.0.0.53\nnameserver 10.99.0.53\n").unwrap();
    dns.signal(Signal::SIGHUP);
    dns.wait_log("table loaded");
    let r = ask_udp(&sock, GW4, &query(61, "outside.example.", RecordType::A));
    assert_eq!(a_records(&r), vec!["192.0.2.77"]);
    assert_eq!(upstream.queries.load(Ordering::SeqCst), 1);
}

#[test]
fn sighup_and_file_changes_reload_the_table() {
    // File polling off (an hour): only SIGHUP can load the change.
    let mut s = setup(&["--poll-ms", "3600000"]);
    let sock = udp_client(&s.link.client, CLIENT4);
    let new_table = front_table().replace(r#""name":"db""#, r#""name":"cache""#);
    std::fs::write(&s.table, &new_table).unwrap();
    let r = ask_udp(&sock, GW4, &query(40, "cache.", RecordType::A));
    assert_ne!(a_records(&r), vec!["10.77.0.11"], "not reloaded yet");
    s.dns.signal(Signal::SIGHUP);
    s.dns.wait_log("table loaded");
    let r = ask_udp(&sock, GW4, &query(41, "cache.", RecordType::A));
    assert_eq!(a_records(&r), vec!["10.77.0.11"]);

    // A broken table is logged and the last good one kept.
    std::fs::write(&s.table, "{ not json").unwrap();
    s.dns.signal(Signal::SIGHUP);
    s.dns.wait_log("keeping the previous table");
    let r = ask_udp(&sock, GW4, &query(42, "cache.", RecordType::A));
    assert_eq!(a_records(&r), vec!["10.77.0.11"]);
    assert!(s.dns.alive());
    drop(s);

    // Default polling: an atomic rewrite through the library is picked up without a signal,
    // and a new network's gateway gets a listener.
    let s = setup(&["--poll-ms", "50"]);
    kos_dns::table::add_entry(
        &s.table,
        &kos_dns::table::NetworkInfo {
            name: "back".into(),
            gateways: vec!["10.77.0.1".parse().unwrap(), "10.79.0.1".parse().unwrap()],
            subnets: vec!["10.77.0.0/24".parse().unwrap()],
            domain: None,
        },
        kos_dns::table::Entry {
            id: "0000000000000000feed".into(),
            name: "queue".into(),
            ipv4: vec!["10.77.0.50".parse().unwrap()],
            ..Default::default()
        },
    )
    .unwrap();
    s.dns.wait_log("listening (udp, tcp) addr=10.79.0.1:53");
    let sock = udp_client(&s.link.client, CLIENT4);
    let r = ask_udp(&sock, GW4, &query(43, "queue.", RecordType::A));
    assert_eq!(a_records(&r), vec!["10.77.0.50"]);
    let _ = &s.dir;
}

#[test]
fn malformed_packets_do_not_stop_the_server() {
    let mut s = setup(&[]);
    let sock = udp_client(&s.link.client, CLIENT4);
    let gw: std::net::SocketAddr = format!("{GW4}:53").parse().unwrap();
    let mut bad: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x12],
        vec![0xff; 11],
        vec![0; 4096],
        vec![0xab; 9000],
        // A header claiming 65535 questions and nothing after it.
        vec![0, 1, 1, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0],
        // A compression pointer to itself.
        vec![0, 2, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1],
    ];
    let mut response = query(3, "web.", RecordType::A);
    response[2] |= 0x80;
    bad.push(response);
    let mut x: u32 = 0x1234_5678;
    for len in [13usize, 40, 300, 1500] {
        bad.push(
            (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect(),
        );
    }
    for packet in &bad {
        sock.send_to(packet, gw).unwrap();
    }
    // The two-question header is a query we can name: FORMERR with its id.
    sock.send_to(&[0, 9, 1, 0, 0, 2, 0, 0, 0, 0, 0, 0], gw)
        .unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 4096];
    let mut formerr_seen = false;
    while let Ok((n, _)) = sock.recv_from(&mut buf) {
        let m = Message::from_vec(&buf[..n]).expect("every reply parses");
        assert_eq!(m.metadata.message_type, MessageType::Response);
        assert_ne!(m.metadata.id, 3, "a response packet must not be answered");
        formerr_seen |= m.metadata.id == 9 && m.metadata.response_code == ResponseCode::FormErr;
    }
    assert!(formerr_seen);

    // TCP: a length prefix promising more than is sent, then a hang-up; garbage; half a prefix.
    let mut t = tcp_client(&s.link.client, GW4);
    t.write_all(&[0xff, 0xff, 1, 2, 3]).unwrap();
    t.shutdown(Shutdown::Write).unwrap();
    let mut t = tcp_client(&s.link.client, GW4);
    t.write_all(&[0, 5, 1, 2, 3, 4, 5]).unwrap();
    let _ = read_tcp(&mut t);
    let mut t = tcp_client(&s.link.client, GW4);
    t.write_all(&[0]).unwrap();
    drop(t);

    assert!(s.dns.alive(), "kos-dns died:\n{}", s.dns.log());
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let r = ask_udp(&sock, GW4, &query(50, "web.", RecordType::A));
    assert_eq!(a_records(&r), vec!["10.77.0.10"]);
}

#[test]
fn notifies_readiness_and_watchdog_and_keeps_a_pid_file() {
    let link = Link::new();
    let dir = TempDir::new();
    let table = dir.0.join("dns.json");
    std::fs::write(&table, front_table()).unwrap();
    let pid_file = dir.0.join("kos-dns.pid");
    let pid_arg = pid_file.to_str().unwrap().to_owned();
    let notify_path = dir.0.join("notify.sock");
    let notify = UnixDatagram::bind(&notify_path).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let path = notify_path.to_str().unwrap();
    let mut dns = KosDns::start(
        &link.server,
        &table,
        &["--upstream", "127.0.0.1:9", "--pid-file", &pid_arg],
        &[("NOTIFY_SOCKET", path), ("WATCHDOG_USEC", "200000")],
    );
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap().trim(),
        dns.child.id().to_string(),
        "pid file written before READY"
    );
    let mut buf = [0u8; 512];
    let n = notify.recv(&mut buf).unwrap();
    let first = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(first.starts_with("READY=1\n"), "{first}");
    // With a 200 ms watchdog, pings come every 100 ms.
    let mut pings = 0;
    let until = std::time::Instant::now() + Duration::from_secs(2);
    while pings < 3 && std::time::Instant::now() < until {
        let n = notify.recv(&mut buf).unwrap();
        if &buf[..n] == b"WATCHDOG=1" {
            pings += 1;
        }
    }
    assert_eq!(pings, 3);
    dns.signal(Signal::SIGTERM);
    let mut stopping = false;
    while let Ok(n) = notify.recv(&mut buf) {
        if &buf[..n] == b"STOPPING=1" {
            stopping = true;
            break;
        }
    }
    assert!(stopping);
    let status = dns.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(!pid_file.exists(), "pid file removed on exit");
}

#[test]
fn bad_table_or_flags_fail_at_start_with_one_line() {
    let dir = TempDir::new();
    let table = dir.0.join("dns.json");
    std::fs::write(
        &table,
        r#"{"version":1,"networks":{"n":{"name":"n","entries":[{"id":"x","name":"bad name"}]}}}"#,
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kos-dns"))
        .arg("--table")
        .arg(&table)
        .args(["--upstream", "127.0.0.1", "--port", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("kos-dns: ") && last.contains("bad name"),
        "{err}"
    );

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kos-dns"))
        .args(["--table", "/nonexistent/x.json", "--upstream", "not-an-ip"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--upstream \"not-an-ip\""));
}

#[test]
fn a_burst_of_local_and_forwarded_queries_is_all_answered() {
    let s = setup(&[]);
    let sock = udp_client(&s.link.client, CLIENT4);
    let gw: std::net::SocketAddr = format!("{GW4}:53").parse().unwrap();
    let n: u16 = 300;
    for id in 0..n {
        let name = if id.is_multiple_of(2) {
            "web."
        } else {
            "outside.example."
        };
        sock.send_to(&query(id, name, RecordType::A), gw).unwrap();
    }
    let mut seen = std::collections::HashSet::new();
    let mut buf = [0u8; 4096];
    while seen.len() < usize::from(n) {
        let Ok((len, _)) = sock.recv_from(&mut buf) else {
            let missing: Vec<u16> = (0..n).filter(|i| !seen.contains(i)).collect();
            panic!("no answer for {} queries: {missing:?}", missing.len());
        };
        let m = Message::from_vec(&buf[..len]).unwrap();
        let want = if m.metadata.id.is_multiple_of(2) {
            "10.77.0.10"
        } else {
            "192.0.2.77"
        };
        assert_eq!(a_records(&m), vec![want], "id {}", m.metadata.id);
        assert!(
            seen.insert(m.metadata.id),
            "duplicate answer {}",
            m.metadata.id
        );
    }
}
