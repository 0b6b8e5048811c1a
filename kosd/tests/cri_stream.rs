//! kosd's CRI streaming server and CDI devices: `--cri-stream-address` is where Exec URLs
//! point, and a WebSocket exec through it (a minimal client here, speaking
//! `v5.channel.k8s.io`) runs in a container whose CDI device (from `--cdi-spec-dir`)
//! is seen inside, with output and exit code coming back.

mod common;
mod cri_support;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use common::{push_busybox, unique, Kosd, Registry, Scratch};
use cri_support::{channel, cri_socket, spec};
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;

/// Reads one server frame (never masked): (opcode, payload).
fn read_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).expect("frame header");
    let mut len = (h[1] & 0x7f) as u64;
    if len == 126 {
        let mut b = [0u8; 2];
        s.read_exact(&mut b).expect("length");
        len = u16::from_be_bytes(b) as u64;
    } else if len == 127 {
        let mut b = [0u8; 8];
        s.read_exact(&mut b).expect("length");
        len = u64::from_be_bytes(b);
    }
    assert!(h[1] & 0x80 == 0, "a server frame was masked");
    assert!(len < 1 << 20, "frame too large");
    let mut p = vec![0u8; len as usize];
    s.read_exact(&mut p).expect("payload");
    (h[0] & 0x0f, p)
}

/// A WebSocket exec with no input: everything per channel until the server closes.
fn ws_exec(url: &str) -> HashMap<u8, Vec<u8>> {
    let rest = url.strip_prefix("http://").expect("http url");
    let (host, path) = rest.split_once('/').expect("path");
    let mut s = TcpStream::connect(host).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    write!(
        s,
        "GET /{path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n"
    )
    .expect("handshake");
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut b).expect("response head");
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head).to_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(
        head.contains("sec-websocket-protocol: v5.channel.k8s.io"),
        "{head}"
    );
    let mut got: HashMap<u8, Vec<u8>> = HashMap::new();
    loop {
        let (op, p) = read_frame(&mut s);
        match op {
            0x2 if !p.is_empty() => got.entry(p[0]).or_default().extend_from_slice(&p[1..]),
            0x8 => return got,
            _ => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_streams_through_kosds_address_with_a_cdi_device() {
    let scratch = Scratch::new("cdi");
    let node = scratch.join("kos-null");
    let st = Command::new("mknod")
        .arg(&node)
        .args(["c", "1", "3"])
        .status()
        .expect("mknod");
    assert!(st.success());
    let cdi = scratch.join("cdi");
    std::fs::create_dir_all(&cdi).expect("mkdir cdi");
    std::fs::write(
        cdi.join("kos-test.json"),
        format!(
            r#"{{"cdiVersion": "0.6.0", "kind": "kos.test/dev", "devices": [{{"name": "one",
  "containerEdits": {{"env": ["KOS_CDI_ONE=through-kosd"],
    "deviceNodes": [{{"path": "/dev/kos-cdi-one", "hostPath": "{}"}}]}}}}]}}"#,
            node.display()
        ),
    )
    .expect("CDI spec");
    let port = kos_testsupport::free_port();
    let addr = format!("127.0.0.1:{port}");

    let reg = Registry::start();
    let image = reg.image(&format!("{}:1", unique("stream")));
    push_busybox(&image, &common::ImageSpec::default());
    let k = Kosd::start(&[
        "--cri-stream-address",
        &addr,
        "--cdi-spec-dir",
        &cdi.to_string_lossy(),
    ]);
    let sock = cri_socket(&k);
    let mut img = ImageServiceClient::new(channel(sock.clone()).await);
    img.pull_image(PullImageRequest {
        image: spec(&image),
        ..Default::default()
    })
    .await
    .expect("PullImage");
    let mut rt = RuntimeServiceClient::new(channel(sock).await);
    let pod = rt
        .run_pod_sandbox(RunPodSandboxRequest {
            config: Some(PodSandboxConfig {
                metadata: Some(PodSandboxMetadata {
                    name: "stream".into(),
                    uid: unique("uid"),
                    namespace: "default".into(),
                    attempt: 0,
                }),
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
                    name: "c".into(),
                    attempt: 0,
                }),
                image: spec(&image),
                args: vec!["sleep".into(), "300".into()],
                cdi_devices: vec![CdiDevice {
                    name: "kos.test/dev=one".into(),
                }],
                ..Default::default()
            }),
            sandbox_config: None,
        })
        .await
        .expect("CreateContainer with a CDI device")
        .into_inner()
        .container_id;
    rt.start_container(StartContainerRequest {
        container_id: c.clone(),
    })
    .await
    .expect("StartContainer");

    let url = rt
        .exec(ExecRequest {
            container_id: c.clone(),
            cmd: [
                "sh",
                "-c",
                "test -c /dev/kos-cdi-one && echo $KOS_CDI_ONE; echo to-err >&2; exit 4",
            ]
            .map(String::from)
            .to_vec(),
            stdout: true,
            stderr: true,
            ..Default::default()
        })
        .await
        .expect("Exec")
        .into_inner()
        .url;
    assert!(url.starts_with(&format!("http://{addr}/exec/")), "{url}");
    let got = tokio::task::spawn_blocking(move || ws_exec(&url))
        .await
        .expect("exec thread");
    let text =
        |ch: u8| String::from_utf8_lossy(got.get(&ch).map(|v| &v[..]).unwrap_or(b"")).into_owned();
    assert_eq!(text(1), "through-kosd\n", "{:?}", text(3));
    assert_eq!(text(2), "to-err\n");
    let status: serde_json::Value = serde_json::from_str(&text(3)).expect("status json");
    assert_eq!(status["reason"], "NonZeroExitCode", "{status}");
    assert_eq!(status["details"]["causes"][0]["message"], "4", "{status}");

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
}
