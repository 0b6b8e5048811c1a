//! kosd serves the Kubernetes CRI on EXEC_ROOT/cri.sock: Version, one image store shared
//! with the Docker API side (both ways), a pod with a container and ExecSync through
//! kosd's socket, and nothing of the pod left after it is removed.

mod common;
mod cri_support;

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{push_busybox, unique, Kosd, Registry};
use cri_support::{channel, cri_socket, spec};
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;

async fn cri_images(sock: &std::path::Path) -> Vec<String> {
    let mut img = ImageServiceClient::new(channel(sock.to_path_buf()).await);
    img.list_images(ListImagesRequest { filter: None })
        .await
        .expect("ListImages")
        .into_inner()
        .images
        .into_iter()
        .flat_map(|i| i.repo_tags)
        .collect()
}

/// The pod's cgroup directories in every hierarchy (the CRI's root is kosd's cgroup
/// parent, the pod's cgroup named by its id); removed with whatever runs in them on drop,
/// when a test fails.
struct PodCgroups(String, String);

impl PodCgroups {
    fn dirs(&self) -> Vec<PathBuf> {
        std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join(&self.1).join(&self.0))
            .filter(|p| p.is_dir())
            .collect()
    }
}

impl Drop for PodCgroups {
    fn drop(&mut self) {
        let mut all = Vec::new();
        let mut todo = self.dirs();
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    todo.push(e.path());
                }
            }
            all.push(d);
        }
        for d in &all {
            let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                // SAFETY: killing what runs in this test's pod cgroup.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        std::thread::sleep(Duration::from_millis(100));
        all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for d in all {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// PID-namespace holders run by this test's kosd binary (re-run as `kos-cri-pod-holder`).
fn holders() -> Vec<i32> {
    let kosd = std::fs::canonicalize(env!("CARGO_BIN_EXE_kosd")).expect("kosd binary");
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.starts_with(b"kos-cri-pod-holder\0"))
                && std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|e| e == kosd)
        })
        .collect()
}

/// Holders a failed test left, killed on drop.
struct Holders(Vec<i32>);

