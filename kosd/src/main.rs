//! `kosd`: the KOS engine daemon, serving the Docker Engine API.
#![recursion_limit = "256"]

mod api;
mod build_network;
mod commit;
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
mod network_ids;
mod state;
mod timefmt;
mod units;
mod volumes;

use clap::Parser;

/// kosd reports errors as one line, never with a backtrace, yet with `RUST_BACKTRACE=1`
/// in the environment (a developer's shell) every anyhow error it makes, and it makes
/// them in normal operation, captured one: the unwinder run and the binary's unwind
/// tables read in (about 1 MB resident after a pull and two runs). Panics keep their
/// backtraces (`RUST_BACKTRACE`); `RUST_LIB_BACKTRACE=1` still asks for error ones.
fn quiet_error_backtraces() {
    if std::env::var_os("RUST_LIB_BACKTRACE").is_none() {
        // Before any thread exists: nothing reads the environment concurrently.
        std::env::set_var("RUST_LIB_BACKTRACE", "0");
    }
}

fn main() -> std::process::ExitCode {
    // A CRI pod's PID-namespace holder is this executable re-run: become it before anything.
    kos_cri::run_if_holder();
    memory::configure();
    quiet_error_backtraces();
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
