//! `docker exec`: extra processes in a running container through the shim,
//! with fifos for their standard streams.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kos_image::config_to_spec::{self, Overrides};
use serde::{Deserialize, Serialize};
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::watch;

use super::record::Status;
use super::runtime::find;
use crate::engine::Engine;
use crate::error::{ApiError, Result};
use kos_shim_client::Stdio;

/// The body of `POST /containers/{id}/exec`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ExecConfig {
    #[serde(default)]
    pub attach_stdin: bool,
    #[serde(default)]
    pub attach_stdout: bool,
    #[serde(default)]
    pub attach_stderr: bool,
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Vec<String>,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub working_dir: String,
    #[serde(default)]
    pub detach_keys: String,
    #[serde(default)]
    pub console_size: Option<Vec<u32>>,
}

#[derive(Debug, Clone)]
pub struct ExecRecord {
    pub id: String,
    pub container_id: String,
    pub config: ExecConfig,
    pub running: bool,
    pub started: bool,
    pub exit_code: Option<i64>,
    pub pid: i64,
}

#[derive(Default)]
pub struct Execs {
    map: Mutex<HashMap<String, ExecRecord>>,
}

impl Execs {
    pub fn get(&self, id: &str) -> Result<ExecRecord> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
            .ok_or_else(|| ApiError::NotFound(format!("No such exec instance: {id}")))
    }
    fn put(&self, r: ExecRecord) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(r.id.clone(), r);
    }
    fn update(&self, id: &str, f: impl FnOnce(&mut ExecRecord)) {
        if let Some(r) = self
            .map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(id)
        {
            f(r);
        }
    }
    pub fn of_container(&self, cid: &str) -> Vec<String> {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|r| r.container_id == cid)
            .map(|r| r.id.clone())
            .collect()
    }
    pub fn forget_container(&self, cid: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|_, r| r.container_id != cid);
    }
}

pub fn create(e: &Engine, key: &str, cfg: ExecConfig) -> Result<String> {
    let c = find(e, key)?;
    if c.state.status != Status::Running {
        return Err(ApiError::Conflict(format!(
            "Container {} is not running",
            c.id
        )));
    }
    if cfg.cmd.is_empty() {
        return Err(ApiError::bad("No exec command specified"));
    }
    // As dockerd: bad detach keys are refused here, not when the exec starts.
    crate::api::hijack::detach_keys(&cfg.detach_keys)?;
    let id = crate::engine::random_id()?;
    e.execs.put(ExecRecord {
        id: id.clone(),
        container_id: c.id.clone(),
        config: cfg,
        running: false,
        started: false,
        exit_code: None,
        pid: 0,
    });
    e.event(
        "container",
        &format!("exec_create: {}", e.execs.get(&id)?.config.cmd.join(" ")),
        &c.id,
        &[("name", &c.name), ("image", &c.image), ("execID", &id)],
    );
    Ok(id)
}

/// The streams of a started exec, and its exit code when it ends.
pub struct Running {
    pub stdout: Option<pipe::Receiver>,
    pub stderr: Option<pipe::Receiver>,
    pub stdin: Option<pipe::Sender>,
    pub exit: watch::Receiver<Option<i64>>,
    pub tty: bool,
    pub container_id: String,
    pub exec_id: String,
    dir: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn process_json(e: &Engine, cid: &str, cfg: &ExecConfig) -> Result<serde_json::Value> {
    let c = find(e, cid)?;
    let spec_path = super::runtime::bundle_file(e, &c, "config.json");
    let spec: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&spec_path).map_err(|err| ApiError::internal("reading config.json", err))?,
    )
    .map_err(|err| ApiError::internal("parsing config.json", err))?;
    let mut p = spec["process"].clone();
    let img = e.store.image(&super::image_use::store_name(&e.store, &c))?;
    let mut env: Vec<String> = p["env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    for o in cfg.env.clone().unwrap_or_default() {
        let k = o.split('=').next().unwrap_or(&o).to_string();
        env.retain(|x| x.split('=').next() != Some(k.as_str()));
        env.push(o);
    }
    let user = if cfg.user.is_empty() {
        c.config.user.clone().filter(|u| !u.is_empty())
    } else {
        Some(cfg.user.clone())
    };
    let rc = config_to_spec::runtime_config(
        &img.config,
        &c.dir.join("rootfs"),
        &Overrides {
            entrypoint: Some(cfg.cmd.clone()),
            cmd: Some(Vec::new()),
            env: env.clone(),
            user,
            working_dir: if cfg.working_dir.is_empty() {
                p["cwd"].as_str().map(str::to_string)
            } else {
                Some(cfg.working_dir.clone())
            },
        },
    )?;
    let rcj = rc.process_json();
    p["args"] = rcj["args"].clone();
    p["env"] = serde_json::json!(env);
    p["cwd"] = rcj["cwd"].clone();
    p["user"] = rcj["user"].clone();
    p["terminal"] = serde_json::json!(cfg.tty);
    if cfg.privileged {
        let all = super::spec::available_caps();
        p["capabilities"] =
            serde_json::json!({"bounding": all, "effective": all, "permitted": all});
    }
    if let Some(cs) = cfg.console_size.as_ref().filter(|c| c.len() == 2) {
        p["consoleSize"] = serde_json::json!({"height": cs[0], "width": cs[1]});
    }
    Ok(p)
}

