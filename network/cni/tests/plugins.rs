//! kos-cni driving Debian's containernetworking-plugins (bridge, host-local, portmap,
//! loopback) end to end against test-made network namespaces.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::Path;

use kos_cni::config::{self, NetworkConfigList};
use kos_cni::runner::{Cni, RuntimeConf};
use kos_cni::Error;
use serde_json::json;

use support::*;

fn bridge_list(
    dir: &Path,
    network: &str,
    bridge: &str,
    subnet: &str,
    subnet6: &str,
    ipam_dir: &Path,
) -> String {
    let text = json!({
        "cniVersion": "1.0.0",
        "name": network,
        "plugins": [
            {
                "type": "bridge",
                "bridge": bridge,
                "isGateway": false,
                "ipMasq": false,
                "ipam": {
                    "type": "host-local",
                    "dataDir": ipam_dir,
                    "ranges": [[{"subnet": subnet}], [{"subnet": subnet6}]]
                }
            },
            {"type": "portmap", "capabilities": {"portMappings": true}}
        ]
    })
    .to_string();
    std::fs::write(dir.join("10-kos.conflist"), &text).unwrap();
    text
}

fn rt(id: &str, ns: &Netns, ifname: &str) -> RuntimeConf {
    RuntimeConf {
        container_id: id.into(),
        netns: ns.path(),
        ifname: ifname.into(),
        args: vec![("IgnoreUnknown".into(), "1".into())],
        ..RuntimeConf::default()
    }
}

