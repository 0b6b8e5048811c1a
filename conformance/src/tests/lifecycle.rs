//! Lifecycle and operations (runtime.md "Lifecycle", "Operations", "State") and the runc
//! command-line surface other tools rely on (run, list, spec, features, exec, pause).

use std::fs;
use std::os::unix::io::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::{json, Value};

use super::{departs, t, TestCase};
use crate::harness::bundle::Bundle;
use crate::harness::console;
use crate::harness::ctx::{process_alive, processes_in_cgroup, Call, Container, Ctx};
use crate::harness::report::Departure;

const WAIT: Duration = Duration::from_secs(10);
/// A program that stays up until killed with SIGKILL (pid 1 ignores unhandled signals).
const LONG: &[&str] = &["sh", "-c", "echo ready; exec sleep 1000"];
/// A program that exits on SIGTERM through a trap, printing that it did.
const TRAP_TERM: &[&str] = &[
    "sh",
    "-c",
    "trap 'echo got-term; exit 0' TERM; echo ready; while :; do sleep 0.05; done",
];

const DELETE_CREATED: &[Departure] = &[
    Departure {
        runtime: "runc",
        clause: "runtime.md Delete: \"Attempting to delete a container that is not stopped MUST have no \
                 effect on the container and MUST generate an error\" (runc deletes a created container \
                 without --force)",
    },
    Departure {
        runtime: "kosrun",
        clause: "runtime.md Delete (as runc): kosrun deletes a created container without --force, \
                 because containerd's runc shim deletes created-but-never-started tasks that way",
    },
];

pub fn tests() -> Vec<TestCase> {
    vec![
        t("lifecycle::create_state_created", create_state_created),
        t("lifecycle::start_state_running", start_state_running),
        t("lifecycle::exit_state_stopped", exit_state_stopped),
        t(
            "lifecycle::delete_removes_container",
            delete_removes_container,
        ),
        t("lifecycle::state_json_fields", state_json_fields),
        t(
            "lifecycle::relative_bundle_absolute_in_state",
            relative_bundle_absolute_in_state,
        ),
        t("lifecycle::start_running_fails", start_running_fails),
        t("lifecycle::start_stopped_fails", start_stopped_fails),
        t(
            "lifecycle::delete_running_needs_force",
            delete_running_needs_force,
        ),
        departs(
            "lifecycle::delete_created_fails",
            delete_created_fails,
            DELETE_CREATED,
        ),
        t(
            "lifecycle::create_duplicate_id_fails",
            create_duplicate_id_fails,
        ),
        t("lifecycle::state_unknown_id_fails", |c| {
            unknown_id(c, "state")
        }),
        t("lifecycle::start_unknown_id_fails", |c| {
            unknown_id(c, "start")
        }),
        t("lifecycle::kill_unknown_id_fails", |c| {
            unknown_id(c, "kill")
        }),
        t("lifecycle::delete_unknown_id_fails", |c| {
            unknown_id(c, "delete")
        }),
        t("lifecycle::kill_signal_name_TERM", |c| kill_term(c, "TERM")),
        t("lifecycle::kill_signal_name_SIGTERM", |c| {
            kill_term(c, "SIGTERM")
        }),
        t("lifecycle::kill_signal_number_15", |c| kill_term(c, "15")),
        t("lifecycle::kill_signal_name_KILL", |c| kill_kill(c, "KILL")),
        t("lifecycle::kill_signal_number_9", |c| kill_kill(c, "9")),
        t("lifecycle::kill_default_signal_is_term", |c| {
            kill_term(c, "")
        }),
        t("lifecycle::kill_created_container", kill_created_container),
        t("lifecycle::kill_stopped_fails", kill_stopped_fails),
        t("lifecycle::kill_all_reaches_every_process", kill_all),
        t("lifecycle::run_forwards_exit_code", run_forwards_exit_code),
        t("lifecycle::run_detach", run_detach),
        t(
            "lifecycle::run_missing_program_fails_and_leaves_nothing",
            run_missing_program_fails,
        ),
        t("lifecycle::run_stdout_stderr", run_stdout_stderr),
        t("lifecycle::list_table", list_table),
        t("lifecycle::list_json", list_json),
        t("lifecycle::list_quiet", list_quiet),
        t("lifecycle::spec_default", spec_default),
        t("lifecycle::spec_rootless", spec_rootless),
        t("lifecycle::features_json", features_json),
        t(
            "lifecycle::create_does_not_run_program",
            create_does_not_run_program,
        ),
        t(
            "lifecycle::config_change_after_create_ignored",
            config_change_after_create_ignored,
        ),
        t("lifecycle::pid_file", pid_file),
        t("lifecycle::console_socket_pty", console_socket_pty),
        t(
            "lifecycle::exec_in_running_container",
            exec_in_running_container,
        ),
        t(
            "lifecycle::exec_forwards_exit_code",
            exec_forwards_exit_code,
        ),
        t("lifecycle::pause_resume", pause_resume),
        t("lifecycle::delete_force_paused", delete_force_paused),
        t(
            "lifecycle::run_exit_code_on_signal",
            run_exit_code_on_signal,
        ),
        t("lifecycle::delete_force_created", delete_force_created),
        t("lifecycle::exec_env_cwd_user", exec_env_cwd_user),
        t("lifecycle::exec_process_json", exec_process_json),
        t("lifecycle::exec_in_stopped_fails", exec_in_stopped_fails),
        t("lifecycle::ps_lists_processes", ps_lists_processes),
        t("lifecycle::events_stats", events_stats),
    ]
}

