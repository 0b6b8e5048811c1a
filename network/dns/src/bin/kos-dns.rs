//! `kos-dns`: answers container names on KOS bridge networks and forwards the rest.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Parser;

use kos_dns::forward::Upstreams;
use kos_dns::resolvconf;
use kos_dns::server::{self, Config};

/// Container-name DNS for KOS bridge networks.
#[derive(Debug, Parser)]
#[command(name = "kos-dns", version)]
struct Args {
    /// The DNS table written by KOS's network code.
    #[arg(long, default_value = "/run/kos/dns.json")]
    table: PathBuf,
    /// Upstream resolver, IP or IP:PORT ([v6]:PORT); repeatable. Default: the host's resolvers
    /// from --resolv-conf, without loopback ones.
    #[arg(long = "upstream", value_name = "IP[:PORT]")]
    upstreams: Vec<String>,
    /// Where the host's resolvers are read when no --upstream is given (again on every reload).
    #[arg(long, default_value = resolvconf::HOST_RESOLV_CONF)]
    resolv_conf: PathBuf,
    /// Port to listen on at every gateway address (UDP and TCP).
    #[arg(long, default_value_t = 53)]
    port: u16,
    /// Time allowed to one upstream for one query, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    upstream_timeout_ms: u64,
    /// How often the table file is checked for changes, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    poll_ms: u64,
    /// Write our pid here once serving (table writers send SIGHUP to it); removed on exit.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Log filter (tracing-subscriber syntax); RUST_LOG overrides it.
    #[arg(long, default_value = "info")]
    log_level: String,
}

fn parse_upstream(s: &str) -> Result<SocketAddr> {
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, 53));
    }
    s.parse::<SocketAddr>()
        .with_context(|| format!("--upstream {s:?}: expected IP, IP:PORT or [IPv6]:PORT"))
}

fn main() {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&args.log_level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(args) {
        eprintln!("kos-dns: {e:#}");
        std::process::exit(1);
    }
}

fn run(args: Args) -> Result<()> {
    let upstreams_from = args.upstreams.is_empty().then(|| args.resolv_conf.clone());
    let servers = if args.upstreams.is_empty() {
        let ips = resolvconf::host_upstreams(&args.resolv_conf)?;
        if ips.is_empty() {
            tracing::warn!(
                resolv_conf = %args.resolv_conf.display(),
                "no usable upstream resolvers: names outside the table get SERVFAIL"
            );
        }
        ips.into_iter().map(|ip| SocketAddr::new(ip, 53)).collect()
    } else {
        args.upstreams
            .iter()
            .map(|s| parse_upstream(s))
            .collect::<Result<Vec<_>>>()?
    };
    if args.upstream_timeout_ms == 0 || args.poll_ms == 0 {
        bail!("--upstream-timeout-ms and --poll-ms must be above 0");
    }
    let config = Config {
        table: args.table,
        port: args.port,
        upstreams: Upstreams {
            servers,
            attempt_timeout: Duration::from_millis(args.upstream_timeout_ms),
        },
        upstreams_from,
        pid_file: args.pid_file,
        poll_interval: Duration::from_millis(args.poll_ms),
    };
    tracing::info!(upstreams = ?config.upstreams.servers, table = %config.table.display(), "starting");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(server::run(config))?;
    Ok(())
}
