//! Bridge networks against the real kernel: containers are namespaces made by the test.

#![allow(clippy::unwrap_used)]

mod support;

use std::net::IpAddr;

use kos_network::{AttachRequest, Error};
use support::*;

#[test]
fn two_containers_on_one_network_reach_each_other_but_not_across_networks() {
    let env = Env::new();
    let a_net = env.bridge_network("a", |_| {});
    let b_net = env.bridge_network("b", |_| {});

    let a1 = env
        .nets
        .attach(&AttachRequest::new(&env.id("a1"), &a_net.name))
        .unwrap();
    let a2 = env
        .nets
        .attach(&AttachRequest::new(&env.id("a2"), &a_net.name))
        .unwrap();
    let b1 = env
        .nets
        .attach(&AttachRequest::new(&env.id("b1"), &b_net.name))
        .unwrap();

    let ip = |a: &kos_network::Attachment| a.addresses[0].addr();
    assert_ne!(ip(&a1), ip(&a2));
    assert!(a_net.subnets[0].subnet.contains(&ip(&a1)));

    let pin_a1 = env.pin_path(&a1.container_id);
    let pin_a2 = env.pin_path(&a2.container_id);
    let pin_b1 = env.pin_path(&b1.container_id);
    let _srv = Server::tcp(Some(&pin_a2), sock(ip(&a2), 8080), "a2");
    let _srv_b = Server::tcp(Some(&pin_b1), sock(ip(&b1), 8080), "b1");

    assert_eq!(fetch(Some(&pin_a1), sock(ip(&a2), 8080)).unwrap(), "a2");
    // busybox as a real client too.
    let out = busybox_in(&pin_a1, &["nc", "-w", "2", &ip(&a2).to_string(), "8080"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "a2");

    // Across networks: b1 is routed through the host, and the firewall drops it.
    assert!(fetch(Some(&pin_a1), sock(ip(&b1), 8080)).is_err());
    assert!(fetch(Some(&pin_b1), sock(ip(&a2), 8080)).is_err());

    // Inside: eth0 with the derived MAC, loopback up, default route via the gateway.
    let out = busybox_in(&pin_a1, &["ip", "-o", "link", "show", "eth0"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(a1.mac.as_deref().unwrap()), "{text}");
    assert!(a1.mac.as_deref().unwrap().starts_with("02:4b:"));
    let out = busybox_in(&pin_a1, &["ip", "route"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("default via {}", a_net.subnets[0].gateway)),
        "{text}"
    );
    let out = busybox_in(&pin_a1, &["ip", "-o", "link", "show", "lo"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("UP"));

    // Detach removes the host veth and releases the address.
    env.nets.detach(&a1.container_id, &a_net.name).unwrap();
    assert!(!host_links().contains(&a1.host_veth));
    assert!(env
        .nets
        .attachment(&a1.container_id, &a_net.name)
        .unwrap()
        .is_none());
    let out = busybox_in(&pin_a1, &["ip", "-o", "link"]);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("eth0"));
}

#[test]
fn static_ip_mac_ifname_and_disabled_icc() {
    let env = Env::new();
    let net = env.bridge_network("s", |s| s.enable_icc = false);
    let subnet = net.subnets[0].subnet;
    let want: IpAddr = match subnet.addr() {
        IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) + 77).into()),
        IpAddr::V6(_) => unreachable!(),
    };
    let mut req = AttachRequest::new(&env.id("s1"), &net.name);
    req.ips = vec![want];
    req.mac = Some("02:aa:bb:cc:dd:01".into());
    req.ifname = Some("net0".into());
    let s1 = env.nets.attach(&req).unwrap();
    assert_eq!(s1.addresses[0].addr(), want);
    let pin = env.pin_path(&s1.container_id);
    let out = busybox_in(&pin, &["ip", "-o", "addr", "show", "net0"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("{want}/24")), "{text}");
    let out = busybox_in(&pin, &["ip", "-o", "link", "show", "net0"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("02:aa:bb:cc:dd:01"));

    // The same address again is refused, naming the owner, and leaves nothing.
    let mut again = AttachRequest::new(&env.id("s2"), &net.name);
    again.ips = vec![want];
    let err = env.nets.attach(&again).unwrap_err();
    assert!(matches!(err, Error::IpTaken { .. }), "{err}");
    assert!(err.to_string().contains(&s1.container_id), "{err}");
    let veth = kos_network::names::host_veth_name(&env.id("s2"), &net.name);
    assert!(!host_links().contains(&veth));
    assert!(env
        .nets
        .attachment(&env.id("s2"), &net.name)
        .unwrap()
        .is_none());
    assert!(!env.pin_path(&env.id("s2")).exists());

    // enable_icc = false: two containers of the network cannot talk, but reach the gateway.
    let s2 = env
        .nets
        .attach(&AttachRequest::new(&env.id("s2"), &net.name))
        .unwrap();
    let pin2 = env.pin_path(&s2.container_id);
    let _srv = Server::tcp(Some(&pin), std::net::SocketAddr::new(want, 80), "s1");
    assert!(fetch(Some(&pin2), sock(want, 80)).is_err());
    let _host = Server::tcp(None, sock(net.subnets[0].gateway, 0), "host");
    assert_eq!(fetch(Some(&pin2), _host.addr).unwrap(), "host");
}