/// create + start, waiting until the program printed "ready".
fn started<'a>(ctx: &'a Ctx, b: &Bundle) -> Result<Container<'a>> {
    let c = ctx.create(b)?;
    c.start_ok()?;
    c.wait_output("ready", WAIT)?;
    Ok(c)
}

fn create_state_created(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = ctx.create(&b)?;
    let st = c.state()?;
    ensure!(
        st["status"] == "created",
        "status after create is {}, want created",
        st["status"]
    );
    let pid = st["pid"]
        .as_i64()
        .ok_or_else(|| anyhow!("state of a created container has no pid: {st}"))?;
    ensure!(
        pid > 0 && process_alive(pid),
        "state pid {pid} is not a live host process"
    );
    ensure!(
        st["id"] == c.id.as_str(),
        "state id {} != {}",
        st["id"],
        c.id
    );
    let bundle = fs::canonicalize(&b.dir)?;
    ensure!(
        st["bundle"].as_str().map(Path::new) == Some(bundle.as_path()),
        "state bundle {} != {}",
        st["bundle"],
        bundle.display()
    );
    Ok(())
}

fn start_state_running(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = started(ctx, &b)?;
    let st = c.state()?;
    ensure!(
        st["status"] == "running",
        "status after start is {}, want running",
        st["status"]
    );
    ensure!(
        st["pid"].as_i64().is_some_and(process_alive),
        "running container has no live pid: {st}"
    );
    Ok(())
}

fn exit_state_stopped(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(&["true"])?;
    let c = ctx.create(&b)?;
    c.start_ok()?;
    c.wait_status("stopped", WAIT)?;
    Ok(())
}

fn delete_removes_container(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(&["true"])?;
    let mut c = ctx.create(&b)?;
    let pid = c.pid()?;
    c.start_ok()?;
    c.wait_status("stopped", WAIT)?;
    c.delete()?.expect_success()?;
    ctx.assert_gone(&c.id, &b)?;
    ensure!(
        !process_alive(pid),
        "container process {pid} still alive after delete"
    );
    Ok(())
}

