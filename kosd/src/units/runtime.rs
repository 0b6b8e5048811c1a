//! `UnitRuntime` over kosd's own containers: a unit's container is made by the same
//! `containers::runtime::create` as `POST /containers/create`, started, signalled and
//! inspected through the shim like any other container, so `docker ps` shows it.
//!
//! The manager calls in from its own thread; the async container operations run on kosd's
//! tokio runtime through `Handle::block_on`. Exits come back as mailbox messages from one
//! watcher task per started process.

use std::collections::HashMap;
use std::sync::Arc;

use kos_units::{ContainerSpec, ExecCommand, ExitStatus, RuntimeError, UnitRuntime};
use nix::sys::signal::Signal;
use serde_json::Value;
use tokio::runtime::Handle;

use super::spec::{self, PRE_LABEL, SPEC_LABEL, UNIT_LABEL};
use super::{Mailbox, Msg};
use crate::containers::exec::{self, ExecConfig};
use crate::containers::runtime::{self, CreateBody, WaitCondition};
use crate::containers::Container;
use crate::engine::Engine;
use crate::error::ApiError;

/// The containers of one unit's current run.
#[derive(Debug, Clone, Default)]
struct UnitContainers {
    /// The unit's container (kept after it stops, for its logs, until the next start).
    id: String,
    /// The create body it was made from (pre-command containers copy it).
    body: Value,
    /// A running `ExecStartPre=` container.
    pre: Option<String>,
    /// Cgroup paths of the containers' inits (main and pre-command), read when they
    /// started: who may notify, what `status` shows.
    cgroups: Vec<(String, String)>,
}

pub struct KosdRuntime {
    e: Arc<Engine>,
    rt: Handle,
    mail: Mailbox,
    units: HashMap<String, UnitContainers>,
}

fn rerr(step: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::new(format!("{step}: {e}"))
}

impl KosdRuntime {
    pub fn new(e: Arc<Engine>, rt: Handle, mail: Mailbox) -> KosdRuntime {
        KosdRuntime {
            e,
            rt,
            mail,
            units: HashMap::new(),
        }
    }

    /// The id of the unit's container (running or kept after its last run).
    pub fn container_id(&self, unit: &str) -> Option<String> {
        self.units
            .get(unit)
            .map(|u| u.id.clone())
            .or_else(|| self.labelled(unit).map(|c| c.id))
    }

    /// The container labelled as `unit`'s, from an earlier run or an earlier kosd.
    fn labelled(&self, unit: &str) -> Option<Container> {
        crate::containers::all(&self.e).into_iter().find(|c| {
            c.config
                .labels
                .as_ref()
                .and_then(|l| l.get(UNIT_LABEL))
                .is_some_and(|u| u == unit)
        })
    }

    /// Live unit containers that survived a kosd restart: (unit, container id, init pid).
    pub fn survivors(&self) -> Vec<(String, String, u32)> {
        crate::containers::all(&self.e)
            .into_iter()
            .filter(|c| c.state.status.is_live() && c.state.pid > 0)
            .filter_map(|c| {
                let unit = c.config.labels.as_ref()?.get(UNIT_LABEL)?.clone();
                Some((unit, c.id.clone(), c.state.pid as u32))
            })
            .collect()
    }

