//! Image use across kosd's two API sides: the Docker side refuses to remove (and prune)
//! an image a CRI container uses as dockerd refuses for its own containers, and the CRI's
//! RemoveImage of an image a Docker container uses succeeds (as containerd's does) while
//! the image's content stays for that container.

mod common;
mod cri_support;

use common::{push_busybox, unique, Kosd, Registry};
use cri_support::{channel, cri_socket, spec};
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use tonic::transport::Channel;

async fn cri_pull(sock: &std::path::Path, image: &str) {
    let mut img = ImageServiceClient::new(channel(sock.to_path_buf()).await);
    img.pull_image(PullImageRequest {
        image: spec(image),
        ..Default::default()
    })
    .await
    .expect("PullImage");
}

async fn cri_tags(sock: &std::path::Path) -> Vec<String> {
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

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn image_id(k: &Kosd, name: &str) -> String {
    k.docker_ok(&["image", "inspect", "-f", "{{.Id}}", name])
        .trim()
        .to_string()
}

fn exists(k: &Kosd, name: &str) -> bool {
    k.docker(&["image", "inspect", name]).status.success()
}

/// A pod on the host network with its own PID namespace per container (no holder
/// process), and one running `sleep` container of `image`: (pod id, container id).
async fn pod_with_container(
    rt: &mut RuntimeServiceClient<Channel>,
    k: &Kosd,
    image: &str,
) -> (String, String) {
    let pod = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(PodSandboxConfig {
                metadata: Some(PodSandboxMetadata {
                    name: "img-user".into(),
                    uid: unique("uid"),
                    namespace: "default".into(),
                    attempt: 0,
                }),
                log_directory: k.dir.join("pod-logs").to_string_lossy().into_owned(),
                linux: Some(LinuxPodSandboxConfig {
                    security_context: Some(LinuxSandboxSecurityContext {
                        namespace_options: Some(NamespaceOption {
                            network: NamespaceMode::Node as i32,
                            pid: NamespaceMode::Container as i32,
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
    let c = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(ContainerConfig {
                metadata: Some(ContainerMetadata {
                    name: "sleeper".into(),
                    attempt: 0,
                }),
                image: spec(image),
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
    (pod, c)
}

#[tokio::test(flavor = "current_thread")]
async fn docker_rmi_and_prune_spare_the_images_of_cri_containers() {
    let reg = Registry::start();
    let image = reg.image(&format!("{}:1", unique("criuse")));
    push_busybox(&image, &common::ImageSpec::default());
    let k = Kosd::start(&[]);
    let sock = cri_socket(&k);
    cri_pull(&sock, &image).await;
    let id = image_id(&k, &image);
    let short = &id["sha256:".len()..][..12];
    let mut rt = RuntimeServiceClient::new(channel(sock.clone()).await);
    let (pod, c) = pod_with_container(&mut rt, &k, &image).await;
    let c12 = &c[..12];

    // By name: dockerd's conflict, as for a container of its own, and a 409.
    let o = k.docker(&["rmi", &image]);
    assert!(
        !o.status.success(),
        "rmi of a CRI container's image succeeded"
    );
    let want = format!(
        "conflict: unable to remove repository reference \"{image}\" (must force) - container {c12} is using its referenced image {short}"
    );
    assert!(stderr(&o).contains(&want), "{}\nwanted: {want}", stderr(&o));
    let (status, body) = k.http("DELETE", &format!("/v1.47/images/{image}"), b"");
    assert_eq!(status, 409, "{body}");
    // By id, running: not even force may.
    for args in [vec!["rmi", &id], vec!["rmi", "-f", &id]] {
        let o = k.docker(&args);
        assert!(!o.status.success(), "{args:?} succeeded");
        let want = format!(
            "conflict: unable to delete {short} (cannot be forced) - image is being used by running container {c12}"
        );
        assert!(stderr(&o).contains(&want), "{args:?}: {}", stderr(&o));
    }
    // Prunes pass it by.
    k.docker_ok(&["image", "prune", "-a", "-f"]);
    k.docker_ok(&["system", "prune", "-a", "-f"]);
    assert!(exists(&k, &image), "prune removed a CRI container's image");

    // Forced by name: untagged, the image itself stays (unnamed) for the container.
    let out = k.docker_ok(&["rmi", "-f", &image]);
    assert!(out.contains(&format!("Untagged: {image}")), "{out}");
    assert!(!out.contains("Deleted"), "{out}");
    assert!(!exists(&k, &image));
    assert!(exists(&k, &id), "the image went with its last name");
    let dangling = k.docker_ok(&["images", "-q", "--no-trunc", "-f", "dangling=true"]);
    assert!(dangling.lines().any(|l| l == id), "{dangling}");
    // Tagged again it is no longer dangling; untagged by force, it is again.
    let again = format!("{image}-again");
    k.docker_ok(&["tag", &id, &again]);
    let dangling = k.docker_ok(&["images", "-q", "--no-trunc", "-f", "dangling=true"]);
    assert!(!dangling.lines().any(|l| l == id), "{dangling}");
    let out = k.docker_ok(&["rmi", "-f", &again]);
    assert!(!out.contains("Deleted"), "{out}");
    assert!(exists(&k, &id));
    let out = rt
        .exec_sync(ExecSyncRequest {
            container_id: c.clone(),
            cmd: vec!["echo".into(), "alive".into()],
            timeout: 10,
        })
        .await
        .expect("ExecSync")
        .into_inner();
    assert_eq!(out.stdout, b"alive\n", "{:?}", out.stderr);

    // Stopped, the container still holds it: by id it must be forced, prune spares it.
    rt.stop_container(StopContainerRequest {
        container_id: c.clone(),
        timeout: 0,
    })
    .await
    .expect("StopContainer");
    let o = k.docker(&["rmi", &id]);
    let want = format!(
        "conflict: unable to delete {short} (must be forced) - image is being used by stopped container {c12}"
    );
    assert!(stderr(&o).contains(&want), "{}", stderr(&o));
    k.docker_ok(&["image", "prune", "-f"]);
    assert!(
        exists(&k, &id),
        "prune removed a stopped CRI container's image"
    );

    // Once the pod is gone, the unnamed image is an ordinary dangling one.
    rt.remove_container(RemoveContainerRequest {
        container_id: c.clone(),
    })
    .await
    .expect("RemoveContainer");
    rt.stop_pod_sandbox(StopPodSandboxRequest {
        pod_sandbox_id: pod.clone(),
    })
    .await
    .expect("StopPodSandbox");
    rt.remove_pod_sandbox(RemovePodSandboxRequest {
        pod_sandbox_id: pod,
    })
    .await
    .expect("RemovePodSandbox");
    let out = k.docker_ok(&["image", "prune", "-f"]);
    assert!(out.contains(&id), "{out}");
    assert!(
        !exists(&k, &id),
        "the dangling image outlived its last user"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn cri_remove_image_keeps_the_content_docker_containers_use() {
    let reg = Registry::start();
    let used = reg.image(&format!("{}:1", unique("dockeruse")));
    let unused = reg.image(&format!("{}:1", unique("nouse")));
    push_busybox(&used, &common::ImageSpec::default());
    // Another config, so another image id.
    let other = common::ImageSpec {
        labels: vec![("test".into(), "unused".into())],
        ..Default::default()
    };
    push_busybox(&unused, &other);
    let k = Kosd::start(&[]);
    let sock = cri_socket(&k);
    k.docker_ok(&["pull", "-q", &used]);
    let id = image_id(&k, &used);
    let name = unique("user");
    k.docker_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        &name,
        &used,
        "sleep",
        "300",
    ]);

    // As containerd's CRI: removing an image in use is allowed, its names go.
    let mut img = ImageServiceClient::new(channel(sock.clone()).await);
    img.remove_image(RemoveImageRequest { image: spec(&used) })
        .await
        .expect("RemoveImage of an image a Docker container uses");
    assert!(!cri_tags(&sock).await.contains(&used));
    assert!(!exists(&k, &used));
    // The content stays for the Docker container, through a gc (prune) too.
    assert!(exists(&k, &id), "the Docker container's image is gone");
    k.docker_ok(&["image", "prune", "-a", "-f"]);
    assert!(exists(&k, &id), "prune removed a Docker container's image");
    k.docker_ok(&["stop", "-t", "0", &name]);
    k.docker_ok(&["start", &name]);
    let out = k.docker_ok(&["exec", &name, "echo", "still here"]);
    assert_eq!(out.trim(), "still here");
    k.docker_ok(&["rm", "-f", &name]);
    let out = k.docker_ok(&["image", "prune", "-f"]);
    assert!(out.contains(&id), "{out}");
    assert!(!exists(&k, &id));

    // An image no Docker container uses is removed outright, nothing kept unnamed.
    cri_pull(&sock, &unused).await;
    let unused_id = image_id(&k, &unused);
    img.remove_image(RemoveImageRequest {
        image: spec(&unused),
    })
    .await
    .expect("RemoveImage");
    assert!(!exists(&k, &unused_id), "an unused image was kept");
}