fn state_json_fields(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(LONG)?;
    b.config["annotations"] = json!({"org.kos.conformance": "kos-value", "org.kos.other": "2"});
    let c = ctx.create(&b)?;
    let st = c.state()?;
    let v = st["ociVersion"]
        .as_str()
        .ok_or_else(|| anyhow!("state lacks string ociVersion: {st}"))?;
    ensure!(
        v.split('.').count() >= 3
            && v.split('.')
                .next()
                .is_some_and(|m| m.parse::<u32>().is_ok()),
        "state ociVersion {v:?} is not SemVer"
    );
    for k in ["id", "status", "bundle"] {
        ensure!(st[k].is_string(), "state lacks string {k}: {st}");
    }
    ensure!(
        st["pid"].is_i64(),
        "state lacks integer pid while created: {st}"
    );
    ensure!(
        st["annotations"]["org.kos.conformance"] == "kos-value"
            && st["annotations"]["org.kos.other"] == "2",
        "state annotations {} do not match config annotations",
        st["annotations"]
    );
    ensure!(
        Path::new(st["bundle"].as_str().unwrap_or("")).is_absolute(),
        "bundle must be absolute"
    );
    Ok(())
}

fn start_running_fails(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = started(ctx, &b)?;
    let pid = c.pid()?;
    c.start()?.expect_failure("start of a running container")?;
    ensure!(
        c.status()? == "running" && c.pid()? == pid,
        "second start changed the container"
    );
    ensure!(
        c.output().matches("ready").count() == 1,
        "program ran twice: {:?}",
        c.output()
    );
    Ok(())
}

fn start_stopped_fails(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(&["sh", "-c", "echo ran"])?;
    let c = ctx.create(&b)?;
    c.start_ok()?;
    c.wait_status("stopped", WAIT)?;
    c.start()?.expect_failure("start of a stopped container")?;
    ensure!(
        c.status()? == "stopped",
        "start changed a stopped container"
    );
    std::thread::sleep(Duration::from_millis(100));
    ensure!(
        c.output().matches("ran").count() == 1,
        "program ran twice: {:?}",
        c.output()
    );
    Ok(())
}

fn delete_running_needs_force(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let mut c = started(ctx, &b)?;
    let pid = c.pid()?;
    c.delete()?
        .expect_failure("delete of a running container")?;
    ensure!(
        c.status()? == "running" && process_alive(pid),
        "failed delete affected the container"
    );
    c.delete_force()?.expect_success()?;
    ctx.wait_until(WAIT, "container process to die", || Ok(!process_alive(pid)))?;
    ctx.assert_gone(&c.id, &b)
}

fn delete_created_fails(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = ctx.create(&b)?;
    let out = ctx.rt(&["delete", &c.id])?;
    out.expect_failure("delete of a created (not stopped) container")?;
    ensure!(
        c.status()? == "created",
        "failed delete changed the container"
    );
    Ok(())
}

fn create_duplicate_id_fails(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = ctx.create(&b)?;
    let pid = c.pid()?;
    let b2 = ctx.bundle(&["sh", "-c", "echo second"])?;
    let (out, mut c2) = ctx.try_create_id(&b2, &c.id, &[], Call::default())?;
    c2.forget();
    out.expect_failure("create with an id already in use")?;
    let st = c.state()?;
    ensure!(
        st["status"] == "created" && st["pid"] == pid,
        "duplicate create changed the first container: {st}"
    );
    let bundle = fs::canonicalize(&b.dir)?;
    ensure!(
        st["bundle"].as_str().map(Path::new) == Some(bundle.as_path()),
        "bundle changed: {st}"
    );
    Ok(())
}

fn unknown_id(ctx: &Ctx, op: &str) -> Result<()> {
    let id = format!(
        "kosconf-{}-missing-{}",
        std::process::id(),
        ctx.suite.next()
    );
    let mut args = vec![op, id.as_str()];
    if op == "kill" {
        args.push("KILL");
    }
    let out = ctx.rt(&args)?;
    out.expect_failure(&format!("{op} of a container that does not exist"))?;
    ensure!(
        !out.stderr.trim().is_empty(),
        "{op} failed without a message on stderr"
    );
    Ok(())
}

fn kill_term(ctx: &Ctx, sig: &str) -> Result<()> {
    let b = ctx.bundle(TRAP_TERM)?;
    let c = started(ctx, &b)?;
    // An empty signal means the runtime's default, which runc-compatible CLIs make SIGTERM.
    let out = if sig.is_empty() {
        ctx.rt(&["kill", &c.id])?
    } else {
        c.kill(sig)?
    };
    out.expect_success()?;
    c.wait_status("stopped", WAIT)?;
    ensure!(
        c.output().contains("got-term"),
        "SIGTERM handler did not run: {:?}",
        c.output()
    );
    Ok(())
}

