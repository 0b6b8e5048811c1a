//! containerd's CRI plugin with a `kos` runtime handler of type io.containerd.kos.v2: a pod
//! sandbox and a container in it, both served by one kos shim.

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tower::service_fn;

use support::{pids_with_cmdline, remove_cgroups, unique, wait_for, Containerd};

async fn connect(sock: PathBuf) -> RuntimeServiceClient<Channel> {
    let ch = Endpoint::try_from("http://[::]:50051")
        .expect("endpoint")
        .connect_with_connector(service_fn(move |_: Uri| {
            let p = sock.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(p).await?)) }
        }))
        .await
        .expect("connect to CRI");
    RuntimeServiceClient::new(ch)
}

/// Removes the pod cgroup parent even when the test fails.
struct CgroupGuard(String);

impl Drop for CgroupGuard {
    fn drop(&mut self) {
        remove_cgroups(&self.0);
        // The shim's default runtime root for the k8s.io namespace; removed only if empty.
        let _ = std::fs::remove_dir("/run/containerd/kos/k8s.io");
    }
}

#[test]
fn cri_pod_sandbox_and_container_on_the_kos_handler() {
    let c = Containerd::start_with("cri", true);
    let parent = unique("kos-cri");
    let _cg = CgroupGuard(parent.clone());
    let logs = c.dir.path().join("pod-logs");
    std::fs::create_dir_all(&logs).expect("mkdir");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    rt.block_on(async {
        let mut cri = connect(c.socket()).await;
        let namespaces = NamespaceOption {
            // Host network: no CNI, nothing touched on the host's network.
            network: NamespaceMode::Node as i32,
            pid: NamespaceMode::Pod as i32,
            ipc: NamespaceMode::Pod as i32,
            ..Default::default()
        };
        let sandbox_config = PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: "kos-pod".into(),
                uid: unique("uid"),
                namespace: "default".into(),
                attempt: 0,
            }),
            log_directory: logs.to_string_lossy().into_owned(),
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: format!("/{parent}"),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(namespaces.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let pod = cri
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(sandbox_config.clone()),
                runtime_handler: "kos".into(),
            })
            .await
            .expect("RunPodSandbox")
            .into_inner()
            .pod_sandbox_id;

        let ctr = cri
            .create_container(CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(ContainerConfig {
                    metadata: Some(ContainerMetadata {
                        name: "app".into(),
                        attempt: 0,
                    }),
                    image: Some(ImageSpec {
                        image: c.image.clone(),
                        ..Default::default()
                    }),
                    command: vec![
                        "sh".into(),
                        "-c".into(),
                        "echo hello-cri; exec sleep 1000".into(),
                    ],
                    log_path: "app.log".into(),
                    linux: Some(LinuxContainerConfig {
                        security_context: Some(LinuxContainerSecurityContext {
                            namespace_options: Some(namespaces),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    labels: HashMap::new(),
                    ..Default::default()
                }),
                sandbox_config: Some(sandbox_config),
            })
            .await
            .expect("CreateContainer")
            .into_inner()
            .container_id;
        cri.start_container(StartContainerRequest {
            container_id: ctr.clone(),
        })
        .await
        .expect("StartContainer");

        let st = cri
            .container_status(ContainerStatusRequest {
                container_id: ctr.clone(),
                verbose: false,
            })
            .await
            .expect("ContainerStatus")
            .into_inner()
            .status
            .expect("status");
        assert_eq!(st.state, ContainerState::ContainerRunning as i32);

        let ex = cri
            .exec_sync(ExecSyncRequest {
                container_id: ctr.clone(),
                cmd: vec!["sh".into(), "-c".into(), "echo exec-ok; exit 3".into()],
                timeout: 10,
            })
            .await
            .expect("ExecSync")
            .into_inner();
        assert_eq!(String::from_utf8_lossy(&ex.stdout), "exec-ok\n");
        assert_eq!(ex.exit_code, 3);

        // One shim serves the whole pod.
        let needle = format!("-address {} ", c.socket().display());
        assert_eq!(pids_with_cmdline(&needle).len(), 1, "one shim per pod");

        // containerd wrote the container's CRI log from the shim's fifos.
        let log = logs.join("app.log");
        wait_for("CRI log line", Duration::from_secs(10), || {
            std::fs::read_to_string(&log)
                .map(|t| t.lines().any(|l| l.ends_with(" stdout F hello-cri")))
                .unwrap_or(false)
        });

        cri.stop_container(StopContainerRequest {
            container_id: ctr.clone(),
            timeout: 0,
        })
        .await
        .expect("StopContainer");
        let st = cri
            .container_status(ContainerStatusRequest {
                container_id: ctr.clone(),
                verbose: false,
            })
            .await
            .expect("ContainerStatus")
            .into_inner()
            .status
            .expect("status");
        assert_eq!(st.state, ContainerState::ContainerExited as i32);
        assert_eq!(st.exit_code, 137);
        cri.remove_container(RemoveContainerRequest { container_id: ctr })
            .await
            .expect("RemoveContainer");
        cri.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: pod.clone(),
        })
        .await
        .expect("StopPodSandbox");
        cri.remove_pod_sandbox(RemovePodSandboxRequest {
            pod_sandbox_id: pod,
        })
        .await
        .expect("RemovePodSandbox");
        wait_for("the pod's shim exits", Duration::from_secs(10), || {
            pids_with_cmdline(&needle).is_empty()
        });
    });
}
