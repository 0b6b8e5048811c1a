//! The streaming server end to end: Exec, Attach and PortForward return URLs that a
//! WebSocket client (tokio-tungstenite, speaking the channel protocols as kubectl does)
//! uses against a real pod: stdin, stdout, stderr, a terminal and its size, exit codes
//! in the v4 Status, attach to a running container's stdin and output, port forwarding
//! into a pod's own network namespace (loopback only, from Debian's CNI loopback
//! plugin), and 404 for unknown or used tokens.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use k8s_cri::v1::*;
use support::{Registry, Server};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

type Ws = WebSocketStream<TcpStream>;

fn pod_config(name: &str, logs: &Path) -> PodSandboxConfig {
    let ns = NamespaceOption {
        ipc: NamespaceMode::Pod as i32,
        ..support::namespaces(NamespaceMode::Pod, NamespaceMode::Container)
    };
    let mut pc = support::pod_config(name, ns);
    pc.hostname = "stream-pod".into();
    pc.log_directory = logs.to_string_lossy().into_owned();
    pc
}

fn container(name: &str, image: &str, args: &[&str]) -> ContainerConfig {
    let mut c = support::container_config(name, image, args);
    c.log_path = format!("{name}/0.log");
    c
}

/// A pulled image, a server with the loopback CNI network and one ready pod.
struct Pod {
    server: Server,
    id: String,
    config: PodSandboxConfig,
    image: String,
    _reg: Registry,
}

async fn pod(name: &str) -> Pod {
    let (_reg, image, server) =
        support::busybox_server(&[("--cni-bin-dir", "/usr/lib/cni".to_string())]);
    support::write_loopback_conflist(&server.dir.path().join("net.d"));
    support::pull(&server, &image).await;
    let logs = server.dir.path().join("logs");
    let config = pod_config(name, &logs);
    let id = support::run_pod(&mut server.runtime().await, config.clone()).await;
    Pod {
        server,
        id,
        config,
        image,
        _reg,
    }
}

impl Pod {
    async fn run(&self, c: ContainerConfig) -> String {
        let mut rt = self.server.runtime().await;
        support::run_container(&mut rt, &self.id, c, Some(self.config.clone())).await
    }

    async fn remove(self) {
        let mut rt = self.server.runtime().await;
        support::remove_pod(&mut rt, &self.id).await;
    }
}

async fn connect(url: &str, protocol: &str) -> Ws {
    let ws_url = url.replacen("http://", "ws://", 1);
    let mut req = ws_url.as_str().into_client_request().expect("request");
    if !protocol.is_empty() {
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", protocol.parse().expect("header"));
    }
    let host = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .expect("host")
        .to_string();
    let tcp = TcpStream::connect(&host).await.expect("connect");
    let (ws, resp) = tokio_tungstenite::client_async(req, tcp)
        .await
        .expect("websocket handshake");
    if !protocol.is_empty() {
        assert_eq!(
            resp.headers()
                .get("sec-websocket-protocol")
                .and_then(|v| v.to_str().ok()),
            Some(protocol)
        );
    }
    ws
}

async fn send(ws: &mut Ws, ch: u8, data: &[u8]) {
    let mut v = vec![ch];
    v.extend_from_slice(data);
    ws.send(Message::binary(v)).await.expect("send");
}

