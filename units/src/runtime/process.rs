//! A [`UnitRuntime`] of plain host processes, for tests and benchmarks (kosd provides the
//! container one). The image is ignored; `Entrypoint` + `Cmd` is executed with `Env` only.
//! Each run gets its own process group (the main process leads it; container-side
//! ExecStartPre/Post join it once it exists), which stands in for the container's cgroup:
//! `kill` signals the groups, `pids` lists their members, `remove` SIGKILLs what is left.
//! Exits are seen through pidfds; [`drive`] is the event loop.

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::clock::Clock;
use crate::engine::Manager;
use crate::error::RuntimeError;
use crate::events::EventSink;
use crate::runtime::UnitRuntime;
use crate::spec::{ContainerSpec, ExecCommand};
use crate::state::ExitStatus;

#[derive(Debug, Default)]
struct UnitProcs {
    spec: ContainerSpec,
    /// Process groups of this run (the main one first when started).
    groups: Vec<u32>,
    main_group: Option<u32>,
}

/// Runs units as host processes.
#[derive(Debug, Default)]
pub struct ProcessRuntime {
    units: HashMap<String, UnitProcs>,
    /// Children we wait for, with their pidfds.
    children: HashMap<u32, OwnedFd>,
    /// Where `<unit>.log` collects a unit's stdout and stderr; None discards them.
    pub log_dir: Option<PathBuf>,
}

fn pidfd_open(pid: u32) -> std::io::Result<OwnedFd> {
    // SAFETY: plain syscall; on success the kernel returns a new descriptor we now own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh descriptor returned by pidfd_open.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

impl ProcessRuntime {
    pub fn new(log_dir: Option<PathBuf>) -> Self {
        ProcessRuntime {
            units: HashMap::new(),
            children: HashMap::new(),
            log_dir,
        }
    }

    fn spawn(
        &mut self,
        unit: &str,
        argv: &[String],
        env: &[String],
        join: Option<u32>,
    ) -> Result<u32, RuntimeError> {
        let (prog, args) = argv
            .split_first()
            .ok_or_else(|| RuntimeError::new("empty command"))?;
        let mut cmd = Command::new(prog);
        cmd.args(args).env_clear().stdin(Stdio::null());
        cmd.env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        );
        for e in env {
            if let Some((k, v)) = e.split_once('=') {
                cmd.env(k, v);
            }
        }
        match &self.log_dir {
            Some(d) => {
                let path = d.join(format!("{unit}.log"));
                let f = File::options()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| RuntimeError::new(format!("open log {}: {e}", path.display())))?;
                let f2 = f
                    .try_clone()
                    .map_err(|e| RuntimeError::new(format!("dup log: {e}")))?;
                cmd.stdout(f).stderr(f2);
            }
            None => {
                cmd.stdout(Stdio::null()).stderr(Stdio::null());
            }
        }
        let pgid = join.unwrap_or(0) as libc::pid_t;
        // SAFETY: setpgid and close_range are async-signal-safe syscalls; nothing else runs
        // between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                // The group to join is gone once all its members exited (a oneshot's
                // ExecStartPost): lead a new one then.
                if libc::setpgid(0, pgid) != 0 && libc::setpgid(0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // Nothing of the host process but stdio may reach the unit, even descriptors
                // someone opened without O_CLOEXEC (std's exec-error pipe is CLOEXEC anyway).
                if libc::syscall(
                    libc::SYS_close_range,
                    3u32,
                    u32::MAX,
                    libc::CLOSE_RANGE_CLOEXEC,
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd
            .spawn()
            .map_err(|e| RuntimeError::new(format!("spawn {prog}: {e}")))?;
        let pid = child.id();
        // We reap with waitpid ourselves; dropping Child neither waits nor kills.
        drop(child);
        let fd =
            pidfd_open(pid).map_err(|e| RuntimeError::new(format!("pidfd_open {pid}: {e}")))?;
        self.children.insert(pid, fd);
        Ok(pid)
    }

    /// Descriptors that become readable when a child exits.
    pub fn exit_fds(&self) -> Vec<RawFd> {
        self.children.values().map(|f| f.as_raw_fd()).collect()
    }

    /// Reaps the children that exited.
    pub fn reap(&mut self) -> Vec<(u32, ExitStatus)> {
        let mut out = Vec::new();
        let pids: Vec<u32> = self.children.keys().copied().collect();
        for pid in pids {
            let st = match waitpid(Pid::from_raw(pid as i32), Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(_, c)) => ExitStatus::Exited(c),
                Ok(WaitStatus::Signaled(_, s, core)) => ExitStatus::Signaled {
                    signal: s as i32,
                    core_dumped: core,
                },
                Ok(_) => continue,
                Err(nix::Error::ECHILD) => ExitStatus::Exited(255),
                Err(_) => continue,
            };
            self.children.remove(&pid);
            out.push((pid, st));
        }
        out
    }

    /// Every process whose process group is `pgid`.
    fn group_members(pgid: u32) -> Vec<u32> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir("/proc") else {
            return out;
        };
        for ent in rd.flatten() {
            let Some(pid) = ent.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // the fields after the last ')' are: state ppid pgrp ...
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                continue;
            };
            if rest
                .split_whitespace()
                .nth(2)
                .and_then(|g| g.parse::<u32>().ok())
                == Some(pgid)
            {
                out.push(pid);
            }
        }
        out
    }
}

