//! Pods on a CNI network (Debian's containernetworking-plugins: bridge, host-local,
//! portmap), a pod sharing its PID namespace, security contexts seen from inside, and a
//! failed RunPodSandbox that leaves nothing.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use support::{mounts_under, Registry, Server};
use tonic::transport::Channel;

fn pod(name: &str, ns: NamespaceOption, ports: Vec<PortMapping>) -> PodSandboxConfig {
    let mut pc = support::pod_config(name, ns);
    pc.hostname = name.into();
    pc.port_mappings = ports;
    pc
}

async fn run(rt: &mut RuntimeServiceClient<Channel>, pod_id: &str, c: ContainerConfig) -> String {
    support::run_container(rt, pod_id, c, None).await
}

async fn exec(rt: &mut RuntimeServiceClient<Channel>, id: &str, cmd: &str) -> (i32, String) {
    let r = rt
        .exec_sync(ExecSyncRequest {
            container_id: id.into(),
            cmd: vec!["sh".into(), "-c".into(), cmd.into()],
            timeout: 20,
        })
        .await
        .expect("exec")
        .into_inner();
    (
        r.exit_code,
        format!(
            "{}{}",
            String::from_utf8_lossy(&r.stdout),
            String::from_utf8_lossy(&r.stderr)
        ),
    )
}

/// The test's own bridge, removed on drop (CNI DEL leaves the bridge itself).
struct Bridge(String);

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.0]).status();
    }
}

/// portmap's shared chains in the host's nat table: the plugin leaves them (and their jumps)
/// after the last DEL. Removed on drop when this test made them and they are empty again.
struct PortmapChains {
    existed: bool,
}

fn iptables(args: &[&str]) -> bool {
    Command::new("iptables")
        .args(["-w", "-t", "nat"])
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

impl PortmapChains {
    fn snapshot() -> PortmapChains {
        PortmapChains {
            existed: iptables(&["-S", "CNI-HOSTPORT-DNAT"]),
        }
    }
}

impl Drop for PortmapChains {
    fn drop(&mut self) {
        if self.existed {
            return;
        }
        let rules = Command::new("iptables")
            .args(["-w", "-t", "nat", "-S", "CNI-HOSTPORT-DNAT"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().count())
            .unwrap_or(0);
        if rules > 1 {
            // Someone else's port mappings: leave the chains.
            return;
        }
        // The jumps into the chains, as the portmap plugin adds them.
        let local_dnat = [
            "-m",
            "addrtype",
            "--dst-type",
            "LOCAL",
            "-j",
            "CNI-HOSTPORT-DNAT",
        ];
        for chain in ["PREROUTING", "OUTPUT"] {
            iptables(&[&["-D", chain][..], &local_dnat].concat());
        }
        iptables(&[
            "-D",
            "POSTROUTING",
            "-m",
            "comment",
            "--comment",
            "CNI portfwd requiring masquerade",
            "-j",
            "CNI-HOSTPORT-MASQ",
        ]);
        for c in [
            "CNI-HOSTPORT-DNAT",
            "CNI-HOSTPORT-MASQ",
            "CNI-HOSTPORT-SETMARK",
        ] {
            iptables(&["-F", c]);
            iptables(&["-X", c]);
        }
    }
}

fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Host veths whose peer is in a netns (what bridge plugin attachments leave on the host).
fn veths_on(bridge: &str) -> usize {
    std::fs::read_dir(Path::new("/sys/class/net").join(bridge).join("brif"))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn write_conflist(dir: &Path, bridge: &str, subnet: &str, extra_plugin: &str) {
    std::fs::create_dir_all(dir).expect("mkdir net.d");
    let conf = format!(
        r#"{{"cniVersion": "1.0.0", "name": "{bridge}", "plugins": [
  {{"type": "bridge", "bridge": "{bridge}", "isGateway": true, "ipMasq": false,
    "ipam": {{"type": "host-local", "ranges": [[{{"subnet": "{subnet}"}}]],
              "dataDir": "{}"}}}}{extra_plugin}
]}}"#,
        dir.join("ipam").display()
    );
    std::fs::write(dir.join("10-kos-test.conflist"), conf).expect("write conflist");
}

fn subnet() -> String {
    // Unique per test process, inside 10.213.0.0/16 (not used by the host).
    format!("10.213.{}.0/24", std::process::id() % 250)
}