#[test]
fn ipv6_between_containers() {
    let env = Env::new();
    let net = env.bridge_network("6", |s| s.ipv6 = true);
    assert!(net.has_ipv6());
    let c1 = env
        .nets
        .attach(&AttachRequest::new(&env.id("v1"), &net.name))
        .unwrap();
    let c2 = env
        .nets
        .attach(&AttachRequest::new(&env.id("v2"), &net.name))
        .unwrap();
    let v6 = |a: &kos_network::Attachment| {
        a.addresses
            .iter()
            .find(|a| a.addr().is_ipv6())
            .unwrap()
            .addr()
    };
    assert_ne!(v6(&c1), v6(&c2));
    let pin1 = env.pin_path(&c1.container_id);
    let pin2 = env.pin_path(&c2.container_id);
    let _srv = Server::tcp(Some(&pin2), sock(v6(&c2), 9000), "v6-ok");
    assert_eq!(fetch(Some(&pin1), sock(v6(&c2), 9000)).unwrap(), "v6-ok");
    // And the host reaches the container over IPv6 through the bridge's gateway address.
    assert_eq!(fetch(None, sock(v6(&c2), 9000)).unwrap(), "v6-ok");

    // A published port answers over IPv6 too, on the bridge's IPv6 address.
    let mut req = AttachRequest::new(&env.id("v3"), &net.name);
    req.ports = vec![kos_network::PortMapping::tcp(0, 9001)];
    let c3 = env.nets.attach(&req).unwrap();
    let _srv3 = Server::tcp(
        Some(&env.pin_path(&c3.container_id)),
        sock(std::net::Ipv6Addr::UNSPECIFIED.into(), 9001),
        "v6-port",
    );
    let gw6 = net
        .subnets
        .iter()
        .find(|s| s.subnet.addr().is_ipv6())
        .unwrap()
        .gateway;
    assert_eq!(
        fetch(None, sock(gw6, c3.ports[0].host_port)).unwrap(),
        "v6-port"
    );
    assert_eq!(
        fetch(Some(&pin1), sock(gw6, c3.ports[0].host_port)).unwrap(),
        "v6-port"
    );
}

