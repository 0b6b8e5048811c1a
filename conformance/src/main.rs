//! `kos-conformance`: an OCI runtime conformance suite for any runc-compatible runtime.
//!
//! Every test builds its own bundle, drives the runtime through its command line and checks
//! what the container reports about itself from inside.

mod harness;
mod tests;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{bail, Context, Result};

use harness::ctx::{Ctx, Suite};
use harness::report::{Outcome, Skip, Summary, TestResult};
use tests::TestCase;

const USAGE: &str = "usage: kos-conformance --runtime PATH [--filter SUBSTR]... [--jobs N] \
[--keep-going] [--verbose] [--list] [--skip-known-departures]

  --runtime PATH            runc-compatible runtime to test (name looked up in PATH)
  --filter SUBSTR           run only tests whose name contains SUBSTR (repeatable)
  --jobs N                  tests run in parallel (default 2)
  --keep-going              run every test even after a failure
  --verbose                 print every runtime command of every test
  --list                    list the selected tests and exit
  --skip-known-departures   report failures listed as known departures of this runtime
                            (by its --version name) as skipped instead of failed";

struct Args {
    runtime: Option<PathBuf>,
    filters: Vec<String>,
    jobs: usize,
    keep_going: bool,
    skip_known_departures: bool,
    verbose: bool,
    list: bool,
}

fn parse_args() -> Result<Args> {
    let mut a = Args {
        runtime: None,
        filters: Vec::new(),
        jobs: 2,
        keep_going: false,
        skip_known_departures: false,
        verbose: false,
        list: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<String> {
            match inline.clone().or_else(|| it.next()) {
                Some(v) => Ok(v),
                None => bail!("{name} needs a value\n{USAGE}"),
            }
        };
        match flag.as_str() {
            "--runtime" => a.runtime = Some(PathBuf::from(value("--runtime")?)),
            "--filter" => a.filters.push(value("--filter")?),
            "--jobs" | "-j" => {
                let v = value("--jobs")?;
                a.jobs = v
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .with_context(|| format!("--jobs takes a positive number, not {v:?}"))?;
            }
            "--keep-going" | "-k" => a.keep_going = true,
            "--skip-known-departures" => a.skip_known_departures = true,
            "--verbose" | "-v" => a.verbose = true,
            "--list" => a.list = true,
            "--help" | "-h" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    Ok(a)
}

fn main() -> ExitCode {
    match real_main() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("kos-conformance: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Resolves a runtime name through PATH when it has no slash.
fn resolve_runtime(p: &Path) -> Result<PathBuf> {
    if p.components().count() > 1 {
        if !p.exists() {
            bail!("runtime {} does not exist", p.display());
        }
        return std::fs::canonicalize(p).with_context(|| format!("resolving {}", p.display()));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let c = dir.join(p);
        if c.is_file() {
            return Ok(c);
        }
    }
    bail!("runtime {} not found in PATH", p.display())
}

/// The runtime's name as it reports it (`runc version 1.1.5` -> `runc`), used to match
/// known departures.
fn runtime_identity(suite: &Suite) -> String {
    let out = suite.runtime_cmd(&["--version"], &suite.work, "version");
    let first = out
        .ok()
        .and_then(|o| o.stdout.split_whitespace().next().map(str::to_lowercase));
    first.unwrap_or_else(|| {
        suite
            .runtime
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    })
}

fn real_main() -> Result<bool> {
    let args = parse_args()?;
    let all = tests::all();
    let selected: Vec<&TestCase> = all
        .iter()
        .filter(|t| {
            args.filters.is_empty() || args.filters.iter().any(|f| t.name.contains(f.as_str()))
        })
        .collect();
    if args.list {
        for t in &selected {
            println!("{}", t.name);
        }
        return Ok(true);
    }
    let Some(runtime) = &args.runtime else {
        bail!("--runtime is required\n{USAGE}");
    };
    let runtime = resolve_runtime(runtime)?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the suite creates namespaces, mounts and cgroups: run it as root");
    }
    if selected.is_empty() {
        bail!("no test matches the filter(s) {:?}", args.filters);
    }

    harness::runtime::install_signal_handlers();
    let work = std::env::temp_dir().join(format!("kosconf-{}", std::process::id()));
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    let result = run_suite(&args, runtime, &work, &selected);
    if let Err(e) = harness::host::remove_tree_safely(&work) {
        eprintln!("warning: {e:#}");
    }
    result
}

fn run_suite(args: &Args, runtime: PathBuf, work: &Path, selected: &[&TestCase]) -> Result<bool> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(work, std::fs::Permissions::from_mode(0o755))?;
    let rootfs = harness::rootfs::BaseRootfs::prepare(&work.join("base"))?;
    let state_root = work.join("state");
    std::fs::create_dir_all(&state_root)?;
    let mut suite = Suite {
        runtime,
        state_root,
        work: work.to_path_buf(),
        rootfs,
        counter: AtomicU64::new(0),
        features: None,
    };
    suite.features = suite
        .runtime_cmd(&["features"], work, "features")
        .ok()
        .filter(|o| o.success())
        .and_then(|o| serde_json::from_str(&o.stdout).ok());
    let identity = runtime_identity(&suite);
    println!(
        "kos-conformance: {} tests against {} ({identity}), {} job(s)",
        selected.len(),
        suite.runtime.display(),
        args.jobs
    );

    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let results: Mutex<Vec<TestResult>> = Mutex::new(Vec::new());
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..args.jobs.min(selected.len()) {
            s.spawn(|| loop {
                if stop.load(Ordering::Relaxed) || harness::runtime::interrupted() {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(t) = selected.get(i) else { break };
                let r = run_one(&suite, t, &identity, args.skip_known_departures);
                if matches!(r.outcome, Outcome::Fail(_)) && !args.keep_going {
                    stop.store(true, Ordering::Relaxed);
                }
                print_result(&r, args.verbose);
                if let Ok(mut v) = results.lock() {
                    v.push(r);
                }
            });
        }
    });

    let results = results.into_inner().unwrap_or_default();
    sweep_leftovers(&suite);
    let mut sum = Summary {
        not_run: selected.len() - results.len(),
        ..Summary::default()
    };
    for r in &results {
        sum.add(r);
    }
    let failed: Vec<&TestResult> = results
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Fail(_)))
        .collect();
    println!();
    if !failed.is_empty() {
        println!("failures:");
        for r in &failed {
            let tag = r
                .departure
                .map(|d| format!(" [known_{}_departure: {}]", d.runtime, d.clause))
                .unwrap_or_default();
            println!("  {}{tag}", r.name);
        }
        if sum.departures > 0 {
            println!(
                "{} of {} failures are known departures of {identity} from the spec",
                sum.departures, sum.failed
            );
        }
    }
    if harness::runtime::interrupted() {
        println!("interrupted: {} test(s) not run", sum.not_run);
    } else if sum.not_run > 0 {
        println!(
            "stopped after the first failure: {} test(s) not run (use --keep-going)",
            sum.not_run
        );
    }
    println!("time: {:.1}s", started.elapsed().as_secs_f64());
    println!("{}", sum.closing_line());
    Ok(sum.failed == 0 && !harness::runtime::interrupted())
}

