//! `containerd-shim-noop-v2`: a shim that runs nothing. It answers the task API at once
//! (Wait as soon as Start was called, exit status 0), so `ctr run --rm` through it costs only
//! containerd's and ctr's own work. bench/shim.sh uses it as the floor under which no shim
//! and runtime can go on that containerd.
//!
//! usage, as containerd runs shims: `... -namespace NS -address A -id ID start|delete`;
//! the daemon is this program re-run as `serve SOCKET`.

use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use containerd_shim_protos::api;
use containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::ttrpc::{self, Server, TtrpcContext};
use containerd_shim_protos::{create_task, Task};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
            .unwrap_or_default()
    };
    if let [cmd, socket] = args.as_slice() {
        if cmd == "serve" {
            return serve(socket);
        }
    }
    match args.last().map(String::as_str) {
        Some("start") => {
            let socket = format!(
                "/run/containerd/s/noop-{}-{}",
                flag("-namespace"),
                flag("-id")
            );
            let _ = std::fs::remove_file(&socket);
            std::fs::create_dir_all("/run/containerd/s")?;
            // The daemon must not hold containerd's stdout pipe: containerd reads it to EOF.
            Command::new(std::env::current_exe()?)
                .args(["serve", &socket])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("spawning the daemon")?;
            for _ in 0..200 {
                if std::path::Path::new(&socket).exists() {
                    let uri = format!("unix://{socket}");
                    std::fs::write("address", &uri)?;
                    println!("{uri}");
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            bail!("the daemon did not bind {socket}")
        }
        Some("delete") => {
            let mut r = api::DeleteResponse::new();
            r.exit_status = 137;
            r.exited_at = MessageField::some(now());
            std::io::Write::write_all(&mut std::io::stdout(), &r.write_to_bytes()?)?;
            Ok(())
        }
        _ => bail!("usage: containerd-shim-noop-v2 ... start|delete"),
    }
}

fn now() -> Timestamp {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut t = Timestamp::new();
    t.seconds = d.as_secs() as i64;
    t.nanos = d.subsec_nanos() as i32;
    t
}

fn serve(socket: &str) -> anyhow::Result<()> {
    let task = Arc::new(Noop::default());
    let mut server = Server::new()
        .bind(&format!("unix://{socket}"))
        .context("bind")?
        .register_service(create_task(task.clone()));
    server.start().context("serve")?;
    let (lock, cv) = &*task.shutdown;
    let mut down = lock.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
    while !*down {
        down = cv.wait(down).map_err(|_| anyhow::anyhow!("poisoned"))?;
    }
    // Let the Shutdown answer go out first.
    std::thread::sleep(Duration::from_millis(2));
    let _ = std::fs::remove_file(socket);
    std::process::exit(0)
}

#[derive(Default)]
struct Noop {
    started: Arc<(Mutex<bool>, Condvar)>,
    shutdown: Arc<(Mutex<bool>, Condvar)>,
}

fn set(flag: &(Mutex<bool>, Condvar)) {
    if let Ok(mut v) = flag.0.lock() {
        *v = true;
        flag.1.notify_all();
    }
}

impl Task for Noop {
    fn create(
        &self,
        _: &TtrpcContext,
        _: api::CreateTaskRequest,
    ) -> ttrpc::Result<api::CreateTaskResponse> {
        let mut r = api::CreateTaskResponse::new();
        r.pid = std::process::id();
        Ok(r)
    }

    fn start(&self, _: &TtrpcContext, _: api::StartRequest) -> ttrpc::Result<api::StartResponse> {
        set(&self.started);
        let mut r = api::StartResponse::new();
        r.pid = std::process::id();
        Ok(r)
    }

    fn wait(&self, _: &TtrpcContext, _: api::WaitRequest) -> ttrpc::Result<api::WaitResponse> {
        let (lock, cv) = &*self.started;
        if let Ok(mut started) = lock.lock() {
            while !*started {
                match cv.wait(started) {
                    Ok(s) => started = s,
                    Err(_) => break,
                }
            }
        }
        let mut r = api::WaitResponse::new();
        r.exited_at = MessageField::some(now());
        Ok(r)
    }

    fn state(&self, _: &TtrpcContext, r: api::StateRequest) -> ttrpc::Result<api::StateResponse> {
        let mut s = api::StateResponse::new();
        s.id = r.id;
        s.pid = std::process::id();
        s.status = containerd_shim_protos::types::task::Status::STOPPED.into();
        s.exited_at = MessageField::some(now());
        Ok(s)
    }

    fn delete(
        &self,
        _: &TtrpcContext,
        _: api::DeleteRequest,
    ) -> ttrpc::Result<api::DeleteResponse> {
        let mut r = api::DeleteResponse::new();
        r.pid = std::process::id();
        r.exited_at = MessageField::some(now());
        Ok(r)
    }

    fn connect(
        &self,
        _: &TtrpcContext,
        _: api::ConnectRequest,
    ) -> ttrpc::Result<api::ConnectResponse> {
        let mut r = api::ConnectResponse::new();
        r.shim_pid = std::process::id();
        r.task_pid = std::process::id();
        Ok(r)
    }

    fn shutdown(&self, _: &TtrpcContext, _: api::ShutdownRequest) -> ttrpc::Result<api::Empty> {
        set(&self.shutdown);
        Ok(api::Empty::new())
    }
}
