//! Published ports, outbound NAT and internal networks, against the real kernel, with a second
//! "host" made of a namespace linked to this one.
#![allow(clippy::unwrap_used)]

mod support;

use std::net::{IpAddr, Ipv4Addr};

use kos_network::firewall::PortRule;
use kos_network::{AttachRequest, Error, PortMapping, Protocol};
use support::*;

fn v4(a: &kos_network::Attachment) -> IpAddr {
    a.addresses
        .iter()
        .find(|a| a.addr().is_ipv4())
        .unwrap()
        .addr()
}

#[test]
fn published_port_answers_from_localhost_bridge_neighbour_and_other_host() {
    let localnet_all =
        std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/route_localnet").unwrap();
    let env = Env::new();
    let other = SecondHost::new(&env);
    let net = env.bridge_network("p", |_| {});
    let gw = net.subnets[0].gateway;

    let mut req = AttachRequest::new(&env.id("web"), &net.name);
    req.ports = vec![PortMapping::parse("0:80").unwrap()];
    let web = env.nets.attach(&req).unwrap();
    let host_port = web.ports[0].host_port;
    assert_ne!(host_port, 0, "a random free port was chosen");
    let pin = env.pin_path(&web.container_id);
    let _srv = Server::tcp(Some(&pin), sock(v4(&web), 80), "web");

    let neighbour = env
        .nets
        .attach(&AttachRequest::new(&env.id("nb"), &net.name))
        .unwrap();
    let nb_pin = env.pin_path(&neighbour.container_id);

    // From the host through 127.0.0.1 and through the bridge's own address.
    assert_eq!(
        fetch(None, sock(Ipv4Addr::LOCALHOST.into(), host_port)).unwrap(),
        "web"
    );
    assert_eq!(fetch(None, sock(gw, host_port)).unwrap(), "web");
    // From a neighbour container on the same bridge (hairpin through the host).
    assert_eq!(fetch(Some(&nb_pin), sock(gw, host_port)).unwrap(), "web");
    // From the container itself through the host (hairpin to itself).
    assert_eq!(fetch(Some(&pin), sock(gw, host_port)).unwrap(), "web");
    // From another host, to the host's address on the link to it.
    assert_eq!(
        fetch(Some(&other.pin), sock(other.host_ip, host_port)).unwrap(),
        "web"
    );
    // The container itself is not reachable from the other host without the published port.
    assert!(fetch(Some(&other.pin), sock(v4(&web), 80)).is_err());

    // Only route_localnet on the bridge was changed, not host-wide.
    let localnet = std::fs::read_to_string(format!(
        "/proc/sys/net/ipv4/conf/{}/route_localnet",
        net.bridge
    ))
    .unwrap();
    assert_eq!(localnet.trim(), "1");
    let after = std::fs::read_to_string("/proc/sys/net/ipv4/conf/all/route_localnet").unwrap();
    assert_eq!(after, localnet_all);

    // Detach removes the DNAT entries: the port no longer answers.
    env.nets.detach(&web.container_id, &net.name).unwrap();
    assert!(fetch(None, sock(Ipv4Addr::LOCALHOST.into(), host_port)).is_err());
    let left: Vec<PortRule> = env.nets.firewall().list_ports().unwrap();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn outbound_traffic_is_masqueraded_and_internal_networks_have_no_way_out() {
    let env = Env::new();
    let other = SecondHost::new(&env);
    // The other host answers with the peer address it sees.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<IpAddr>::new()));
    let listener = in_netns(&other.pin, || {
        std::net::TcpListener::bind((other.ip, 7000)).unwrap()
    });
    listener.set_nonblocking(true).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (seen2, stop2) = (seen.clone(), stop.clone());
    let thread = std::thread::spawn(move || {
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut s, peer)) => {
                    seen2.lock().unwrap().push(peer.ip());
                    let _ = std::io::Write::write_all(&mut s, b"outside\n");
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
    });
    struct Stop(
        std::sync::Arc<std::sync::atomic::AtomicBool>,
        Option<std::thread::JoinHandle<()>>,
    );
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::Relaxed);
            if let Some(t) = self.1.take() {
                let _ = t.join();
            }
        }
    }
    let _stop = Stop(stop, Some(thread));

    let open = env.bridge_network("o", |_| {});
    let internal = env.bridge_network("i", |s| s.internal = true);
    let c_open = env
        .nets
        .attach(&AttachRequest::new(&env.id("o1"), &open.name))
        .unwrap();
    let c_int = env
        .nets
        .attach(&AttachRequest::new(&env.id("i1"), &internal.name))
        .unwrap();
    let target = sock(other.ip, 7000);

    assert_eq!(
        fetch(Some(&env.pin_path(&c_open.container_id)), target).unwrap(),
        "outside"
    );
    // Masqueraded: the other host saw the host's address on its link, not the container's.
    assert_eq!(seen.lock().unwrap().as_slice(), &[other.host_ip]);

    // Internal: no default route...
    let pin_int = env.pin_path(&c_int.container_id);
    assert!(fetch(Some(&pin_int), target).is_err());
    // ...and even with a route the container adds itself, the firewall lets nothing out.
    let out = busybox_in(
        &pin_int,
        &[
            "ip",
            "route",
            "add",
            "default",
            "via",
            &internal.subnets[0].gateway.to_string(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(fetch(Some(&pin_int), target).is_err());
    assert_eq!(seen.lock().unwrap().len(), 1);
    // The host (and a DNS server on the gateway) stays reachable from inside.
    let host_srv = Server::tcp(None, sock(internal.subnets[0].gateway, 0), "gateway");
    assert_eq!(fetch(Some(&pin_int), host_srv.addr).unwrap(), "gateway");
    // Internal networks publish no ports.
    let mut req = AttachRequest::new(&env.id("i2"), &internal.name);
    req.ports = vec![PortMapping::tcp(0, 80)];
    assert!(matches!(
        env.nets.attach(&req),
        Err(Error::InvalidOption { .. })
    ));
}

#[test]
fn udp_sctp_ranges_host_ip_and_conflicts() {
    let env = Env::new();
    let net = env.bridge_network("u", |_| {});
    let free = |proto: Protocol| -> u16 {
        match proto {
            Protocol::Udp => std::net::UdpSocket::bind("0.0.0.0:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port(),
            _ => std::net::TcpListener::bind("0.0.0.0:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port(),
        }
    };
    let udp_port = free(Protocol::Udp);
    let tcp_port = free(Protocol::Tcp);
    let mut req = AttachRequest::new(&env.id("u1"), &net.name);
    req.ports = vec![
        PortMapping {
            protocol: Protocol::Udp,
            ..PortMapping::tcp(udp_port, 53)
        },
        PortMapping {
            host_ip: Some(Ipv4Addr::LOCALHOST.into()),
            ..PortMapping::tcp(tcp_port, 80)
        },
        PortMapping {
            protocol: Protocol::Sctp,
            ..PortMapping::tcp(tcp_port, 9)
        },
    ];
    let u1 = env.nets.attach(&req).unwrap();
    let pin = env.pin_path(&u1.container_id);
    let _udp = Server::udp(&pin, sock(v4(&u1), 53), "dns-ish");
    let _tcp = Server::tcp(Some(&pin), sock(v4(&u1), 80), "lo-only");

    let nb = env
        .nets
        .attach(&AttachRequest::new(&env.id("u2"), &net.name))
        .unwrap();
    let nb_pin = env.pin_path(&nb.container_id);
    assert_eq!(
        fetch_udp(&nb_pin, sock(net.subnets[0].gateway, udp_port)).unwrap(),
        "dns-ish"
    );
    // Published on 127.0.0.1 only: answers there, not on the bridge address.
    assert_eq!(
        fetch(None, sock(Ipv4Addr::LOCALHOST.into(), tcp_port)).unwrap(),
        "lo-only"
    );
    assert!(fetch(None, sock(net.subnets[0].gateway, tcp_port)).is_err());
    // SCTP is published as a DNAT entry like the others.
    let rules = env.nets.firewall().list_ports().unwrap();
    assert!(
        rules.iter().any(|r| r.protocol == Protocol::Sctp
            && r.host_port == tcp_port
            && r.container_port == 9),
        "{rules:?}"
    );
    assert_eq!(rules.len(), 3);

    // Conflicts are found before anything is made, and name the owner.
    let mut clash = AttachRequest::new(&env.id("u3"), &net.name);
    clash.ports = vec![PortMapping::tcp(tcp_port, 81)];
    let err = env.nets.attach(&clash).unwrap_err();
    assert!(matches!(err, Error::PortConflict { .. }), "{err}");
    assert!(err.to_string().contains(&u1.container_id), "{err}");
    assert!(env
        .nets
        .attachment(&env.id("u3"), &net.name)
        .unwrap()
        .is_none());
    assert!(!env.pin_path(&env.id("u3")).exists());
    assert_eq!(env.nets.firewall().list_ports().unwrap().len(), 3);

    // A one-to-one range.
    let base = free(Protocol::Tcp);
    let mut ranged = AttachRequest::new(&env.id("u4"), &net.name);
    ranged.ports = vec![PortMapping::parse(&format!("{base}-{}:7000-7002", base + 2)).unwrap()];
    match env.nets.attach(&ranged) {
        Ok(r) => {
            let got: Vec<(u16, u16)> = r
                .ports
                .iter()
                .map(|p| (p.host_port, p.container_port))
                .collect();
            assert_eq!(got, vec![(base, 7000), (base + 1, 7001), (base + 2, 7002)]);
        }
        // Another process took one of the neighbouring ports meanwhile: the error says so.
        Err(Error::PortConflict { owner, .. }) => assert!(owner.contains("process on the host")),
        Err(e) => panic!("{e}"),
    }
}
