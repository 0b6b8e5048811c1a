//! Pod and container lifecycle through the CRI: a pod without a pause image (pinned
//! namespaces, hostname, sysctl, DNS), a container through the kos shim, ExecSync, the CRI
//! log, stats, events, exit reasons, status codes for bad requests, restart of the server
//! with a running pod, and nothing left afterwards.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use k8s_cri::v1::*;
use support::{cgroup_dirs, mounts_under, pids_with_cmdline, Server};
use tokio_stream::StreamExt;

fn pod_config(name: &str, logs: &std::path::Path, ns: NamespaceOption) -> PodSandboxConfig {
    let mut pc = support::pod_config(name, ns);
    pc.hostname = "kos-pod".into();
    pc.log_directory = logs.to_string_lossy().into_owned();
    pc.dns_config = Some(DnsConfig {
        servers: vec!["10.96.0.10".into()],
        searches: vec!["default.svc.cluster.local".into()],
        options: vec!["ndots:5".into()],
    });
    pc.linux.as_mut().expect("linux").sysctls =
        HashMap::from([("kernel.shmmni".to_string(), "1234".to_string())]);
    pc.labels = HashMap::from([("app".to_string(), name.to_string())]);
    pc
}

fn container_config(name: &str, image: &str, args: &[&str]) -> ContainerConfig {
    let mut c = support::container_config(name, image, args);
    c.envs = vec![KeyValue {
        key: "GREETING".into(),
        value: "hello-cri".into(),
    }];
    c.log_path = format!("{name}/0.log");
    c
}

/// Nothing of the server's pods is left: no pins, mounts, shims, cgroups, pod dirs.
fn assert_clean(server: &Server) {
    let run = server.dir.path().join("run");
    let mounts = mounts_under(&run);
    assert!(mounts.is_empty(), "mounts left: {mounts:?}");
    let shims = || {
        pids_with_cmdline(&run.to_string_lossy())
            .into_iter()
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.starts_with("containerd-shim"))
            })
            .count()
    };
    support::wait_for("shims to exit", Duration::from_secs(5), || shims() == 0);
    let cg = cgroup_dirs(&server.cgroup_root());
    // The shared root (kos/ in production) stays; nothing of a pod below it may.
    let non_empty: Vec<_> = cg.iter().filter(|d| d.components().count() > 6).collect();
    assert!(non_empty.is_empty(), "cgroups left: {non_empty:?}");
    let pods = run.join("pods");
    let left: Vec<_> = std::fs::read_dir(&pods)
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    assert!(left.is_empty(), "pod dirs left: {left:?}");
}

