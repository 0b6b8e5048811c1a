//! Containers through the kos shim: bundle (overlay rootfs + config.json), one shim per
//! container launched as containerd does, exit watching, exec, stats.

pub mod fifo;
pub mod spec;
pub mod stats;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use k8s_cri::v1 as cri;
use kos_image::RootfsStrategy;
use kos_shim_client::{ErrorKind, RuntimeOptions, Stdio};
use tracing::{info, warn};

use crate::core::{new_id, now_nanos, Core};
use crate::error::{Error, Result};
use crate::images::blocking;
use crate::sandbox::userns;
use crate::state::{ContainerRecord, ContainerState, SandboxState};

/// Largest ExecSync output kept per stream (kubelet's own limit).
const MAX_EXEC_OUTPUT: u64 = 16 * 1024 * 1024;

fn container_key(c: &cri::ContainerConfig) -> (String, u32) {
    let m = c.metadata.clone().unwrap_or_default();
    (m.name, m.attempt)
}

fn runtime_options(core: &Core) -> Result<RuntimeOptions> {
    Ok(RuntimeOptions {
        binary_name: core.config.runtime_binary.clone(),
        root: core
            .config
            .exec_root
            .join("runtime")
            .to_string_lossy()
            .into_owned(),
        systemd_cgroup: false,
    })
}

/// Whether the container's memory cgroup saw an OOM kill (v1 oom_control or v2 events).
fn oom_killed(cgroups_path: &str) -> bool {
    let rel = cgroups_path.trim_start_matches('/');
    let v1 = Path::new("/sys/fs/cgroup/memory")
        .join(rel)
        .join("memory.oom_control");
    let v2 = Path::new("/sys/fs/cgroup").join(rel).join("memory.events");
    for (p, key) in [(v1, "oom_kill"), (v2, "oom_kill")] {
        if let Ok(s) = std::fs::read_to_string(&p) {
            for l in s.lines() {
                if let Some(v) = l.strip_prefix(key).map(str::trim) {
                    if v.parse::<u64>().unwrap_or(0) > 0 {
                        return true;
                    }
                }
            }
        }
    }
    false
}

fn event(rec: &ContainerRecord, kind: cri::ContainerEventType) -> cri::ContainerEventResponse {
    cri::ContainerEventResponse {
        container_id: rec.id.clone(),
        container_event_type: kind as i32,
        created_at: now_nanos(),
        pod_sandbox_status: None,
        containers_statuses: vec![status(rec)],
    }
}

pub fn status(rec: &ContainerRecord) -> cri::ContainerStatus {
    cri::ContainerStatus {
        id: rec.id.clone(),
        metadata: rec.config.metadata.clone(),
        state: state_value(rec.state) as i32,
        created_at: rec.created_at,
        started_at: rec.started_at,
        finished_at: rec.finished_at,
        exit_code: rec.exit_code,
        image: rec.config.image.clone(),
        image_ref: rec.image_id.clone(),
        image_id: rec.image_id.clone(),
        reason: rec.reason.clone(),
        message: rec.message.clone(),
        labels: rec.config.labels.clone(),
        annotations: rec.config.annotations.clone(),
        mounts: rec.config.mounts.clone(),
        log_path: rec.log_path.clone(),
        resources: rec
            .config
            .linux
            .as_ref()
            .and_then(|l| l.resources.clone())
            .map(|r| cri::ContainerResources {
                linux: Some(r),
                windows: None,
            }),
        user: None,
    }
}

pub fn state_value(s: ContainerState) -> cri::ContainerState {
    match s {
        ContainerState::Created => cri::ContainerState::ContainerCreated,
        ContainerState::Running => cri::ContainerState::ContainerRunning,
        ContainerState::Exited => cri::ContainerState::ContainerExited,
        ContainerState::Unknown => cri::ContainerState::ContainerUnknown,
    }
}

/// Records an exit once (the watcher and StopContainer may both see it).
fn record_exit(core: &Core, id: &str, code: u32, at: i64) -> Result<Option<ContainerRecord>> {
    let mut first = false;
    let rec = core.update_container(id, |r| {
        if r.state == ContainerState::Exited {
            return;
        }
        first = true;
        r.state = ContainerState::Exited;
        r.exit_code = code as i32;
        r.finished_at = if at > 0 { at } else { now_nanos() };
        r.reason = if oom_killed(&r.cgroups_path) {
            "OOMKilled".into()
        } else if code == 0 {
            "Completed".into()
        } else {
            "Error".into()
        };
    })?;
    Ok(first.then_some(rec))
}

