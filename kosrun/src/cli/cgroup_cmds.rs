//! The cgroup commands, with runc's names and flags: pause, resume, update, events, ps.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Subcommand;
use kosrun::ops::{events, pause, ps, update};
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxPids, LinuxResources};

use super::log;

#[derive(Subcommand)]
pub enum Cmd {
    /// Suspend every process of the container (cgroup freezer)
    Pause { id: String },
    /// Resume a paused container
    Resume { id: String },
    /// Change the container's resource limits
    Update(Box<UpdateArgs>),
    /// Print the container's stats and OOM events as JSON lines, until it stops
    Events {
        id: String,
        /// Time between stats records (Go duration: 5s, 500ms, 1m30s)
        #[arg(long, default_value = "5s", value_parser = parse_duration)]
        interval: Duration,
        /// Print the stats once and exit
        #[arg(long)]
        stats: bool,
    },
    /// List the container's processes (host ps(1) output, or a JSON array of pids)
    Ps {
        /// table or json
        #[arg(short, long, default_value = "table")]
        format: String,
        id: String,
        /// Options for ps(1) (default -ef)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
}

#[derive(clap::Args)]
pub struct UpdateArgs {
    id: String,
    /// Resources JSON (linux.resources shape) from this file, or '-' for stdin; the other
    /// options are then ignored
    #[arg(short, long)]
    resources: Option<PathBuf>,
    /// Block IO weight, 10 to 1000
    #[arg(long = "blkio-weight")]
    blkio_weight: Option<u16>,
    /// CFS period in microseconds
    #[arg(long = "cpu-period")]
    cpu_period: Option<u64>,
    /// CFS quota in microseconds per period (-1: none)
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    cpu_quota: Option<i64>,
    /// CPU shares (relative weight)
    #[arg(long = "cpu-share", alias = "cpu-shares")]
    cpu_share: Option<u64>,
    /// Realtime period in microseconds
    #[arg(long = "cpu-rt-period")]
    cpu_rt_period: Option<u64>,
    /// Realtime runtime in microseconds per period
    #[arg(long = "cpu-rt-runtime", allow_hyphen_values = true)]
    cpu_rt_runtime: Option<i64>,
    /// CPUs to use (e.g. 0-2,4)
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    /// Memory nodes to use
    #[arg(long = "cpuset-mems")]
    cpuset_mems: Option<String>,
    /// Memory limit (512m, 1g, bytes; -1: unlimited)
    #[arg(long, allow_hyphen_values = true)]
    memory: Option<String>,
    /// Memory soft limit
    #[arg(long = "memory-reservation", allow_hyphen_values = true)]
    memory_reservation: Option<String>,
    /// Memory plus swap limit (-1: unlimited swap)
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    memory_swap: Option<String>,
    /// Kernel memory limit (ignored by kernels >= 5.16)
    #[arg(long = "kernel-memory", allow_hyphen_values = true)]
    kernel_memory: Option<String>,
    /// Kernel TCP buffer memory limit (cgroup v1)
    #[arg(long = "kernel-memory-tcp", allow_hyphen_values = true)]
    kernel_memory_tcp: Option<String>,
    /// Maximum number of processes (-1: unlimited)
    #[arg(long = "pids-limit", allow_hyphen_values = true)]
    pids_limit: Option<i64>,
    /// Intel RDT L3 cache schema (not supported)
    #[arg(long = "l3-cache-schema")]
    l3_cache_schema: Option<String>,
    /// Intel RDT memory bandwidth schema (not supported)
    #[arg(long = "mem-bw-schema")]
    mem_bw_schema: Option<String>,
}

pub fn run(root: &Path, cmd: &Cmd) -> anyhow::Result<ExitCode> {
    match cmd {
        Cmd::Pause { id } => pause::pause(root, id)?,
        Cmd::Resume { id } => pause::resume(root, id)?,
        Cmd::Update(a) => {
            let change = a.resources_change()?;
            for w in update::update(root, &a.id, &change)? {
                log::warn(&w);
            }
        }
        Cmd::Events {
            id,
            interval,
            stats,
        } => {
            if *stats {
                let s = events::stats(root, id)?;
                println!("{}", events::stats_line(id, &s));
            } else {
                let mut out = std::io::stdout().lock();
                events::watch(root, id, *interval, |e| match e {
                    events::Event::Stats(s) => writeln!(out, "{}", events::stats_line(id, &s)),
                    events::Event::Oom => writeln!(out, "{}", events::oom_line(id)),
                    events::Event::Warning(w) => {
                        log::warn(&w);
                        Ok(())
                    }
                })?;
            }
        }
        Cmd::Ps {
            format,
            id,
            ps_args,
        } => {
            let pids = ps::pids(root, id)?;
            match format.as_str() {
                "json" => println!("{}", serde_json::to_string(&pids)?),
                "table" => print!("{}", ps::table(&pids, ps_args)?),
                other => bail!("invalid --format {other:?}: use table or json"),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

impl UpdateArgs {
    fn any_flag(&self) -> bool {
        self.blkio_weight.is_some()
            || self.cpu_period.is_some()
            || self.cpu_quota.is_some()
            || self.cpu_share.is_some()
            || self.cpu_rt_period.is_some()
            || self.cpu_rt_runtime.is_some()
            || self.cpuset_cpus.is_some()
            || self.cpuset_mems.is_some()
            || self.memory.is_some()
            || self.memory_reservation.is_some()
            || self.memory_swap.is_some()
            || self.kernel_memory.is_some()
            || self.kernel_memory_tcp.is_some()
            || self.pids_limit.is_some()
    }

    /// The requested change: the JSON document, or the flags.
    fn resources_change(&self) -> anyhow::Result<LinuxResources> {
        if self.l3_cache_schema.is_some() {
            bail!("--l3-cache-schema: Intel RDT is not supported by kosrun");
        }
        if self.mem_bw_schema.is_some() {
            bail!("--mem-bw-schema: Intel RDT is not supported by kosrun");
        }
        if let Some(src) = &self.resources {
            if self.any_flag() {
                log::warn("--resources given: the other update options are ignored");
            }
            return read_resources(src);
        }
        self.flags_change()
    }

    fn flags_change(&self) -> anyhow::Result<LinuxResources> {
        let mut r = LinuxResources::default();
        let size = |flag: &str, v: &Option<String>| -> anyhow::Result<Option<i64>> {
            v.as_deref()
                .map(update::parse_bytes)
                .transpose()
                .with_context(|| format!("--{flag}"))
        };
        let mut mem = LinuxMemory::default();
        mem.set_limit(size("memory", &self.memory)?)
            .set_reservation(size("memory-reservation", &self.memory_reservation)?)
            .set_swap(size("memory-swap", &self.memory_swap)?)
            .set_kernel(size("kernel-memory", &self.kernel_memory)?)
            .set_kernel_tcp(size("kernel-memory-tcp", &self.kernel_memory_tcp)?);
        if mem != LinuxMemory::default() {
            r.set_memory(Some(mem));
        }
        let mut cpu = LinuxCpu::default();
        cpu.set_shares(self.cpu_share)
            .set_quota(self.cpu_quota)
            .set_period(self.cpu_period)
            .set_realtime_runtime(self.cpu_rt_runtime)
            .set_realtime_period(self.cpu_rt_period)
            .set_cpus(self.cpuset_cpus.clone())
            .set_mems(self.cpuset_mems.clone());
        if cpu != LinuxCpu::default() {
            r.set_cpu(Some(cpu));
        }
        if let Some(l) = self.pids_limit {
            let mut p = LinuxPids::default();
            p.set_limit(l);
            r.set_pids(Some(p));
        }
        if let Some(w) = self.blkio_weight {
            let mut b = LinuxBlockIo::default();
            b.set_weight(Some(w));
            r.set_block_io(Some(b));
        }
        Ok(r)
    }
}

fn read_resources(src: &Path) -> anyhow::Result<LinuxResources> {
    let (name, text) = if src == Path::new("-") {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading resources from stdin")?;
        ("stdin".to_string(), s)
    } else {
        let s = std::fs::read_to_string(src)
            .with_context(|| format!("reading resources from {}", src.display()))?;
        (src.display().to_string(), s)
    };
    serde_json::from_str(&text).with_context(|| format!("resources in {name} are not valid JSON"))
}

/// A Go duration as runc's `--interval` takes it: a sequence of decimal numbers with units
/// ns, us (or µs), ms, s, m, h, e.g. "5s", "1.5s", "1m30s", "250ms"; "0" alone is zero.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad = || format!("invalid duration {s:?} (use e.g. 5s, 500ms, 1m30s)");
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() || s.starts_with('-') {
        return Err(bad());
    }
    let mut rest = s.strip_prefix('+').unwrap_or(s);
    let mut nanos: f64 = 0.0;
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (num, tail) = rest.split_at(n);
        let v: f64 = num.parse().map_err(|_| bad())?;
        let u = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(u);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        nanos += v * scale;
        rest = tail;
    }
    if !nanos.is_finite() || nanos > u64::MAX as f64 {
        return Err(bad());
    }
    Ok(Duration::from_nanos(nanos as u64))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(subcommand)]
        cmd: Cmd,
    }

    fn parse(args: &[&str]) -> Cmd {
        T::try_parse_from(std::iter::once("kosrun").chain(args.iter().copied()))
            .unwrap()
            .cmd
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1m30s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("10us").unwrap(), Duration::from_micros(10));
        assert_eq!(parse_duration("0").unwrap(), Duration::ZERO);
        for b in ["", "5", "s", "-1s", "5x", "1..5s"] {
            assert!(parse_duration(b).is_err(), "{b:?}");
        }
    }

