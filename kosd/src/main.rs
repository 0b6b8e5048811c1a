//! `kosd`: the KOS engine daemon, serving the Docker Engine API.
#![recursion_limit = "256"]

mod api;
mod build_network;
mod config;
mod containers;
mod credentials;
mod daemon;
mod devices;
mod dns_server;
mod engine;
mod error;
mod events;
mod filters;
mod hostinfo;
mod image_import;
mod images;
mod init_binary;
mod listen;
mod memory;
mod network;
mod state;
mod timefmt;
mod units;
mod volumes;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // A CRI pod's PID-namespace holder is this executable re-run: become it before anything.
    kos_cri::run_if_holder();
    memory::configure();
    let flags = config::Flags::parse();
    let config = match config::Config::from_flags(flags) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("kosd: {e:#}");
            return std::process::ExitCode::from(1);
        }
    };
    let level = match config.log_level.as_str() {
        "fatal" => "error",
        l => l,
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KOSD_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level)),
        )
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kosd: starting the async runtime: {e}");
            return std::process::ExitCode::from(1);
        }
    };
    match rt.block_on(async {
        memory::spawn_trimmer();
        daemon::run(config).await
    }) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kosd: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}
