//! A minimal ttrpc client for the task service, a fake event service that records what the
//! shim publishes, and a shim started the way kosd starts it.

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::ttrpc::{Request, Response};
use protobuf::Message;

use super::{alive, kill9, remove_cgroups, unique, wait_for, TempDir};

fn frame(stream: u32, kind: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(10 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&stream.to_be_bytes());
    out.push(kind);
    out.push(0);
    out.extend_from_slice(body);
    out
}

fn read_frame(s: &mut UnixStream) -> std::io::Result<(u32, u8, Vec<u8>)> {
    let mut h = [0u8; 10];
    s.read_exact(&mut h)?;
    let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
    let stream = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
    assert!(len <= 4 << 20, "oversized frame");
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok((stream, h[8], body))
}

/// An RPC error as the test sees it.
#[derive(Debug)]
pub struct RpcError {
    pub code: i32,
    pub message: String,
}

pub const NOT_FOUND: i32 = 5;
pub const ALREADY_EXISTS: i32 = 6;
pub const FAILED_PRECONDITION: i32 = 9;
pub const INVALID_ARGUMENT: i32 = 3;

pub struct Client {
    s: UnixStream,
    next: u32,
}

impl Client {
    pub fn connect(addr: &str) -> Client {
        let path = addr.strip_prefix("unix://").unwrap_or(addr);
        let s = UnixStream::connect(path).expect("connect to shim");
        s.set_read_timeout(Some(Duration::from_secs(60)))
            .expect("timeout");
        Client { s, next: 1 }
    }

    pub fn call<Req: Message, Resp: Message>(
        &mut self,
        method: &str,
        req: &Req,
    ) -> Result<Resp, RpcError> {
        self.call_service("containerd.task.v2.Task", method, req)
    }

    pub fn call_service<Req: Message, Resp: Message>(
        &mut self,
        service: &str,
        method: &str,
        req: &Req,
    ) -> Result<Resp, RpcError> {
        let mut r = Request::new();
        r.service = service.into();
        r.method = method.into();
        r.payload = req.write_to_bytes().expect("encode");
        let id = self.next;
        self.next += 2;
        let io_err = |e: std::io::Error| RpcError {
            code: -1,
            message: format!("{method}: {e}"),
        };
        self.s
            .write_all(&frame(id, 1, &r.write_to_bytes().expect("encode")))
            .map_err(io_err)?;
        let (stream, kind, body) = read_frame(&mut self.s).map_err(io_err)?;
        assert_eq!((stream, kind), (id, 2), "response frame");
        let resp = Response::parse_from_bytes(&body).expect("decode response");
        let code = resp.status.as_ref().map(|s| s.code.value()).unwrap_or(0);
        if code != 0 {
            return Err(RpcError {
                code,
                message: resp.status.message.clone(),
            });
        }
        Ok(Resp::parse_from_bytes(&resp.payload).expect("decode payload"))
    }
}

/// Records the topics the shim forwards to containerd.services.events.ttrpc.v1.Events.
pub struct EventSink {
    pub path: PathBuf,
    pub topics: Arc<Mutex<Vec<(String, String)>>>,
}

