//! Driving a container's shim (`containerd-shim-kos-v2`) over the shim v2
//! task API, exactly as containerd does: `start` to launch it, then ttrpc.

use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_shim_protos::api;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::{CodedOutputStream, MessageField};
use containerd_shim_protos::shim_async::{Client, TaskClient};
use containerd_shim_protos::ttrpc::context;

use crate::error::{ApiError, Result};

pub const SHIM_BINARY: &str = "containerd-shim-kos-v2";
pub const NAMESPACE: &str = "kos";
/// Ordinary calls; Wait has no deadline.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

/// The shim binary: beside kosd's own executable, else from PATH.
pub fn shim_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join(SHIM_BINARY)))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(SHIM_BINARY))
}

fn rpc_err(step: &str, e: containerd_shim_protos::ttrpc::Error) -> ApiError {
    use containerd_shim_protos::ttrpc::{Code, Error as E};
    match &e {
        E::RpcStatus(s) => {
            let msg = format!("{step}: {}", s.message());
            match s.code() {
                Code::NOT_FOUND => ApiError::NotFound(msg),
                Code::ALREADY_EXISTS | Code::FAILED_PRECONDITION => ApiError::Conflict(msg),
                Code::INVALID_ARGUMENT => ApiError::BadRequest(msg),
                _ => ApiError::Internal(msg),
            }
        }
        _ => ApiError::internal(step, e),
    }
}

fn ctx() -> context::Context {
    context::with_timeout(CALL_TIMEOUT.as_nanos() as i64)
}

/// containerd's runc `Options` message: BinaryName (6) and Root (7).
pub fn runtime_options(binary: &str, root: &Path) -> Result<Any> {
    let mut buf = Vec::new();
    {
        let mut os = CodedOutputStream::vec(&mut buf);
        os.write_string(6, binary)
            .and_then(|_| os.write_string(7, &root.to_string_lossy()))
            .and_then(|_| os.flush())
            .map_err(|e| ApiError::internal("encoding runtime options", e))?;
    }
    let mut any = Any::new();
    any.type_url = "containerd.runc.v1.Options".into();
    any.value = buf;
    Ok(any)
}

