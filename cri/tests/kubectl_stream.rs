//! The streaming server against a real client: kubectl 1.32 (exec, attach, port-forward)
//! talks to a stand-in API server in this test, which answers the pod lookup and, as
//! kubelet does, asks the CRI for a streaming URL and proxies the upgraded connection to
//! it byte for byte. kubectl's WebSocket (v5.channel.k8s.io) and SPDY/3.1 paths are both
//! driven (`KUBECTL_REMOTE_COMMAND_WEBSOCKETS`, `KUBECTL_PORT_FORWARD_WEBSOCKETS`), and
//! port-forward's SPDY tunnelled in WebSocket as well as plain SPDY.

mod support;

use std::collections::HashMap;
use std::io::{BufRead, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use k8s_cri::v1::*;
use support::Scratch;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic::transport::Channel;

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let h = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(h, 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn flag(q: &[(String, String)], name: &str) -> bool {
    q.iter()
        .any(|(k, v)| k == name && (v == "true" || v == "1"))
}

#[derive(Clone)]
struct Target {
    sandbox: String,
    container: String,
}

/// `VERB UPGRADE` of every streaming request proxied (to see which transport ran).
static UPGRADES: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// One connection to the stand-in API server.
async fn serve_api(
    mut tcp: TcpStream,
    mut rt: RuntimeServiceClient<Channel>,
    pods: HashMap<String, Target>,
) {
    let mut buf = Vec::new();
    let end = loop {
        let mut b = [0u8; 4096];
        let n = tcp.read(&mut b).await.expect("read request");
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&b[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        assert!(buf.len() < 64 * 1024, "request head too large");
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let rest = buf[end..].to_vec();
    let line = head.lines().next().expect("request line").to_string();
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().expect("method"), parts.next().expect("target"));
    let (path, q) = target.split_once('?').unwrap_or((target, ""));
    let q = query(q);
    // Discovery, as little as kubectl needs to find pods.
    let discovery = match path {
        "/api" => Some(
            serde_json::json!({"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
        ),
        "/apis" => {
            Some(serde_json::json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}))
        }
        "/api/v1" => Some(
            serde_json::json!({"kind": "APIResourceList", "groupVersion": "v1",
            "resources": [
                {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "Pod",
                 "verbs": ["get", "list"], "shortNames": ["po"]},
                {"name": "pods/exec", "singularName": "", "namespaced": true, "kind": "PodExecOptions", "verbs": ["create", "get"]},
                {"name": "pods/attach", "singularName": "", "namespaced": true, "kind": "PodAttachOptions", "verbs": ["create", "get"]},
                {"name": "pods/portforward", "singularName": "", "namespaced": true, "kind": "PodPortForwardOptions", "verbs": ["create", "get"]}]}),
        ),
        _ => None,
    };
    if let Some(body) = discovery {
        let body = body.to_string();
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = tcp.write_all(resp.as_bytes()).await;
        return;
    }
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    // api/v1/namespaces/default/pods/NAME[/VERB]
    let (name, verb) = match segs.as_slice() {
        ["api", "v1", "namespaces", _, "pods", name] => (*name, ""),
        ["api", "v1", "namespaces", _, "pods", name, verb] => (*name, *verb),
        _ => {
            let _ = tcp
                .write_all(
                    b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                )
                .await;
            return;
        }
    };
    let Some(t) = pods.get(name).cloned() else {
        let _ = tcp
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
        return;
    };
    let url = match (method, verb) {
        ("GET", "") => {
            let body = serde_json::json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": "default", "uid": "u1"},
                "spec": {"containers": [{"name": "c", "image": "busybox", "stdin": true}]},
                "status": {"phase": "Running", "containerStatuses": [
                    {"name": "c", "ready": true, "restartCount": 0, "image": "busybox",
                     "imageID": "", "state": {"running": {}}}]},
            })
            .to_string();
            let resp = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tcp.write_all(resp.as_bytes()).await;
            return;
        }
        ("POST", "exec") | ("GET", "exec") => {
            let cmd: Vec<String> = q
                .iter()
                .filter(|(k, _)| k == "command")
                .map(|(_, v)| v.clone())
                .collect();
            rt.exec(ExecRequest {
                container_id: t.container.clone(),
                cmd,
                tty: flag(&q, "tty"),
                stdin: flag(&q, "stdin"),
                stdout: flag(&q, "stdout"),
                stderr: flag(&q, "stderr"),
            })
            .await
            .expect("CRI Exec")
            .into_inner()
            .url
        }
        ("POST", "attach") | ("GET", "attach") => {
            rt.attach(AttachRequest {
                container_id: t.container.clone(),
                tty: flag(&q, "tty"),
                stdin: flag(&q, "stdin"),
                stdout: flag(&q, "stdout"),
                stderr: flag(&q, "stderr"),
            })
            .await
            .expect("CRI Attach")
            .into_inner()
            .url
        }
        ("POST", "portforward") | ("GET", "portforward") => {
            rt.port_forward(PortForwardRequest {
                pod_sandbox_id: t.sandbox.clone(),
                port: vec![],
            })
            .await
            .expect("CRI PortForward")
            .into_inner()
            .url
        }
        _ => return,
    };
    let upgrade = head
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(k, _)| k.eq_ignore_ascii_case("upgrade"))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default();
    UPGRADES
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(format!("{verb} {upgrade}"));
    // As kubelet does: the client's upgrade request goes to the runtime's URL.
    let rest_of_url = url.trim_start_matches("http://");
    let (host, upath) = rest_of_url.split_once('/').expect("url path");
    let query_part = target
        .split_once('?')
        .map(|(_, q)| format!("?{q}"))
        .unwrap_or_default();
    let new_line = format!("{method} /{upath}{query_part} HTTP/1.1");
    let new_head = head.replacen(&line, &new_line, 1);
    let mut up = TcpStream::connect(host)
        .await
        .expect("connect streaming server");
    up.write_all(new_head.as_bytes())
        .await
        .expect("forward head");
    up.write_all(&rest).await.expect("forward rest");
    let _ = tokio::io::copy_bidirectional(&mut tcp, &mut up).await;
}