    /// Removes pre-command containers a crashed kosd left behind.
    pub fn remove_stale_pre_containers(&self) {
        for c in crate::containers::all(&self.e) {
            if c.config
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key(PRE_LABEL))
            {
                let _ = self
                    .rt
                    .block_on(runtime::remove(&self.e, &c.id, true, false));
            }
        }
    }

    /// Takes over `id` as `unit`'s running container (live-restore).
    pub fn track(&mut self, unit: &str, id: &str, pid: u32) {
        let body = runtime::load(&self.e, id)
            .map(|c| serde_json::json!({ "Labels": c.config.labels }))
            .unwrap_or(Value::Null);
        let cgroups = cgroup_of_pid(pid)
            .map(|cg| vec![(id.to_string(), cg)])
            .unwrap_or_default();
        self.units.insert(
            unit.to_string(),
            UnitContainers {
                id: id.to_string(),
                body,
                pre: None,
                cgroups,
            },
        );
        self.watch_container(id.to_string(), pid);
    }

    fn note_cgroup(&mut self, unit: &str, id: &str, pid: u32) {
        if let (Some(u), Some(cg)) = (self.units.get_mut(unit), cgroup_of_pid(pid)) {
            u.cgroups.retain(|(i, _)| i == &u.id && i != id);
            u.cgroups.push((id.to_string(), cg));
        }
    }

    /// Reports the end of container `id` (whose init is `pid`) to the manager.
    fn watch_container(&self, id: String, pid: u32) {
        let e = self.e.clone();
        let mail = self.mail.clone();
        self.rt.spawn(async move {
            let code = runtime::wait(&e, &id, WaitCondition::NotRunning)
                .await
                .unwrap_or(255);
            let status = ExitStatus::from_shim_code(u32::try_from(code).unwrap_or(255));
            mail.send(Msg::Exited { pid, status });
        });
    }

    fn ids(&self, unit: &str) -> Vec<String> {
        self.units
            .get(unit)
            .map(|u| std::iter::once(u.id.clone()).chain(u.pre.clone()).collect())
            .unwrap_or_default()
    }

    fn cgroups(&self, unit: &str) -> Vec<(String, String)> {
        self.units
            .get(unit)
            .map(|u| u.cgroups.clone())
            .unwrap_or_default()
    }

    fn live(&self, id: &str) -> Option<Container> {
        runtime::load(&self.e, id)
            .ok()
            .filter(|c| c.state.status.is_live())
    }

    fn create_container(&self, name: &str, body: &Value) -> Result<String, RuntimeError> {
        let body: CreateBody =
            serde_json::from_value(body.clone()).map_err(|e| rerr("container spec", e))?;
        let c = runtime::create(&self.e, Some(name), body).map_err(|e| rerr("create", e))?;
        Ok(c.id)
    }

    fn start_container(&self, id: &str) -> Result<u32, RuntimeError> {
        match self.rt.block_on(runtime::start(&self.e, id)) {
            Ok(()) | Err(ApiError::NotModified) => {}
            Err(e) => return Err(rerr("start", e)),
        }
        let c = runtime::load(&self.e, id).map_err(|e| rerr("start", e))?;
        let pid = u32::try_from(c.state.pid)
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| rerr("start", "the container has no running init"))?;
        self.watch_container(id.to_string(), pid);
        Ok(pid)
    }

    fn exec_on_host(&self, argv: &[String]) -> Result<u32, RuntimeError> {
        let _g = self.rt.enter();
        let mut child = tokio::process::Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| rerr(&format!("running {}", argv[0]), e))?;
        let pid = child
            .id()
            .ok_or_else(|| rerr("host command", "exited before its pid was read"))?;
        let mail = self.mail.clone();
        self.rt.spawn(async move {
            let status = match child.wait().await {
                Ok(s) => {
                    use std::os::unix::process::ExitStatusExt;
                    ExitStatus::from_wait_status(s.into_raw())
                }
                Err(_) => ExitStatus::Exited(255),
            };
            mail.send(Msg::Exited { pid, status });
        });
        Ok(pid)
    }

    fn exec_in_running(&self, id: &str, argv: &[String]) -> Result<u32, RuntimeError> {
        let exec_id = exec::create(
            &self.e,
            id,
            ExecConfig {
                attach_stdout: true,
                attach_stderr: true,
                cmd: argv.to_vec(),
                ..Default::default()
            },
        )
        .map_err(|e| rerr("exec", e))?;
        let mut running = self
            .rt
            .block_on(exec::start(&self.e, &exec_id))
            .map_err(|e| rerr("exec", e))?;
        let pid = self
            .e
            .execs
            .get(&exec_id)
            .map(|r| r.pid as u32)
            .map_err(|e| rerr("exec", e))?;
        let mail = self.mail.clone();
        self.rt.spawn(async move {
            use tokio::io::AsyncReadExt;
            // Nobody reads the command's output but the fifos must be drained, or the
            // command blocks writing.
            let mut buf = vec![0u8; 4096];
            for mut s in [running.stdout.take(), running.stderr.take()]
                .into_iter()
                .flatten()
            {
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                }
            }
            let code = loop {
                if let Some(c) = *running.exit.borrow() {
                    break c;
                }
                if running.exit.changed().await.is_err() {
                    break 255;
                }
            };
            let status = ExitStatus::from_shim_code(u32::try_from(code).unwrap_or(255));
            mail.send(Msg::Exited { pid, status });
        });
        Ok(pid)
    }

    /// `ExecStartPre=` before the container runs: a one-off container with the unit's
    /// image, mounts and settings, removed once its command ended.
    fn exec_pre(&mut self, unit: &str, argv: &[String]) -> Result<u32, RuntimeError> {
        let u = self
            .units
            .get(unit)
            .ok_or_else(|| rerr("exec", "the unit has no container"))?;
        let body = spec::pre_body(unit, &u.body, argv);
        let main = runtime::load(&self.e, &u.id).map_err(|e| rerr("exec", e))?;
        let name = format!("{}-pre", main.name);
        if let Ok(old) = runtime::find(&self.e, &name) {
            let _ = self
                .rt
                .block_on(runtime::remove(&self.e, &old.id, true, false));
        }
        let id = self.create_container(&name, &body)?;
        let started = self.rt.block_on(runtime::start(&self.e, &id));
        let pid = started.and_then(|()| {
            let c = runtime::load(&self.e, &id)?;
            Ok(c.state.pid as u32)
        });
        let pid = match pid {
            Ok(p) if p > 0 => p,
            other => {
                let _ = self.rt.block_on(runtime::remove(&self.e, &id, true, false));
                return Err(match other {
                    Err(e) => rerr("exec", e),
                    Ok(_) => rerr("exec", "the pre-command container has no process"),
                });
            }
        };
        if let Some(u) = self.units.get_mut(unit) {
            u.pre = Some(id.clone());
        }
        self.note_cgroup(unit, &id, pid);
        let e = self.e.clone();
        let mail = self.mail.clone();
        self.rt.spawn(async move {
            let code = runtime::wait(&e, &id, WaitCondition::NotRunning)
                .await
                .unwrap_or(255);
            let _ = runtime::remove(&e, &id, true, false).await;
            let status = ExitStatus::from_shim_code(u32::try_from(code).unwrap_or(255));
            mail.send(Msg::Exited { pid, status });
        });
        Ok(pid)
    }
}

