//! `kadcm`: list devices, write and resolve CDI specs, attach/detach devices to running
//! containers, watch uevents, and `run` as the device service (specs kept current, events
//! published on a socket, auto-attach rules applied).

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use kadcm::autoattach::{AutoAttach, RuleFile};
use kadcm::cdi;
use kadcm::container::Runtime;
use kadcm::events::{DeviceEvent, EventSink, JsonLinesSocket};
use kadcm::passthrough::{AttachOptions, Passthrough};
use kadcm::sysfs;
use kadcm::uevent::UeventSocket;
use kos_sdnotify::Notifier;

#[derive(Parser, Debug)]
#[command(name = "kadcm", about = "KOS device communication manager")]
struct Cli {
    /// sysfs mount.
    #[arg(long, default_value = "/sys", global = true)]
    sys: PathBuf,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Host devices as JSON lines.
    List {
        #[arg(long)]
        class: Option<String>,
    },
    /// Write kadcm's CDI specs.
    CdiWrite {
        #[arg(long, default_value = "/var/run/cdi")]
        dir: PathBuf,
    },
    /// Resolve qualified CDI names into container edits (JSON).
    CdiResolve {
        /// Spec directories, lowest priority first.
        #[arg(long = "cdi-dir")]
        dirs: Vec<PathBuf>,
        names: Vec<String>,
    },
    /// Pass a device into a running container.
    Attach(AttachArgs),
    /// Take a passed device out of a running container.
    Detach(AttachArgs),
    /// Print kernel uevents as JSON lines.
    Watch,
    /// Run as the device service.
    Run(RunArgs),
}

#[derive(Args, Debug)]
struct RuntimeArgs {
    /// The runtime that runs the containers (its `state` command is asked).
    #[arg(long, default_value = "kosrun")]
    runtime: PathBuf,
    /// The runtime's --root.
    #[arg(long)]
    runtime_root: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct AttachArgs {
    #[command(flatten)]
    runtime: RuntimeArgs,
    /// Container id.
    #[arg(long)]
    container: String,
    /// Host device node (/dev/...).
    #[arg(long)]
    device: PathBuf,
    /// Path inside the container (the host path by default).
    #[arg(long)]
    path: Option<PathBuf>,
    #[arg(long, default_value = "rwm")]
    access: String,
    /// Octal mode of the node in the container.
    #[arg(long, value_parser = parse_octal)]
    mode: Option<u32>,
    /// kaim policy (Rego, package kaim) judging the passthrough.
    #[arg(long)]
    policy: PathBuf,
}

#[derive(Args, Debug)]
struct RunArgs {
    #[command(flatten)]
    runtime: RuntimeArgs,
    #[arg(long, default_value = "/var/run/cdi")]
    cdi_dir: PathBuf,
    /// JSON-lines event socket.
    #[arg(long, default_value = "/run/kos/kadcm-events.sock")]
    events_socket: PathBuf,
    /// kaim policy judging every passthrough.
    #[arg(long)]
    policy: PathBuf,
    /// Auto-attach rules (JSON).
    #[arg(long)]
    rules: Option<PathBuf>,
}

fn parse_octal(s: &str) -> Result<u32, String> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8).map_err(|e| format!("{s:?}: {e}"))
}

fn runtime(a: &RuntimeArgs) -> Runtime {
    Runtime {
        binary: a.runtime.clone(),
        root: a.runtime_root.clone(),
    }
}