#[tokio::test(flavor = "current_thread")]
async fn cni_pods_reach_each_other_and_host_port() {
    let reg = Registry::start();
    let image = reg.push_busybox("cri/busybox:1", &["sh"]);
    let _chains = PortmapChains::snapshot();
    let bridge = Bridge(format!("kos{}", std::process::id() % 100_000_000));
    assert!(bridge.0.len() <= 15);
    let server = Server::start(&[("--cni-bin-dir", "/usr/lib/cni".to_string())]);
    write_conflist(
        &server.dir.path().join("net.d"),
        &bridge.0,
        &subnet(),
        r#",
  {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}"#,
    );
    support::pull(&server, &image).await;
    let mut rt = server.runtime().await;
    let st = rt
        .status(StatusRequest { verbose: false })
        .await
        .expect("status")
        .into_inner()
        .status
        .expect("status");
    assert!(st
        .conditions
        .iter()
        .any(|c| c.r#type == "NetworkReady" && c.status));

    let ns = NamespaceOption {
        ipc: NamespaceMode::Pod as i32,
        ..support::namespaces(NamespaceMode::Pod, NamespaceMode::Container)
    };
    let host_port = kos_testsupport::free_port();
    let a = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod(
                "web",
                ns.clone(),
                vec![PortMapping {
                    protocol: Protocol::Tcp as i32,
                    container_port: 8080,
                    host_port: host_port as i32,
                    host_ip: "127.0.0.1".into(),
                }],
            )),
            runtime_handler: String::new(),
        })
        .await
        .expect("run pod a")
        .into_inner()
        .pod_sandbox_id;
    let b = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod("client", ns, vec![])),
            runtime_handler: String::new(),
        })
        .await
        .expect("run pod b")
        .into_inner()
        .pod_sandbox_id;
    let ip_of = |s: PodSandboxStatusResponse| s.status.expect("status").network.expect("net").ip;
    let ip_a = ip_of(
        rt.pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: a.clone(),
            verbose: false,
        })
        .await
        .expect("status")
        .into_inner(),
    );
    assert!(ip_a.starts_with("10.213."), "{ip_a}");
    assert_eq!(veths_on(&bridge.0), 2);

    let web = run(
        &mut rt,
        &a,
        support::container_config(
            "web",
            &image,
            &["sh", "-c", "mkdir -p /www && echo hello-from-web > /www/index.html && exec httpd -f -p 8080 -h /www"],
        ),
    )
    .await;
    let client = run(
        &mut rt,
        &b,
        support::container_config("client", &image, &["sleep", "300"]),
    )
    .await;
    // Pod B reaches pod A by IP.
    let mut got = String::new();
    for _ in 0..50 {
        let (code, out) = exec(
            &mut rt,
            &client,
            &format!("wget -qO- http://{ip_a}:8080/index.html"),
        )
        .await;
        if code == 0 {
            got = out;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(got, "hello-from-web\n");
    // The pods' network counters: eth0 saw the request and the answer.
    let stats = rt
        .pod_sandbox_stats(PodSandboxStatsRequest {
            pod_sandbox_id: a.clone(),
        })
        .await
        .expect("pod stats")
        .into_inner()
        .stats
        .expect("stats");
    let net = stats.linux.expect("linux").network.expect("network stats");
    let eth0 = net.default_interface.expect("default interface");
    assert_eq!(eth0.name, "eth0");
    let val = |v: &Option<UInt64Value>| v.as_ref().map(|x| x.value).unwrap_or(0);
    assert!(
        val(&eth0.rx_bytes) > 0 && val(&eth0.tx_bytes) > 0,
        "{eth0:?}"
    );
    assert!(
        net.interfaces.iter().all(|i| i.name != "lo"),
        "{:?}",
        net.interfaces
    );
    // The pod's eth0 holds the address CNI gave.
    let (_, out) = exec(&mut rt, &web, "ip -4 addr show eth0").await;
    assert!(out.contains(&ip_a), "{out}");
    // The hostPort answers on loopback.
    let body = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s =
            std::net::TcpStream::connect(("127.0.0.1", host_port)).expect("connect hostPort");
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        s.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")
            .expect("write");
        let mut r = String::new();
        let _ = s.read_to_string(&mut r);
        r
    })
    .await
    .expect("join");
    assert!(body.ends_with("hello-from-web\n"), "{body}");

    support::remove_pod(&mut rt, &a).await;
    support::remove_pod(&mut rt, &b).await;
    // CNI DEL took the veths and pins away.
    assert_eq!(veths_on(&bridge.0), 0);
    let pins: Vec<_> = std::fs::read_dir(server.dir.path().join("run/netns"))
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    assert!(pins.is_empty(), "{pins:?}");
    assert!(mounts_under(&server.dir.path().join("run")).is_empty());
    assert!(link_exists(&bridge.0));
}