fn kill_kill(ctx: &Ctx, sig: &str) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = started(ctx, &b)?;
    let pid = c.pid()?;
    c.kill(sig)?.expect_success()?;
    c.wait_status("stopped", WAIT)?;
    ensure!(!process_alive(pid), "process {pid} survived SIGKILL");
    Ok(())
}

fn kill_created_container(ctx: &Ctx) -> Result<()> {
    let dir = ctx.mkdir("host")?;
    let mut b = ctx.bundle(&["touch", "/hostdir/ran"])?;
    b.bind(&dir, "/hostdir", &[]);
    let c = ctx.create(&b)?;
    c.kill("KILL")?.expect_success()?;
    c.wait_status("stopped", WAIT)?;
    ensure!(
        !dir.join("ran").exists(),
        "user program ran although the container was killed before start"
    );
    Ok(())
}

fn kill_stopped_fails(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(&["true"])?;
    let c = ctx.create(&b)?;
    c.start_ok()?;
    c.wait_status("stopped", WAIT)?;
    c.kill("KILL")?
        .expect_failure("kill of a stopped container")?;
    ensure!(c.status()? == "stopped", "kill changed a stopped container");
    Ok(())
}

/// Without a pid namespace, children outlive the init process unless `kill --all` signals
/// every process of the container.
fn kill_all(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["sh", "-c", "sleep 1000 & echo child=$!; echo ready; wait"])?;
    b.remove_namespace("pid");
    let c = started(ctx, &b)?;
    let out = c.output();
    let child: i64 = out
        .lines()
        .find_map(|l| l.strip_prefix("child="))
        .and_then(|p| p.trim().parse().ok())
        .ok_or_else(|| anyhow!("no child pid printed: {out:?}"))?;
    ensure!(
        process_alive(child),
        "child {child} not running before kill"
    );
    ctx.rt(&["kill", "--all", &c.id, "KILL"])?
        .expect_success()?;
    ctx.wait_until(WAIT, "all container processes to die", || {
        Ok(!process_alive(child))
    })?;
    c.wait_status("stopped", WAIT)?;
    Ok(())
}

fn run_forwards_exit_code(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(&["sh", "-c", "exit 42"])?;
    let (out, _c) = ctx.run(&b)?;
    ensure!(
        out.code() == Some(42),
        "run exited {:?}, want the program's 42: {}",
        out.code(),
        out.describe()
    );
    Ok(())
}

/// `run` of a program the rootfs lacks: the start fails with a message naming it, and
/// the container is destroyed (runc's and crun's `run` clean up a failed start too).
fn run_missing_program_fails(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(&["kos-no-such-program"])?;
    let (out, c) = ctx.run(&b)?;
    out.expect_failure("run of a missing program")?;
    ensure!(
        out.stderr.contains("kos-no-such-program"),
        "the error does not name the missing program: {:?}",
        out.stderr
    );
    let state = ctx.rt(&["state", &c.id])?;
    ensure!(
        !state.success(),
        "the failed container is still there: {}",
        state.stdout
    );
    let cg = b.config["linux"]["cgroupsPath"]
        .as_str()
        .unwrap_or("")
        .trim_start_matches('/')
        .to_string();
    // In every v1 hierarchy (and the unified mount), or at the root of a pure v2 host.
    let root = Path::new("/sys/fs/cgroup");
    let left: Vec<String> = std::fs::read_dir(root)?
        .flatten()
        .map(|h| h.path())
        .chain([root.to_path_buf()])
        .map(|h| h.join(&cg))
        .filter(|d| !cg.is_empty() && d.exists())
        .map(|d| d.display().to_string())
        .collect();
    ensure!(left.is_empty(), "cgroups left behind: {left:?}");
    Ok(())
}

