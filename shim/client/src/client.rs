//! Typed calls of the task API v2 over ttrpc.

use std::time::Duration;

use containerd_shim_protos::api;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::shim_async::{Client, TaskClient};
use containerd_shim_protos::ttrpc::context::{self, Context};
use containerd_shim_protos::ttrpc::r#async::transport::Socket;

use crate::error::{Error, Result};

/// Deadline of ordinary calls; Wait has none.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

fn ctx() -> Context {
    context::with_timeout(CALL_TIMEOUT.as_nanos() as i64)
}

/// Standard streams of a task or exec process, as URIs or fifo paths (see the shim's
/// README: `cri-log:///path`, `json-file:///path`, fifos, `file://`, `binary://`).
#[derive(Debug, Clone, Default)]
pub struct Stdio {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// A process's status as the shim reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcessState {
    Unknown,
    Created,
    Running,
    Stopped,
    Paused,
    Pausing,
}

/// State of a task or exec process.
#[derive(Debug, Clone)]
pub struct TaskState {
    pub pid: u32,
    pub status: ProcessState,
    pub exit_status: u32,
    /// Unix nanoseconds; 0 while running.
    pub exited_at: i64,
}

/// Cgroup figures (containerd's `io.containerd.cgroups.v1|v2.Metrics`, still encoded:
/// the caller decodes the version it expects).
#[derive(Debug, Clone)]
pub struct Metrics {
    pub type_url: String,
    pub value: Vec<u8>,
}

/// A connection to one shim.
#[derive(Clone)]
pub struct ShimClient {
    task: TaskClient,
    /// The same connection, for the shim's own `kos.shim.v1.Logs` service.
    raw: Client,
}

fn ts_nanos(
    t: &MessageField<containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp>,
) -> i64 {
    t.as_ref()
        .map(|t| t.seconds.saturating_mul(1_000_000_000) + i64::from(t.nanos))
        .unwrap_or(0)
}

fn json_any(type_url: &str, v: &serde_json::Value, step: &'static str) -> Result<Any> {
    let mut any = Any::new();
    any.type_url = type_url.into();
    any.value = serde_json::to_vec(v).map_err(|e| Error::Encode {
        step,
        message: e.to_string(),
    })?;
    Ok(any)
}

/// A connected stream to `unix://PATH`, `unix://@NAME` (abstract), or a plain path.
fn connect_unix(address: &str) -> Result<tokio::net::UnixStream> {
    let at = address.strip_prefix("unix://").unwrap_or(address);
    let err = |e: std::io::Error| Error::Connect {
        address: address.to_string(),
        source: e,
    };
    let addr = match at.strip_prefix('@') {
        Some(name) => {
            use std::os::linux::net::SocketAddrExt;
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
        }
        None => std::os::unix::net::SocketAddr::from_pathname(at),
    }
    .map_err(err)?;
    // A unix socket's connect does not wait on the peer's accept.
    let s = std::os::unix::net::UnixStream::connect_addr(&addr).map_err(err)?;
    s.set_nonblocking(true).map_err(err)?;
    tokio::net::UnixStream::from_std(s).map_err(err)
}

impl ShimClient {
    /// Connects to a shim's `unix://` address (or a plain socket path).
    pub async fn connect(address: &str) -> Result<ShimClient> {
        let c = Client::new(Socket::new(tokio::io::BufReader::new(
            crate::frame_io::WholeFrames::new(connect_unix(address)?),
        )));
        Ok(ShimClient {
            task: TaskClient::new(c.clone()),
            raw: c,
        })
    }

    /// Creates the task from the bundle; returns the init pid.
    pub async fn create(
        &self,
        id: &str,
        bundle: &str,
        io: &Stdio,
        options: Option<Any>,
    ) -> Result<u32> {
        let req = api::CreateTaskRequest {
            id: id.into(),
            bundle: bundle.into(),
            stdin: io.stdin.clone(),
            stdout: io.stdout.clone(),
            stderr: io.stderr.clone(),
            terminal: io.terminal,
            options: options.into(),
            ..Default::default()
        };
        let r = self
            .task
            .create(ctx(), &req)
            .await
            .map_err(|e| Error::rpc("create", e))?;
        Ok(r.pid)
    }

