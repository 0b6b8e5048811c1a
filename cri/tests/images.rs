//! ImageService end to end: pull (direct and through a hosts.toml mirror), list, status by
//! name, id and digest, auth config, remove, image fs info.

mod support;

use k8s_cri::v1::*;
use support::{spec, Registry, Server};

#[tokio::test(flavor = "current_thread")]
async fn pull_list_status_remove() {
    let reg = Registry::start();
    let reference = reg.push_busybox("cri/busybox:1", &["sh"]);
    let server = Server::start(&[]);
    let mut img = server.images().await;

    let pulled = img
        .pull_image(PullImageRequest {
            image: spec(&reference),
            auth: Some(AuthConfig {
                // Basic credentials the open registry ignores: the auth path is exercised.
                auth: "dXNlcjpwYXNz".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect("pull")
        .into_inner();
    assert!(
        pulled.image_ref.starts_with("sha256:"),
        "{}",
        pulled.image_ref
    );

    let list = img
        .list_images(ListImagesRequest::default())
        .await
        .expect("list")
        .into_inner()
        .images;
    let me = list
        .iter()
        .find(|i| i.id == pulled.image_ref)
        .expect("pulled image listed");
    assert_eq!(me.repo_tags, vec![reference.clone()]);
    assert_eq!(me.repo_digests.len(), 1);
    assert!(me.repo_digests[0].starts_with(&format!("{}/cri/busybox@sha256:", reg.addr)));
    assert!(me.size > 500_000, "size {}", me.size);

    // Status by name, by id and by repo@digest; verbose carries the config.
    for key in [
        reference.clone(),
        pulled.image_ref.clone(),
        me.repo_digests[0].clone(),
    ] {
        let st = img
            .image_status(ImageStatusRequest {
                image: spec(&key),
                verbose: true,
            })
            .await
            .expect("status")
            .into_inner();
        let i = st.image.unwrap_or_else(|| panic!("status of {key}"));
        assert_eq!(i.id, pulled.image_ref);
        assert!(st.info["info"].contains("\"Cmd\""), "{:?}", st.info);
    }
    // Unknown images: an empty status, not an error.
    let st = img
        .image_status(ImageStatusRequest {
            image: spec("nothere.example/x:1"),
            verbose: false,
        })
        .await
        .expect("status of unknown")
        .into_inner();
    assert!(st.image.is_none());
    // Invalid references and bad auth are InvalidArgument.
    let e = img
        .pull_image(PullImageRequest {
            image: spec("Bad Ref"),
            ..Default::default()
        })
        .await
        .expect_err("bad reference");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    let e = img
        .pull_image(PullImageRequest {
            image: spec(&reference),
            auth: Some(AuthConfig {
                auth: "%%%".into(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect_err("bad auth");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    // A missing image on the registry is a clear error.
    let e = img
        .pull_image(PullImageRequest {
            image: spec(&format!("{}/cri/missing:1", reg.addr)),
            ..Default::default()
        })
        .await
        .expect_err("missing image");
    assert!(e.message().contains("cri/missing"), "{e}");

    let fs = img
        .image_fs_info(ImageFsInfoRequest {})
        .await
        .expect("fs info")
        .into_inner();
    let u = &fs.image_filesystems[0];
    assert!(u.used_bytes.as_ref().expect("bytes").value > 500_000);
    assert!(u.inodes_used.as_ref().expect("inodes").value > 10);

    img.remove_image(RemoveImageRequest {
        image: spec(&pulled.image_ref),
    })
    .await
    .expect("remove by id");
    let list = img
        .list_images(ListImagesRequest::default())
        .await
        .expect("list")
        .into_inner()
        .images;
    assert!(list.iter().all(|i| i.id != pulled.image_ref));
    // Removing again is fine.
    img.remove_image(RemoveImageRequest {
        image: spec(&pulled.image_ref),
    })
    .await
    .expect("remove twice");
}

#[tokio::test(flavor = "current_thread")]
async fn mirror_from_hosts_toml_with_fallback() {
    // The "upstream" registry.k8s.io is never reached: the loopback mirror serves it.
    let mirror = Registry::start();
    mirror.push_busybox("pause:3.10", &["sleep", "3600"]);
    let upstream = Registry::start();
    upstream.push_busybox("only/upstream:1", &["sh"]);
    let server = Server::start(&[]);
    let certs = server.dir.path().join("certs.d");
    std::fs::create_dir_all(certs.join("registry.k8s.io")).expect("mkdir");
    std::fs::write(
        certs.join("registry.k8s.io/hosts.toml"),
        format!(
            "server = \"https://registry.k8s.io\"\n[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            mirror.addr
        ),
    )
    .expect("hosts.toml");
    // For the second registry, a mirror that lacks the image, then the upstream itself.
    std::fs::create_dir_all(certs.join(&upstream.addr)).expect("mkdir");
    std::fs::write(
        certs.join(&upstream.addr).join("hosts.toml"),
        format!(
            "[host.\"http://{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            mirror.addr
        ),
    )
    .expect("hosts.toml");

    let mut img = server.images().await;
    let r = img
        .pull_image(PullImageRequest {
            image: spec("registry.k8s.io/pause:3.10"),
            ..Default::default()
        })
        .await
        .expect("pull through mirror")
        .into_inner();
    let st = img
        .image_status(ImageStatusRequest {
            image: spec("registry.k8s.io/pause:3.10"),
            verbose: false,
        })
        .await
        .expect("status")
        .into_inner()
        .image
        .expect("named under the upstream name");
    assert_eq!(st.id, r.image_ref);
    // Only the upstream name: the mirror's own name is not left behind.
    assert_eq!(st.repo_tags, vec!["registry.k8s.io/pause:3.10".to_string()]);

    let fallback = format!("{}/only/upstream:1", upstream.addr);
    img.pull_image(PullImageRequest {
        image: spec(&fallback),
        ..Default::default()
    })
    .await
    .expect("fallback to upstream");
    let st = img
        .image_status(ImageStatusRequest {
            image: spec(&fallback),
            verbose: false,
        })
        .await
        .expect("status")
        .into_inner();
    assert!(st.image.is_some());
}