fn run_detach(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let (out, c) = ctx.run_with(
        &b,
        &["--detach"],
        Call {
            timeout: Some(WAIT),
            ..Call::default()
        },
    )?;
    out.expect_success()?;
    ensure!(
        c.status()? == "running",
        "detached container is not running"
    );
    c.kill("KILL")?.expect_success()?;
    c.wait_status("stopped", WAIT)
}

fn run_stdout_stderr(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(&["sh", "-c", "echo to-stdout; echo to-stderr >&2"])?;
    let (out, _c) = ctx.run(&b)?;
    out.expect_success()?;
    ensure!(
        out.stdout.contains("to-stdout"),
        "stdout missing: {:?}",
        out.stdout
    );
    ensure!(
        out.stderr.contains("to-stderr"),
        "stderr missing: {:?}",
        out.stderr
    );
    ensure!(
        !out.stdout.contains("to-stderr"),
        "stderr leaked into stdout"
    );
    Ok(())
}

fn list_table(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = ctx.create(&b)?;
    let out = ctx.rt(&["list"])?;
    out.expect_success()?;
    let header = out.stdout.lines().next().unwrap_or("");
    ensure!(
        header.contains("ID") && header.contains("STATUS"),
        "list header {header:?} lacks ID/STATUS"
    );
    let row = out
        .stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(c.id.as_str()))
        .ok_or_else(|| anyhow!("list does not show {}: {:?}", c.id, out.stdout))?;
    ensure!(
        row.split_whitespace().any(|w| w == "created"),
        "list row {row:?} lacks status created"
    );
    Ok(())
}

fn list_json(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = ctx.create(&b)?;
    let out = ctx.rt(&["list", "--format", "json"])?;
    out.expect_success()?;
    let v: Value = serde_json::from_str(&out.stdout).context("list --format json is not JSON")?;
    let arr = v
        .as_array()
        .ok_or_else(|| anyhow!("list json is not an array: {v}"))?;
    let e = arr
        .iter()
        .find(|e| e["id"] == c.id.as_str())
        .ok_or_else(|| anyhow!("list json lacks {}", c.id))?;
    ensure!(
        e["status"] == "created",
        "list json status {} != created",
        e["status"]
    );
    ensure!(
        e["pid"].as_i64() == Some(c.pid()?),
        "list json pid {} differs from state",
        e["pid"]
    );
    ensure!(e["bundle"].is_string(), "list json entry lacks bundle: {e}");
    Ok(())
}

fn list_quiet(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = ctx.create(&b)?;
    let out = ctx.rt(&["list", "-q"])?;
    out.expect_success()?;
    ensure!(
        out.stdout.lines().any(|l| l == c.id),
        "list -q lacks {}: {:?}",
        c.id,
        out.stdout
    );
    ensure!(
        out.stdout.lines().all(|l| !l.contains(' ')),
        "list -q prints more than ids: {:?}",
        out.stdout
    );
    Ok(())
}

fn spec_in(ctx: &Ctx, extra: &[&str]) -> Result<Value> {
    let dir = ctx.mkdir("spec")?;
    let mut args = vec!["spec"];
    args.extend_from_slice(extra);
    let out = ctx.rt_with(
        &args,
        Call {
            cwd: Some(dir.clone()),
            ..Call::default()
        },
    )?;
    out.expect_success()?;
    let text = fs::read_to_string(dir.join("config.json")).context("spec wrote no config.json")?;
    serde_json::from_str(&text).context("spec output is not valid JSON")
}

fn spec_default(ctx: &Ctx) -> Result<()> {
    let v = spec_in(ctx, &[])?;
    ensure!(
        v["ociVersion"]
            .as_str()
            .is_some_and(|s| s.starts_with("1.")),
        "spec ociVersion {}",
        v["ociVersion"]
    );
    ensure!(v["process"]["args"].is_array(), "spec has no process.args");
    ensure!(v["root"]["path"].is_string(), "spec has no root.path");
    let ns = v["linux"]["namespaces"]
        .as_array()
        .ok_or_else(|| anyhow!("spec has no linux.namespaces"))?;
    for k in ["pid", "mount"] {
        ensure!(
            ns.iter().any(|n| n["type"] == k),
            "spec namespaces lack {k}"
        );
    }
    Ok(())
}