#[test]
fn bad_input_makes_nothing() {
    let env = Env::new();
    let net = env.bridge_network("x", |_| {});
    let mut spec = kos_network::NetworkSpec::bridge(&format!("n{}y", env.sfx))
        .with_subnet(&net.subnets[0].subnet.to_string());
    spec.bridge_name = Some(env.ifname("y"));
    assert!(matches!(
        env.nets.create(&spec),
        Err(Error::SubnetOverlap { .. })
    ));
    spec.subnets.clear();
    let spec2 = spec.clone().with_subnet("10.1.2.3/33");
    assert!(matches!(
        env.nets.create(&spec2),
        Err(Error::InvalidCidr { .. })
    ));
    let mut gw = spec.clone();
    gw.subnets = vec![kos_network::SubnetSpec {
        subnet: free_subnet(),
        gateway: Some("192.0.2.77".into()),
        ip_range: None,
    }];
    let err = env.nets.create(&gw).unwrap_err();
    assert!(matches!(err, Error::GatewayOutsideSubnet { .. }), "{err}");
    assert!(err.to_string().contains("192.0.2.77"), "{err}");
    let mut spec3 = spec.clone();
    spec3.driver = "overlay".into();
    assert!(matches!(
        env.nets.create(&spec3),
        Err(Error::UnknownDriver(_))
    ));
    let mut dup = spec.clone();
    dup.name = net.name.clone();
    assert!(matches!(
        env.nets.create(&dup),
        Err(Error::DuplicateNetwork(_))
    ));
    assert!(!host_links().contains(&env.ifname("y")));
    assert_eq!(env.nets.list().unwrap().len(), 1);

    // An address outside the pool, a bad MAC, an unknown network: refused, nothing made.
    let mut req = AttachRequest::new(&env.id("z"), &net.name);
    req.ips = vec!["192.0.2.200".parse().unwrap()];
    assert!(matches!(
        env.nets.attach(&req),
        Err(Error::IpOutsidePool { .. })
    ));
    let mut req = AttachRequest::new(&env.id("z"), &net.name);
    req.mac = Some("01:00:5e:00:00:01".into());
    assert!(matches!(env.nets.attach(&req), Err(Error::InvalidMac(_))));
    let mut req = AttachRequest::new(&env.id("z"), &net.name);
    let base = match net.subnets[0].subnet.network() {
        IpAddr::V4(v4) => u32::from(v4),
        IpAddr::V6(_) => unreachable!(),
    };
    req.ips = vec![
        IpAddr::V4((base + 10).into()),
        IpAddr::V4((base + 11).into()),
    ];
    assert!(matches!(
        env.nets.attach(&req),
        Err(Error::InvalidOption { .. })
    ));
    let mut req = AttachRequest::new(&env.id("z"), &net.name);
    req.name = Some("bad name!".into());
    assert!(matches!(
        env.nets.attach(&req),
        Err(Error::InvalidOption { .. })
    ));
    let req = AttachRequest::new(&env.id("z"), "no-such-net");
    assert!(matches!(
        env.nets.attach(&req),
        Err(Error::NetworkNotFound(_))
    ));
    let veth = kos_network::names::host_veth_name(&env.id("z"), &net.name);
    assert!(!host_links().contains(&veth));
    assert!(env.nets.attachments().unwrap().is_empty());
    assert!(env.nets.pins().list().unwrap().is_empty());

    // An exhausted pool: a clear error, and the second container is left with nothing.
    let tiny_net: ipnet::Ipv4Net = free_subnet().parse().unwrap();
    let tiny = env.bridge_network("w", |s| {
        s.subnets = vec![kos_network::SubnetSpec {
            subnet: format!("{}/30", tiny_net.network()),
            ..Default::default()
        }]
    });
    env.nets
        .attach(&AttachRequest::new(&env.id("w1"), &tiny.name))
        .unwrap();
    let mut second = AttachRequest::new(&env.id("w2"), &tiny.name);
    second.ports = vec![kos_network::PortMapping::tcp(0, 80)];
    let err = env.nets.attach(&second).unwrap_err();
    assert!(matches!(err, Error::PoolExhausted { .. }), "{err}");
    assert!(err.to_string().contains("exhausted"), "{err}");
    assert!(env
        .nets
        .attachment(&env.id("w2"), &tiny.name)
        .unwrap()
        .is_none());
    assert!(!env.pin_path(&env.id("w2")).exists());
    assert!(!host_links().contains(&kos_network::names::host_veth_name(
        &env.id("w2"),
        &tiny.name
    )));
    assert!(env.nets.firewall().list_ports().unwrap().is_empty());
}