/// Everything per channel until the server closes the connection.
async fn collect(ws: &mut Ws) -> HashMap<u8, Vec<u8>> {
    let mut got: HashMap<u8, Vec<u8>> = HashMap::new();
    let all = async {
        while let Some(m) = ws.next().await {
            let m = match m {
                Ok(m) => m,
                Err(e) => panic!("websocket: {e}; so far {got:?}"),
            };
            match m {
                Message::Binary(b) if !b.is_empty() => {
                    got.entry(b[0]).or_default().extend_from_slice(&b[1..])
                }
                Message::Text(t) if !t.is_empty() => {
                    use base64::Engine as _;
                    let t = t.as_bytes();
                    let d = base64::engine::general_purpose::STANDARD
                        .decode(&t[1..])
                        .expect("base64");
                    got.entry(t[0] - b'0').or_default().extend_from_slice(&d)
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), all)
        .await
        .expect("the session ends");
    got
}

/// Reads until `want` shows up on channel `ch`.
async fn read_until(ws: &mut Ws, ch: u8, want: &str) -> String {
    let mut seen = Vec::new();
    let r = tokio::time::timeout(Duration::from_secs(20), async {
        while let Some(m) = ws.next().await {
            if let Message::Binary(b) = m.expect("message") {
                if !b.is_empty() && b[0] == ch {
                    seen.extend_from_slice(&b[1..]);
                    if String::from_utf8_lossy(&seen).contains(want) {
                        return;
                    }
                }
            }
        }
    })
    .await;
    let s = String::from_utf8_lossy(&seen).into_owned();
    assert!(r.is_ok(), "{want:?} never came on channel {ch}; got {s:?}");
    s
}

fn status(got: &HashMap<u8, Vec<u8>>) -> serde_json::Value {
    serde_json::from_slice(got.get(&3).expect("a status on the error channel")).expect("json")
}

fn text(got: &HashMap<u8, Vec<u8>>, ch: u8) -> String {
    String::from_utf8_lossy(got.get(&ch).map(|v| &v[..]).unwrap_or(b"")).into_owned()
}

async fn http_status(url: &str) -> u16 {
    let host = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .expect("host");
    let path = &url[url.find(host).expect("host in url") + host.len()..];
    let mut s = TcpStream::connect(host).await.expect("connect");
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    String::from_utf8_lossy(&buf)
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line")
}

/// The HTTP status of a refused WebSocket handshake.
async fn refused(url: &str, protocol: &str) -> u16 {
    let mut req = url
        .replacen("http://", "ws://", 1)
        .into_client_request()
        .expect("request");
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", protocol.parse().expect("header"));
    let host = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .expect("host");
    let tcp = TcpStream::connect(host).await.expect("connect");
    match tokio_tungstenite::client_async(req, tcp).await {
        Ok(_) => panic!("{url}: the handshake succeeded"),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
        Err(e) => panic!("{url}: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_and_attach_over_websocket() {
    let p = pod("stream").await;
    let mut rt = p.server.runtime().await;
    let mut c = container(
        "echoer",
        &p.image,
        &[
            "sh",
            "-c",
            "while read l; do echo got-$l; echo err-$l >&2; done; echo bye",
        ],
    );
    c.stdin = true;
    let cid = p.run(c).await;

    // Exec without a terminal: stdin to EOF (v5 close), stdout, stderr, exit code 3.
    let url = rt
        .exec(ExecRequest {
            container_id: cid.clone(),
            cmd: ["sh", "-c", "cat; echo out-done; echo to-err >&2; exit 3"]
                .map(String::from)
                .to_vec(),
            tty: false,
            stdin: true,
            stdout: true,
            stderr: true,
        })
        .await
        .expect("exec")
        .into_inner()
        .url;
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    let mut ws = connect(&url, "v5.channel.k8s.io").await;
    send(&mut ws, 0, b"abc").await;
    send(&mut ws, 255, &[0]).await;
    let got = collect(&mut ws).await;
    assert_eq!(text(&got, 1), "abcout-done\n", "{:?}", text(&got, 3));
    assert_eq!(text(&got, 2), "to-err\n");
    let st = status(&got);
    assert_eq!(st["status"], "Failure", "{st}");
    assert_eq!(st["reason"], "NonZeroExitCode", "{st}");
    assert_eq!(st["details"]["causes"][0]["message"], "3", "{st}");
    // An unsupported subprotocol is refused (and uses up the token).
    let url2 = rt
        .exec(ExecRequest {
            container_id: cid.clone(),
            cmd: vec!["true".into()],
            stdout: true,
            ..Default::default()
        })
        .await
        .expect("exec")
        .into_inner()
        .url;
    assert_eq!(refused(&url2, "v9.channel.k8s.io").await, 400);
    assert_eq!(http_status(&url2).await, 404);
    // The token served once.
    assert_eq!(http_status(&url).await, 404);
    let unknown = format!(
        "{}/exec/{}",
        url.rsplitn(3, '/').nth(2).expect("base url"),
        "0".repeat(32)
    );
    assert_eq!(http_status(&unknown).await, 404);

    // With a terminal: the size set over the resize channel is the terminal's.
    let url = rt
        .exec(ExecRequest {
            container_id: cid.clone(),
            cmd: [
                "sh",
                "-c",
                "read x; test -t 0 && echo is-tty; /bin/busybox stty size; echo got-$x",
            ]
            .map(String::from)
            .to_vec(),
            tty: true,
            stdin: true,
            stdout: true,
            stderr: false,
        })
        .await
        .expect("exec tty")
        .into_inner()
        .url;
    let mut ws = connect(&url, "v5.channel.k8s.io").await;
    send(&mut ws, 4, br#"{"Width":101,"Height":33}"#).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    send(&mut ws, 0, b"hi\r").await;
    let got = collect(&mut ws).await;
    let out = text(&got, 1);
    assert!(out.contains("is-tty"), "{out:?}");
    assert!(out.contains("33 101"), "{out:?}");
    assert!(out.contains("got-hi"), "{out:?}");
    assert!(!got.contains_key(&2), "stderr with a tty: {got:?}");
    assert_eq!(status(&got)["status"], "Success");

    // v4 and its base64 form: output and a Success status.
    for proto in ["v4.channel.k8s.io", "v4.base64.channel.k8s.io"] {
        let url = rt
            .exec(ExecRequest {
                container_id: cid.clone(),
                cmd: ["echo", proto].map(String::from).to_vec(),
                stdout: true,
                ..Default::default()
            })
            .await
            .expect("exec v4")
            .into_inner()
            .url;
        let mut ws = connect(&url, proto).await;
        let got = collect(&mut ws).await;
        assert_eq!(text(&got, 1), format!("{proto}\n"));
        assert_eq!(status(&got)["status"], "Success");
    }

    // Attach: stdin in, stdout and stderr out (from the CRI log); leaving the attach
    // leaves the container running with stdin open (no stdin_once), so a second
    // attach is served too.
    for word in ["first", "second"] {
        let url = rt
            .attach(AttachRequest {
                container_id: cid.clone(),
                stdin: true,
                tty: false,
                stdout: true,
                stderr: true,
            })
            .await
            .expect("attach")
            .into_inner()
            .url;
        let mut ws = connect(&url, "v5.channel.k8s.io").await;
        // The log is followed from where it ended when the request came: input sent at
        // once is answered on the stream.
        send(&mut ws, 0, format!("{word}\n").as_bytes()).await;
        read_until(&mut ws, 1, &format!("got-{word}\n")).await;
        read_until(&mut ws, 2, &format!("err-{word}\n")).await;
        ws.close(None).await.expect("close");
        tokio::time::sleep(Duration::from_millis(300)).await;
        let st = support::container_status(&mut rt, &cid).await;
        assert_eq!(st.state, ContainerState::ContainerRunning as i32, "{word}");
    }

    // Attach to a terminal: the size set over the resize channel is the container's
    // terminal's; the shell's answer comes from the CRI log.
    let mut t = container("term", &p.image, &["sh"]);
    t.stdin = true;
    t.tty = true;
    let term = p.run(t).await;
    let url = rt
        .attach(AttachRequest {
            container_id: term.clone(),
            stdin: true,
            tty: true,
            stdout: true,
            stderr: false,
        })
        .await
        .expect("attach tty")
        .into_inner()
        .url;
    let mut ws = connect(&url, "v5.channel.k8s.io").await;
    send(&mut ws, 4, br#"{"Width":77,"Height":22}"#).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    send(&mut ws, 0, b"/bin/busybox stty size; echo tty-$((6*7))\r").await;
    // The typed line echoes as `tty-$((6*7))`; only the shell's answer says tty-42.
    let seen = read_until(&mut ws, 1, "tty-42").await;
    assert!(seen.contains("22 77"), "{seen:?}");
    ws.close(None).await.expect("close");

    // Bad requests: no streams, tty with stderr, stdin on a container without it, an
    // unknown container.
    let e = rt
        .exec(ExecRequest {
            container_id: cid.clone(),
            cmd: vec!["true".into()],
            ..Default::default()
        })
        .await
        .expect_err("no streams");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    let e = rt
        .exec(ExecRequest {
            container_id: cid.clone(),
            cmd: vec!["true".into()],
            tty: true,
            stdout: true,
            stderr: true,
            ..Default::default()
        })
        .await
        .expect_err("tty and stderr");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");
    let e = rt
        .attach(AttachRequest {
            container_id: "nope".into(),
            stdout: true,
            ..Default::default()
        })
        .await
        .expect_err("unknown container");
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
    let other = p.run(container("plain", &p.image, &["sleep", "300"])).await;
    let e = rt
        .attach(AttachRequest {
            container_id: other,
            stdin: true,
            stdout: true,
            ..Default::default()
        })
        .await
        .expect_err("stdin without stdin");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e}");

    // The sessions' fifos went with them.
    let exec_dir = p
        .server
        .dir
        .path()
        .join("run/containers")
        .join(&cid)
        .join("exec");
    let left: Vec<_> = std::fs::read_dir(&exec_dir)
        .expect("exec dir")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    p.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_over_websocket_into_the_pods_netns() {
    let p = pod("forward").await;
    let mut rt = p.server.runtime().await;
    let cid = p
        .run(container(
            "web",
            &p.image,
            &[
                "sh",
                "-c",
                "mkdir -p /tmp/w && echo pod-page > /tmp/w/index.html && exec httpd -f -p 127.0.0.1:8080 -h /tmp/w",
            ],
        ))
        .await;
    // Serving inside the pod (its own loopback).
    let end = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = rt
            .exec_sync(ExecSyncRequest {
                container_id: cid.clone(),
                cmd: ["wget", "-q", "-O-", "http://127.0.0.1:8080/"]
                    .map(String::from)
                    .to_vec(),
                timeout: 5,
            })
            .await
            .expect("exec sync")
            .into_inner();
        if r.exit_code == 0 {
            break;
        }
        assert!(std::time::Instant::now() < end, "httpd never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    for proto in ["v4.channel.k8s.io", "portforward.k8s.io"] {
        let url = rt
            .port_forward(PortForwardRequest {
                pod_sandbox_id: p.id.clone(),
                port: vec![8080],
            })
            .await
            .expect("port forward")
            .into_inner()
            .url;
        // Port 8081 has no listener: its error channel says so.
        let mut ws = connect(&format!("{url}?ports=8080,8081"), proto).await;
        send(&mut ws, 0, b"GET / HTTP/1.0\r\n\r\n").await;
        let got = collect(&mut ws).await;
        let data = got.get(&0).expect("data channel");
        assert_eq!(&data[..2], &8080u16.to_le_bytes(), "port prefix");
        let page = String::from_utf8_lossy(&data[2..]);
        assert!(page.contains(" 200 OK"), "{page:?}");
        assert!(page.contains("pod-page"), "{page:?}");
        assert_eq!(got.get(&1).map(|v| v.len()), Some(2), "no error for 8080");
        assert_eq!(&got[&2][..2], &8081u16.to_le_bytes());
        let err = String::from_utf8_lossy(&got[&3][2..]).into_owned();
        assert!(err.contains("error forwarding port 8081"), "{err:?}");
    }

    // Without ports, or an unknown pod.
    let url = rt
        .port_forward(PortForwardRequest {
            pod_sandbox_id: p.id.clone(),
            port: vec![],
        })
        .await
        .expect("port forward")
        .into_inner()
        .url;
    assert_eq!(refused(&url, "v4.channel.k8s.io").await, 400);
    let e = rt
        .port_forward(PortForwardRequest {
            pod_sandbox_id: "nope".into(),
            port: vec![80],
        })
        .await
        .expect_err("unknown pod");
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");
    p.remove().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_not_found() {
    let (_reg, image, server) =
        support::pulled_busybox_server(&[("--stream-token-ttl-ms", "300".to_string())]).await;
    let mut rt = server.runtime().await;
    let mut pc = pod_config("expiry", &server.dir.path().join("logs"));
    let ns = pc
        .linux
        .as_mut()
        .and_then(|l| l.security_context.as_mut())
        .and_then(|s| s.namespace_options.as_mut())
        .expect("namespace options");
    ns.network = NamespaceMode::Node as i32;
    let pod = support::run_pod(&mut rt, pc.clone()).await;
    let cid = support::run_container(
        &mut rt,
        &pod,
        container("c", &image, &["sleep", "300"]),
        Some(pc),
    )
    .await;
    let exec = |cmd: &str| ExecRequest {
        container_id: cid.clone(),
        cmd: vec![cmd.into()],
        stdout: true,
        ..Default::default()
    };
    // Used in time: served.
    let url = rt.exec(exec("true")).await.expect("exec").into_inner().url;
    let mut ws = connect(&url, "v5.channel.k8s.io").await;
    assert_eq!(status(&collect(&mut ws).await)["status"], "Success");
    // Used too late: 404, over HTTP and as a refused upgrade.
    let url = rt.exec(exec("true")).await.expect("exec").into_inner().url;
    let url2 = rt.exec(exec("true")).await.expect("exec").into_inner().url;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(http_status(&url).await, 404);
    assert_eq!(refused(&url2, "v5.channel.k8s.io").await, 404);
    support::remove_pod(&mut rt, &pod).await;
}