    pub async fn start(&self, id: &str, exec_id: &str) -> Result<u32> {
        let req = api::StartRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        let r = self
            .task
            .start(ctx(), &req)
            .await
            .map_err(|e| Error::rpc("start", e))?;
        Ok(r.pid)
    }

    /// Blocks until the process exits; returns (exit status, exited at in unix nanos).
    pub async fn wait(&self, id: &str, exec_id: &str) -> Result<(u32, i64)> {
        let req = api::WaitRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        let r = self
            .task
            .wait(context::with_timeout(0), &req)
            .await
            .map_err(|e| Error::rpc("wait", e))?;
        Ok((r.exit_status, ts_nanos(&r.exited_at)))
    }

    pub async fn state(&self, id: &str, exec_id: &str) -> Result<TaskState> {
        let req = api::StateRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        let r = self
            .task
            .state(ctx(), &req)
            .await
            .map_err(|e| Error::rpc("state", e))?;
        use containerd_shim_protos::types::task::Status as S;
        let status = match r.status.enum_value_or_default() {
            S::CREATED => ProcessState::Created,
            S::RUNNING => ProcessState::Running,
            S::STOPPED => ProcessState::Stopped,
            S::PAUSED => ProcessState::Paused,
            S::PAUSING => ProcessState::Pausing,
            S::UNKNOWN => ProcessState::Unknown,
        };
        Ok(TaskState {
            pid: r.pid,
            status,
            exit_status: r.exit_status,
            exited_at: ts_nanos(&r.exited_at),
        })
    }