async fn api_server(
    rt: RuntimeServiceClient<Channel>,
    pods: HashMap<String, Target>,
) -> (u16, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    let h = tokio::spawn(async move {
        loop {
            let (tcp, _) = match l.accept().await {
                Ok(x) => x,
                Err(_) => return,
            };
            tokio::spawn(serve_api(tcp, rt.clone(), pods.clone()));
        }
    });
    (port, h)
}

fn kubeconfig(dir: &Path, port: u16) -> std::path::PathBuf {
    let p = dir.join("kubeconfig");
    std::fs::write(
        &p,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://127.0.0.1:{port}\nusers:\n- name: u\n  user: {{}}\ncontexts:\n- name: c\n  context:\n    cluster: fake\n    user: u\n    namespace: default\ncurrent-context: c\n"
        ),
    )
    .expect("kubeconfig");
    p
}

/// kubectl with `args` and `input` on stdin, in a blocking thread; (exit code, stdout,
/// stderr).
async fn kubectl(
    cfg: &Path,
    websockets: bool,
    args: &[&str],
    input: &[u8],
) -> (i32, String, String) {
    let (cfg, args, input) = (
        cfg.to_path_buf(),
        args.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        input.to_vec(),
    );
    tokio::task::spawn_blocking(move || {
        let ws = if websockets { "true" } else { "false" };
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&cfg)
            .arg("--request-timeout=30s")
            .args(&args)
            .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", ws)
            .env("KUBECTL_PORT_FORWARD_WEBSOCKETS", ws)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl");
        {
            let mut stdin = child.stdin.take().expect("stdin");
            stdin.write_all(&input).expect("write stdin");
        }
        let out = child.wait_with_output().expect("kubectl output");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .expect("kubectl thread")
}

/// A kubectl process killed on drop (port-forward runs until stopped).
struct Kubectl(std::process::Child);

impl Drop for Kubectl {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn get_page(port: u16) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect forwarded port");
    s.set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").expect("request");
    let mut page = String::new();
    let _ = s.read_to_string(&mut page);
    page
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_exec_attach_and_port_forward() {
    let (_reg, image, server) =
        support::busybox_server(&[("--cni-bin-dir", "/usr/lib/cni".to_string())]);
    support::write_loopback_conflist(&server.dir.path().join("net.d"));
    support::pull(&server, &image).await;
    let mut rt = server.runtime().await;
    let mut pc = support::pod_config(
        "kubectl",
        support::namespaces(NamespaceMode::Pod, NamespaceMode::Container),
    );
    pc.log_directory = server
        .dir
        .path()
        .join("logs")
        .to_string_lossy()
        .into_owned();
    let sandbox = support::run_pod(&mut rt, pc.clone()).await;
    let mut cc = support::container_config(
        "c",
        &image,
        &[
            "sh",
            "-c",
            "mkdir -p /tmp/w && echo kubectl-page > /tmp/w/index.html && httpd -p 127.0.0.1:8080 -h /tmp/w && while read l; do echo seen-$l; done",
        ],
    );
    cc.stdin = true;
    cc.log_path = "c/0.log".into();
    let container = support::run_container(&mut rt, &sandbox, cc, Some(pc)).await;

    let pods = HashMap::from([(
        "web".to_string(),
        Target {
            sandbox: sandbox.clone(),
            container: container.clone(),
        },
    )]);
    let (port, api) = api_server(rt.clone(), pods).await;
    let dir = Scratch::new("kcri-kubectl");
    let cfg = kubeconfig(dir.path(), port);

    for websockets in [true, false] {
        // exec: stdin to its end, both output streams, the exit code.
        let (code, out, err) = kubectl(
            &cfg,
            websockets,
            &[
                "exec",
                "-i",
                "web",
                "--",
                "sh",
                "-c",
                "cat; echo to-err >&2; exit 3",
            ],
            b"from-stdin\n",
        )
        .await;
        assert_eq!(
            code, 3,
            "websockets={websockets} stdout={out:?} stderr={err:?}"
        );
        assert_eq!(
            out, "from-stdin\n",
            "websockets={websockets} stderr={err:?}"
        );
        assert!(err.contains("to-err"), "websockets={websockets} {err:?}");
        let (code, out, err) =
            kubectl(&cfg, websockets, &["exec", "web", "--", "echo", "ok"], b"").await;
        assert_eq!(
            (code, out.as_str()),
            (0, "ok\n"),
            "websockets={websockets} {err:?}"
        );

        // attach: a line in, the container's answer out (from its log); kubectl stays
        // attached until stopped, and the container keeps running after.
        let word = if websockets { "ws" } else { "spdy" };
        let ws = if websockets { "true" } else { "false" };
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&cfg)
            .args(["attach", "-i", "web"])
            .env("KUBECTL_REMOTE_COMMAND_WEBSOCKETS", ws)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl attach");
        let mut stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let attached = Kubectl(child);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut r = std::io::BufReader::new(stdout);
            let mut line = String::new();
            while r.read_line(&mut line).unwrap_or(0) > 0 {
                if tx.send(line.clone()).is_err() {
                    return;
                }
                line.clear();
            }
        });
        let want = format!("seen-{word}");
        let mut seen = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        // The session starts following the log once connected: write until answered.
        while !seen.iter().any(|l: &String| l.contains(&want)) {
            assert!(std::time::Instant::now() < deadline, "attach: {seen:?}");
            let _ = writeln!(stdin, "{word}");
            while let Ok(l) = rx.recv_timeout(Duration::from_millis(500)) {
                seen.push(l);
            }
        }
        drop(stdin);
        drop(attached);
        let st = support::container_status(&mut rt, &container).await;
        assert_eq!(st.state, ContainerState::ContainerRunning as i32);
    }

    // port-forward: kubectl's default tunnels SPDY inside WebSocket
    // (`SPDY/3.1+portforward.k8s.io`); without it, plain SPDY (what kubelet sends).
    let mut forwarded = Vec::new();
    for websockets in [true, false] {
        let before = UPGRADES.lock().unwrap_or_else(|p| p.into_inner()).len();
        let local = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let mut child = Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&cfg)
            .args([
                "port-forward",
                "pod/web",
                &format!("{local}:8080"),
                "--address",
                "127.0.0.1",
            ])
            .env(
                "KUBECTL_PORT_FORWARD_WEBSOCKETS",
                if websockets { "true" } else { "false" },
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("kubectl port-forward");
        let stdout = child.stdout.take().expect("stdout");
        let pf = Kubectl(child);
        let mut first = String::new();
        let mut reader = std::io::BufReader::new(stdout);
        tokio::task::block_in_place(|| reader.read_line(&mut first)).expect("port-forward output");
        assert!(first.contains("Forwarding from"), "{first:?}");
        // Two connections: two stream pairs on the one SPDY connection.
        for _ in 0..2 {
            let page = tokio::task::block_in_place(|| get_page(local));
            assert!(
                page.contains("kubectl-page"),
                "websockets={websockets} {page:?}"
            );
        }
        drop(pf);
        // Served the way asked, with no fallback to the other transport.
        let seen = UPGRADES.lock().unwrap_or_else(|p| p.into_inner())[before..].to_vec();
        let want = if websockets {
            "portforward websocket"
        } else {
            "portforward SPDY/3.1"
        };
        assert!(
            seen.iter().all(|s| s == want),
            "websockets={websockets}: {seen:?}"
        );
        forwarded.extend(seen);
    }
    assert!(!forwarded.is_empty());
    api.abort();
    let seen = UPGRADES.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for want in [
        "exec websocket",
        "exec SPDY/3.1",
        "attach websocket",
        "attach SPDY/3.1",
        "portforward SPDY/3.1",
        "portforward websocket",
    ] {
        assert!(
            seen.iter().any(|s| s == want),
            "{want} not seen in {seen:?}"
        );
    }

    support::remove_pod(&mut rt, &sandbox).await;
}