/// Standard streams of a task.
#[derive(Debug, Default, Clone)]
pub struct Stdio {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

#[derive(Clone)]
pub struct Shim {
    task: TaskClient,
}

impl Shim {
    /// Runs `containerd-shim-kos-v2 ... start` in the bundle and connects to the
    /// address it prints.
    pub async fn launch(id: &str, bundle: &Path, socket_dir: &Path) -> Result<(Shim, String)> {
        std::fs::create_dir_all(socket_dir)
            .map_err(|e| ApiError::internal(&format!("creating {}", socket_dir.display()), e))?;
        let self_exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("kosd"));
        let out = tokio::process::Command::new(shim_binary())
            .args(["-namespace", NAMESPACE, "-address"])
            .arg(socket_dir)
            .arg("-publish-binary")
            .arg(&self_exe)
            .args(["-id", id, "start"])
            .current_dir(bundle)
            .env("TTRPC_ADDRESS", socket_dir.join("events.sock"))
            .stdin(std::process::Stdio::null())
            .kill_on_drop(false)
            .output()
            .await
            .map_err(|e| ApiError::internal(&format!("running {SHIM_BINARY}"), e))?;
        if !out.status.success() {
            return Err(ApiError::Internal(format!(
                "{SHIM_BINARY} start: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let addr = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if !addr.starts_with("unix://") || addr.len() > 4096 {
            return Err(ApiError::Internal(format!(
                "{SHIM_BINARY} start printed no socket address: {addr:?}"
            )));
        }
        Ok((Shim::connect(&addr).await?, addr))
    }

    pub async fn connect(addr: &str) -> Result<Shim> {
        let c = Client::connect(addr)
            .await
            .map_err(|e| ApiError::internal(&format!("connecting to shim {addr}"), e))?;
        Ok(Shim {
            task: TaskClient::new(c),
        })
    }

    pub async fn create(&self, id: &str, bundle: &Path, io: &Stdio, options: Any) -> Result<u32> {
        let req = api::CreateTaskRequest {
            id: id.into(),
            bundle: bundle.to_string_lossy().into_owned(),
            stdin: io.stdin.clone(),
            stdout: io.stdout.clone(),
            stderr: io.stderr.clone(),
            terminal: io.terminal,
            options: MessageField::some(options),
            ..Default::default()
        };
        let r = self
            .task
            .create(ctx(), &req)
            .await
            .map_err(|e| rpc_err("create", e))?;
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
            .map_err(|e| rpc_err("start", e))?;
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
            .map_err(|e| rpc_err("wait", e))?;
        let at = r
            .exited_at
            .as_ref()
            .map(|t| t.seconds * 1_000_000_000 + t.nanos as i64)
            .unwrap_or_else(crate::timefmt::now_nanos);
        Ok((r.exit_status, at))
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
            .map_err(|e| rpc_err("kill", e))?;
        Ok(())
    }

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
            .map_err(|e| rpc_err("delete", e))?;
        Ok(r.exit_status)
    }

    pub async fn state(&self, id: &str, exec_id: &str) -> Result<api::StateResponse> {
        let req = api::StateRequest {
            id: id.into(),
            exec_id: exec_id.into(),
            ..Default::default()
        };
        self.task
            .state(ctx(), &req)
            .await
            .map_err(|e| rpc_err("state", e))
    }

    pub async fn pause(&self, id: &str) -> Result<()> {
        let req = api::PauseRequest {
            id: id.into(),
            ..Default::default()
        };
        self.task
            .pause(ctx(), &req)
            .await
            .map_err(|e| rpc_err("pause", e))?;
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
            .map_err(|e| rpc_err("resume", e))?;
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
            .map_err(|e| rpc_err("pids", e))?;
        Ok(r.processes.iter().map(|p| p.pid).collect())
    }

    /// Adds an exec process; `process` is the OCI process JSON.
    pub async fn exec(
        &self,
        id: &str,
        exec_id: &str,
        process: &serde_json::Value,
        io: &Stdio,
    ) -> Result<()> {
        let mut spec = Any::new();
        spec.type_url = "types.containerd.io/opencontainers/runtime-spec/1/Process".into();
        spec.value = serde_json::to_vec(process)
            .map_err(|e| ApiError::internal("encoding exec process", e))?;
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
            .map_err(|e| rpc_err("exec", e))?;
        Ok(())
    }

    pub async fn resize(&self, id: &str, exec_id: &str, width: u32, height: u32) -> Result<()> {
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
            .map_err(|e| rpc_err("resize", e))?;
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
            .map_err(|e| rpc_err("close io", e))?;
        Ok(())
    }

    /// Applies new `linux.resources` to a running task.
    pub async fn update(&self, id: &str, resources: &serde_json::Value) -> Result<()> {
        let mut any = Any::new();
        any.type_url = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources".into();
        any.value = serde_json::to_vec(resources)
            .map_err(|e| ApiError::internal("encoding resources", e))?;
        let req = api::UpdateTaskRequest {
            id: id.into(),
            resources: MessageField::some(any),
            ..Default::default()
        };
        self.task
            .update(ctx(), &req)
            .await
            .map_err(|e| rpc_err("update", e))?;
        Ok(())
    }

    /// Asks the shim to exit (once its last task is deleted).
    pub async fn shutdown(&self, id: &str) -> Result<()> {
        let req = api::ShutdownRequest {
            id: id.into(),
            now: false,
            ..Default::default()
        };
        // The shim closes the connection as it exits; that is success.
        let _ = self.task.shutdown(ctx(), &req).await;
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn options_encoding() {
        let a = runtime_options("kosrun", Path::new("/run/kos/runtime")).unwrap();
        assert_eq!(a.type_url, "containerd.runc.v1.Options");
        // tag 50 (field 6, length-delimited), len 6, "kosrun"
        assert_eq!(&a.value[..8], b"\x32\x06kosrun");
        assert_eq!(a.value[8], 58);
    }
}
