//! One container lifecycle driven straight through a shim, without containerd:
//! `start` action, Create, Start, Wait, Delete, Shutdown. bench/shim.sh times it for the kos
//! shim and containerd-shim-runc-v2 with the same runtime, so the ratio is the shims' own.
//!
//! usage: lifecycle SHIM_BINARY RUNTIME_BINARY BUNDLE_DIR [NAMESPACE]

use std::io::{Read, Write};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context;

use containerd_shim_protos::api;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{CodedOutputStream, MessageField};
use containerd_shim_protos::ttrpc::context::with_timeout;
use containerd_shim_protos::ttrpc::Client;
use containerd_shim_protos::TaskClient;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (shim, runtime, bundle, ns) = match args.as_slice() {
        [s, r, b] => (s, r, b, "kos-bench-lifecycle"),
        [s, r, b, n] => (s, r, b, n.as_str()),
        _ => anyhow::bail!("usage: lifecycle SHIM_BINARY RUNTIME_BINARY BUNDLE_DIR [NAMESPACE]"),
    };
    let bundle = Path::new(bundle);
    // The shim runs in the bundle: a relative path must not be resolved from there.
    let shim = std::fs::canonicalize(shim).with_context(|| format!("shim binary {shim}"))?;
    let shim = shim.to_string_lossy();
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos();
    let id = format!("lc{nanos}");
    // containerd-shim-runc-v2 will not start without an event service to publish to.
    let events = std::env::temp_dir().join(format!("kos-lifecycle-{nanos}.sock"));
    let listener = UnixListener::bind(&events)?;
    // Removed however this run ends (an early `?` too), not only on success.
    let _events_guard = RemoveOnDrop(events.clone());
    std::thread::spawn(move || serve_events(listener));
    // containerd-shim-runc-v2 also insists on containerd's `log` fifo in the bundle.
    let log = bundle.join("log");
    if !log.exists() {
        nix::unistd::mkfifo(&log, nix::sys::stat::Mode::from_bits_truncate(0o600))?;
    }
    // Opened (read-write, so it cannot block) before the shim starts: the shim's own open
    // then never waits for a reader.
    let mut log_reader = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&log)?;
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut log_reader, &mut std::io::sink());
    });
    let out = Command::new(shim.as_ref())
        .env("TTRPC_ADDRESS", &events)
        .args(["-namespace", ns, "-address", &format!("/run/{ns}.sock")])
        .args(["-publish-binary", "/bin/true", "-id", &id, "start"])
        .current_dir(bundle)
        .output()
        .with_context(|| format!("running {shim}"))?;
    anyhow::ensure!(
        out.status.success(),
        "start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let addr = String::from_utf8(out.stdout)?.trim().to_string();
    let task =
        TaskClient::new(Client::connect(&addr).with_context(|| format!("connecting {addr}"))?);
    let ctx = || with_timeout(30_000_000_000);

    let mut opts = Vec::new();
    {
        let mut os = CodedOutputStream::vec(&mut opts);
        os.write_string(6, runtime)?;
        os.flush()?;
    }
    let mut any = Any::new();
    any.type_url = "containerd.runc.v1.Options".into();
    any.value = opts;
    let mut c = api::CreateTaskRequest::new();
    c.id = id.clone();
    c.bundle = bundle.to_string_lossy().into_owned();
    c.options = MessageField::some(any);
    task.create(ctx(), &c).context("Create")?;
    let mut s = api::StartRequest::new();
    s.id = id.clone();
    task.start(ctx(), &s).context("Start")?;
    let mut w = api::WaitRequest::new();
    w.id = id.clone();
    let status = task.wait(ctx(), &w).context("Wait")?.exit_status;
    anyhow::ensure!(status == 0, "exit status {status}");
    let mut d = api::DeleteRequest::new();
    d.id = id.clone();
    task.delete(ctx(), &d).context("Delete")?;
    let mut sh = api::ShutdownRequest::new();
    sh.id = id;
    // The shim exits while answering; a closed connection is the expected end.
    let _ = task.shutdown(ctx(), &sh);
    Ok(())
}

/// A path removed when dropped.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Answers every ttrpc request with an empty success (events are not looked at).
fn serve_events(l: UnixListener) {
    for conn in l.incoming() {
        let Ok(mut s) = conn else { return };
        std::thread::spawn(move || loop {
            let mut h = [0u8; 10];
            if s.read_exact(&mut h).is_err() {
                return;
            }
            let len = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as usize;
            if len > 4 << 20 {
                return;
            }
            let mut body = vec![0u8; len];
            if s.read_exact(&mut body).is_err() {
                return;
            }
            let mut resp = h;
            resp[0..4].copy_from_slice(&0u32.to_be_bytes());
            resp[8] = 2;
            resp[9] = 0;
            if s.write_all(&resp).is_err() {
                return;
            }
        });
    }
}
