//! `kaim`: serve the grant sockets and the per-user socket until SIGTERM.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::Parser;
use kaim::config::{self, Config, Grant, Users};
use kaim::identity::ContainerMatch;
use kaim::proxy::{self, Identify, Shared};
use kaim::Policy;
use kos_sdnotify::Notifier;

#[derive(Parser, Debug)]
#[command(
    name = "kaim",
    about = "Permission-checked proxy of the Docker Engine API"
)]
struct Args {
    /// JSON config file (grants, users socket, upstream, audit); flags add to it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The engine's API socket.
    #[arg(long)]
    upstream: Option<String>,
    /// NAME=CONTAINER_ID:POLICY_FILE:SOCKET_PATH[:CGROUP_PATH] (repeatable).
    #[arg(long = "grant")]
    grants: Vec<String>,
    /// A socket for unix users, judged by --user-policy.
    #[arg(long)]
    users_socket: Option<PathBuf>,
    /// UID=POLICY_FILE or default=POLICY_FILE (repeatable).
    #[arg(long = "user-policy")]
    user_policies: Vec<String>,
    /// Audit log (JSON lines).
    #[arg(long)]
    audit: Option<PathBuf>,
    /// Largest request body read (bytes); larger bodies are refused.
    #[arg(long)]
    max_body: Option<usize>,
    /// Control socket where the engine adds and removes grants while kaim runs (root only).
    #[arg(long)]
    control_socket: Option<PathBuf>,
    /// Directory of policies that grants name without a path (NAME.rego).
    #[arg(long)]
    policy_dir: Option<PathBuf>,
}

fn load(args: Args) -> anyhow::Result<Config> {
    let mut c = match &args.config {
        Some(p) => Config::from_file(p)?,
        None => Config {
            upstream: "unix:///run/kos/kos.sock".into(),
            audit: PathBuf::from("/var/log/kos/kaim-audit.log"),
            max_body: config::DEFAULT_MAX_BODY,
            grants: Vec::new(),
            users: None,
            socket_mode: 0o666,
            control_socket: None,
            policy_dir: PathBuf::from(config::DEFAULT_POLICY_DIR),
        },
    };
    if let Some(s) = args.control_socket {
        c.control_socket = Some(s);
    }
    if let Some(d) = args.policy_dir {
        c.policy_dir = d;
    }
    if let Some(u) = args.upstream {
        c.upstream = u;
    }
    if let Some(a) = args.audit {
        c.audit = a;
    }
    if let Some(m) = args.max_body {
        c.max_body = m;
    }
    for g in &args.grants {
        c.grants.push(config::parse_grant(g)?);
    }
    if let Some(s) = args.users_socket {
        let mut policies = c.users.take().map(|u| u.policies).unwrap_or_default();
        for p in &args.user_policies {
            let (k, v) = config::parse_user_policy(p)?;
            policies.insert(k, v);
        }
        c.users = Some(Users {
            socket: s,
            policies,
        });
    } else if !args.user_policies.is_empty() {
        bail!("--user-policy needs --users-socket");
    }
    c.validate()?;
    Ok(c)
}

fn bind(path: &Path, mode: u32) -> anyhow::Result<tokio::net::UnixListener> {
    Ok(kaim::control::bind_socket(path, mode)?)
}

fn grant_identify(g: &Grant) -> anyhow::Result<Identify> {
    Ok(Identify::Grant {
        name: g.name.clone(),
        matcher: ContainerMatch {
            container_id: g.container_id.clone(),
            cgroup: g.cgroup.clone(),
        },
        policy: Arc::new(Policy::from_file(&g.policy)?),
    })
}

fn users_identify(u: &Users) -> anyhow::Result<Identify> {
    let mut policies = HashMap::new();
    let mut default = None;
    for (k, p) in &u.policies {
        let policy = Arc::new(Policy::from_file(p)?);
        if k == "default" {
            default = Some(policy);
        } else {
            policies.insert(k.parse::<u32>().context("uid")?, policy);
        }
    }
    Ok(Identify::Users { policies, default })
}

async fn run(c: Config) -> anyhow::Result<()> {
    let shared = Arc::new(Shared {
        upstream: c.upstream_path()?,
        audit: kaim::audit::Audit::open(&c.audit)?,
        max_body: c.max_body,
    });
    // Every policy compiles before any socket exists: a bad policy starts nothing.
    let mut plans = Vec::new();
    for g in &c.grants {
        plans.push((g.socket.clone(), grant_identify(g)?));
    }
    if let Some(u) = &c.users {
        plans.push((u.socket.clone(), users_identify(u)?));
    }
    let mut sockets = Vec::new();
    let mut policies: Vec<Arc<Policy>> = Vec::new();
    let grants = Arc::new(kaim::control::Grants::new(
        shared.clone(),
        c.socket_mode,
        c.policy_dir.clone(),
    ));
    if let Some(path) = &c.control_socket {
        // Root only: a grant hands out the engine's API.
        let l = kaim::control::bind_socket(path, 0o600)?;
        sockets.push(path.clone());
        tokio::spawn(kaim::control::serve(l, grants.clone()));
    }
    for (path, ident) in plans {
        let l = bind(&path, c.socket_mode)?;
        sockets.push(path);
        policies.extend(ident.policies());
        tokio::spawn(proxy::serve(l, Arc::new(ident), shared.clone()));
    }

    // Signal handlers first: a SIGTERM right after READY=1 must find them in place.
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    let notifier = Notifier::from_env().context("NOTIFY_SOCKET")?;
    if let Some(n) = &notifier {
        n.notify(&format!(
            "READY=1\nSTATUS=serving {} socket(s)",
            sockets.len()
        ))
        .context("sd_notify READY")?;
    }
    let notifier = notifier.map(std::sync::Arc::new);
    if let Some(n) = &notifier {
        if let Some(interval) = n.watchdog_interval() {
            let n = n.clone();
            tokio::spawn(async move {
                let mut t = tokio::time::interval(interval);
                loop {
                    t.tick().await;
                    let _ = n.notify("WATCHDOG=1");
                }
            });
        }
    }

    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = hup.recv() => {
                // Policies are re-read in place; one that no longer compiles keeps the old one.
                if let Some(n) = &notifier {
                    let _ = n.notify("RELOADING=1");
                }
                let mut failed = 0;
                let policies: Vec<Arc<Policy>> =
                    policies.iter().cloned().chain(grants.policies()).collect();
                for p in &policies {
                    if let Err(e) = p.reload() {
                        eprintln!("kaim: reload: {e}");
                        failed += 1;
                    }
                }
                if let Some(n) = &notifier {
                    let _ = n.notify(&format!(
                        "READY=1\nSTATUS=reloaded {} policies, {failed} kept after errors",
                        policies.len()
                    ));
                }
            }
        }
    }
    if let Some(n) = &notifier {
        let _ = n.notify("STOPPING=1");
    }
    grants.clear();
    for s in sockets {
        let _ = std::fs::remove_file(s);
    }
    Ok(())
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KAIM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = load(Args::parse()).and_then(|c| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .context("tokio runtime")?
            .block_on(run(c))
    });
    if let Err(e) = result {
        eprintln!("kaim: {e:#}");
        std::process::exit(1);
    }
}