/// Watches a running container until it exits, then records and announces the exit.
pub fn watch(core: Arc<Core>, rec: ContainerRecord) {
    tokio::spawn(async move {
        let shim = match core.shim(&rec).await {
            Ok(s) => s,
            Err(e) => {
                warn!(id = %rec.id, error = %e, "shim unreachable; the container's state is unknown");
                let _ = core.update_container(&rec.id, |r| {
                    if r.state == ContainerState::Running {
                        r.state = ContainerState::Exited;
                        r.exit_code = 255;
                        r.reason = "Unknown".into();
                        r.message = "the container's shim is gone".into();
                        r.finished_at = now_nanos();
                    }
                });
                return;
            }
        };
        match shim.wait(&rec.id, "").await {
            Ok((code, at)) => {
                if let Ok(Some(r)) = record_exit(&core, &rec.id, code, at) {
                    info!(id = %r.id, code, reason = %r.reason, "container exited");
                    core.emit(event(&r, cri::ContainerEventType::ContainerStoppedEvent));
                }
            }
            Err(e) => warn!(id = %rec.id, error = %e, "waiting for the container failed"),
        }
    });
}

impl Core {
    pub async fn create_container(
        self: &Arc<Self>,
        sandbox_id: &str,
        config: cri::ContainerConfig,
    ) -> Result<String> {
        let sb = self.sandbox(sandbox_id)?;
        if sb.state != SandboxState::Ready {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {} is not ready",
                sb.id
            )));
        }
        let (name, attempt) = container_key(&config);
        if name.is_empty() {
            return Err(Error::InvalidArgument(
                "container metadata name is missing".into(),
            ));
        }
        let image = config
            .image
            .as_ref()
            .map(|i| i.image.clone())
            .unwrap_or_default();
        let reservation = format!("container:{}:{name}:{attempt}", sb.id);
        {
            let mut g = self.inner();
            if let Some(c) = g.containers.values().find(|c| {
                c.sandbox_id == sb.id && container_key(&c.config) == (name.clone(), attempt)
            }) {
                return Err(Error::AlreadyExists(format!(
                    "container {name} attempt {attempt} already exists in pod {} as {}",
                    sb.id, c.id
                )));
            }
            if !g.reserved.insert(reservation.clone()) {
                return Err(Error::AlreadyExists(format!(
                    "container {name} attempt {attempt} is being made"
                )));
            }
        }
        let r = self.make_container(&sb, config, &image).await;
        self.inner().reserved.remove(&reservation);
        r
    }

    async fn make_container(
        self: &Arc<Self>,
        sb: &crate::state::SandboxRecord,
        config: cri::ContainerConfig,
        image: &str,
    ) -> Result<String> {
        let rec_img = self
            .images
            .resolve(image)?
            .ok_or_else(|| Error::NotFound(format!("image {image:?} not found")))?;
        let id = new_id()?;
        let bundle = self.config.exec_root.join("containers").join(&id);
        let cgroups_path = format!("{}/{id}", sb.cgroup_parent.trim_end_matches('/'));
        let log_path = if config.log_path.is_empty() || sb.config.log_directory.is_empty() {
            String::new()
        } else {
            Path::new(&sb.config.log_directory)
                .join(&config.log_path)
                .to_string_lossy()
                .into_owned()
        };
        // Bundle, rootfs and spec (blocking work).
        let core = self.clone();
        let (b, sbc, cfg, name, cg, lp) = (
            bundle.clone(),
            sb.clone(),
            config.clone(),
            rec_img.name.clone(),
            cgroups_path.clone(),
            log_path.clone(),
        );
        let cid = id.clone();
        let stop_signal = blocking(move || {
            std::fs::create_dir_all(&b).map_err(|e| Error::io("creating", &b, e))?;
            let made = (|| {
                // CDI devices resolve (names, specs, host nodes) before anything is made.
                let names = spec::cdi_names(&cfg);
                let cdi = if names.is_empty() {
                    None
                } else {
                    Some(
                        kadcm::cdi::resolve(&names, &core.config.cdi_spec_dirs).map_err(|e| {
                            Error::Cdi {
                                step: format!("CDI devices {names:?}"),
                                source: e,
                            }
                        })?,
                    )
                };
                let rootfs = core
                    .images
                    .store
                    .prepare_rootfs(&name, &cid, &b, RootfsStrategy::Auto)
                    .map_err(|e| Error::image("preparing the container's rootfs", e))?;
                // A pod with its own user namespace runs on an idmapped mount of the rootfs
                // (beside it in the bundle) or, where the filesystem refuses, on the
                // rootfs with its owners shifted into the pod's ranges.
                let root_path = match &sbc.userns {
                    Some(u) => {
                        let t = b.join(IDMAPPED_ROOTFS);
                        match userns::pod_ranges(&sbc.config).and_then(|(ur, gr)| {
                            userns::rootfs_for_pod(&rootfs.path, &t, u, ur, gr)
                        }) {
                            Ok(p) => p,
                            Err(e) => {
                                userns::remove_idmapped_rootfs(&t);
                                let _ = core.images.store.release_rootfs(&rootfs);
                                return Err(e);
                            }
                        }
                    }
                    None => rootfs.path.clone(),
                };
                let image = core
                    .images
                    .store
                    .image(&name)
                    .map_err(|e| Error::image("reading the image", e))?;
                let built = spec::build(&spec::SpecInput {
                    id: &cid,
                    config: &cfg,
                    sandbox: &sbc,
                    image: &image,
                    rootfs: &root_path,
                    cgroups_path: &cg,
                });
                let built = built.and_then(|(mut spec, sig)| {
                    if let Some(edits) = &cdi {
                        kadcm::cdi::json::apply(&mut spec, edits).map_err(|e| Error::Cdi {
                            step: "applying CDI device edits".into(),
                            source: e,
                        })?;
                    }
                    Ok((spec, sig))
                });
                let (spec, sig) = match built {
                    Ok(x) => x,
                    Err(e) => {
                        userns::remove_idmapped_rootfs(&b.join(IDMAPPED_ROOTFS));
                        let _ = core.images.store.release_rootfs(&rootfs);
                        return Err(e);
                    }
                };
                let p = b.join("config.json");
                std::fs::write(&p, serde_json::to_vec(&spec).unwrap_or_default())
                    .map_err(|e| Error::io("writing", &p, e))?;
                if !lp.is_empty() {
                    if let Some(dir) = Path::new(&lp).parent() {
                        std::fs::create_dir_all(dir).map_err(|e| Error::io("creating", dir, e))?;
                    }
                }
                Ok(sig)
            })();
            if made.is_err() {
                release_bundle(&core, &cid, &b);
            }
            made
        })
        .await?;

        let undo_bundle = |core: &Arc<Core>| {
            let (c, i, b) = (core.clone(), id.clone(), bundle.clone());
            async move {
                let _ = blocking(move || {
                    release_bundle(&c, &i, &b);
                    Ok(())
                })
                .await;
            }
        };
        let launched = match self.launch.launch(&id, &bundle).await {
            Ok(l) => l,
            Err(e) => {
                undo_bundle(self).await;
                return Err(Error::shim("starting the container's shim", e));
            }
        };
        // An attachable stdin: a fifo the shim reads, written by Attach sessions.
        let stdin_fifo = bundle.join("stdin");
        if config.stdin {
            if let Err(e) = fifo::make(&stdin_fifo) {
                let _ = launched.client.shutdown(&id).await;
                let _ = self.launch.cleanup(&id, &bundle).await;
                undo_bundle(self).await;
                return Err(e);
            }
        }
        let io = Stdio {
            stdin: if config.stdin {
                stdin_fifo.to_string_lossy().into_owned()
            } else {
                String::new()
            },
            stdout: if log_path.is_empty() {
                String::new()
            } else {
                format!("cri-log://{log_path}")
            },
            stderr: if log_path.is_empty() {
                String::new()
            } else {
                format!("cri-log://{log_path}")
            },
            terminal: config.tty,
        };
        let opts = runtime_options(self)?
            .to_any()
            .map_err(|e| Error::shim("runtime options", e))?;
        let pid = match launched
            .client
            .create(&id, &bundle.to_string_lossy(), &io, Some(opts))
            .await
        {
            Ok(p) => p,
            Err(e) => {
                let _ = launched.client.shutdown(&id).await;
                let _ = self.launch.cleanup(&id, &bundle).await;
                undo_bundle(self).await;
                let msg = e.to_string();
                return Err(if e.kind() == ErrorKind::InvalidArgument {
                    Error::InvalidArgument(msg)
                } else {
                    Error::shim("creating the container", e)
                });
            }
        };
        self.remember_shim(&id, launched.client.clone());
        self.keep_stdin_open(&id, &config, &bundle);
        let rec = ContainerRecord {
            id: id.clone(),
            sandbox_id: sb.id.clone(),
            config,
            image_id: rec_img.config.to_string(),
            image_name: rec_img.name.clone(),
            state: ContainerState::Created,
            created_at: now_nanos(),
            started_at: 0,
            finished_at: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            bundle,
            shim_address: launched.address,
            pid,
            log_path,
            cgroups_path,
            stop_signal,
        };
        self.save_container(rec.clone())?;
        self.emit(event(&rec, cri::ContainerEventType::ContainerCreatedEvent));
        Ok(id)
    }

    pub async fn start_container(self: &Arc<Self>, id: &str) -> Result<()> {
        let rec = self.container(id)?;
        if rec.state != ContainerState::Created {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not in the created state",
                rec.id
            )));
        }
        let sb = self.sandbox(&rec.sandbox_id)?;
        if sb.state != SandboxState::Ready {
            return Err(Error::FailedPrecondition(format!(
                "pod sandbox {} is not ready",
                sb.id
            )));
        }
        let shim = self.shim(&rec).await?;
        shim.start(&rec.id, "")
            .await
            .map_err(|e| Error::shim("starting the container", e))?;
        let rec = self.update_container(&rec.id, |r| {
            r.state = ContainerState::Running;
            r.started_at = now_nanos();
        })?;
        self.emit(event(&rec, cri::ContainerEventType::ContainerStartedEvent));
        watch(self.clone(), rec);
        Ok(())
    }

    /// StopContainer: the image's stop signal, then SIGKILL after `timeout` seconds.
    pub async fn stop_container(self: &Arc<Self>, id: &str, timeout: i64) -> Result<()> {
        let rec = self.container(id)?;
        if rec.state != ContainerState::Running {
            return Ok(());
        }
        let shim = self.shim(&rec).await?;
        let wait = |t: u64| {
            let s = shim.clone();
            let i = rec.id.clone();
            async move { tokio::time::timeout(Duration::from_secs(t), s.wait(&i, "")).await }
        };
        if timeout > 0 {
            match shim.kill(&rec.id, "", rec.stop_signal as u32, false).await {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(Error::shim("signalling the container", e)),
            }
            if let Ok(Ok((code, at))) = wait(timeout as u64).await {
                if let Some(r) = record_exit(self, &rec.id, code, at)? {
                    self.emit(event(&r, cri::ContainerEventType::ContainerStoppedEvent));
                }
                return Ok(());
            }
        }
        match shim.kill(&rec.id, "", libc::SIGKILL as u32, true).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(Error::shim("killing the container", e)),
        }
        match wait(30).await {
            Ok(Ok((code, at))) => {
                if let Some(r) = record_exit(self, &rec.id, code, at)? {
                    self.emit(event(&r, cri::ContainerEventType::ContainerStoppedEvent));
                }
                Ok(())
            }
            Ok(Err(e)) => Err(Error::shim("waiting for the container", e)),
            Err(_) => Err(Error::DeadlineExceeded(format!(
                "container {} did not exit after SIGKILL",
                rec.id
            ))),
        }
    }

    /// RemoveContainer: forcibly, and fine when already gone.
    pub async fn remove_container(self: &Arc<Self>, id: &str) -> Result<()> {
        let rec = match self.container(id) {
            Ok(r) => r,
            Err(Error::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        if rec.state == ContainerState::Running {
            self.stop_container(&rec.id, 0).await?;
        }
        match self.shim(&rec).await {
            Ok(shim) => {
                match shim.delete(&rec.id, "").await {
                    Ok(_) => {}
                    Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Unavailable) => {}
                    Err(e) => return Err(Error::shim("deleting the container", e)),
                }
                let _ = shim.shutdown(&rec.id).await;
            }
            Err(_) => {
                // The shim is gone: its delete action cleans up what the runtime left.
                let _ = self.launch.cleanup(&rec.id, &rec.bundle).await;
            }
        }
        let core = self.clone();
        let (i, b) = (rec.id.clone(), rec.bundle.clone());
        blocking(move || {
            release_bundle(&core, &i, &b);
            Ok(())
        })
        .await?;
        self.forget_container(&rec.id)?;
        self.emit(event(&rec, cri::ContainerEventType::ContainerDeletedEvent));
        Ok(())
    }

    /// ExecSync: runs `cmd` in the container, output to files in the bundle, with a deadline.
    pub async fn exec_sync(
        self: &Arc<Self>,
        id: &str,
        cmd: Vec<String>,
        timeout: i64,
    ) -> Result<cri::ExecSyncResponse> {
        let rec = self.container(id)?;
        if rec.state != ContainerState::Running {
            return Err(Error::FailedPrecondition(format!(
                "container {} is not running",
                rec.id
            )));
        }
        if cmd.is_empty() {
            return Err(Error::InvalidArgument("exec command is empty".into()));
        }
        let shim = self.shim(&rec).await?;
        let process = exec_process(&rec, &cmd, false)?;
        let exec_id = new_exec_id()?;
        let dir = rec.bundle.join("exec");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
        let out = dir.join(format!("{exec_id}.out"));
        let err = dir.join(format!("{exec_id}.err"));
        let io = Stdio {
            stdin: String::new(),
            stdout: format!("file://{}", out.display()),
            stderr: format!("file://{}", err.display()),
            terminal: false,
        };
        shim.exec(&rec.id, &exec_id, &process, &io)
            .await
            .map_err(|e| Error::shim("exec", e))?;
        let result = async {
            shim.start(&rec.id, &exec_id)
                .await
                .map_err(|e| Error::shim("starting the exec process", e))?;
            let waited = if timeout > 0 {
                match tokio::time::timeout(
                    Duration::from_secs(timeout as u64),
                    shim.wait(&rec.id, &exec_id),
                )
                .await
                {
                    Ok(r) => r,
                    Err(_) => {
                        let _ = shim
                            .kill(&rec.id, &exec_id, libc::SIGKILL as u32, false)
                            .await;
                        let _ = shim.wait(&rec.id, &exec_id).await;
                        return Err(Error::DeadlineExceeded(format!(
                            "command {cmd:?} timed out after {timeout}s"
                        )));
                    }
                }
            } else {
                shim.wait(&rec.id, &exec_id).await
            };
            let (code, _) = waited.map_err(|e| Error::shim("waiting for the exec process", e))?;
            Ok(code)
        }
        .await;
        let _ = shim.delete(&rec.id, &exec_id).await;
        let read = |p: &Path| -> Vec<u8> {
            use std::io::Read;
            let mut v = Vec::new();
            if let Ok(f) = std::fs::File::open(p) {
                let _ = f.take(MAX_EXEC_OUTPUT).read_to_end(&mut v);
            }
            let _ = std::fs::remove_file(p);
            v
        };
        let stdout = read(&out);
        let stderr = read(&err);
        let code = result?;
        Ok(cri::ExecSyncResponse {
            stdout,
            stderr,
            exit_code: code as i32,
        })
    }
}