impl EventSink {
    pub fn start(path: &Path) -> EventSink {
        let l = UnixListener::bind(path).expect("event socket");
        let topics = Arc::new(Mutex::new(Vec::new()));
        let t = topics.clone();
        std::thread::spawn(move || {
            for conn in l.incoming() {
                let Ok(mut s) = conn else { return };
                let t = t.clone();
                std::thread::spawn(move || {
                    while let Ok((stream, _, body)) = read_frame(&mut s) {
                        if let Ok(req) = Request::parse_from_bytes(&body) {
                            if let Ok(f) = ForwardRequest::parse_from_bytes(&req.payload) {
                                let topic = f.envelope.topic.clone();
                                let url = f.envelope.event.type_url.clone();
                                t.lock().expect("lock").push((topic, url));
                            }
                        }
                        let resp = Response::new().write_to_bytes().expect("encode");
                        if s.write_all(&frame(stream, 2, &resp)).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        EventSink {
            path: path.to_path_buf(),
            topics,
        }
    }

    pub fn topics(&self) -> Vec<String> {
        self.topics
            .lock()
            .expect("lock")
            .iter()
            .map(|(t, _)| t.clone())
            .collect()
    }
}

/// A shim started with the `start` action, kosd-style (`-address` = a socket directory),
/// with its own event sink; everything it made is removed on drop.
pub struct Shim {
    pub dir: TempDir,
    pub ns: String,
    pub address: String,
    pub events: EventSink,
    pub cgroup_parent: String,
    pub pid: i32,
    pub client: Client,
    pub ids: Vec<String>,
}

impl Shim {
    pub fn start(name: &str) -> Shim {
        Shim::start_with_stdin(name, &[]).expect("shim start")
    }

    /// The `start` action with `stdin` on its standard input (containerd passes the runtime
    /// options there); Err(stderr) when the action fails.
    pub fn start_with_stdin(name: &str, stdin: &[u8]) -> Result<Shim, String> {
        let dir = TempDir::new(&format!("kshim-{name}"));
        let ns = unique("kd");
        let sockdir = dir.path().join("s");
        std::fs::create_dir_all(&sockdir).expect("mkdir");
        let events = EventSink::start(&dir.path().join("events.sock"));
        let first = dir.path().join("first");
        std::fs::create_dir_all(&first).expect("mkdir");
        // The shim logs to `log` in its first bundle (a fifo under containerd).
        std::fs::write(first.join("log"), b"").expect("log");
        let mut child = Command::new(super::shim_binary())
            .args(["-namespace", &ns, "-address"])
            .arg(&sockdir)
            .args([
                "-publish-binary",
                "/bin/true",
                "-id",
                "first",
                "-debug",
                "start",
            ])
            .current_dir(&first)
            .env("TTRPC_ADDRESS", &events.path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("shim start");
        {
            let mut w = child.stdin.take().expect("stdin pipe");
            // A shim that does not read its stdin may close it first.
            let _ = w.write_all(stdin);
        }
        let out = child.wait_with_output().expect("shim start");
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let address = String::from_utf8_lossy(&out.stdout).trim().to_string();
        assert!(address.starts_with(&format!("unix://{}", sockdir.display())));
        assert_eq!(
            std::fs::read_to_string(first.join("address")).expect("address file"),
            address
        );
        let mut client = Client::connect(&address);
        let c: containerd_shim_protos::api::ConnectResponse = client
            .call(
                "Connect",
                &containerd_shim_protos::api::ConnectRequest::new(),
            )
            .expect("connect");
        Ok(Shim {
            cgroup_parent: unique("kos-shim-test"),
            pid: c.shim_pid as i32,
            dir,
            ns,
            address,
            events,
            client,
            ids: Vec::new(),
        })
    }

    /// A fresh bundle for container `id` running `args`.
    pub fn bundle(&mut self, id: &str, args: &[&str], terminal: bool) -> PathBuf {
        let b = self.dir.path().join(id);
        std::fs::create_dir_all(&b).expect("mkdir");
        super::image::bundle(&b, id, &self.cgroup_parent, args, terminal);
        self.ids.push(id.to_string());
        b
    }

    pub fn runtime_root(&self) -> PathBuf {
        self.dir.path().join("runtime-root")
    }

    /// Creates (`Create`, with runc's options naming `runtime`, or KOS's own with
    /// `start_at_create`) and starts container `id` from `bundle`; the init's pid.
    pub fn create_and_start(
        &mut self,
        runtime: &Path,
        id: &str,
        bundle: &Path,
        start_at_create: bool,
    ) -> u32 {
        use containerd_shim_protos::api;
        let mut r = api::CreateTaskRequest::new();
        r.id = id.to_string();
        r.bundle = bundle.to_string_lossy().into_owned();
        r.options = protobuf::MessageField::some(super::runtime_options(
            &runtime.to_string_lossy(),
            &self.runtime_root(),
            start_at_create,
        ));
        let _: api::CreateTaskResponse = self.client.call("Create", &r).expect("create");
        let mut s = api::StartRequest::new();
        s.id = id.into();
        let resp: api::StartResponse = self.client.call("Start", &s).expect("start");
        resp.pid
    }

    /// Container `id`'s directories in every v1 hierarchy and the unified one.
    pub fn cgroup_dirs(&self, id: &str) -> Vec<PathBuf> {
        let rel = format!("{}/{id}", self.cgroup_parent);
        std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path().join(&rel))
            .filter(|p| p.is_dir())
            .collect()
    }
}

impl Drop for Shim {
    fn drop(&mut self) {
        use containerd_shim_protos::api;
        for id in self.ids.clone() {
            let mut k = api::KillRequest::new();
            k.id = id.clone();
            k.signal = 9;
            k.all = true;
            let _: Result<api::Empty, _> = self.client.call("Kill", &k);
            let mut d = api::DeleteRequest::new();
            d.id = id.clone();
            for _ in 0..50 {
                let r: Result<api::DeleteResponse, _> = self.client.call("Delete", &d);
                match r {
                    Ok(_) => break,
                    Err(e) if e.code == NOT_FOUND => break,
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        }
        let _: Result<api::Empty, _> = self.client.call("Shutdown", &api::ShutdownRequest::new());
        let pid = self.pid;
        let gone = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            !alive(pid)
        });
        if !gone {
            kill9(pid);
            wait_for("shim exit", Duration::from_secs(5), || !alive(pid));
        }
        remove_cgroups(&self.cgroup_parent);
        let _ = std::fs::remove_dir_all(format!("/run/containerd/kos/{}", self.ns));
    }
}
