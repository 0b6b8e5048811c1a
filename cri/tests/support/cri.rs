//! The CRI calls the tests make the same way: config builders holding the fields every test
//! sets (each test then sets the few it changes), pulling, running pods and containers,
//! waiting for a container state, and stopping and removing a pod.

use std::path::Path;
use std::time::{Duration, Instant};

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use tonic::transport::Channel;

use super::{spec, unique, Registry, Server};

pub type Runtime = RuntimeServiceClient<Channel>;

/// A loopback docker-registry with `cri/busybox:1` (running `sh`) and a server started with
/// `extra` flags; the image is not pulled yet. The registry comes first so that a test
/// binding `let (_reg, image, server)` drops the server before the registry.
pub fn busybox_server(extra: &[(&str, String)]) -> (Registry, String, Server) {
    let reg = Registry::start();
    let image = reg.push_busybox("cri/busybox:1", &["sh"]);
    let server = Server::start(extra);
    (reg, image, server)
}

/// [`busybox_server`] with the image pulled, for tests that set nothing up in between.
pub async fn pulled_busybox_server(extra: &[(&str, String)]) -> (Registry, String, Server) {
    let (reg, image, server) = busybox_server(extra);
    pull(&server, &image).await;
    (reg, image, server)
}

/// A CNI config of only the loopback plugin (a network of its own name) in `dir`.
pub fn write_loopback_conflist(dir: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir net.d");
    let conf = format!(
        r#"{{"cniVersion": "1.0.0", "name": "{}", "plugins": [{{"type": "loopback"}}]}}"#,
        unique("kos-lo")
    );
    std::fs::write(dir.join("10-lo.conflist"), conf).expect("write conflist");
}

pub async fn pull(server: &Server, image: &str) {
    server
        .images()
        .await
        .pull_image(PullImageRequest {
            image: spec(image),
            ..Default::default()
        })
        .await
        .expect("pull");
}

/// Namespace modes for the network and the pid namespace; the rest as CRI defaults them.
pub fn namespaces(network: NamespaceMode, pid: NamespaceMode) -> NamespaceOption {
    NamespaceOption {
        network: network as i32,
        pid: pid as i32,
        ..Default::default()
    }
}

/// A pod `name` in namespace "default" with a fresh uid and the namespace modes `ns`.
pub fn pod_config(name: &str, ns: NamespaceOption) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: unique("uid"),
            namespace: "default".into(),
            attempt: 0,
        }),
        linux: Some(LinuxPodSandboxConfig {
            security_context: Some(LinuxSandboxSecurityContext {
                namespace_options: Some(ns),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A container `name` of `image` running `args`.
pub fn container_config(name: &str, image: &str, args: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: spec(image),
        args: args.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    }
}

pub async fn run_pod(rt: &mut Runtime, config: PodSandboxConfig) -> String {
    rt.run_pod_sandbox(RunPodSandboxRequest {
        config: Some(config),
        runtime_handler: String::new(),
    })
    .await
    .expect("run pod")
    .into_inner()
    .pod_sandbox_id
}

pub async fn create_container(
    rt: &mut Runtime,
    pod: &str,
    config: ContainerConfig,
    sandbox_config: Option<PodSandboxConfig>,
) -> String {
    rt.create_container(CreateContainerRequest {
        pod_sandbox_id: pod.into(),
        config: Some(config),
        sandbox_config,
    })
    .await
    .expect("create container")
    .into_inner()
    .container_id
}

pub async fn start_container(rt: &mut Runtime, id: &str) {
    rt.start_container(StartContainerRequest {
        container_id: id.into(),
    })
    .await
    .expect("start container");
}

/// Creates and starts a container; its id.
pub async fn run_container(
    rt: &mut Runtime,
    pod: &str,
    config: ContainerConfig,
    sandbox_config: Option<PodSandboxConfig>,
) -> String {
    let id = create_container(rt, pod, config, sandbox_config).await;
    start_container(rt, &id).await;
    id
}

pub async fn container_status(rt: &mut Runtime, id: &str) -> ContainerStatus {
    rt.container_status(ContainerStatusRequest {
        container_id: id.into(),
        verbose: false,
    })
    .await
    .expect("container status")
    .into_inner()
    .status
    .expect("status in the answer")
}

/// Polls the container's status until it is in `state`; that status. Panics after
/// `timeout` naming the state it was left in.
pub async fn wait_for_state(
    rt: &mut Runtime,
    id: &str,
    state: ContainerState,
    timeout: Duration,
) -> ContainerStatus {
    let end = Instant::now() + timeout;
    loop {
        let st = container_status(rt, id).await;
        if st.state == state as i32 {
            return st;
        }
        assert!(
            Instant::now() < end,
            "container {id} not {state:?} after {timeout:?}: {st:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// StopPodSandbox then RemovePodSandbox, as kubelet tears a pod down.
pub async fn remove_pod(rt: &mut Runtime, id: &str) {
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: id.into(),
    })
    .await
    .expect("stop pod");
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: id.into(),
    })
    .await
    .expect("remove pod");
}