#[test]
fn bridge_host_local_portmap_loopback_end_to_end() {
    let sfx = suffix();
    let bridge = format!("kosc{sfx}");
    assert!(bridge.len() <= 15);
    let network = format!("koscni-{sfx}");
    let guard = HostGuard::with_portmap(&bridge, &network);
    let tmp = TempDir::new(&sfx);
    let conf_dir = tmp.0.join("net.d");
    let ipam_dir = tmp.0.join("ipam");
    std::fs::create_dir_all(&conf_dir).unwrap();
    bridge_list(
        &conf_dir,
        &network,
        &bridge,
        "10.213.1.0/24",
        "fd13:213:1::/64",
        &ipam_dir,
    );
    // Dual stack: v6 addresses, routes and ip6tables cleanup are exercised too.
    std::fs::write(
        conf_dir.join("99-loopback.conf"),
        json!({"cniVersion": "1.0.0", "name": format!("lo-{sfx}"), "type": "loopback"}).to_string(),
    )
    .unwrap();
    let list = config::load_default(&conf_dir).unwrap();
    assert_eq!(list.name, network, "10-kos.conflist sorts first");
    let lo_list = config::load_by_name(&conf_dir, &format!("lo-{sfx}")).unwrap();
    let cache_dir = tmp.0.join("cache");
    let cni = Cni::new(vec![DEBIAN_PLUGINS.into()], &cache_dir);

    let a = Netns::new(&sfx, "a");
    let b = Netns::new(&sfx, "b");
    let host_port = 20000 + (std::process::id() % 20000) as u16;
    let mut rt_a = rt(&format!("ctr-a-{sfx}"), &a, "eth0");
    rt_a.capability_args.insert(
        "portMappings".into(),
        json!([{"hostPort": host_port, "containerPort": 80, "protocol": "tcp"}]),
    );
    let rt_b = rt(&format!("ctr-b-{sfx}"), &b, "eth0");

    for (rt, ns) in [(&rt_a, &a), (&rt_b, &b)] {
        let lo = cni.add(&lo_list, &rt_lo(rt, ns)).unwrap();
        assert!(lo.interfaces.iter().any(|i| i.name == "lo"), "{lo:?}");
    }
    // CHECK right after each ADD, through bridge and host-local. (Debian's plugins 1.1.1: the
    // bridge's MAC follows its ports, so an older attachment's recorded bridge MAC goes stale
    // when the next joins; portmap's CHECK looks for IPv4 rules in the IPv6 table and always
    // fails. Both are bugs of that version, so portmap is left out and each CHECK runs early.)
    let mut no_portmap = list.clone();
    no_portmap.plugins.truncate(1);
    let res_a = cni.add(&list, &rt_a).unwrap();
    cni.check(&no_portmap, &rt_a).unwrap();
    let res_b = cni.add(&list, &rt_b).unwrap();
    cni.check(&no_portmap, &rt_b).unwrap();
    let ip_a = res_a.sandbox_ips()[0].addr().to_string();
    let ip_b = res_b.sandbox_ips()[0].addr().to_string();
    let ip6_b = res_b.sandbox_ips()[1].addr().to_string();
    assert!(ip6_b.starts_with("fd13:213:1::"), "{ip6_b}");
    assert!(ip_a.starts_with("10.213.1.") && ip_b.starts_with("10.213.1."));
    assert_ne!(ip_a, ip_b);

    // Seen from inside: eth0 holds the address, lo is up, and the two reach each other.
    let addr = a.exec(&["ip", "-o", "addr", "show", "dev", "eth0"]);
    assert!(String::from_utf8_lossy(&addr.stdout).contains(&format!("{ip_a}/24")));
    let lo = a.exec(&["ip", "-o", "link", "show", "lo"]);
    assert!(String::from_utf8_lossy(&lo.stdout).contains("UP"));
    for (from, to) in [(&a, &ip_b), (&b, &ip_a)] {
        let ping = from.exec(&["busybox", "ping", "-c", "1", "-W", "3", to]);
        assert!(
            ping.status.success(),
            "ping {to}: {}",
            String::from_utf8_lossy(&ping.stdout)
        );
    }
    let ping6 = a.exec(&["busybox", "ping", "-6", "-c", "1", "-W", "3", &ip6_b]);
    assert!(
        ping6.status.success(),
        "ping {ip6_b}: {}",
        String::from_utf8_lossy(&ping6.stdout)
    );
    assert_eq!(bridge_ports(&bridge).len(), 2);
    assert_eq!(ipam_allocations(&ipam_dir, &network).len(), 4);
    // portmap got the capability argument: a DNAT for the host port to A's address.
    let tagged = guard.leftover_rules();
    assert!(
        tagged
            .iter()
            .any(|l| l.contains(&format!("--dports {host_port}"))),
        "{tagged:#?}"
    );
    let to_a = format!("--to-destination {ip_a}:80");
    assert!(nat_rules("iptables").iter().any(|l| l.contains(&to_a)));

    let cached = cni
        .cached_result(&network, &rt_a.container_id, "eth0")
        .unwrap()
        .unwrap();
    assert_eq!(cached.sandbox_ips(), res_a.sandbox_ips());

    // A "restart": a new runner, and the config file gone; DEL runs from the cache alone.
    std::fs::remove_file(conf_dir.join("10-kos.conflist")).unwrap();
    let cni2 = Cni::new(vec![DEBIAN_PLUGINS.into()], &cache_dir);
    cni2.del_cached(&network, &rt_a.container_id, "eth0")
        .unwrap();
    assert!(cni2
        .cached_result(&network, &rt_a.container_id, "eth0")
        .unwrap()
        .is_none());
    cni2.del(&list, &rt_b).unwrap();
    // DEL is idempotent.
    cni2.del(&list, &rt_b).unwrap();
    for (rt, ns) in [(&rt_a, &a), (&rt_b, &b)] {
        cni2.del(&lo_list, &rt_lo(rt, ns)).unwrap();
    }

    assert!(bridge_ports(&bridge).is_empty(), "veths left on {bridge}");
    assert!(
        ipam_allocations(&ipam_dir, &network).is_empty(),
        "IP allocations left"
    );
    assert!(
        guard.leftover_rules().is_empty(),
        "{:#?}",
        guard.leftover_rules()
    );
    assert!(!nat_rules("iptables").iter().any(|l| l.contains(&to_a)));
    let inside = a.exec(&["ip", "-o", "link", "show", "eth0"]);
    assert!(!inside.status.success(), "eth0 still in netns a");
    assert!(cni2.cache().list(&network).unwrap().is_empty());
    drop(guard);
    let gone = std::process::Command::new("ip")
        .args(["link", "show", &bridge])
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!gone.success(), "bridge {bridge} left behind");
}

fn rt_lo(rt: &RuntimeConf, ns: &Netns) -> RuntimeConf {
    RuntimeConf {
        container_id: rt.container_id.clone(),
        netns: ns.path(),
        ifname: "lo".into(),
        ..RuntimeConf::default()
    }
}

