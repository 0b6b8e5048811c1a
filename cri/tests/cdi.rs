//! CDI devices in CreateContainer: the `CDI_devices` field and `cdi.k8s.io/` annotations
//! resolve through kadcm's registry against a spec directory this test writes, naming a
//! character device node the test makes with mknod; the node and the spec's environment
//! are seen from inside the container. An unknown device is InvalidArgument with nothing
//! made.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use k8s_cri::v1::*;
use support::Scratch;

fn write_cdi_spec(dir: &Path, node: &Path) {
    std::fs::create_dir_all(dir).expect("mkdir cdi");
    let node = node.display();
    std::fs::write(
        dir.join("kos-test.json"),
        format!(
            r#"{{"cdiVersion": "0.6.0", "kind": "kos.test/dev", "devices": [
  {{"name": "one", "containerEdits": {{"env": ["KOS_CDI_ONE=first"],
     "deviceNodes": [{{"path": "/dev/kos-cdi-one", "hostPath": "{node}"}}]}}}},
  {{"name": "two", "containerEdits": {{"env": ["KOS_CDI_TWO=second"],
     "deviceNodes": [{{"path": "/dev/kos-cdi-two", "hostPath": "{node}"}}]}}}}
]}}"#
        ),
    )
    .expect("write CDI spec");
}

fn container(name: &str, image: &str) -> ContainerConfig {
    support::container_config(name, image, &["sleep", "300"])
}

#[tokio::test(flavor = "current_thread")]
async fn cdi_devices_from_the_field_and_annotations() {
    let scratch = Scratch::new("kcri-cdi");
    let node = scratch.path().join("kos-null");
    let st = Command::new("mknod")
        .arg(&node)
        .args(["c", "1", "3"])
        .status()
        .expect("mknod");
    assert!(st.success(), "mknod");
    let cdi_dir = scratch.path().join("cdi");
    write_cdi_spec(&cdi_dir, &node);

    let (_reg, image, server) = support::pulled_busybox_server(&[(
        "--cdi-spec-dir",
        cdi_dir.to_string_lossy().into_owned(),
    )])
    .await;
    let mut rt = server.runtime().await;
    let pc = support::pod_config(
        "cdi",
        support::namespaces(NamespaceMode::Node, NamespaceMode::Container),
    );
    let pod = support::run_pod(&mut rt, pc.clone()).await;

    let mut c = container("dev", &image);
    c.cdi_devices = vec![CdiDevice {
        name: "kos.test/dev=one".into(),
    }];
    c.annotations = HashMap::from([(
        "cdi.k8s.io/kos-test".to_string(),
        "kos.test/dev=two".to_string(),
    )]);
    let cid = support::run_container(&mut rt, &pod, c, Some(pc.clone())).await;
    let r = rt
        .exec_sync(ExecSyncRequest {
            container_id: cid.clone(),
            cmd: [
                "sh",
                "-c",
                "test -c /dev/kos-cdi-one && test -c /dev/kos-cdi-two && echo ok > /dev/kos-cdi-one && echo $KOS_CDI_ONE-$KOS_CDI_TWO",
            ]
            .map(String::from)
            .to_vec(),
            timeout: 10,
        })
        .await
        .expect("exec")
        .into_inner();
    assert_eq!(
        (r.exit_code, String::from_utf8_lossy(&r.stdout).trim()),
        (0, "first-second"),
        "{}",
        String::from_utf8_lossy(&r.stderr)
    );

    // An unknown device: InvalidArgument naming it, and no container or bundle left.
    let containers = server.dir.path().join("run/containers");
    let before = std::fs::read_dir(&containers)
        .map(|d| d.count())
        .unwrap_or(0);
    let mut bad = container("bad", &image);
    bad.cdi_devices = vec![CdiDevice {
        name: "kos.test/dev=three".into(),
    }];
    let e = rt
        .create_container(CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(bad),
            sandbox_config: Some(pc),
        })
        .await
        .expect_err("unknown CDI device");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    assert!(e.message().contains("kos.test/dev=three"), "{e}");
    let after = std::fs::read_dir(&containers)
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(before, after, "a bundle was left");
    let list = rt
        .list_containers(ListContainersRequest::default())
        .await
        .expect("list")
        .into_inner()
        .containers;
    assert_eq!(list.len(), 1);

    support::remove_pod(&mut rt, &pod).await;
}