impl Drop for Holders {
    fn drop(&mut self) {
        for pid in holders().into_iter().filter(|p| self.0.contains(p)) {
            // SAFETY: killing the holder of this test's pod.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

#[tokio::test(flavor = "current_thread")]
async fn version_and_images_shared_with_the_docker_api() {
    let reg = Registry::start();
    let k = Kosd::start(&[]);
    let sock = cri_socket(&k);
    let md = std::fs::metadata(&sock).expect("stat cri.sock");
    assert!(md.file_type().is_socket());
    assert_eq!(md.permissions().mode() & 0o777, 0o660);
    assert_eq!(md.uid(), 0);

    let mut rt = RuntimeServiceClient::new(channel(sock.clone()).await);
    let v = rt
        .version(VersionRequest {
            version: "v1".into(),
        })
        .await
        .expect("Version")
        .into_inner();
    assert_eq!(v.runtime_name, "kos");
    assert_eq!(v.runtime_api_version, "v1");

    // Pulled through the Docker API: listed by the CRI.
    let by_docker = reg.image(&format!("{}:1", unique("bydocker")));
    push_busybox(&by_docker, &common::ImageSpec::default());
    k.docker_ok(&["pull", "-q", &by_docker]);
    let listed = cri_images(&sock).await;
    assert!(
        listed.contains(&by_docker),
        "{by_docker} not in CRI ListImages: {listed:?}"
    );

    // Pulled through the CRI: shown by `docker images`.
    let by_cri = reg.image(&format!("{}:2", unique("bycri")));
    push_busybox(&by_cri, &common::ImageSpec::default());
    let mut img = ImageServiceClient::new(channel(sock.clone()).await);
    img.pull_image(PullImageRequest {
        image: spec(&by_cri),
        ..Default::default()
    })
    .await
    .expect("PullImage");
    let shown = k.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert!(
        shown.lines().any(|l| l == by_cri),
        "{by_cri} not in docker images: {shown}"
    );
    // And removed through the Docker API, it is gone from the CRI's list too.
    k.docker_ok(&["rmi", &by_cri]);
    assert!(!cri_images(&sock).await.contains(&by_cri));
}

#[tokio::test(flavor = "current_thread")]
async fn cri_socket_can_be_disabled() {
    let k = Kosd::start(&["--cri-socket", ""]);
    k.docker_ok(&["version"]);
    assert!(!k.exec_root().join("cri.sock").exists());
    assert!(!k.log_text().contains("CRI listening"));
}

#[tokio::test(flavor = "current_thread")]
async fn pod_with_a_container_and_exec_through_kosd() {
    let reg = Registry::start();
    let image = reg.image(&format!("{}:1", unique("pod")));
    push_busybox(&image, &common::ImageSpec::default());
    let mut k = Kosd::start(&[]);
    let sock = cri_socket(&k);
    let mut img = ImageServiceClient::new(channel(sock.clone()).await);
    img.pull_image(PullImageRequest {
        image: spec(&image),
        ..Default::default()
    })
    .await
    .expect("PullImage");
    let mut rt = RuntimeServiceClient::new(channel(sock.clone()).await);
    let logs = k.dir.join("pod-logs");
    let before = holders();
    let pod = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(PodSandboxConfig {
                metadata: Some(PodSandboxMetadata {
                    name: "web".into(),
                    uid: unique("uid"),
                    namespace: "default".into(),
                    attempt: 0,
                }),
                log_directory: logs.to_string_lossy().into_owned(),
                linux: Some(LinuxPodSandboxConfig {
                    security_context: Some(LinuxSandboxSecurityContext {
                        // Host network: no CNI configuration needed here.
                        namespace_options: Some(NamespaceOption {
                            network: NamespaceMode::Node as i32,
                            // A shared PID namespace: kosd re-runs itself as its holder.
                            pid: NamespaceMode::Pod as i32,
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            runtime_handler: String::new(),
        })
        .await
        .expect("RunPodSandbox")
        .into_inner()
        .pod_sandbox_id;
    let cgroups = PodCgroups(pod.clone(), k.cgroup_parent.clone());
    let ours = Holders(
        holders()
            .into_iter()
            .filter(|p| !before.contains(p))
            .collect(),
    );
    assert_eq!(ours.0.len(), 1, "one holder for the pod: {:?}", ours.0);
    let c = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(ContainerConfig {
                metadata: Some(ContainerMetadata {
                    name: "sleeper".into(),
                    attempt: 0,
                }),
                image: spec(&image),
                args: vec!["sleep".into(), "300".into()],
                log_path: "sleeper/0.log".into(),
                ..Default::default()
            }),
            sandbox_config: None,
        })
        .await
        .expect("CreateContainer")
        .into_inner()
        .container_id;
    rt.start_container(StartContainerRequest {
        container_id: c.clone(),
    })
    .await
    .expect("StartContainer");
    let out = rt
        .exec_sync(ExecSyncRequest {
            container_id: c.clone(),
            cmd: vec!["echo".into(), "hi".into()],
            timeout: 10,
        })
        .await
        .expect("ExecSync")
        .into_inner();
    assert_eq!(out.exit_code, 0, "stderr: {:?}", out.stderr);
    assert_eq!(out.stdout, b"hi\n");
    let init = rt
        .exec_sync(ExecSyncRequest {
            container_id: c.clone(),
            cmd: vec!["cat".into(), "/proc/1/cmdline".into()],
            timeout: 10,
        })
        .await
        .expect("ExecSync cat")
        .into_inner();
    assert!(
        init.stdout.starts_with(b"kos-cri-pod-holder\0"),
        "pid 1 of the pod is not kosd's holder: {:?}",
        String::from_utf8_lossy(&init.stdout)
    );

    assert!(!cgroups.dirs().is_empty(), "no cgroup for pod {pod}");

    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .expect("StopPodSandbox");
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .expect("RemovePodSandbox");
    let pods = rt
        .list_pod_sandbox(ListPodSandboxRequest { filter: None })
        .await
        .expect("ListPodSandbox")
        .into_inner()
        .items;
    assert!(pods.is_empty(), "pods left: {pods:?}");

    // Nothing of the pod is left: no shim or holder, no mount, no cgroup, no pod dir.
    let deadline = Instant::now() + Duration::from_secs(5);
    while !k.leftover_processes().is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        k.leftover_processes().is_empty(),
        "processes left: {:?}",
        k.leftover_processes()
    );
    let alive: Vec<i32> = holders()
        .into_iter()
        .filter(|p| ours.0.contains(p))
        .collect();
    assert!(alive.is_empty(), "pod holder left: {alive:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let cri_run = k.exec_root().join("cri");
    let left: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|t| std::path::Path::new(t).starts_with(&cri_run))
        .collect();
    assert!(left.is_empty(), "mounts left: {left:?}");
    assert!(
        cgroups.dirs().is_empty(),
        "cgroups left: {:?}",
        cgroups.dirs()
    );
    let pod_dirs: Vec<_> = std::fs::read_dir(cri_run.join("pods"))
        .into_iter()
        .flatten()
        .flatten()
        .collect();
    assert!(pod_dirs.is_empty(), "pod dirs left: {pod_dirs:?}");

    // kosd stops cleanly with the CRI, and removes its socket.
    drop(rt);
    drop(img);
    let st = k.stop().expect("kosd was running");
    assert!(st.success(), "kosd exit: {st}: {}", k.log_text());
    assert!(!sock.exists(), "cri.sock left after shutdown");
}

#[test]
fn unusable_cri_socket_stops_kosd_with_a_clear_error() {
    // A daemon of the harness first, so its roots, bridge and table are cleaned on drop.
    let mut k = Kosd::start(&[]);
    k.stop();
    let blocker = k.dir.join("not-a-dir");
    std::fs::write(&blocker, "").expect("blocker file");
    let bad = blocker.join("cri.sock");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kosd"))
        .arg("-H")
        .arg(k.host())
        .arg("--data-root")
        .arg(k.data_root())
        .arg("--exec-root")
        .arg(k.exec_root())
        .arg("--config-file")
        .arg(k.dir.join("daemon.json"))
        .arg("--bridge")
        .arg(&k.bridge)
        .arg("--nft-table")
        .arg(&k.bridge)
        .arg("--cri-socket")
        .arg(&bad)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run kosd");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "kosd ran on: {err}");
    let last = err.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("kosd: serving the CRI") && last.contains("not-a-dir"),
        "{err}"
    );
    // It stopped cleanly: API socket removed, no shim or kos-dns left.
    assert!(!k.sock.exists(), "API socket left");
    assert!(
        k.leftover_processes().is_empty(),
        "{:?}",
        k.leftover_processes()
    );
}