#[test]
fn host_none_and_container_modes() {
    let env = Env::new();
    let net = env.bridge_network("m", |_| {});
    let owner = env
        .nets
        .attach(&AttachRequest::new(&env.id("o"), &net.name))
        .unwrap();

    let mut joiner = AttachRequest::new(&env.id("j"), "");
    joiner.mode = format!("container:{}", owner.container_id).parse().unwrap();
    let j = env.nets.attach(&joiner).unwrap();
    assert_eq!(j.netns, owner.netns);

    let mut none = AttachRequest::new(&env.id("n"), "");
    none.mode = "none".parse().unwrap();
    let n = env.nets.attach(&none).unwrap();
    let pin = n.netns.clone().unwrap();
    let out = busybox_in(&pin, &["ip", "-o", "link"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("lo:") && text.contains("UP") && !text.contains("eth0"),
        "{text}"
    );

    let mut host = AttachRequest::new(&env.id("h"), "");
    host.mode = "host".parse().unwrap();
    assert_eq!(env.nets.attach(&host).unwrap().netns, None);
    // Joining a host-network container means the host's namespace too.
    let mut join_host = AttachRequest::new(&env.id("jh"), "");
    join_host.mode = format!("container:{}", env.id("h")).parse().unwrap();
    assert_eq!(env.nets.attach(&join_host).unwrap().netns, None);

    // A network made with the null driver attaches the same way.
    let mut spec = kos_network::NetworkSpec::bridge(&format!("n{}null", env.sfx));
    spec.driver = "null".into();
    let null = env.nets.create(&spec).unwrap();
    assert_eq!(null.driver, kos_network::DriverKind::None);
    let n2 = env
        .nets
        .attach(&AttachRequest::new(&env.id("n2"), &null.name))
        .unwrap();
    assert_eq!(n2.kind, kos_network::AttachKind::None);
    assert!(n2.netns.is_some() && n2.addresses.is_empty());
    let mut twice = spec.clone();
    twice.name = format!("n{}null2", env.sfx);
    assert!(matches!(
        env.nets.create(&twice),
        Err(Error::InvalidOption { .. })
    ));

    let mut bad = AttachRequest::new(&env.id("b"), "");
    bad.mode = "container:nobody".parse().unwrap();
    assert!(matches!(
        env.nets.attach(&bad),
        Err(Error::NoNetnsToJoin(_))
    ));
    let mut ports_on_host = AttachRequest::new(&env.id("p"), "");
    ports_on_host.mode = "host".parse().unwrap();
    ports_on_host.ports = vec![kos_network::PortMapping::tcp(8080, 80)];
    assert!(matches!(
        env.nets.attach(&ports_on_host),
        Err(Error::InvalidOption { .. })
    ));
}

#[test]
fn default_network_mtu_labels_pins_and_removal() {
    let env = Env::new();
    // The default network is made on first use, with a subnet no host route covers.
    let routes = kos_network::netlink::Netlink::open()
        .unwrap()
        .route_destinations()
        .unwrap();
    let mut req = AttachRequest::new(&env.id("d1"), "default");
    req.mode = "default".parse().unwrap();
    let d1 = env.nets.attach(&req).unwrap();
    let default = env.nets.get(&env.nets.options().default_network).unwrap();
    assert_eq!(d1.network, default.name);
    assert_eq!(default.bridge, env.nets.options().default_bridge);
    let subnet = default.subnets[0].subnet;
    assert!(
        !routes
            .iter()
            .any(|r| kos_network::netconf::overlaps(r, &subnet)),
        "{subnet} overlaps a host route"
    );
    assert!(host_links().contains(&default.bridge));

    // MTU and labels.
    let net = env.bridge_network("t", |s| {
        s.mtu = Some(1400);
        s.labels.insert("com.example.team".into(), "net".into());
    });
    assert_eq!(
        env.nets
            .get(&net.name)
            .unwrap()
            .labels
            .get("com.example.team")
            .map(String::as_str),
        Some("net")
    );
    let c = env
        .nets
        .attach(&AttachRequest::new(&env.id("t1"), &net.name))
        .unwrap();
    let out = busybox_in(
        &env.pin_path(&c.container_id),
        &["ip", "-o", "link", "show", "eth0"],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("mtu 1400"));
    let mtu = std::fs::read_to_string(format!("/sys/class/net/{}/mtu", c.host_veth)).unwrap();
    assert_eq!(mtu.trim(), "1400");

    // A network in use is not removed; after detach it is, with its bridge.
    assert!(matches!(
        env.nets.remove(&net.name),
        Err(Error::NetworkInUse { count: 1, .. })
    ));
    env.nets.release_container(&c.container_id).unwrap();
    assert!(!env.pin_path(&c.container_id).exists());
    env.nets.remove(&net.name).unwrap();
    assert!(!host_links().contains(&net.bridge));
    assert!(matches!(
        env.nets.get(&net.name),
        Err(Error::NetworkNotFound(_))
    ));

    // Pins: a namespace exists before any process, and removal is idempotent.
    let pin = env.nets.pins().create(&env.id("p")).unwrap();
    let out = busybox_in(&pin, &["ip", "-o", "link"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("lo:"));
    assert!(matches!(
        env.nets.pins().create(&env.id("p")),
        Err(Error::Netns { .. })
    ));
    env.nets.pins().remove(&env.id("p")).unwrap();
    env.nets.pins().remove(&env.id("p")).unwrap();
    assert!(!pin.exists());
}

#[test]
fn custom_gateway_and_ip_range() {
    let env = Env::new();
    let subnet: ipnet::Ipv4Net = free_subnet().parse().unwrap();
    let base = u32::from(subnet.network());
    let gateway = std::net::Ipv4Addr::from(base + 254);
    let net = env.bridge_network("g", |s| {
        s.subnets = vec![kos_network::SubnetSpec {
            subnet: subnet.to_string(),
            gateway: Some(gateway.to_string()),
            ip_range: Some(format!("{}/28", std::net::Ipv4Addr::from(base + 64))),
        }];
    });
    let c = env
        .nets
        .attach(&AttachRequest::new(&env.id("g1"), &net.name))
        .unwrap();
    let ip = match c.addresses[0].addr() {
        IpAddr::V4(v4) => u32::from(v4),
        IpAddr::V6(_) => unreachable!(),
    };
    assert!(
        (base + 64..base + 80).contains(&ip),
        "{} not in the ip-range",
        c.addresses[0]
    );
    let out = busybox_in(&env.pin_path(&c.container_id), &["ip", "route"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("default via {gateway}")), "{text}");
    let _host = Server::tcp(None, sock(IpAddr::V4(gateway), 0), "gw");
    assert_eq!(
        fetch(Some(&env.pin_path(&c.container_id)), _host.addr).unwrap(),
        "gw"
    );
}

#[test]
fn deferred_release_frees_everything_at_once_and_the_veth_right_after() {
    let env = Env::new();
    let net = env.bridge_network("r", |_| {});
    let id = env.id("r1");
    let mut req = AttachRequest::new(&id, &net.name);
    let want: IpAddr = match net.subnets[0].subnet.addr() {
        IpAddr::V4(v4) => IpAddr::V4((u32::from(v4) + 33).into()),
        IpAddr::V6(_) => unreachable!(),
    };
    req.ips = vec![want];
    let first = env.nets.attach(&req).unwrap();
    let veth = first.host_veth.clone();

    let left = env.nets.release_container_deferred(&id).unwrap();
    assert_eq!(left, vec![net.name.clone()]);
    // At once: record, pin and address are gone; the veth, if still there, is down.
    assert!(env.nets.attachment(&id, &net.name).unwrap().is_none());
    assert!(!env.pin_path(&id).exists());
    if let Ok(flags) = std::fs::read_to_string(format!("/sys/class/net/{veth}/flags")) {
        let flags = u32::from_str_radix(flags.trim().trim_start_matches("0x"), 16).unwrap();
        assert_eq!(flags & 1, 0, "{veth} is up after its release");
    }
    // Another container can take the static address right away.
    let mut other = AttachRequest::new(&env.id("r2"), &net.name);
    other.ips = vec![want];
    let second = env.nets.attach(&other).unwrap();
    assert_eq!(second.addresses[0].addr(), want);
    env.nets.release_container(&second.container_id).unwrap();

    // The same container attached again (a restart) gets its veth name back, the old link
    // having been deleted first; a second deferred release, then the wait, leaves nothing.
    let again = env
        .nets
        .attach(&AttachRequest::new(&id, &net.name))
        .unwrap();
    assert_eq!(again.host_veth, veth);
    assert!(host_links().contains(&veth));
    env.nets.release_container_deferred(&id).unwrap();
    assert!(env
        .nets
        .wait_for_deferred_links(std::time::Duration::from_secs(10)));
    assert!(!host_links().contains(&veth));
    let ports = std::fs::read_dir(format!("/sys/class/net/{}/brif", net.bridge))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(ports, 0);
}
