//! kos-dns as a supervised child of kosd: container names (and aliases) on user networks.
//!
//! Docker answers names at 127.0.0.11 inside each container's namespace; KOS instead runs one
//! kos-dns that listens on every network's gateway address, and containers on user networks
//! get that gateway as their nameserver. kos-network writes the table kos-dns serves and sends
//! it SIGHUP through the pid file after each change.
//!
//! kos-dns is a child process restarted when it dies, unless the kos-dns unit
//! (services/units/kos-dns.container) is enabled in kosd's unit directories: the unit
//! manager then runs it as a container and kosd does not start a second one.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kos_network::DnsOptions;
use tokio::sync::watch;

use crate::config::Config;

/// How long a crashed kos-dns waits before it is started again.
const RESTART_DELAY: Duration = Duration::from_secs(1);
/// How long kos-dns gets to exit on SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// Where the table and pid file live: under the exec root, as they describe running state.
pub fn options(config: &Config) -> DnsOptions {
    let dir = config.exec_root.join("dns");
    DnsOptions {
        table: dir.join("table.json"),
        pid_file: Some(dir.join("kos-dns.pid")),
        domain: None,
    }
}

/// The unit that serves names when enabled.
pub const UNIT: &str = "kos-dns.container";

/// Whether the kos-dns unit is enabled (wanted or required by a target through the admin's
/// links) in kosd's unit directories, so the unit manager runs kos-dns instead of kosd.
pub fn served_by_unit(config: &Config) -> bool {
    if !config.units {
        return false;
    }
    match kos_units::loader::load(&crate::units::unit_paths(config)) {
        Ok(set) => {
            matches!(set.units.get(UNIT), Some(kos_units::loader::Loaded::Ok(_)))
                && set
                    .enabled_wants
                    .iter()
                    .chain(&set.enabled_requires)
                    .any(|(_, u)| u == UNIT)
        }
        Err(e) => {
            tracing::warn!(error = %e, "reading the unit directories for {UNIT}");
            false
        }
    }
}

/// Prepares for the kos-dns unit: the table directory it binds, and no kos-dns child left
/// by an earlier kosd.
pub fn prepare_for_unit(opts: &DnsOptions) -> anyhow::Result<()> {
    if let Some(dir) = opts.table.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    }
    stop_stale(opts);
    Ok(())
}

/// The kos-dns beside kosd's own executable, else the one in PATH.
fn binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("kos-dns")))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("kos-dns"))
}

/// A running supervisor; [`Supervisor::stop`] ends it and kos-dns.
pub struct Supervisor {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// Ends a kos-dns left by a kosd that died without stopping it (the pid file names it and
/// its command line names our table), so two never serve the same gateways.
fn stop_stale(opts: &DnsOptions) {
    let Some(pid_file) = &opts.pid_file else {
        return;
    };
    let Some(pid) = std::fs::read_to_string(pid_file)
        .ok()
        .and_then(|s| s.trim().parse::<i32>().ok())
        .filter(|p| *p > 1)
    else {
        return;
    };
    let table = opts.table.to_string_lossy().into_owned();
    let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            let args: Vec<String> = c
                .split(|b| *b == 0)
                .map(|a| String::from_utf8_lossy(a).into_owned())
                .collect();
            args.iter().any(|a| a.ends_with("kos-dns")) && args.contains(&table)
        })
        .unwrap_or(false);
    if ours {
        tracing::info!(pid, "stopping a kos-dns left by an earlier kosd");
        // SAFETY: plain kill(2) on a process verified to be our kos-dns.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let _ = std::fs::remove_file(pid_file);
}

fn command(bin: &Path, opts: &DnsOptions) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(bin);
    cmd.arg("--table").arg(&opts.table);
    if let Some(p) = &opts.pid_file {
        cmd.arg("--pid-file").arg(p);
    }
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Starts kos-dns and keeps it running until [`Supervisor::stop`].
pub fn start(opts: &DnsOptions) -> anyhow::Result<Supervisor> {
    if let Some(dir) = opts.table.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", dir.display()))?;
    }
    stop_stale(opts);
    let bin = binary();
    let opts = opts.clone();
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            let mut child = match command(&bin, &opts).spawn() {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(binary = %bin.display(), error = %e, "starting kos-dns");
                    tokio::select! {
                        _ = stop_rx.changed() => return,
                        _ = tokio::time::sleep(RESTART_DELAY) => continue,
                    }
                }
            };
            tracing::info!(pid = ?child.id(), "kos-dns started");
            tokio::select! {
                st = child.wait() => {
                    tracing::warn!(status = ?st, "kos-dns exited; starting it again");
                    tokio::select! {
                        _ = stop_rx.changed() => return,
                        _ = tokio::time::sleep(RESTART_DELAY) => {}
                    }
                }
                _ = stop_rx.changed() => {
                    terminate(&mut child).await;
                    return;
                }
            }
        }
    });
    Ok(Supervisor {
        stop: stop_tx,
        task,
    })
}

/// SIGTERM (kos-dns removes its pid file), SIGKILL after the grace time.
async fn terminate(child: &mut tokio::process::Child) {
    if let Some(pid) = child.id() {
        // SAFETY: signalling our own child, not yet reaped (id() is Some).
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    if tokio::time::timeout(STOP_GRACE, child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

impl Supervisor {
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}