impl Drop for ProcessRuntime {
    fn drop(&mut self) {
        for u in self.units.values() {
            for g in &u.groups {
                let _ = killpg(Pid::from_raw(*g as i32), Signal::SIGKILL);
            }
        }
        for pid in self.children.keys() {
            let _ = waitpid(Pid::from_raw(*pid as i32), None);
        }
    }
}

impl UnitRuntime for ProcessRuntime {
    fn create(&mut self, unit: &str, spec: &ContainerSpec) -> Result<(), RuntimeError> {
        if spec
            .entrypoint
            .iter()
            .flatten()
            .chain(&spec.cmd)
            .next()
            .is_none()
        {
            return Err(RuntimeError::new(
                "no command: the process runtime needs Exec= or Entrypoint=",
            ));
        }
        self.units.insert(
            unit.to_string(),
            UnitProcs {
                spec: spec.clone(),
                ..Default::default()
            },
        );
        Ok(())
    }

    fn start(&mut self, unit: &str) -> Result<u32, RuntimeError> {
        let p = self
            .units
            .get(unit)
            .ok_or_else(|| RuntimeError::new("not created"))?;
        let argv: Vec<String> = p
            .spec
            .entrypoint
            .iter()
            .flatten()
            .chain(&p.spec.cmd)
            .cloned()
            .collect();
        let env = p.spec.env.clone();
        let pid = self.spawn(unit, &argv, &env, None)?;
        if let Some(p) = self.units.get_mut(unit) {
            p.groups.push(pid);
            p.main_group = Some(pid);
        }
        Ok(pid)
    }

    fn exec(&mut self, unit: &str, cmd: &ExecCommand) -> Result<u32, RuntimeError> {
        let p = self
            .units
            .get(unit)
            .ok_or_else(|| RuntimeError::new("not created"))?;
        let env = p.spec.env.clone();
        let join = if cmd.on_host { None } else { p.main_group };
        let pid = self.spawn(unit, &cmd.argv, &env, join)?;
        let group = nix::unistd::getpgid(Some(Pid::from_raw(pid as i32)))
            .map(|g| g.as_raw() as u32)
            .unwrap_or(pid);
        if let Some(p) = self.units.get_mut(unit) {
            if !p.groups.contains(&group) {
                p.groups.push(group);
            }
        }
        Ok(pid)
    }

    fn kill(&mut self, unit: &str, signal: Signal) -> Result<(), RuntimeError> {
        let p = self
            .units
            .get(unit)
            .ok_or_else(|| RuntimeError::new("not created"))?;
        for g in &p.groups {
            match killpg(Pid::from_raw(*g as i32), signal) {
                Ok(()) | Err(nix::Error::ESRCH) => {}
                Err(e) => return Err(RuntimeError::new(format!("killpg {g}: {e}"))),
            }
        }
        Ok(())
    }

    fn remove(&mut self, unit: &str) -> Result<(), RuntimeError> {
        if let Some(p) = self.units.remove(unit) {
            for g in p.groups {
                let _ = killpg(Pid::from_raw(g as i32), Signal::SIGKILL);
            }
        }
        Ok(())
    }

    fn pids(&mut self, unit: &str) -> Result<Vec<u32>, RuntimeError> {
        let p = self
            .units
            .get(unit)
            .ok_or_else(|| RuntimeError::new("not created"))?;
        Ok(p.groups
            .iter()
            .flat_map(|g| Self::group_members(*g))
            .collect())
    }

    fn owns_pid(&mut self, unit: &str, pid: u32) -> bool {
        let Some(p) = self.units.get(unit) else {
            return false;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let pgrp = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(2))
            .and_then(|g| g.parse::<u32>().ok());
        pgrp.is_some_and(|g| p.groups.contains(&g))
    }

    fn cgroup(&self, unit: &str) -> Option<String> {
        self.units
            .get(unit)
            .and_then(|p| p.main_group)
            .map(|g| format!("process group {g}"))
    }
}

/// One turn of the event loop: waits up to `max_wait` (or the manager's next deadline) for a
/// notify message or a child exit, then feeds what happened to the manager.
pub fn drive<S: EventSink, C: Clock>(m: &mut Manager<ProcessRuntime, S, C>, max_wait: Duration) {
    let notify = m.notify_fds();
    let exits = m.runtime().exit_fds();
    let mut pfds: Vec<libc::pollfd> = notify
        .iter()
        .map(|(_, fd)| *fd)
        .chain(exits.iter().copied())
        .map(|fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    let wait = m
        .next_deadline()
        .map(|d| d.saturating_sub(m.clock().now()).min(max_wait))
        .unwrap_or(max_wait);
    // Round up so a timer is never polled for a few microseconds early in a busy loop.
    let ms = wait.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
    // SAFETY: pfds is a valid array of pollfd for the duration of the call.
    let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, ms) };
    if n > 0 {
        for (i, (unit, _)) in notify.iter().enumerate() {
            if pfds[i].revents != 0 {
                m.drain_notify(unit);
            }
        }
    }
    let exited = m.runtime_mut().reap();
    for (pid, st) in exited {
        m.process_exited(pid, st);
    }
    m.tick();
}

/// Drives the manager until `done` holds (true) or `timeout` passes (false).
pub fn run_until<S: EventSink, C: Clock>(
    m: &mut Manager<ProcessRuntime, S, C>,
    timeout: Duration,
    mut done: impl FnMut(&Manager<ProcessRuntime, S, C>) -> bool,
) -> bool {
    let end = std::time::Instant::now() + timeout;
    loop {
        if done(m) {
            return true;
        }
        let left = end.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return false;
        }
        drive(m, left.min(Duration::from_millis(50)));
    }
}