impl Core {
    /// A stdin that outlives each attach (`stdin` without `stdin_once`) is held open here;
    /// a terminal's needs nothing (the shim holds it read-write), and a `stdin_once` one
    /// ends with the first attach that closes it.
    pub(crate) fn keep_stdin_open(&self, id: &str, config: &cri::ContainerConfig, bundle: &Path) {
        if !config.stdin || config.stdin_once || config.tty {
            return;
        }
        match fifo::open_keeper(&bundle.join("stdin")) {
            Ok(fd) => self.hold_stdin(id, fd),
            Err(e) => warn!(id, error = %e, "holding the container's stdin open failed"),
        }
    }
}

/// The OCI process of an exec: the container's own process (env, user, cwd, confinement)
/// with `cmd` as its arguments.
pub(crate) fn exec_process(
    rec: &ContainerRecord,
    cmd: &[String],
    terminal: bool,
) -> Result<serde_json::Value> {
    let p = rec.bundle.join("config.json");
    let bytes = std::fs::read(&p).map_err(|e| Error::io("reading", &p, e))?;
    let spec: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| Error::Internal {
        step: "reading the container's spec",
        message: e.to_string(),
    })?;
    let mut process = spec["process"].clone();
    process["args"] = serde_json::json!(cmd);
    process["terminal"] = serde_json::json!(terminal);
    Ok(process)
}

pub(crate) fn new_exec_id() -> Result<String> {
    Ok(format!("exec-{}", &new_id()?[..16]))
}

/// The idmapped view of the rootfs in the bundle of a container in a pod user namespace.
const IDMAPPED_ROOTFS: &str = "rootfs-userns";

/// Releases a container's rootfs and removes its bundle.
fn release_bundle(core: &Core, id: &str, bundle: &Path) {
    let rootfs = kos_image::Rootfs {
        id: id.to_string(),
        path: bundle.join("rootfs"),
        dir: bundle.to_path_buf(),
        kind: kos_image::RootfsKind::Overlay,
    };
    userns::remove_idmapped_rootfs(&bundle.join(IDMAPPED_ROOTFS));
    if let Err(e) = core.images.store.release_rootfs(&rootfs) {
        warn!(id, error = %e, "releasing the rootfs failed");
    }
    let _ = std::fs::remove_dir_all(bundle);
}