fn spec_rootless(ctx: &Ctx) -> Result<()> {
    let v = spec_in(ctx, &["--rootless"])?;
    let ns = v["linux"]["namespaces"]
        .as_array()
        .ok_or_else(|| anyhow!("spec has no linux.namespaces"))?;
    ensure!(
        ns.iter().any(|n| n["type"] == "user"),
        "rootless spec has no user namespace"
    );
    ensure!(
        v["linux"]["uidMappings"]
            .as_array()
            .is_some_and(|a| !a.is_empty()),
        "rootless spec has no uidMappings"
    );
    Ok(())
}

fn features_json(ctx: &Ctx) -> Result<()> {
    let out = ctx.rt(&["features"])?;
    out.expect_success()?;
    let v: Value = serde_json::from_str(&out.stdout).context("features output is not JSON")?;
    for k in ["ociVersionMin", "ociVersionMax"] {
        ensure!(
            v[k].as_str().is_some_and(|s| s.starts_with("1.")),
            "features {k} = {}",
            v[k]
        );
    }
    let hooks = v["hooks"]
        .as_array()
        .ok_or_else(|| anyhow!("features lacks hooks"))?;
    for h in [
        "prestart",
        "createRuntime",
        "createContainer",
        "startContainer",
        "poststart",
        "poststop",
    ] {
        ensure!(hooks.iter().any(|x| x == h), "features hooks lack {h}");
    }
    let mo = v["mountOptions"]
        .as_array()
        .ok_or_else(|| anyhow!("features lacks mountOptions"))?;
    for o in ["ro", "bind", "rbind", "nosuid"] {
        ensure!(mo.iter().any(|x| x == o), "features mountOptions lack {o}");
    }
    let ns = v["linux"]["namespaces"]
        .as_array()
        .ok_or_else(|| anyhow!("features lacks linux.namespaces"))?;
    for n in ["mount", "pid", "network", "ipc", "uts"] {
        ensure!(ns.iter().any(|x| x == n), "features namespaces lack {n}");
    }
    Ok(())
}

fn create_does_not_run_program(ctx: &Ctx) -> Result<()> {
    let dir = ctx.mkdir("host")?;
    let mut b = ctx.bundle(&["touch", "/hostdir/ran"])?;
    b.bind(&dir, "/hostdir", &[]);
    let c = ctx.create(&b)?;
    std::thread::sleep(Duration::from_millis(300));
    ensure!(
        !dir.join("ran").exists(),
        "the user program ran during create"
    );
    c.start_ok()?;
    ctx.wait_until(WAIT, "program to run after start", || {
        Ok(dir.join("ran").exists())
    })?;
    Ok(())
}

fn config_change_after_create_ignored(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["sh", "-c", "echo original"])?;
    let c = ctx.create(&b)?;
    b.set_args(&["sh", "-c", "echo changed"]);
    b.write_config()?;
    c.start_ok()?;
    c.wait_status("stopped", WAIT)?;
    let out = c.output();
    ensure!(
        out.contains("original") && !out.contains("changed"),
        "config.json edited after create took effect: {out:?}"
    );
    Ok(())
}

fn pid_file(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let pf = b.dir.join("kos.pid");
    let p = pf.to_string_lossy().into_owned();
    let c = ctx.create_with(&b, &["--pid-file", &p], Call::default())?;
    let text = fs::read_to_string(&pf).context("pid file was not written")?;
    let pid: i64 = text
        .trim()
        .parse()
        .with_context(|| format!("pid file holds {text:?}"))?;
    ensure!(pid == c.pid()?, "pid file {pid} != state pid {}", c.pid()?);
    Ok(())
}