/// Refuses an exec that cannot start (unknown, already started, container not running).
pub fn check_startable(e: &Engine, exec_id: &str) -> Result<()> {
    let rec = e.execs.get(exec_id)?;
    if rec.started {
        return Err(ApiError::Conflict(format!(
            "Exec {exec_id} has already been started"
        )));
    }
    let c = find(e, &rec.container_id)?;
    if c.state.status != Status::Running {
        return Err(ApiError::Conflict(format!(
            "Container {} is not running",
            c.id
        )));
    }
    Ok(())
}

/// Starts an exec; its streams are ready to read when this returns.
pub async fn start(e: &Arc<Engine>, exec_id: &str) -> Result<Running> {
    let rec = e.execs.get(exec_id)?;
    if rec.started {
        return Err(ApiError::Conflict(format!(
            "Exec {exec_id} has already been started"
        )));
    }
    let c = find(e, &rec.container_id)?;
    if c.state.status != Status::Running {
        return Err(ApiError::Conflict(format!(
            "Container {} is not running",
            c.id
        )));
    }
    let sh =
        e.rt.shim(&c.id)
            .ok_or_else(|| ApiError::Conflict(format!("Container {} is not running", c.id)))?;
    e.execs.update(exec_id, |r| r.started = true);
    let cfg = rec.config.clone();
    let process = process_json(e, &c.id, &cfg)?;
    let dir = e.config.exec_root.join("execs").join(exec_id);
    std::fs::create_dir_all(&dir).map_err(|err| ApiError::internal("creating exec dir", err))?;
    let mut running = Running {
        stdout: None,
        stderr: None,
        stdin: None,
        exit: watch::channel(None).1,
        tty: cfg.tty,
        container_id: c.id.clone(),
        exec_id: exec_id.to_string(),
        dir: dir.clone(),
    };
    let mk = |name: &str| -> Result<String> {
        let p = dir.join(name);
        super::fifo::make(&p)?;
        Ok(p.to_string_lossy().into_owned())
    };
    let io = Stdio {
        stdin: if cfg.attach_stdin {
            mk("stdin")?
        } else {
            String::new()
        },
        stdout: mk("stdout")?,
        stderr: if cfg.tty {
            String::new()
        } else {
            mk("stderr")?
        },
        terminal: cfg.tty,
    };
    let recv = |p: &str| {
        pipe::OpenOptions::new()
            .open_receiver(p)
            .map_err(|err| ApiError::internal("opening exec output fifo", err))
    };
    running.stdout = Some(recv(&io.stdout)?);
    if !io.stderr.is_empty() {
        running.stderr = Some(recv(&io.stderr)?);
    }
    let started = match sh.exec(&c.id, exec_id, &process, &io).await {
        Ok(()) => sh.start(&c.id, exec_id).await,
        Err(err) => Err(err),
    };
    let pid = match started {
        Ok(p) => p,
        Err(err) => {
            let _ = sh.delete(&c.id, exec_id).await;
            let msg = err.to_string();
            // As dockerd: exec inspect then reports 127 or 126, which the CLI exits with.
            e.execs
                .update(exec_id, |r| r.exit_code = Some(failed_start_code(&msg)));
            return Err(ApiError::Internal(format!(
                "OCI runtime exec failed: {msg}: unknown"
            )));
        }
    };
    if !io.stdin.is_empty() {
        // ENXIO: the shim has no reader any more, so the process already ended or closed its
        // stdin (a short `cat`): there is nothing left to feed.
        running.stdin = match pipe::OpenOptions::new().open_sender(&io.stdin) {
            Ok(tx) => Some(tx),
            Err(err) if err.raw_os_error() == Some(libc::ENXIO) => None,
            Err(err) => return Err(ApiError::internal("opening exec stdin fifo", err)),
        };
    }
    e.execs.update(exec_id, |r| {
        r.running = true;
        r.pid = pid as i64;
    });
    let (tx, rx) = watch::channel(None);
    running.exit = rx;
    let e2 = e.clone();
    let (cid, xid) = (c.id.clone(), exec_id.to_string());
    let (name, image) = (c.name.clone(), c.image.clone());
    tokio::spawn(async move {
        let code = sh.wait(&cid, &xid).await.map(|r| r.0 as i64).unwrap_or(255);
        let _ = sh.delete(&cid, &xid).await;
        e2.execs.update(&xid, |r| {
            r.running = false;
            r.exit_code = Some(code);
        });
        let cs = code.to_string();
        e2.event(
            "container",
            "exec_die",
            &cid,
            &[
                ("name", &name),
                ("image", &image),
                ("execID", &xid),
                ("exitCode", &cs),
            ],
        );
        let _ = tx.send(Some(code));
    });
    e.event(
        "container",
        &format!("exec_start: {}", cfg.cmd.join(" ")),
        &c.id,
        &[("name", &c.name), ("image", &c.image), ("execID", exec_id)],
    );
    Ok(running)
}