#[tokio::test(flavor = "current_thread")]
async fn pod_and_container_lifecycle() {
    let (_reg, image, mut server) = support::pulled_busybox_server(&[]).await;
    let logs = server.dir.path().join("logs");
    let mut rt = server.runtime().await;

    let v = rt
        .version(VersionRequest::default())
        .await
        .expect("version")
        .into_inner();
    assert_eq!(v.runtime_name, "kos");
    assert_eq!(v.runtime_api_version, "v1");
    let st = rt
        .status(StatusRequest { verbose: false })
        .await
        .expect("status")
        .into_inner();
    assert!(st.runtime_handlers.iter().any(|h| h.name == "kos"));
    let rc = rt
        .runtime_config(RuntimeConfigRequest {})
        .await
        .expect("runtime config")
        .into_inner();
    assert_eq!(
        rc.linux.expect("linux").cgroup_driver,
        CgroupDriver::Cgroupfs as i32
    );

    let events = rt
        .get_container_events(GetEventsRequest {})
        .await
        .expect("events")
        .into_inner();

    // Host network (no CNI here), own IPC and UTS, container-private PID.
    let ns = NamespaceOption {
        ipc: NamespaceMode::Pod as i32,
        ..support::namespaces(NamespaceMode::Node, NamespaceMode::Container)
    };
    let mut pc = pod_config("life", &logs, ns);
    // A host-network pod may not set net.* sysctls: InvalidArgument, nothing made.
    pc.linux
        .as_mut()
        .expect("linux")
        .sysctls
        .insert("net.ipv4.ip_forward".into(), "1".into());
    let e = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pc.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect_err("net sysctl on host network");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    pc.linux
        .as_mut()
        .expect("linux")
        .sysctls
        .remove("net.ipv4.ip_forward");

    let pod = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pc.clone()),
            runtime_handler: "kos".into(),
        })
        .await
        .expect("run pod")
        .into_inner()
        .pod_sandbox_id;
    // The same name and attempt again: AlreadyExists.
    let e = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(pc.clone()),
            runtime_handler: String::new(),
        })
        .await
        .expect_err("duplicate pod");
    assert_eq!(e.code(), tonic::Code::AlreadyExists, "{e}");

    let st = rt
        .pod_sandbox_status(PodSandboxStatusRequest {
            pod_sandbox_id: pod.clone(),
            verbose: true,
        })
        .await
        .expect("pod status")
        .into_inner();
    assert_eq!(
        st.status.expect("status").state,
        PodSandboxState::SandboxReady as i32
    );
    assert!(st.info["info"].contains("ipcns"), "{:?}", st.info);

    let list = rt
        .list_pod_sandbox(ListPodSandboxRequest {
            filter: Some(PodSandboxFilter {
                label_selector: HashMap::from([("app".to_string(), "life".to_string())]),
                ..Default::default()
            }),
        })
        .await
        .expect("list pods")
        .into_inner()
        .items;
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].id, pod);

    let c = support::create_container(
        &mut rt,
        &pod,
        container_config(
            "main",
            &image,
            &[
                "sh",
                "-c",
                "echo out-$GREETING; echo err-line >&2; exec sleep 300",
            ],
        ),
        Some(pc.clone()),
    )
    .await;
    let e = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(container_config("main", &image, &["true"])),
            sandbox_config: Some(pc.clone()),
        })
        .await
        .expect_err("duplicate container name and attempt");
    assert_eq!(e.code(), tonic::Code::AlreadyExists, "{e}");
    let e = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: "0".repeat(64),
            config: Some(container_config("x", &image, &["true"])),
            sandbox_config: None,
        })
        .await
        .expect_err("unknown sandbox");
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
    let mut bad = container_config("badcap", &image, &["true"]);
    bad.linux = Some(LinuxContainerConfig {
        security_context: Some(LinuxContainerSecurityContext {
            capabilities: Some(Capability {
                add_capabilities: vec!["NOT_A_CAP".into()],
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    let e = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(bad),
            sandbox_config: None,
        })
        .await
        .expect_err("bad capability");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");

    support::start_container(&mut rt, &c).await;
    let st = support::container_status(&mut rt, &c).await;
    assert_eq!(st.state, ContainerState::ContainerRunning as i32);

    // Exec sees the pod's hostname, sysctl (IPC namespace) and DNS config.
    let x = rt
        .exec_sync(ExecSyncRequest {
            container_id: c.clone(),
            cmd: vec![
                "sh".into(),
                "-c".into(),
                "cat /proc/sys/kernel/shmmni; cat /etc/resolv.conf; echo to-err >&2; exit 3".into(),
            ],
            timeout: 10,
        })
        .await
        .expect("exec sync")
        .into_inner();
    let out = String::from_utf8_lossy(&x.stdout);
    assert_eq!(x.exit_code, 3);
    assert!(out.starts_with("1234\n"), "{out}");
    assert!(
        out.contains("nameserver 10.96.0.10") && out.contains("options ndots:5"),
        "{out}"
    );
    assert_eq!(String::from_utf8_lossy(&x.stderr), "to-err\n");
    let e = rt
        .exec_sync(ExecSyncRequest {
            container_id: c.clone(),
            cmd: vec!["sleep".into(), "30".into()],
            timeout: 1,
        })
        .await
        .expect_err("exec timeout");
    assert_eq!(e.code(), tonic::Code::DeadlineExceeded, "{e}");

    // The CRI log written by the shim.
    let log = logs.join("main/0.log");
    support::wait_for("log lines", Duration::from_secs(10), || {
        std::fs::read_to_string(&log).is_ok_and(|s| s.lines().count() >= 2)
    });
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(
        text.lines().any(|l| l.ends_with(" stdout F out-hello-cri")),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.ends_with(" stderr F err-line")),
        "{text}"
    );

    let stats = rt
        .container_stats(ContainerStatsRequest {
            container_id: c.clone(),
        })
        .await
        .expect("stats")
        .into_inner()
        .stats
        .expect("stats");
    assert!(
        stats
            .memory
            .expect("memory")
            .usage_bytes
            .expect("usage")
            .value
            > 0
    );
    assert!(
        stats
            .cpu
            .expect("cpu")
            .usage_core_nano_seconds
            .expect("cpu ns")
            .value
            > 0
    );
    let ps = rt
        .list_pod_sandbox_stats(ListPodSandboxStatsRequest { filter: None })
        .await
        .expect("pod stats")
        .into_inner()
        .stats;
    assert_eq!(ps.len(), 1);
    assert_eq!(ps[0].linux.as_ref().expect("linux").containers.len(), 1);

    // The server restarts; the pod and the running container are still there.
    drop(rt);
    drop(events);
    server.restart();
    let mut rt = server.runtime().await;
    let st = support::container_status(&mut rt, &c).await;
    assert_eq!(st.state, ContainerState::ContainerRunning as i32);
    let x = rt
        .exec_sync(ExecSyncRequest {
            container_id: c.clone(),
            cmd: vec!["hostname".into()],
            timeout: 10,
        })
        .await
        .expect("exec after restart")
        .into_inner();
    // A host-network pod has the host's UTS namespace, so the host's name.
    let host = nix::unistd::gethostname().expect("hostname");
    assert_eq!(
        String::from_utf8_lossy(&x.stdout).trim(),
        host.to_string_lossy()
    );
    let mut events = rt
        .get_container_events(GetEventsRequest {})
        .await
        .expect("events")
        .into_inner();

    rt.stop_container(StopContainerRequest {
        container_id: c.clone(),
        timeout: 2,
    })
    .await
    .expect("stop");
    let st = support::container_status(&mut rt, &c).await;
    assert_eq!(st.state, ContainerState::ContainerExited as i32);
    // sleep is pid 1 of its PID namespace, where SIGTERM without a handler does nothing:
    // after the 2 s timeout SIGKILL ends it (137 = 128 + 9), an Error exit.
    assert_eq!(st.exit_code, 137);
    assert_eq!(st.reason, "Error");
    let ev = tokio::time::timeout(Duration::from_secs(5), events.next())
        .await
        .expect("an event in time")
        .expect("stream open")
        .expect("event");
    assert_eq!(ev.container_id, c);
    assert_eq!(
        ev.container_event_type,
        ContainerEventType::ContainerStoppedEvent as i32
    );

    // A container that completes.
    let done = support::run_container(
        &mut rt,
        &pod,
        container_config("done", &image, &["true"]),
        None,
    )
    .await;
    let st = support::wait_for_state(
        &mut rt,
        &done,
        ContainerState::ContainerExited,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(st.reason, "Completed");

    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .expect("stop pod");
    // A container for a stopped sandbox: FailedPrecondition.
    let e = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(container_config("late", &image, &["true"])),
            sandbox_config: None,
        })
        .await
        .expect_err("stopped sandbox");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .expect("remove pod");
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .expect("remove twice");
    let e = rt
        .container_status(ContainerStatusRequest {
            container_id: c.clone(),
            verbose: false,
        })
        .await
        .expect_err("removed");
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
    let list = rt
        .list_containers(ListContainersRequest { filter: None })
        .await
        .expect("list")
        .into_inner()
        .containers;
    assert!(list.is_empty());
    assert_clean(&server);
}

#[tokio::test(flavor = "current_thread")]
async fn exit_while_the_server_is_down_is_reported() {
    let (_reg, image, mut server) = support::pulled_busybox_server(&[]).await;
    let logs = server.dir.path().join("logs");
    let mut rt = server.runtime().await;
    let ns = support::namespaces(NamespaceMode::Node, NamespaceMode::Container);
    let mut pc = pod_config("down", &logs, ns);
    pc.linux.as_mut().expect("linux").sysctls.clear();
    let pod = support::run_pod(&mut rt, pc).await;
    let c = support::run_container(
        &mut rt,
        &pod,
        container_config("sleeper", &image, &["sleep", "300"]),
        None,
    )
    .await;
    let info = rt
        .container_status(ContainerStatusRequest {
            container_id: c.clone(),
            verbose: true,
        })
        .await
        .expect("status")
        .into_inner()
        .info;
    let v: serde_json::Value = serde_json::from_str(&info["info"]).expect("info json");
    let pid = v["pid"].as_i64().expect("pid") as i32;
    drop(rt);
    server.stop();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the container's init");
    server.restart();
    let mut rt = server.runtime().await;
    // The exit is seen after the restart.
    let st = support::wait_for_state(
        &mut rt,
        &c,
        ContainerState::ContainerExited,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(st.exit_code, 137);
    assert_eq!(st.reason, "Error");
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .expect("remove pod");
    assert_clean(&server);
}

/// The N of each `tick-N` line of a CRI log, in order.
fn ticks(path: &std::path::Path) -> Vec<u32> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| {
            let parts: Vec<&str> = l.splitn(4, ' ').collect();
            assert_eq!(parts.len(), 4, "CRI log line {l:?}");
            assert_eq!(parts[1..3], ["stdout", "F"], "{l:?}");
            parts[3]
                .strip_prefix("tick-")
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("tick-N: {l:?}"))
        })
        .collect()
}