fn print_result(r: &TestResult, verbose: bool) {
    // One println per result keeps lines of parallel tests whole.
    let mut text = r.line();
    if verbose || matches!(r.outcome, Outcome::Fail(_)) {
        let shown: Vec<&String> = if verbose {
            r.log.iter().collect()
        } else {
            r.log.iter().rev().take(6).rev().collect()
        };
        for l in shown {
            text.push_str("\n     | ");
            text.push_str(l);
        }
    }
    println!("{text}");
}

fn run_one(suite: &Suite, t: &TestCase, identity: &str, skip_departures: bool) -> TestResult {
    let dir = suite.work.join(format!("t{}", suite.next()));
    let start = Instant::now();
    let (outcome, log) = match std::fs::create_dir_all(&dir) {
        Err(e) => (
            Outcome::Fail(format!("creating {}: {e}", dir.display())),
            Vec::new(),
        ),
        Ok(()) => {
            let ctx = Ctx::new(suite, dir.clone());
            let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (t.func)(&ctx)));
            let outcome = match res {
                Ok(Ok(())) => Outcome::Pass,
                Ok(Err(e)) => match e.downcast_ref::<Skip>() {
                    Some(s) => Outcome::Skip(s.0.clone()),
                    None => Outcome::Fail(format!("{e:#}")),
                },
                Err(p) => {
                    let msg = p
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "panic".to_string());
                    Outcome::Fail(format!("panicked: {msg}"))
                }
            };
            let mut leaks = ctx.sweep_cgroups();
            let mounts = harness::host::detach_mounts_under(&dir);
            if !mounts.is_empty() {
                leaks.push(format!("mounts on the host {mounts:?}"));
            }
            let outcome = match outcome {
                Outcome::Pass if !leaks.is_empty() => Outcome::Fail(format!(
                    "the runtime left behind after delete: {}",
                    leaks.join(", ")
                )),
                o => o,
            };
            let mut log = ctx.take_log();
            if !leaks.is_empty() {
                log.push(format!("cleanup: removed leftovers {leaks:?}"));
            }
            if let Err(e) = harness::host::remove_tree_safely(&dir) {
                log.push(format!("cleanup: {e:#}"));
            }
            (outcome, log)
        }
    };
    let departure = match outcome {
        Outcome::Fail(_) => t.departures.iter().find(|d| d.runtime == identity).copied(),
        _ => None,
    };
    let (outcome, departure) = match (outcome, departure) {
        (Outcome::Fail(msg), Some(d)) if skip_departures => (
            Outcome::Skip(format!(
                "known_{}_departure: {} (failed with: {msg})",
                d.runtime, d.clause
            )),
            None,
        ),
        other => other,
    };
    TestResult {
        name: t.name,
        outcome,
        elapsed: start.elapsed(),
        departure,
        log,
    }
}

/// Force-deletes anything still in the run's state directory: a test guard that could not
/// delete would otherwise leave a container running.
fn sweep_leftovers(suite: &Suite) {
    let Ok(out) = suite.runtime_cmd(&["list", "-q"], &suite.work, "sweep-list") else {
        return;
    };
    for id in out.stdout.lines().map(str::trim).filter(|l| !l.is_empty()) {
        println!("warning: container {id} was left behind by a test; force-deleting it");
        let _ = suite.runtime_cmd(&["delete", "--force", id], &suite.work, "sweep-delete");
    }
}
