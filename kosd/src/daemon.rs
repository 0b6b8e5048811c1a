//! The daemon's life: lock the data root, open state, listen, serve, and shut
//! down cleanly on SIGTERM or SIGINT.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::watch;

use crate::config::Config;
use crate::engine::Engine;
use crate::listen::{self, Listener};

/// Holds the data root for this process; released when the process exits.
pub struct DataRootLock {
    _file: File,
}

/// One kosd per data root: an exclusive, non-blocking flock.
pub fn lock_data_root(root: &Path) -> anyhow::Result<DataRootLock> {
    let p = root.join("kosd.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&p)
        .with_context(|| format!("opening {}", p.display()))?;
    // SAFETY: valid descriptor; the lock lives as long as the file.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            bail!(
                "another kosd is already running with data root {}",
                root.display()
            );
        }
        return Err(e).with_context(|| format!("locking {}", p.display()));
    }
    Ok(DataRootLock { _file: file })
}

fn make_private_dir(p: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o711)
        .create(p)
        .with_context(|| format!("creating {}", p.display()))
}

/// The CRI server's settings from kosd's: its own state under the roots, the image store
/// shared by handle with the Docker API side.
fn cri_config(engine: &Engine) -> kos_cri::CriConfig {
    let c = &engine.config;
    let mut cri = kos_cri::CriConfig::new(
        c.data_root.join("cri"),
        // Its own subtree: kosd's containers already use EXEC_ROOT/netns and friends.
        c.exec_root.join("cri"),
        engine.store.clone(),
    );
    cri.registry = kos_image::RegistryConfig {
        insecure_registries: c.insecure_registries.clone(),
        ..Default::default()
    };
    cri.registry_config_dir = c.registry_config_dir.clone();
    // Pods share the daemon's cgroup parent with its containers.
    cri.cgroup_root = c.cgroup_parent.clone();
    cri.cni_conf_dir = c.cni_conf_dir.clone();
    cri.cni_bin_dirs = c.cni_bin_dirs.clone();
    cri.cdi_spec_dirs = c.cdi_spec_dirs.clone();
    cri.stream_address = c.cri_stream_address;
    cri.runtime_binary = crate::containers::runtime::runtime_binary(&c.default_runtime);
    cri.shim_binary = crate::containers::runtime::shim_binary();
    cri
}

/// Serves the CRI until `stop` turns true; `None` when `--cri-socket ""` disabled it.
fn start_cri(
    engine: &Arc<Engine>,
    mut stop: watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<kos_cri::Result<()>>> {
    let socket = engine.config.cri_socket.clone()?;
    let mut config = cri_config(engine);
    config.image_in_use = Some(crate::containers::image_use::docker_uses(engine));
    tracing::info!(socket = %socket.display(), "CRI listening");
    Some(tokio::spawn(async move {
        let shutdown = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        kos_cri::serve_with_shutdown(&socket, config, shutdown).await
    }))
}

/// Resolves only when the CRI server ends before shutdown (it could not bind its socket
/// or open its state): kosd then stops too, rather than run with half its services.
async fn cri_failed(
    cri: &mut Option<tokio::task::JoinHandle<kos_cri::Result<()>>>,
) -> anyhow::Error {
    let Some(handle) = cri.as_mut() else {
        return std::future::pending().await;
    };
    let e = match handle.await {
        Ok(Ok(())) => anyhow::anyhow!("the CRI server stopped unasked"),
        // kos-cri's errors already say their cause in their message.
        Ok(Err(e)) => anyhow::anyhow!("serving the CRI: {e}"),
        Err(e) => anyhow::Error::new(e).context("the CRI server task"),
    };
    *cri = None;
    e
}

/// A graceful stop waits for open CRI connections, and a kubelet keeps its own open:
/// after this long the server is dropped instead.
const CRI_STOP_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

async fn stop_cri(mut cri: tokio::task::JoinHandle<kos_cri::Result<()>>, socket: Option<&Path>) {
    match tokio::time::timeout(CRI_STOP_GRACE, &mut cri).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "CRI server ended with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "CRI server task failed"),
        Err(_) => {
            tracing::info!("CRI clients still connected: closing the CRI server");
            cri.abort();
            let _ = cri.await;
            if let Some(socket) = socket {
                let _ = std::fs::remove_file(socket);
            }
        }
    }
}