#[test]
fn failed_add_midway_leaves_nothing() {
    let sfx = suffix();
    let bridge = format!("kosc{sfx}");
    let network = format!("koscni-{sfx}");
    let _guard = HostGuard::new(&bridge, &network);
    let tmp = TempDir::new(&sfx);
    let ipam_dir = tmp.0.join("ipam");
    let fake_dir = tmp.0.join("bin");
    std::fs::create_dir_all(&fake_dir).unwrap();
    // After bridge and host-local succeed, a plugin prints garbage; another fails properly.
    fake_plugin(
        &fake_dir,
        "garbage",
        "cat >/dev/null; echo 'this is not json'",
    );
    fake_plugin(
        &fake_dir,
        "refuse",
        r#"cat >/dev/null
[ "$CNI_COMMAND" = DEL ] && exit 0
echo '{"cniVersion":"1.0.0","code":11,"msg":"refused on purpose","details":"test"}'; exit 1"#,
    );
    let ns = Netns::new(&sfx, "x");
    let cni = Cni::new(
        vec![fake_dir.clone(), DEBIAN_PLUGINS.into()],
        tmp.0.join("cache"),
    );
    for (bad, check) in [
        ("garbage", "printed an invalid result"),
        ("refuse", "code 11: refused on purpose"),
    ] {
        let text = json!({
            "cniVersion": "1.0.0", "name": network,
            "plugins": [
                {"type": "bridge", "bridge": bridge, "ipam": {
                    "type": "host-local", "dataDir": ipam_dir,
                    "ranges": [[{"subnet": "10.213.2.0/24"}]]}},
                {"type": bad}
            ]
        });
        let list =
            NetworkConfigList::from_bytes(text.to_string().as_bytes(), Path::new("t")).unwrap();
        let err = cni
            .add(&list, &rt(&format!("ctr-{sfx}"), &ns, "eth0"))
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(check) && msg.contains(bad), "{msg}");
        match (bad, &err) {
            ("garbage", Error::BadOutput { .. }) => {}
            ("refuse", Error::Plugin { error, .. }) => assert_eq!(error.code, 11),
            _ => panic!("unexpected error type: {err:?}"),
        }
        assert!(bridge_ports(&bridge).is_empty(), "{bad}: veth left");
        assert!(
            ipam_allocations(&ipam_dir, &network).is_empty(),
            "{bad}: IP left"
        );
        assert!(!ns.exec(&["ip", "link", "show", "eth0"]).status.success());
        assert!(cni.cache().list(&network).unwrap().is_empty());
    }
}

#[test]
fn gc_deletes_stale_attachments_and_version_asks_the_plugin() {
    let sfx = suffix();
    let bridge = format!("kosc{sfx}");
    let network = format!("koscni-{sfx}");
    let _guard = HostGuard::new(&bridge, &network);
    let tmp = TempDir::new(&sfx);
    let ipam_dir = tmp.0.join("ipam");
    let text = json!({
        "cniVersion": "1.0.0", "name": network,
        "plugins": [{"type": "bridge", "bridge": bridge, "ipam": {
            "type": "host-local", "dataDir": ipam_dir,
            "ranges": [[{"subnet": "10.213.3.0/24"}]]}}]
    });
    let list = NetworkConfigList::from_bytes(text.to_string().as_bytes(), Path::new("t")).unwrap();
    let cni = Cni::new(vec![DEBIAN_PLUGINS.into()], tmp.0.join("cache"));
    let keep_ns = Netns::new(&sfx, "keep");
    let stale_ns = Netns::new(&sfx, "stale");
    let keep = rt(&format!("keep-{sfx}"), &keep_ns, "eth0");
    let stale = rt(&format!("stale-{sfx}"), &stale_ns, "eth0");
    cni.add(&list, &keep).unwrap();
    cni.add(&list, &stale).unwrap();
    assert_eq!(ipam_allocations(&ipam_dir, &network).len(), 2);

    cni.gc(&list, &[(keep.container_id.clone(), "eth0".into())])
        .unwrap();
    assert_eq!(ipam_allocations(&ipam_dir, &network).len(), 1);
    assert_eq!(bridge_ports(&bridge).len(), 1);
    assert!(!stale_ns
        .exec(&["ip", "link", "show", "eth0"])
        .status
        .success());
    assert!(keep_ns
        .exec(&["ip", "link", "show", "eth0"])
        .status
        .success());
    let left = cni.cache().list(&network).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].container_id, keep.container_id);
    cni.del(&list, &keep).unwrap();
    assert!(ipam_allocations(&ipam_dir, &network).is_empty());

    let v = cni.version("bridge", list.version).unwrap();
    assert!(v.supported_versions.contains(&"1.0.0".to_owned()), "{v:?}");
    // STATUS on a 1.0.0 list: nothing to ask, ready.
    cni.status(&list).unwrap();
    // CHECK needs a cached result.
    assert!(matches!(
        cni.check(&list, &keep),
        Err(Error::NotCached { .. })
    ));
    assert!(matches!(
        cni.version("no-such-plugin", list.version),
        Err(Error::PluginNotFound { .. })
    ));
}