    #[test]
    fn ps_takes_trailing_options() {
        let Cmd::Ps {
            id,
            ps_args,
            format,
        } = parse(&["ps", "c1", "-o", "pid,comm"])
        else {
            panic!("not ps");
        };
        assert_eq!((id.as_str(), format.as_str()), ("c1", "table"));
        assert_eq!(ps_args, ["-o", "pid,comm"]);
        let Cmd::Ps { ps_args, .. } = parse(&["ps", "c1", "--", "-ef"]) else {
            panic!("not ps");
        };
        assert_eq!(ps_args, ["-ef"]);
        let Cmd::Ps { format, .. } = parse(&["ps", "--format", "json", "c1"]) else {
            panic!("not ps");
        };
        assert_eq!(format, "json");
    }

    #[test]
    fn update_flags_become_resources() {
        let Cmd::Update(a) = parse(&[
            "update",
            "--memory",
            "512m",
            "--memory-swap",
            "-1",
            "--cpu-shares",
            "512",
            "--cpu-quota",
            "-1",
            "--pids-limit",
            "42",
            "--cpuset-cpus",
            "0",
            "c1",
        ]) else {
            panic!("not update");
        };
        let r = a.resources_change().unwrap();
        let m = r.memory().unwrap();
        assert_eq!(m.limit(), Some(512 << 20));
        assert_eq!(m.swap(), Some(-1));
        let c = r.cpu().clone().unwrap();
        assert_eq!(c.shares(), Some(512));
        assert_eq!(c.quota(), Some(-1));
        assert_eq!(c.cpus().as_deref(), Some("0"));
        assert_eq!(r.pids().unwrap().limit(), 42);
        assert!(r.block_io().is_none());
    }

    #[test]
    fn update_refuses_rdt_and_bad_sizes() {
        let Cmd::Update(a) = parse(&["update", "--l3-cache-schema", "L3:0=f", "c1"]) else {
            panic!("not update");
        };
        let e = a.resources_change().unwrap_err().to_string();
        assert!(e.contains("not supported"), "{e}");
        let Cmd::Update(a) = parse(&["update", "--memory", "12x", "c1"]) else {
            panic!("not update");
        };
        let e = format!("{:#}", a.resources_change().unwrap_err());
        assert!(e.contains("--memory") && e.contains("12x"), "{e}");
    }
}