/// The exit code of an exec whose process never started: 127 when the command
/// does not exist, 126 when it exists but cannot run.
fn failed_start_code(msg: &str) -> i64 {
    let m = msg.to_ascii_lowercase();
    if m.contains("not found") || m.contains("no such file") {
        127
    } else {
        126
    }
}

/// Reads one of the exec's outputs until EOF or, once the process has exited,
/// until it stays quiet briefly (the shim may keep its end open).
pub async fn read_chunk(
    r: &mut pipe::Receiver,
    exit: &mut watch::Receiver<Option<i64>>,
    buf: &mut [u8],
) -> std::io::Result<usize> {
    loop {
        if exit.borrow().is_some() {
            return match tokio::time::timeout(Duration::from_millis(150), r.read(buf)).await {
                Ok(r) => r,
                Err(_) => Ok(0),
            };
        }
        tokio::select! {
            n = r.read(buf) => return n,
            _ = exit.changed() => continue,
        }
    }
}

/// Runs a command to completion and returns (exit code, combined output, bounded).
pub async fn run_captured(
    e: &Arc<Engine>,
    cid: &str,
    cmd: Vec<String>,
    timeout: Duration,
    limit: usize,
) -> Result<(i64, String)> {
    let id = create(
        e,
        cid,
        ExecConfig {
            attach_stdout: true,
            attach_stderr: true,
            cmd,
            ..Default::default()
        },
    )?;
    let mut r = start(e, &id).await?;
    let mut out = Vec::new();
    let mut exit = r.exit.clone();
    let fut = async {
        let mut buf = [0u8; 4096];
        let (mut so, mut se) = (r.stdout.take(), r.stderr.take());
        while so.is_some() || se.is_some() {
            if let Some(s) = so.as_mut() {
                let n = read_chunk(s, &mut exit, &mut buf).await.unwrap_or(0);
                if n == 0 {
                    so = None;
                } else if out.len() < limit {
                    out.extend_from_slice(&buf[..n.min(limit - out.len())]);
                }
            } else if let Some(s) = se.as_mut() {
                let n = read_chunk(s, &mut exit, &mut buf).await.unwrap_or(0);
                if n == 0 {
                    se = None;
                } else if out.len() < limit {
                    out.extend_from_slice(&buf[..n.min(limit - out.len())]);
                }
            }
        }
        let mut ex = r.exit.clone();
        loop {
            if let Some(c) = *ex.borrow() {
                return c;
            }
            if ex.changed().await.is_err() {
                return 255;
            }
        }
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(code) => Ok((code, String::from_utf8_lossy(&out).into_owned())),
        Err(_) => {
            if let Some(sh) = e.rt.shim(cid) {
                let _ = sh.kill(cid, &id, libc::SIGKILL as u32, false).await;
            }
            Err(ApiError::Internal("Health check exceeded timeout".into()))
        }
    }
}

pub fn inspect(e: &Engine, id: &str) -> Result<serde_json::Value> {
    let r = e.execs.get(id)?;
    Ok(serde_json::json!({
        "ID": r.id,
        "Running": r.running,
        "ExitCode": r.exit_code,
        "ProcessConfig": {
            "tty": r.config.tty,
            "entrypoint": r.config.cmd.first().cloned().unwrap_or_default(),
            "arguments": r.config.cmd.iter().skip(1).collect::<Vec<_>>(),
            "privileged": r.config.privileged,
            "user": r.config.user,
        },
        "OpenStdin": r.config.attach_stdin,
        "OpenStderr": r.config.attach_stderr,
        "OpenStdout": r.config.attach_stdout,
        "CanRemove": false,
        "ContainerID": r.container_id,
        "DetachKeys": r.config.detach_keys,
        "Pid": r.pid,
    }))
}

#[cfg(test)]
mod tests {
    use super::failed_start_code;

    #[test]
    fn failed_start_codes_match_dockerd() {
        assert_eq!(
            failed_start_code("exec: \"nosuch\": executable file not found in $PATH"),
            127
        );
        assert_eq!(failed_start_code("/x: No such file or directory"), 127);
        assert_eq!(failed_start_code("/tmp/plain: permission denied"), 126);
    }
}
