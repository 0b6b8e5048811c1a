//! A small CLI over kos-network for tests and benchmarks (kosd is the real user).
//!
//! kosnet [--root DIR] [--table NAME] [--no-ip-forward] [--dns-pid-file PATH] COMMAND ...
//!   create NAME [--subnet CIDR] [--bridge NAME] [--internal] [--ipv6]
//!   remove NAME
//!   pin ID                       make the netns pin of ID
//!   unpin ID
//!   attach ID NETWORK [--netns PATH] [--port SPEC]... [--name NAME] [--pause-at recorded|connected]
//!   detach ID NETWORK
//!   cycle ID NETWORK [--netns PATH] [--port SPEC]... [--name NAME] [--count N]
//!                                attach and detach N times in this process
//!   fill N NETWORK [--port SPEC] attach N containers (pins made first) one after another,
//!                                print the time of the first and last ten, detach them all
//!   reconcile                    treat every container as gone
//!
//! `--pause-at` prints "paused" after the step and waits forever (for crash tests).

use std::error::Error;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use kos_network::{AttachRequest, AttachStep, NetworkSpec, Networks, Options, PortMapping};

type Res<T> = Result<T, Box<dyn Error>>;

struct Args {
    items: Vec<String>,
}

impl Args {
    fn flag(&mut self, name: &str) -> bool {
        match self.items.iter().position(|a| a == name) {
            Some(i) => {
                self.items.remove(i);
                true
            }
            None => false,
        }
    }

    fn values(&mut self, name: &str) -> Res<Vec<String>> {
        let mut out = Vec::new();
        while let Some(i) = self.items.iter().position(|a| a == name) {
            if i + 1 >= self.items.len() {
                return Err(format!("{name} needs a value").into());
            }
            out.push(self.items.remove(i + 1));
            self.items.remove(i);
        }
        Ok(out)
    }

    fn value(&mut self, name: &str) -> Res<Option<String>> {
        Ok(self.values(name)?.pop())
    }

    fn positional(&mut self, what: &str) -> Res<String> {
        if self.items.is_empty() {
            return Err(format!("missing {what}").into());
        }
        Ok(self.items.remove(0))
    }
}

fn request(args: &mut Args) -> Res<AttachRequest> {
    let id = args.positional("container id")?;
    let network = args.positional("network")?;
    let mut req = AttachRequest::new(&id, &network);
    req.netns = args.value("--netns")?.map(PathBuf::from);
    req.name = args.value("--name")?;
    for p in args.values("--port")? {
        req.ports.push(PortMapping::parse(&p)?);
    }
    Ok(req)
}

fn run() -> Res<()> {
    let mut args = Args {
        items: std::env::args().skip(1).collect(),
    };
    let mut opts = match args.value("--root")? {
        Some(root) => Options::under(&PathBuf::from(root)),
        None => Options::default(),
    };
    if let Some(t) = args.value("--table")? {
        opts.nft_table = t;
    }
    if args.flag("--no-ip-forward") {
        opts.manage_ip_forward = false;
    }
    if let Some(pid_file) = args.value("--dns-pid-file")? {
        if let Some(d) = opts.dns.as_mut() {
            d.pid_file = Some(PathBuf::from(pid_file));
        }
    }
    let nets = Networks::new(opts);
    let command = args.positional("command")?;
    let mut out = std::io::stdout().lock();
    match command.as_str() {
        "create" => {
            let name = args.positional("network name")?;
            let mut spec = NetworkSpec::bridge(&name);
            if let Some(s) = args.value("--subnet")? {
                spec = spec.with_subnet(&s);
            }
            spec.bridge_name = args.value("--bridge")?;
            spec.internal = args.flag("--internal");
            spec.ipv6 = args.flag("--ipv6");
            let net = nets.create(&spec)?;
            writeln!(out, "{}", serde_json::to_string(&net)?)?;
        }
        "remove" => nets.remove(&args.positional("network name")?)?,
        "pin" => {
            let path = nets.pins().create(&args.positional("container id")?)?;
            writeln!(out, "{}", path.display())?;
        }
        "unpin" => nets.pins().remove(&args.positional("container id")?)?,
        "attach" => {
            let pause = args.value("--pause-at")?;
            let req = request(&mut args)?;
            let stop = |step: AttachStep| {
                let wanted = match pause.as_deref() {
                    Some("recorded") => step == AttachStep::Recorded,
                    Some("connected") => step == AttachStep::Connected,
                    _ => false,
                };
                if wanted {
                    println!("paused");
                    let _ = std::io::stdout().flush();
                    loop {
                        std::thread::park();
                    }
                }
            };
            let rec = nets.attach_observed(&req, &stop)?;
            writeln!(out, "{}", serde_json::to_string(&rec)?)?;
        }
        "detach" => {
            let id = args.positional("container id")?;
            nets.detach(&id, &args.positional("network")?)?;
        }
        "cycle" => {
            let count: u32 = args
                .value("--count")?
                .map(|c| c.parse())
                .transpose()?
                .unwrap_or(1);
            let req = request(&mut args)?;
            let network = match &req.mode {
                kos_network::NetworkMode::Network(n) => n.clone(),
                other => return Err(format!("cycle needs a network, not {other:?}").into()),
            };
            let start = Instant::now();
            for _ in 0..count {
                nets.attach(&req)?;
                nets.detach(&req.container_id, &network)?;
            }
            let total = start.elapsed();
            if count > 1 {
                writeln!(
                    out,
                    "{count} attach+detach cycles in {:.1} ms ({:.2} ms each)",
                    total.as_secs_f64() * 1e3,
                    total.as_secs_f64() * 1e3 / f64::from(count)
                )?;
            }
        }
        "fill" => {
            let count: usize = args.positional("count")?.parse()?;
            let network = args.positional("network")?;
            let ports = args
                .values("--port")?
                .iter()
                .map(|p| PortMapping::parse(p))
                .collect::<Result<Vec<_>, _>>()?;
            let ids: Vec<String> = (0..count).map(|i| format!("fill{i}")).collect();
            for id in &ids {
                nets.pins().create(id)?;
            }
            let mut times = Vec::new();
            let total = Instant::now();
            let result = (|| -> Res<()> {
                for id in &ids {
                    let mut req = AttachRequest::new(id, &network);
                    req.name = Some(id.clone());
                    req.ports = ports.clone();
                    let start = Instant::now();
                    nets.attach(&req)?;
                    times.push(start.elapsed().as_secs_f64() * 1e3);
                }
                Ok(())
            })();
            let total = total.elapsed().as_secs_f64() * 1e3;
            for id in &ids {
                let _ = nets.release_container(id);
            }
            result?;
            let avg = |t: &[f64]| t.iter().sum::<f64>() / t.len().max(1) as f64;
            let k = times.len().min(10);
            writeln!(
                out,
                "{count} attachments in a row: {total:.1} ms in all; first {k}: {:.2} ms each, last {k}: {:.2} ms each",
                avg(&times[..k]),
                avg(&times[times.len() - k..])
            )?;
        }
        "reconcile" => {
            let report = nets.reconcile(&|_| false)?;
            writeln!(out, "{report:?}")?;
        }
        other => return Err(format!("unknown command {other:?}").into()),
    }
    if !args.items.is_empty() {
        return Err(format!("unexpected arguments {:?}", args.items).into());
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("kosnet: {e}");
        std::process::exit(1);
    }
}
