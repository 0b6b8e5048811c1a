//! A standalone CRI server over kos-cri, for tests and benchmarks until kosd serves it.
//!
//! kos-cri-server --socket PATH --data-dir DIR --exec-root DIR [--registry-config-dir DIR]
//!     [--cni-conf-dir DIR] [--cni-bin-dir DIR]... [--runtime BIN] [--shim BIN]
//!     [--cgroup-root NAME] [--cdi-spec-dir DIR]... [--stream-address IP:PORT]
//!     [--stream-token-ttl-ms MS]

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use kos_cri::CriConfig;

fn main() {
    // A pod that shares its PID namespace re-runs this binary as its holder.
    kos_cri::run_if_holder();
    if let Err(e) = run() {
        eprintln!("kos-cri-server: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut socket = None;
    let mut data = None;
    let mut exec_root = None;
    let mut rest: Vec<(String, String)> = Vec::new();
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--socket" => socket = Some(PathBuf::from(value)),
            "--data-dir" => data = Some(PathBuf::from(value)),
            "--exec-root" => exec_root = Some(PathBuf::from(value)),
            "--registry-config-dir"
            | "--cni-conf-dir"
            | "--cni-bin-dir"
            | "--runtime"
            | "--shim"
            | "--cgroup-root"
            | "--cdi-spec-dir"
            | "--stream-address"
            | "--stream-token-ttl-ms" => rest.push((flag, value)),
            other => bail!("unknown flag {other}"),
        }
    }
    let socket = socket.context("--socket is required")?;
    let data = data.context("--data-dir is required")?;
    let exec_root = exec_root.context("--exec-root is required")?;
    let store = kos_image::Store::open(data.join("image")).context("opening the image store")?;
    let mut cfg = CriConfig::new(data.join("cri"), exec_root, Arc::new(store));
    let mut bin_dirs = Vec::new();
    let mut cdi_dirs = Vec::new();
    for (flag, value) in rest {
        match flag.as_str() {
            "--registry-config-dir" => cfg.registry_config_dir = value.into(),
            "--cni-conf-dir" => cfg.cni_conf_dir = value.into(),
            "--cni-bin-dir" => bin_dirs.push(PathBuf::from(value)),
            "--runtime" => cfg.runtime_binary = value,
            "--shim" => cfg.shim_binary = value.into(),
            "--cgroup-root" => cfg.cgroup_root = value,
            "--cdi-spec-dir" => cdi_dirs.push(PathBuf::from(value)),
            "--stream-address" => {
                cfg.stream_address = value
                    .parse()
                    .with_context(|| format!("invalid --stream-address {value:?}"))?
            }
            "--stream-token-ttl-ms" => {
                let ms: u64 = value
                    .parse()
                    .with_context(|| format!("invalid --stream-token-ttl-ms {value:?}"))?;
                cfg.stream_token_ttl = std::time::Duration::from_millis(ms);
            }
            _ => {}
        }
    }
    if !bin_dirs.is_empty() {
        cfg.cni_bin_dirs = bin_dirs;
    }
    if !cdi_dirs.is_empty() {
        cfg.cdi_spec_dirs = cdi_dirs;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting tokio")?;
    rt.block_on(async move {
        let shutdown = async {
            let mut term =
                match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                    Ok(s) => s,
                    Err(_) => return std::future::pending().await,
                };
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        };
        kos_cri::serve_with_shutdown(&socket, cfg, shutdown).await
    })?;
    Ok(())
}