/// The cgroup path of a process as the host sees it: cgroup v2's, else the pids (or the
/// first) v1 controller's. kosd places all of a container's processes in one path.
fn cgroup_of_pid(pid: u32) -> Option<String> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let lines: Vec<(&str, &str)> = s
        .lines()
        .filter_map(|l| {
            let mut p = l.splitn(3, ':');
            let _ = p.next()?;
            Some((p.next()?, p.next()?))
        })
        .collect();
    let pick = |want: &dyn Fn(&str) -> bool| {
        lines
            .iter()
            .find(|(c, path)| want(c) && *path != "/")
            .map(|(_, p)| p.to_string())
    };
    pick(&|c| c.split(',').any(|x| x == "pids"))
        .or_else(|| pick(&|c| c.is_empty()))
        .or_else(|| pick(&|_| true))
}

fn in_cgroup(path: &str, cg: &str) -> bool {
    path == cg || path.strip_prefix(cg).is_some_and(|r| r.starts_with('/'))
}

impl UnitRuntime for KosdRuntime {
    fn create(&mut self, unit: &str, spec: &ContainerSpec) -> Result<(), RuntimeError> {
        let body = spec::create_body(unit, spec);
        let digest = body["Labels"][SPEC_LABEL]
            .as_str()
            .unwrap_or("")
            .to_string();
        if let Ok(old) = runtime::find(&self.e, &spec.name) {
            let labels = old.config.labels.clone().unwrap_or_default();
            if labels.get(UNIT_LABEL).map(String::as_str) != Some(unit) {
                return Err(rerr(
                    "create",
                    format!(
                        "the container name {} is taken by container {} of another owner",
                        spec.name, old.id
                    ),
                ));
            }
            let same = labels.get(SPEC_LABEL) == Some(&digest);
            if same && !old.state.status.is_live() {
                // Unchanged: run the same container again (its log continues).
                self.units.insert(
                    unit.to_string(),
                    UnitContainers {
                        id: old.id,
                        body,
                        pre: None,
                        cgroups: Vec::new(),
                    },
                );
                return Ok(());
            }
            self.rt
                .block_on(runtime::remove(&self.e, &old.id, true, false))
                .map_err(|e| rerr("removing the unit's previous container", e))?;
        }
        let id = self.create_container(&spec.name, &body)?;
        self.units.insert(
            unit.to_string(),
            UnitContainers {
                id,
                body,
                pre: None,
                cgroups: Vec::new(),
            },
        );
        Ok(())
    }