fn console_socket_pty(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["sh", "-c", "echo tty-hello; tty"])?;
    b.config["process"]["terminal"] = json!(true);
    let sock = b.dir.join("console.sock");
    let listener = UnixListener::bind(&sock).context("binding the console socket")?;
    let sp = sock.to_string_lossy().into_owned();
    let c = std::thread::scope(|s| -> Result<_> {
        let recv = s.spawn(|| console::receive_pty(&listener, WAIT));
        let c = ctx.create_with(&b, &["--console-socket", &sp], Call::default());
        let fd = recv
            .join()
            .map_err(|_| anyhow!("console receiver panicked"))?;
        let c = c?;
        Ok((c, fd?))
    })?;
    let (c, master) = c;
    c.start_ok()?;
    let text = console::read_until_closed(master.as_raw_fd(), Duration::from_secs(5));
    ensure!(
        text.contains("tty-hello"),
        "pty master did not carry the program output: {text:?}"
    );
    ensure!(
        text.lines().any(|l| l.trim().starts_with("/dev/pts/")),
        "program's stdin is not a pty (`tty` said {text:?})"
    );
    Ok(())
}

fn exec_in_running_container(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(LONG)?;
    b.config["hostname"] = json!("kos-exec-host");
    let c = started(ctx, &b)?;
    let out = ctx.rt(&[
        "exec",
        &c.id,
        "sh",
        "-c",
        "hostname; echo pid=$$; cat /proc/1/cmdline | tr '\\0' ' '",
    ])?;
    out.expect_success()?;
    ensure!(
        out.stdout.contains("kos-exec-host"),
        "exec did not run in the container's uts ns: {:?}",
        out.stdout
    );
    ensure!(
        out.stdout.contains("sleep 1000"),
        "exec does not see the container's pid 1: {:?}",
        out.stdout
    );
    Ok(())
}

fn exec_forwards_exit_code(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = started(ctx, &b)?;
    let out = ctx.rt(&["exec", &c.id, "sh", "-c", "exit 7"])?;
    ensure!(
        out.code() == Some(7),
        "exec exited {:?}, want 7",
        out.code()
    );
    Ok(())
}

fn pause_resume(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(&[
        "sh",
        "-c",
        "echo ready; i=0; while :; do i=$((i+1)); echo $i > /tmp/tick; sleep 0.02; done",
    ])?;
    let c = started(ctx, &b)?;
    ctx.rt(&["pause", &c.id])?.expect_success()?;
    ensure!(
        c.status()? == "paused",
        "status after pause is {}",
        c.status()?
    );
    let tick = b.in_rootfs("/tmp/tick");
    let t1 = fs::read_to_string(&tick).unwrap_or_default();
    std::thread::sleep(Duration::from_millis(200));
    let t2 = fs::read_to_string(&tick).unwrap_or_default();
    ensure!(t1 == t2, "the container kept running while paused");
    ctx.rt(&["resume", &c.id])?.expect_success()?;
    ensure!(
        c.status()? == "running",
        "status after resume is {}",
        c.status()?
    );
    ctx.wait_until(WAIT, "the container to run again", || {
        Ok(fs::read_to_string(&tick).unwrap_or_default() != t2)
    })?;
    let cg = b.config["linux"]["cgroupsPath"]
        .as_str()
        .unwrap_or("")
        .trim_start_matches('/');
    if processes_in_cgroup(cg).is_empty() {
        bail!("no process found in the container cgroup /{cg}");
    }
    Ok(())
}

fn delete_force_created(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let mut c = ctx.create(&b)?;
    let pid = c.pid()?;
    c.delete_force()?.expect_success()?;
    ctx.wait_until(WAIT, "the init process to die", || Ok(!process_alive(pid)))?;
    ctx.assert_gone(&c.id, &b)
}

fn exec_env_cwd_user(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = started(ctx, &b)?;
    let out = ctx.rt(&[
        "exec",
        "--env",
        "KOS_EXEC=yes",
        "--cwd",
        "/tmp",
        "--user",
        "1000:1000",
        &c.id,
        "sh",
        "-c",
        "echo env=$KOS_EXEC; pwd; id -u; id -g",
    ])?;
    out.expect_success()?;
    let l: Vec<&str> = out.stdout.lines().collect();
    ensure!(l == ["env=yes", "/tmp", "1000", "1000"], "exec saw {l:?}");
    Ok(())
}