fn attach(sys: &Path, a: &AttachArgs, detach: bool) -> anyhow::Result<()> {
    let c = runtime(&a.runtime).container(&a.container)?;
    let d = sysfs::device_for_node(sys, &a.device)?;
    let pt = Passthrough::new(Arc::new(kaim::Policy::from_file(&a.policy)?));
    let opts = AttachOptions {
        path: a.path.clone(),
        access: a.access.clone(),
        mode: a.mode,
        uid: None,
        gid: None,
    };
    if detach {
        use std::os::unix::fs::MetadataExt;
        // The CLI keeps no state between runs: on v2 the program is rebuilt from the
        // container's own rules, without devices other runs attached (`kadcm run` keeps them).
        let md = std::fs::metadata(&a.device)?;
        let spec = kadcm::node::NodeSpec {
            path: a.path.clone().unwrap_or_else(|| a.device.clone()),
            node_type: d.node_type.context("device has no node type")?,
            major: d.major.context("device has no major number")?,
            minor: d.minor.context("device has no minor number")?,
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
        };
        pt.detach(&c, &spec)?;
    } else {
        let n = pt.attach(&c, &d, &opts)?;
        println!("{}", n.path.display());
    }
    Ok(())
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_term(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn run(sys: &Path, a: &RunArgs) -> anyhow::Result<()> {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, on_term as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_term as *const () as libc::sighandler_t);
    }
    let policy = Arc::new(kaim::Policy::from_file(&a.policy)?);
    let rules = match &a.rules {
        Some(p) => RuleFile::load(p)?.rules,
        None => Vec::new(),
    };
    let auto = AutoAttach::new(rules, runtime(&a.runtime), Passthrough::new(policy));
    let socket = UeventSocket::open()?;
    // Specs are written after the socket is open, so no device added in between is missed.
    let devices = sysfs::enumerate(sys)?;
    cdi::write::write_specs(&a.cdi_dir, &devices)?;
    let sink = JsonLinesSocket::bind(&a.events_socket)?;
    let notifier = Notifier::from_env().context("NOTIFY_SOCKET")?;
    if let Some(n) = &notifier {
        n.notify(&format!("READY=1\nSTATUS={} devices", devices.len()))
            .context("sd_notify READY")?;
    }
    let watchdog = notifier.as_ref().and_then(Notifier::watchdog_interval);
    // Wake often enough to ping the watchdog and to notice SIGTERM.
    let tick = watchdog.map_or(Duration::from_secs(1), |iv| iv.min(Duration::from_secs(1)));
    socket.set_timeout(Some(tick))?;
    let mut last_ping = Instant::now();
    let mut rewrite_due = false;
    while !STOP.load(Ordering::SeqCst) {
        if let (Some(n), Some(iv)) = (&notifier, watchdog) {
            if last_ping.elapsed() >= iv {
                let _ = n.notify("WATCHDOG=1");
                last_ping = Instant::now();
            }
        }
        match socket.recv()? {
            None => {
                if rewrite_due {
                    let devices = sysfs::enumerate(sys)?;
                    if let Err(e) = cdi::write::write_specs(&a.cdi_dir, &devices) {
                        eprintln!("kadcm: {e}");
                    }
                    rewrite_due = false;
                }
            }
            Some(ev) => {
                let action = ev.action.clone();
                let devpath = sys.join(ev.devpath.trim_start_matches('/'));
                let de = DeviceEvent::from_uevent(sys, ev);
                sink.publish(&de);
                if de.uevent.devname.is_some() && matches!(action.as_str(), "add" | "remove") {
                    rewrite_due = true;
                }
                match (action.as_str(), &de.device) {
                    ("add", Some(d)) => {
                        for r in auto.device_added(d) {
                            match r {
                                Ok((id, n)) => eprintln!(
                                    "kadcm: attached {} to {id} at {}",
                                    d.describe(),
                                    n.path.display()
                                ),
                                Err(e) => eprintln!("kadcm: auto-attach: {e}"),
                            }
                        }
                    }
                    ("remove", _) => {
                        for r in auto.device_removed(&devpath) {
                            if let Err(e) = r {
                                eprintln!("kadcm: auto-detach: {e}");
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    if let Some(n) = &notifier {
        let _ = n.notify("STOPPING=1");
    }
    drop(sink);
    Ok(())
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KADCM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = (|| -> anyhow::Result<()> {
        match &cli.cmd {
            Cmd::List { class } => {
                for d in sysfs::enumerate(&cli.sys)? {
                    if class.as_deref().is_none_or(|c| c == d.class.as_str()) {
                        println!("{}", serde_json::to_string(&d)?);
                    }
                }
            }
            Cmd::CdiWrite { dir } => {
                for p in cdi::write::write_specs(dir, &sysfs::enumerate(&cli.sys)?)? {
                    println!("{}", p.display());
                }
            }
            Cmd::CdiResolve { dirs, names } => {
                let dirs = if dirs.is_empty() {
                    cdi::default_dirs()
                } else {
                    dirs.clone()
                };
                let (reg, broken) = cdi::registry::Registry::load(&dirs);
                for e in broken {
                    eprintln!("kadcm: skipped: {e}");
                }
                println!("{}", serde_json::to_string_pretty(&reg.resolve(names)?)?);
            }
            Cmd::Attach(a) => attach(&cli.sys, a, false)?,
            Cmd::Detach(a) => attach(&cli.sys, a, true)?,
            Cmd::Watch => {
                let s = UeventSocket::open()?;
                while let Some(ev) = s.recv()? {
                    println!(
                        "{}",
                        serde_json::to_string(&DeviceEvent::from_uevent(&cli.sys, ev))?
                    );
                }
            }
            Cmd::Run(a) => run(&cli.sys, a)?,
        }
        Ok(())
    })();
    if let Err(e) = result {
        eprintln!("kadcm: {e:#}");
        std::process::exit(1);
    }
}