    fn start(&mut self, unit: &str) -> Result<u32, RuntimeError> {
        let id = self
            .units
            .get(unit)
            .map(|u| u.id.clone())
            .ok_or_else(|| rerr("start", "the unit has no container"))?;
        let pid = self.start_container(&id)?;
        self.note_cgroup(unit, &id, pid);
        Ok(pid)
    }

    fn exec(&mut self, unit: &str, cmd: &ExecCommand) -> Result<u32, RuntimeError> {
        if cmd.argv.is_empty() {
            return Err(rerr("exec", "empty command"));
        }
        if cmd.on_host {
            return self.exec_on_host(&cmd.argv);
        }
        let id = self
            .units
            .get(unit)
            .map(|u| u.id.clone())
            .ok_or_else(|| rerr("exec", "the unit has no container"))?;
        if self.live(&id).is_some() {
            self.exec_in_running(&id, &cmd.argv)
        } else {
            self.exec_pre(unit, &cmd.argv)
        }
    }

    fn kill(&mut self, unit: &str, signal: Signal) -> Result<(), RuntimeError> {
        for id in self.ids(unit) {
            if self.live(&id).is_none() {
                continue;
            }
            if let Some(sh) = self.e.rt.shim(&id) {
                self.rt
                    .block_on(sh.kill(&id, "", signal as u32, true))
                    .map_err(|e| rerr("kill", e))?;
            }
        }
        Ok(())
    }

    fn remove(&mut self, unit: &str) -> Result<(), RuntimeError> {
        // The init is gone, and with it the container's pid namespace. The stopped container
        // stays (docker ps -a, the unit's logs) until the unit's next start; only a
        // pre-command container still around is removed.
        if let Some(pre) = self.units.get_mut(unit).and_then(|u| u.pre.take()) {
            if runtime::load(&self.e, &pre).is_ok() {
                self.rt
                    .block_on(runtime::remove(&self.e, &pre, true, false))
                    .map_err(|e| rerr("remove", e))?;
            }
        }
        Ok(())
    }

    fn pids(&mut self, unit: &str) -> Result<Vec<u32>, RuntimeError> {
        let mut out = Vec::new();
        for (id, cg) in self.cgroups(unit) {
            let m = kos_cgroups::Manager::new(Some(&cg), &id).map_err(|e| rerr("cgroup", e))?;
            if !m.exists() {
                continue;
            }
            out.extend(
                m.pids()
                    .map_err(|e| rerr("cgroup", e))?
                    .into_iter()
                    .filter_map(|p| u32::try_from(p).ok()),
            );
        }
        Ok(out)
    }

    fn owns_pid(&mut self, unit: &str, pid: u32) -> bool {
        let Ok(s) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
            return false;
        };
        let cgroups = self.cgroups(unit);
        s.lines().any(|l| {
            let path = l.splitn(3, ':').nth(2).unwrap_or("");
            cgroups.iter().any(|(_, cg)| in_cgroup(path, cg))
        })
    }

    fn cgroup(&self, unit: &str) -> Option<String> {
        let u = self.units.get(unit)?;
        u.cgroups
            .iter()
            .find(|(id, _)| id == &u.id)
            .map(|(_, cg)| cg.clone())
    }
}