fn exec_process_json(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = started(ctx, &b)?;
    let p = b.dir.join("process.json");
    let proc_json = json!({
        "terminal": false, "user": {"uid": 0, "gid": 0},
        "args": ["sh", "-c", "echo from-json $KOS_P; pwd"],
        "env": ["PATH=/bin", "KOS_P=1"], "cwd": "/etc"
    });
    fs::write(&p, proc_json.to_string())?;
    let ps = p.to_string_lossy().into_owned();
    let out = ctx.rt(&["exec", "--process", &ps, &c.id])?;
    out.expect_success()?;
    ensure!(
        out.stdout.lines().collect::<Vec<_>>() == ["from-json 1", "/etc"],
        "exec --process printed {:?}",
        out.stdout
    );
    Ok(())
}

fn exec_in_stopped_fails(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(&["true"])?;
    let c = ctx.create(&b)?;
    c.start_ok()?;
    c.wait_status("stopped", WAIT)?;
    ctx.rt(&["exec", &c.id, "true"])?
        .expect_failure("exec in a stopped container")?;
    Ok(())
}

fn ps_lists_processes(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = started(ctx, &b)?;
    let pid = c.pid()?;
    let out = ctx.rt(&["ps", "--format", "json", &c.id])?;
    out.expect_success()?;
    let v: Value = serde_json::from_str(&out.stdout).context("ps --format json is not JSON")?;
    let pids: Vec<i64> = v
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default();
    ensure!(
        pids.contains(&pid),
        "ps lists {pids:?}, not the init pid {pid}"
    );
    Ok(())
}

fn events_stats(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = started(ctx, &b)?;
    let out = ctx.rt(&["events", "--stats", &c.id])?;
    out.expect_success()?;
    let v: Value = serde_json::from_str(out.stdout.trim()).context("events --stats is not JSON")?;
    ensure!(v["type"] == "stats", "events --stats type is {}", v["type"]);
    ensure!(v["id"] == c.id.as_str(), "events --stats id is {}", v["id"]);
    ensure!(
        v["data"]["pids"]["current"]
            .as_u64()
            .is_some_and(|n| n >= 1),
        "events --stats reports no pids: {}",
        v["data"]["pids"]
    );
    Ok(())
}

/// runtime.md State: bundle "is the absolute path to the container's bundle directory", even
/// when the caller named it relatively.
fn relative_bundle_absolute_in_state(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    b.write_config()?;
    let id = ctx.new_id();
    let parent = b
        .dir
        .parent()
        .ok_or_else(|| anyhow!("bundle has no parent"))?
        .to_path_buf();
    let rel = b
        .dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let out = ctx.rt_with(
        &["create", "--bundle", &rel, &id],
        Call {
            cwd: Some(parent),
            ..Call::default()
        },
    )?;
    let state = ctx.rt(&["state", &id]);
    let _ = ctx.rt(&["delete", "--force", &id]);
    out.expect_success()?;
    let st: Value = serde_json::from_str(&state?.stdout).context("state is not JSON")?;
    let want = fs::canonicalize(&b.dir)?;
    ensure!(
        st["bundle"].as_str().map(Path::new) == Some(want.as_path()),
        "state bundle {} is not the absolute {}",
        st["bundle"],
        want.display()
    );
    Ok(())
}

fn delete_force_paused(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let mut c = started(ctx, &b)?;
    let pid = c.pid()?;
    ctx.rt(&["pause", &c.id])?.expect_success()?;
    c.delete_force()?.expect_success()?;
    ctx.wait_until(WAIT, "the paused container's process to die", || {
        Ok(!process_alive(pid))
    })?;
    ctx.assert_gone(&c.id, &b)
}

/// runc's `run` reports a program killed by signal N as exit 128+N (shells and engines rely on
/// it); without a pid namespace the shell is not an init and can be killed by its own signal.
fn run_exit_code_on_signal(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["sh", "-c", "kill -9 $$"])?;
    b.remove_namespace("pid");
    let (out, _c) = ctx.run(&b)?;
    ensure!(
        out.code() == Some(137),
        "run exited {:?}, want 128+SIGKILL = 137",
        out.code()
    );
    Ok(())
}