#[tokio::test(flavor = "current_thread")]
async fn reopen_container_log_after_kubelet_renames_it() {
    let (_reg, image, server) = support::pulled_busybox_server(&[]).await;
    let logs = server.dir.path().join("logs");
    let mut rt = server.runtime().await;
    let ns = support::namespaces(NamespaceMode::Node, NamespaceMode::Container);
    let mut pc = pod_config("rotate", &logs, ns);
    pc.linux.as_mut().expect("linux").sysctls.clear();
    let pod = support::run_pod(&mut rt, pc).await;
    let script = "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.1; done";
    let c = support::create_container(
        &mut rt,
        &pod,
        container_config("ticker", &image, &["sh", "-c", script]),
        None,
    )
    .await;

    // Not running yet: refused as containerd refuses it; unknown ids are NotFound.
    let e = rt
        .reopen_container_log(ReopenContainerLogRequest {
            container_id: c.clone(),
        })
        .await
        .expect_err("created, not running");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
    assert!(e.message().contains("is not running"), "{}", e.message());
    let e = rt
        .reopen_container_log(ReopenContainerLogRequest {
            container_id: "no-such-container".into(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");

    support::start_container(&mut rt, &c).await;
    let log = logs.join("ticker/0.log");
    support::wait_for("first lines", Duration::from_secs(10), || {
        ticks(&log).len() >= 3
    });
    // kubelet's rotation: rename, then ReopenContainerLog.
    let rotated = logs.join("ticker/0.log.20261130-120000");
    std::fs::rename(&log, &rotated).expect("rename");
    rt.reopen_container_log(ReopenContainerLogRequest {
        container_id: c.clone(),
    })
    .await
    .expect("reopen");
    assert!(
        log.is_file(),
        "no new log file when ReopenContainerLog returned"
    );
    let old_text = std::fs::read_to_string(&rotated).expect("rotated log");
    support::wait_for("lines in the new file", Duration::from_secs(10), || {
        ticks(&log).len() >= 3
    });
    assert_eq!(
        std::fs::read_to_string(&rotated).expect("rotated log"),
        old_text,
        "the renamed file got lines after ReopenContainerLog"
    );
    let (a, b) = (ticks(&rotated), ticks(&log));
    let all: Vec<u32> = a.iter().chain(b.iter()).copied().collect();
    assert_eq!(
        all,
        (0..all.len() as u32).collect::<Vec<_>>(),
        "old {a:?} then new {b:?}: lines lost or doubled"
    );

    rt.stop_container(StopContainerRequest {
        container_id: c.clone(),
        timeout: 1,
    })
    .await
    .expect("stop");
    let e = rt
        .reopen_container_log(ReopenContainerLogRequest {
            container_id: c.clone(),
        })
        .await
        .expect_err("stopped");
    assert_eq!(e.code(), tonic::Code::FailedPrecondition, "{e}");
    assert!(e.message().contains("is not running"), "{}", e.message());
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .expect("remove pod");
    assert_clean(&server);
}