    pub async fn kill(&self, id: &str, exec_id: &str, signal: u32, all: bool) -> Result<()> {
        let req = api::KillRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            signal,
            all,
            ..Default::default()
        };
        self.task
            .kill(ctx(), &req)
            .await
            .map_err(|e| Error::rpc("kill", e))?;
        Ok(())
    }

    /// Deletes a stopped task or exec process; returns its exit status.
    pub async fn delete(&self, id: &str, exec_id: &str) -> Result<u32> {
        let req = api::DeleteRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        let r = self
            .task
            .delete(ctx(), &req)
            .await
            .map_err(|e| Error::rpc("delete", e))?;
        Ok(r.exit_status)
    }

    /// Adds an exec process; `process` is the OCI runtime-spec Process as JSON.
    pub async fn exec(
        &self,
        id: &str,
        exec_id: &str,
        process: &serde_json::Value,
        io: &Stdio,
    ) -> Result<()> {
        let spec = json_any(
            "types.containerd.io/opencontainers/runtime-spec/1/Process",
            process,
            "encoding exec process",
        )?;
        let req = api::ExecProcessRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            terminal: io.terminal,
            stdin: io.stdin.clone(),
            stdout: io.stdout.clone(),
            stderr: io.stderr.clone(),
            spec: MessageField::some(spec),
            ..Default::default()
        };
        self.task
            .exec(ctx(), &req)
            .await
            .map_err(|e| Error::rpc("exec", e))?;
        Ok(())
    }

    pub async fn resize_pty(&self, id: &str, exec_id: &str, width: u32, height: u32) -> Result<()> {
        let req = api::ResizePtyRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            width,
            height,
            ..Default::default()
        };
        self.task
            .resize_pty(ctx(), &req)
            .await
            .map_err(|e| Error::rpc("resize pty", e))?;
        Ok(())
    }

    pub async fn close_stdin(&self, id: &str, exec_id: &str) -> Result<()> {
        let req = api::CloseIORequest {
            id: id.into(),
            exec_id: exec_id.into(),
            stdin: true,
            ..Default::default()
        };
        self.task
            .close_io(ctx(), &req)
            .await
            .map_err(|e| Error::rpc("close io", e))?;
        Ok(())
    }

    /// Applies new `linux.resources` (OCI LinuxResources as JSON) to the running task.
    pub async fn update(&self, id: &str, resources: &serde_json::Value) -> Result<()> {
        let any = json_any(
            "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources",
            resources,
            "encoding resources",
        )?;
        let req = api::UpdateTaskRequest {
            id: id.into(),
            resources: MessageField::some(any),
            ..Default::default()
        };
        self.task
            .update(ctx(), &req)
            .await
            .map_err(|e| Error::rpc("update", e))?;
        Ok(())
    }

    pub async fn pids(&self, id: &str) -> Result<Vec<u32>> {
        let req = api::PidsRequest {
            id: id.into(),
            ..Default::default()
        };
        let r = self
            .task
            .pids(ctx(), &req)
            .await
            .map_err(|e| Error::rpc("pids", e))?;
        Ok(r.processes.iter().map(|p| p.pid).collect())
    }

    pub async fn stats(&self, id: &str) -> Result<Metrics> {
        let req = api::StatsRequest {
            id: id.into(),
            ..Default::default()
        };
        let r = self
            .task
            .stats(ctx(), &req)
            .await
            .map_err(|e| Error::rpc("stats", e))?;
        let m = r.stats.into_option().unwrap_or_default();
        Ok(Metrics {
            type_url: m.type_url,
            value: m.value,
        })
    }

    pub async fn pause(&self, id: &str) -> Result<()> {
        let req = api::PauseRequest {
            id: id.into(),
            ..Default::default()
        };
        self.task
            .pause(ctx(), &req)
            .await
            .map_err(|e| Error::rpc("pause", e))?;
        Ok(())
    }

    pub async fn resume(&self, id: &str) -> Result<()> {
        let req = api::ResumeRequest {
            id: id.into(),
            ..Default::default()
        };
        self.task
            .resume(ctx(), &req)
            .await
            .map_err(|e| Error::rpc("resume", e))?;
        Ok(())
    }

    /// Makes the shim open the task's `cri-log://` / `json-file://` log file again at its
    /// path (after the caller renamed it, as kubelet rotates); returns once the new file is
    /// there. The shim's own `kos.shim.v1.Logs/Reopen`, its request encoded as a
    /// `StateRequest` (id, empty exec id). NotFound for an unknown task, FailedPrecondition
    /// when its output goes to no log file.
    pub async fn reopen_log(&self, id: &str) -> Result<()> {
        use containerd_shim_protos::protobuf::Message;
        let req = api::StateRequest {
            id: id.into(),
            ..Default::default()
        };
        let payload = req.write_to_bytes().map_err(|e| Error::Encode {
            step: "encoding reopen log",
            message: e.to_string(),
        })?;
        let creq = containerd_shim_protos::ttrpc::Request {
            service: "kos.shim.v1.Logs".into(),
            method: "Reopen".into(),
            timeout_nano: CALL_TIMEOUT.as_nanos() as i64,
            payload,
            ..Default::default()
        };
        self.raw
            .request(creq)
            .await
            .map_err(|e| Error::rpc("reopen log", e))?;
        Ok(())
    }

    /// The shim's own pid (Connect).
    pub async fn shim_pid(&self, id: &str) -> Result<u32> {
        let req = api::ConnectRequest {
            id: id.into(),
            ..Default::default()
        };
        let r = self
            .task
            .connect(ctx(), &req)
            .await
            .map_err(|e| Error::rpc("connect", e))?;
        Ok(r.shim_pid)
    }

    /// Asks the shim to exit once its tasks are deleted. The shim closes the connection as
    /// it goes, which is success here.
    pub async fn shutdown(&self, id: &str) -> Result<()> {
        let req = api::ShutdownRequest {
            id: id.into(),
            now: false,
            ..Default::default()
        };
        match self.task.shutdown(ctx(), &req).await {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = Error::rpc("shutdown", e);
                if e.kind() == crate::ErrorKind::Unavailable {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn no_socket_is_unavailable_and_names_the_address() {
        let dir = std::env::temp_dir().join(format!("kos-shim-client-{}", std::process::id()));
        let addr = format!("unix://{}/none.sock", dir.display());
        let e = match ShimClient::connect(&addr).await {
            Ok(_) => panic!("connected to nothing"),
            Err(e) => e,
        };
        assert_eq!(e.kind(), crate::ErrorKind::Unavailable, "{e}");
        assert!(e.to_string().contains("none.sock"), "{e}");
    }

    /// `unix://@name` is an abstract socket, as containerd's shims may listen on.
    #[tokio::test]
    async fn connects_to_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("kos-shim-client-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
            .expect("abstract name");
        let listener = std::os::unix::net::UnixListener::bind_addr(&addr).expect("bind");
        ShimClient::connect(&format!("unix://@{name}"))
            .await
            .expect("connect");
        let (_conn, _) = listener.accept().expect("accepted");
    }
}