#[tokio::test(flavor = "current_thread")]
async fn failed_run_pod_sandbox_leaves_nothing() {
    let bridge = Bridge(format!("kosf{}", std::process::id() % 10_000_000));
    let server = Server::start(&[("--cni-bin-dir", "/usr/lib/cni".to_string())]);
    // The second plugin does not exist: ADD fails after bridge and IPAM ran.
    write_conflist(
        &server.dir.path().join("net.d"),
        &bridge.0,
        &format!("10.214.{}.0/24", std::process::id() % 250),
        r#",
  {"type": "no-such-plugin-kos"}"#,
    );
    let mut rt = server.runtime().await;
    let e = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod(
                "broken",
                support::namespaces(NamespaceMode::Pod, NamespaceMode::Pod),
                vec![],
            )),
            runtime_handler: String::new(),
        })
        .await
        .expect_err("CNI ADD fails");
    assert!(e.message().contains("no-such-plugin-kos"), "{e}");
    let run = server.dir.path().join("run");
    assert!(mounts_under(&run).is_empty(), "{:?}", mounts_under(&run));
    for d in ["netns", "pods"] {
        let left: Vec<_> = std::fs::read_dir(run.join(d))
            .into_iter()
            .flatten()
            .flatten()
            .collect();
        assert!(left.is_empty(), "{d}: {left:?}");
    }
    assert_eq!(veths_on(&bridge.0), 0);
    let list = rt
        .list_pod_sandbox(ListPodSandboxRequest { filter: None })
        .await
        .expect("list")
        .into_inner()
        .items;
    assert!(list.is_empty());
    // No pod cgroup (which a holder would be in) left below the server's root.
    let left = support::cgroup_dirs(&server.cgroup_root());
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn shared_pid_namespace_and_security_context() {
    let (_reg, image, server) = support::pulled_busybox_server(&[]).await;
    let mut rt = server.runtime().await;
    let p = support::run_pod(
        &mut rt,
        pod(
            "shared",
            NamespaceOption {
                ipc: NamespaceMode::Pod as i32,
                ..support::namespaces(NamespaceMode::Node, NamespaceMode::Pod)
            },
            vec![],
        ),
    )
    .await;
    let holders = [holder_pid(&mut rt, &p).await];
    let _first = run(
        &mut rt,
        &p,
        support::container_config("first", &image, &["sleep", "301"]),
    )
    .await;
    let mut locked = support::container_config("locked", &image, &["sleep", "302"]);
    locked.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            run_as_user: Some(Int64Value { value: 1000 }),
            run_as_group: Some(Int64Value { value: 2000 }),
            supplemental_groups: vec![3000],
            readonly_rootfs: true,
            no_new_privs: true,
            capabilities: Some(Capability {
                drop_capabilities: vec!["ALL".into()],
                ..Default::default()
            }),
            seccomp: Some(SecurityProfile {
                profile_type: security_profile::ProfileType::RuntimeDefault as i32,
                localhost_ref: String::new(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let locked = run(&mut rt, &p, locked).await;
    // The first container's sleep is visible: one PID namespace for the pod, whose pid 1
    // is the holder.
    let (_, ps) = exec(&mut rt, &locked, "ps -o pid,args").await;
    assert!(ps.contains("sleep 301"), "{ps}");
    assert!(ps.lines().any(|l| l.trim_start().starts_with("1 ")), "{ps}");
    let (_, id) = exec(&mut rt, &locked, "id").await;
    assert!(
        id.contains("uid=1000") && id.contains("gid=2000") && id.contains("3000"),
        "{id}"
    );
    let (code, out) = exec(&mut rt, &locked, "touch /x").await;
    assert_ne!(code, 0, "read-only root: {out}");
    let (_, status) = exec(
        &mut rt,
        &locked,
        "grep -E '^(NoNewPrivs|Seccomp|CapEff|CapBnd):' /proc/self/status",
    )
    .await;
    assert!(status.contains("NoNewPrivs:\t1"), "{status}");
    assert!(status.contains("Seccomp:\t2"), "{status}");
    assert!(status.contains("CapEff:\t0000000000000000"), "{status}");
    assert!(status.contains("CapBnd:\t0000000000000000"), "{status}");
    // A Localhost seccomp profile that does not exist is InvalidArgument.
    let mut bad = support::container_config("bad", &image, &["true"]);
    bad.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            seccomp: Some(SecurityProfile {
                profile_type: security_profile::ProfileType::Localhost as i32,
                localhost_ref: "/nonexistent/kos/profile.json".into(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let e = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: p.clone(),
            config: Some(bad),
            sandbox_config: None,
        })
        .await
        .expect_err("missing seccomp profile");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    support::remove_pod(&mut rt, &p).await;
    support::wait_for("holder gone", Duration::from_secs(5), || {
        holders
            .iter()
            .all(|h| !Path::new(&format!("/proc/{h}")).exists())
    });
}

#[tokio::test(flavor = "current_thread")]
async fn oom_killed_and_resource_update() {
    let (_reg, image, server) = support::pulled_busybox_server(&[]).await;
    let mut rt = server.runtime().await;
    let p = support::run_pod(
        &mut rt,
        pod(
            "oom",
            support::namespaces(NamespaceMode::Node, NamespaceMode::Container),
            vec![],
        ),
    )
    .await;
    let limit = 32 * 1024 * 1024;
    let mut hog = support::container_config(
        "hog",
        &image,
        &[
            "sh",
            "-c",
            "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived",
        ],
    );
    hog.linux = Some(LinuxContainerConfig {
        resources: Some(LinuxContainerResources {
            memory_limit_in_bytes: limit,
            memory_swap_limit_in_bytes: limit,
            ..Default::default()
        }),
        ..Default::default()
    });
    let hog = run(&mut rt, &p, hog).await;
    // The hog exits.
    let st = support::wait_for_state(
        &mut rt,
        &hog,
        ContainerState::ContainerExited,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(st.reason, "OOMKilled", "exit {}", st.exit_code);
    assert_ne!(st.exit_code, 0);

    // UpdateContainerResources reaches the running container's cgroup.
    let idle = run(
        &mut rt,
        &p,
        support::container_config("idle", &image, &["sleep", "300"]),
    )
    .await;
    rt.update_container_resources(UpdateContainerResourcesRequest {
        container_id: idle.clone(),
        linux: Some(LinuxContainerResources {
            memory_limit_in_bytes: 48 * 1024 * 1024,
            ..Default::default()
        }),
        ..Default::default()
    })
    .await
    .expect("update resources");
    let (_, out) = exec(
        &mut rt,
        &idle,
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max",
    )
    .await;
    assert_eq!(out.trim(), (48 * 1024 * 1024).to_string());
    let st = support::container_status(&mut rt, &idle).await;
    let r = st.resources.and_then(|r| r.linux).expect("resources");
    assert_eq!(r.memory_limit_in_bytes, 48 * 1024 * 1024);
    support::remove_pod(&mut rt, &p).await;
}

/// The holder's cgroup lines (`/proc/<pid>/cgroup`), one per hierarchy.
fn cgroup_lines(pid: i32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .expect("holder's cgroup file")
        .lines()
        .map(str::to_string)
        .collect()
}

async fn holder_pid(rt: &mut RuntimeServiceClient<Channel>, pod: &str) -> i32 {
    let st = rt
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod.into(),
            verbose: true,
        })
        .await
        .expect("pod status")
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(&st.info["info"]).expect("info json");
    info["pidHolder"].as_i64().expect("a holder pid") as i32
}

#[tokio::test(flavor = "current_thread")]
async fn pid_holder_lives_in_the_pod_cgroup() {
    let (_reg, image, server) = support::busybox_server(&[]);
    let root = server.cgroup_root();
    support::pull(&server, &image).await;
    let mut rt = server.runtime().await;
    let shared = || NamespaceOption {
        ipc: NamespaceMode::Pod as i32,
        ..support::namespaces(NamespaceMode::Node, NamespaceMode::Pod)
    };
    // One pod under the server's own cgroup root, one under a parent the kubelet names.
    let own = support::run_pod(&mut rt, pod("cg-own", shared(), vec![])).await;
    let given_parent = format!("/{root}/kubepods/pod-given");
    let mut cfg = pod("cg-given", shared(), vec![]);
    cfg.linux.as_mut().expect("linux").cgroup_parent = given_parent.clone();
    let given = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(cfg),
            runtime_handler: String::new(),
        })
        .await
        .expect("run pod with a cgroup parent")
        .into_inner()
        .pod_sandbox_id;
    for (p, parent) in [
        (&own, format!("/{root}/{own}")),
        (&given, given_parent.clone()),
    ] {
        let holder = holder_pid(&mut rt, p).await;
        let want = format!("{parent}/{p}");
        let lines = cgroup_lines(holder);
        assert!(lines.len() >= 2, "{lines:?}");
        for l in &lines {
            assert!(
                l.ends_with(&format!(":{want}")),
                "{l} not in {want}: {lines:?}"
            );
        }
        assert!(
            lines.iter().any(|l| l.starts_with("0::")),
            "v2 mount: {lines:?}"
        );
        // From inside a container of the pod: its pid 1 is the holder, seen through the
        // container's cgroup namespace as its sibling below the pod's parent.
        let c = run(
            &mut rt,
            p,
            support::container_config("sleeper", &image, &["sleep", "303"]),
        )
        .await;
        let (code, inside) = exec(&mut rt, &c, "cat /proc/1/cgroup").await;
        assert_eq!(code, 0, "{inside}");
        let inside: Vec<&str> = inside.lines().collect();
        assert_eq!(inside.len(), lines.len(), "{inside:?}");
        for l in &inside {
            assert!(l.ends_with(&format!(":/../{p}")), "{l}: {inside:?}");
        }
    }
    let holders = [
        holder_pid(&mut rt, &own).await,
        holder_pid(&mut rt, &given).await,
    ];
    support::remove_pod(&mut rt, &own).await;
    support::remove_pod(&mut rt, &given).await;
    let own_dirs = support::cgroup_dirs(&format!("{root}/{own}"));
    assert!(own_dirs.is_empty(), "left: {own_dirs:?}");
    let given_dirs =
        support::cgroup_dirs(&format!("{}/{given}", given_parent.trim_start_matches('/')));
    assert!(given_dirs.is_empty(), "left: {given_dirs:?}");
    // Gone, or a zombie its reaper has not collected yet.
    support::wait_for("holders gone", Duration::from_secs(5), || {
        holders.iter().all(|h| {
            std::fs::read_to_string(format!("/proc/{h}/stat"))
                .map(|s| {
                    s.rsplit_once(')')
                        .is_some_and(|(_, r)| r.trim_start().starts_with('Z'))
                })
                .unwrap_or(true)
        })
    });
}

fn userns(uid_host: u32, gid_host: u32, len: u32) -> UserNamespace {
    let m = |h| IdMapping {
        host_id: h,
        container_id: 0,
        length: len,
    };
    UserNamespace {
        mode: NamespaceMode::Pod as i32,
        uids: vec![m(uid_host)],
        gids: vec![m(gid_host)],
    }
}

#[tokio::test(flavor = "current_thread")]
async fn pod_user_namespace() {
    let (_reg, image, server) =
        support::busybox_server(&[("--cni-bin-dir", "/usr/lib/cni".to_string())]);
    // Loopback only: the pod's own network namespace without a bridge.
    support::write_loopback_conflist(&server.dir.path().join("net.d"));
    support::pull(&server, &image).await;
    let mut rt = server.runtime().await;
    // A range of 65536 ids per test process, as the kubelet hands out (multiples of 65536).
    let host = 65536 * (16 + std::process::id() % 4096);
    let ns = |u: UserNamespace| NamespaceOption {
        network: NamespaceMode::Pod as i32,
        pid: NamespaceMode::Pod as i32,
        ipc: NamespaceMode::Pod as i32,
        userns_options: Some(u),
        ..Default::default()
    };

    // Bad mappings: InvalidArgument, nothing made.
    let mut split = userns(host, host, 65536);
    split.uids = vec![
        IdMapping {
            host_id: host,
            container_id: 0,
            length: 1000,
        },
        IdMapping {
            host_id: host + 2000,
            container_id: 1000,
            length: 1000,
        },
    ];
    for (bad, what) in [
        (split, "one contiguous range"),
        (userns(host, host, 0), "length 0"),
        (userns(u32::MAX - 100, host, 65536), "32-bit"),
    ] {
        let e = rt
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(pod("userns-bad", ns(bad), vec![])),
                runtime_handler: String::new(),
            })
            .await
            .expect_err(what);
        assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
        assert!(e.message().contains(what), "{e}");
    }
    let mut host_net = ns(userns(host, host, 65536));
    host_net.network = NamespaceMode::Node as i32;
    let e = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod("userns-hostnet", host_net, vec![])),
            runtime_handler: String::new(),
        })
        .await
        .expect_err("host network with a pod user namespace");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    let run_dir = server.dir.path().join("run");
    assert!(
        mounts_under(&run_dir).is_empty(),
        "{:?}",
        mounts_under(&run_dir)
    );

    let p = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pod("userns", ns(userns(host, host + 65536, 65536)), vec![])),
            runtime_handler: String::new(),
        })
        .await
        .expect("run pod with a user namespace")
        .into_inner()
        .pod_sandbox_id;
    let st = rt
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: p.clone(),
            verbose: true,
        })
        .await
        .expect("pod status")
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(&st.info["info"]).expect("info json");
    let pin = info["userns"]
        .as_str()
        .expect("userns pin in the verbose status")
        .to_string();
    assert!(Path::new(&pin).exists(), "{pin}");
    // An emptyDir-like host directory (world-writable, as the kubelet makes them).
    let vol = support::Scratch::new("userns-vol");
    std::fs::set_permissions(
        vol.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .expect("chmod");
    let mut c = support::container_config("first", &image, &["sleep", "304"]);
    c.mounts = vec![Mount {
        container_path: "/data".into(),
        host_path: vol.path().to_string_lossy().into_owned(),
        ..Default::default()
    }];
    let first = run(&mut rt, &p, c).await;
    let second = run(
        &mut rt,
        &p,
        support::container_config("second", &image, &["sleep", "305"]),
    )
    .await;
    for id in [&first, &second] {
        let (code, maps) = exec(&mut rt, id, "cat /proc/self/uid_map /proc/self/gid_map").await;
        assert_eq!(code, 0, "{maps}");
        let rows: Vec<Vec<&str>> = maps
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(
            rows,
            vec![
                vec!["0", &host.to_string(), "65536"],
                vec!["0", &(host + 65536).to_string(), "65536"]
            ],
            "{maps}"
        );
        let (_, uid) = exec(&mut rt, id, "id -u; id -g").await;
        assert_eq!(
            uid.split_whitespace().collect::<Vec<_>>(),
            ["0", "0"],
            "{uid}"
        );
    }
    // One user namespace for the pod: both containers and the holder (their pid 1).
    let (_, a) = exec(
        &mut rt,
        &first,
        "readlink /proc/self/ns/user; readlink /proc/1/ns/user",
    )
    .await;
    let (_, b) = exec(&mut rt, &second, "readlink /proc/self/ns/user").await;
    let a: Vec<&str> = a.lines().collect();
    assert_eq!(a.len(), 2, "{a:?}");
    assert_eq!(a[0], a[1], "holder in the pod's user namespace");
    assert_eq!(a[0], b.trim(), "one user namespace for the pod");
    let host_userns = std::fs::read_link("/proc/self/ns/user").expect("own userns");
    assert_ne!(a[0], host_userns.to_string_lossy(), "not the host's");
    // Root inside is host id N outside.
    let (code, out) = exec(&mut rt, &first, "echo hi > /data/f && ls -ln /data/f").await;
    assert_eq!(code, 0, "{out}");
    // The rootfs is the pod root's own: it may write where the image's root may.
    let (code, out) = exec(
        &mut rt,
        &first,
        "touch /etc/made-by-root && ls -ln /etc/made-by-root /bin/busybox",
    )
    .await;
    assert_eq!(code, 0, "{out}");
    for l in out.lines() {
        assert_eq!(
            l.split_whitespace().nth(2),
            Some("0"),
            "owned by the pod's root: {out}"
        );
    }
    let md = std::fs::metadata(vol.path().join("f")).expect("file made inside");
    assert_eq!(
        (
            std::os::unix::fs::MetadataExt::uid(&md),
            std::os::unix::fs::MetadataExt::gid(&md)
        ),
        (host, host + 65536)
    );
    support::remove_pod(&mut rt, &p).await;
    assert!(
        mounts_under(&run_dir).is_empty(),
        "{:?}",
        mounts_under(&run_dir)
    );
    assert!(!Path::new(&pin).exists(), "{pin} left");
}