pub async fn run(config: Config) -> anyhow::Result<()> {
    make_private_dir(&config.data_root)?;
    make_private_dir(&config.exec_root)?;
    let _lock = lock_data_root(&config.data_root)?;
    let engine = Engine::open(config.clone()).map_err(|e| anyhow::anyhow!("{e}"))?;
    // Kernel device uevents into /events until kosd stops.
    let _device_events = crate::devices::events::start(&engine);
    // Networks first (bridges and rules back after a reboot, leftovers of dead containers
    // removed), then containers, which may start again and attach.
    let live: std::collections::HashSet<String> = crate::containers::all(&engine)
        .into_iter()
        .filter(|c| {
            c.state.status.is_live()
                && crate::containers::runtime::shim_address(&engine, c).is_some()
        })
        .map(|c| c.id)
        .collect();
    let nets = engine.nets.clone();
    match tokio::task::spawn_blocking(move || nets.reconcile(&|id| live.contains(id))).await {
        Ok(Ok(r)) if !r.is_empty() => tracing::info!(report = ?r, "network state reconciled"),
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::warn!(error = %e, "network reconcile failed"),
        Err(e) => tracing::warn!(error = %e, "network reconcile failed"),
    }
    // kos-dns before containers start again, so their names answer from the start.
    let dns_opts = crate::dns_server::options(&config);
    let dns = if crate::dns_server::served_by_unit(&config) {
        tracing::info!("kos-dns runs as the unit {}", crate::dns_server::UNIT);
        crate::dns_server::prepare_for_unit(&dns_opts)?;
        None
    } else {
        Some(crate::dns_server::start(&dns_opts)?)
    };
    crate::containers::runtime::reconcile(&engine).await;
    let listeners = listen::bind_all(&config.hosts, config.tls.as_ref()).await?;
    // The unit manager is in place before the first request is accepted, so `/kos/units`
    // never answers "not running" in between; the sockets are bound, so unit containers that
    // talk to kosd queue in the backlog. Their starts run on the manager's own thread.
    if let Some(u) = crate::units::start_if_enabled(&engine) {
        let _ = engine.units.set(u);
    }
    let router = crate::api::router(engine.clone());
    let (stop_tx, stop_rx) = watch::channel(false);
    let listeners: Vec<Arc<Listener>> = listeners.into_iter().map(Arc::new).collect();
    let mut tasks = Vec::new();
    for l in &listeners {
        tracing::info!(address = %l.describe(), "API listening");
        let l = l.clone();
        let router = router.clone();
        let mut stop = stop_rx.clone();
        tasks.push(tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.changed() => break,
                    r = l.accept() => match r {
                        Ok(Some(conn)) => {
                            let router = router.clone();
                            tokio::spawn(async move {
                                crate::api::serve_conn(router, conn).await;
                                crate::memory::connection_done();
                            });
                        }
                        Ok(None) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        }
                    }
                }
            }
        }));
    }
    let cri = start_cri(&engine, stop_rx.clone());
    engine.event("daemon", "start", &engine.id, &[]);
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut cri = cri;
    let mut failure = None;
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = int.recv() => tracing::info!("SIGINT: shutting down"),
        e = cri_failed(&mut cri) => {
            tracing::error!(error = format!("{e:#}"), "shutting down");
            failure = Some(e);
        }
    }
    let _ = stop_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    if let Some(cri) = cri {
        stop_cri(cri, config.cri_socket.as_deref()).await;
    }
    // Units stop in reverse dependency order before kosd stops the remaining containers;
    // with live-restore they keep running and are adopted at the next start.
    if let Some(u) = engine.units.get() {
        u.shutdown(!config.live_restore).await;
    }
    crate::containers::runtime::shutdown(&engine).await;
    // The veths of the containers that left are deleted in the background: kosd stops after.
    let nets = engine.nets.clone();
    let _ = tokio::task::spawn_blocking(move || {
        nets.wait_for_deferred_links(std::time::Duration::from_secs(10))
    })
    .await;
    if let Some(dns) = dns {
        dns.stop().await;
    }
    for l in &listeners {
        l.cleanup();
    }
    tracing::info!("stopped");
    failure.map_or(Ok(()), Err)
}
