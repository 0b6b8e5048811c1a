//! POSIX-platform hooks (config.md "POSIX-platform Hooks", runtime.md "Lifecycle").
//!
//! Every hook is `/bin/sh -c SCRIPT KIND`: it saves the state it got on stdin and the mount
//! namespace it runs in under a host directory that is also bind-mounted at the same path
//! inside the container, so hooks running in either namespace write to the same place.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use serde_json::{json, Value};

use super::{departs, t, TestCase};
use crate::harness::bundle::Bundle;
use crate::harness::ctx::{process_alive, Call, Ctx};
use crate::harness::report::Departure;

const WAIT: Duration = Duration::from_secs(10);
const KINDS: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

const RUNC_POSTSTART_ORDER: &[Departure] = &[Departure {
    runtime: "runc",
    clause: "runtime.md Lifecycle: the poststart hooks are invoked after the start operation has run the \
             user-specified program (runc 1.1 runs them during create)",
}];

const RUNC_POSTSTART_FAIL: &[Departure] = &[Departure {
    runtime: "runc",
    clause: "runtime.md Lifecycle: \"If any poststart hook fails, the runtime MUST log a warning, but the \
             remaining hooks and lifecycle continue as if the hook had succeeded\" (runc 1.1 runs \
             poststart during create and fails the create)",
}];

const RUNC_POSTSTOP_FAIL: &[Departure] = &[Departure {
    runtime: "runc",
    clause: "runtime.md Lifecycle: \"If any poststop hook fails, the runtime MUST log a warning, but the \
             remaining hooks and lifecycle continue as if the hook had succeeded\" (runc skips the \
             remaining poststop hooks)",
}];

const RUNC_START_CONTAINER_FAIL: &[Departure] = &[Departure {
    runtime: "runc",
    clause: "runtime.md Lifecycle: \"If any startContainer hook fails, the runtime MUST generate an error, \
             stop the container, and continue the lifecycle at step 12\" (runc's start exits 0)",
}];

pub fn tests() -> Vec<TestCase> {
    vec![
        departs("hooks::all_kinds_run_in_order", order, RUNC_POSTSTART_ORDER),
        t("hooks::state_on_stdin", state_on_stdin),
        t("hooks::namespaces", namespaces),
        t("hooks::env_and_args", env_and_args),
        t("hooks::timeout_kills_hook_and_fails_create", timeout),
        t("hooks::poststop_killing_runtime_leaves_no_state", |c| {
            poststop_never_strands(c, "kill -9 $PPID")
        }),
        t("hooks::poststop_hanging_leaves_no_state", |c| {
            poststop_never_strands(c, "exec sleep 1000")
        }),
        t("hooks::create_runtime_failure_fails_create", |c| {
            failing_create_hook(c, "createRuntime")
        }),
        t("hooks::prestart_failure_fails_create", |c| {
            failing_create_hook(c, "prestart")
        }),
        t("hooks::create_container_failure_fails_create", |c| {
            failing_create_hook(c, "createContainer")
        }),
        departs(
            "hooks::start_container_failure_fails_start",
            start_container_failure,
            RUNC_START_CONTAINER_FAIL,
        ),
        departs(
            "hooks::poststart_failure_only_warns",
            poststart_failure,
            RUNC_POSTSTART_FAIL,
        ),
        departs(
            "hooks::poststop_failure_only_warns",
            poststop_failure,
            RUNC_POSTSTOP_FAIL,
        ),
    ]
}

fn recorder_script(dir: &Path) -> String {
    let d = dir.to_string_lossy();
    format!("cat > {d}/$0.json; readlink /proc/self/ns/mnt > {d}/$0.mnt; echo $0 >> {d}/order")
}

fn hook(script: &str, kind: &str) -> Value {
    json!({"path": "/bin/sh", "args": ["sh", "-c", script, kind]})
}

/// A bundle whose hooks of every kind record into a fresh dir (visible inside too).
fn recording_bundle(ctx: &Ctx, args: &[&str]) -> Result<(Bundle, PathBuf)> {
    let dir = ctx.mkdir("hooks")?;
    let mut b = ctx.bundle(args)?;
    let dest = dir.to_string_lossy().into_owned();
    b.bind(&dir, &dest, &[]);
    let script = recorder_script(&dir);
    for k in KINDS {
        b.set_hook(k, json!([hook(&script, k)]));
    }
    Ok((b, dir))
}

fn order_of(dir: &Path) -> Vec<String> {
    fs::read_to_string(dir.join("order"))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Everything one full lifecycle with recording hooks showed.
struct Recorded {
    after_create: Vec<String>,
    after_start: Vec<String>,
    after_delete: Vec<String>,
    states: Vec<(String, Value)>,
    mnt: Vec<(String, String)>,
    container_mnt: String,
    id: String,
    bundle: PathBuf,
}

fn record_lifecycle(ctx: &Ctx) -> Result<Recorded> {
    let (mut b, dir) = recording_bundle(ctx, &["sh", "-c", "echo ready; sleep 0.2"])?;
    b.config["annotations"] = json!({"org.kos.hook-test": "kos-annotation"});
    let mut c = ctx.create(&b)?;
    let pid = c.pid()?;
    let container_mnt = fs::read_link(format!("/proc/{pid}/ns/mnt"))?
        .to_string_lossy()
        .into_owned();
    let after_create = order_of(&dir);
    c.start_ok()?;
    ctx.wait_until(WAIT, "poststart hook", || {
        Ok(order_of(&dir).iter().any(|k| k == "poststart"))
    })?;
    let after_start = order_of(&dir);
    c.wait_status("stopped", WAIT)?;
    c.delete()?.expect_success()?;
    let after_delete = order_of(&dir);
    let mut states = Vec::new();
    let mut mnt = Vec::new();
    for k in KINDS {
        let text = fs::read_to_string(dir.join(format!("{k}.json"))).unwrap_or_default();
        let v: Value = serde_json::from_str(&text)
            .with_context(|| format!("{k} hook got invalid state on stdin: {text:?}"))?;
        states.push((k.to_string(), v));
        let m = fs::read_to_string(dir.join(format!("{k}.mnt"))).unwrap_or_default();
        mnt.push((k.to_string(), m.trim().to_string()));
    }
    Ok(Recorded {
        after_create,
        after_start,
        after_delete,
        states,
        mnt,
        container_mnt,
        id: c.id.clone(),
        bundle: fs::canonicalize(&b.dir)?,
    })
}

fn order(ctx: &Ctx) -> Result<()> {
    let r = record_lifecycle(ctx)?;
    let want_create = ["prestart", "createRuntime", "createContainer"];
    ensure!(
        r.after_create == want_create,
        "hooks run by create: {:?}, want {want_create:?}",
        r.after_create
    );
    let want_start = [&want_create[..], &["startContainer", "poststart"]].concat();
    ensure!(
        r.after_start == want_start,
        "hooks after start: {:?}, want {want_start:?}",
        r.after_start
    );
    ensure!(
        r.after_delete == KINDS,
        "hooks after delete: {:?}, want {KINDS:?}",
        r.after_delete
    );
    Ok(())
}

fn state_on_stdin(ctx: &Ctx) -> Result<()> {
    let r = record_lifecycle(ctx)?;
    for (k, st) in &r.states {
        ensure!(
            st["annotations"]["org.kos.hook-test"] == "kos-annotation",
            "{k} hook state lacks the config annotations: {st}"
        );
        ensure!(
            st["id"] == r.id.as_str(),
            "{k} hook state id {} != {}",
            st["id"],
            r.id
        );
        ensure!(
            st["ociVersion"].is_string(),
            "{k} hook state lacks ociVersion: {st}"
        );
        ensure!(
            st["bundle"].as_str().map(Path::new) == Some(r.bundle.as_path()),
            "{k} hook state bundle {} != {}",
            st["bundle"],
            r.bundle.display()
        );
        let status = st["status"].as_str().unwrap_or("");
        ensure!(
            ["creating", "created", "running", "stopped"].contains(&status),
            "{k} hook state status {status:?}"
        );
        if k != "poststop" {
            ensure!(
                st["pid"].as_i64().is_some_and(|p| p > 0),
                "{k} hook state has no pid: {st}"
            );
        }
    }
    let poststop = &r.states[5].1;
    ensure!(
        poststop["status"] == "stopped",
        "poststop hook state status {} != stopped",
        poststop["status"]
    );
    Ok(())
}

/// prestart, createRuntime, poststart and poststop run in the runtime namespace;
/// createContainer and startContainer in the container namespace.
fn namespaces(ctx: &Ctx) -> Result<()> {
    let r = record_lifecycle(ctx)?;
    let host = ctx.host_ns("mnt")?;
    for (k, m) in &r.mnt {
        let want = if k == "createContainer" || k == "startContainer" {
            &r.container_mnt
        } else {
            &host
        };
        ensure!(
            m == want,
            "{k} hook ran in mount ns {m:?}, want {want} (host {host}, container {})",
            r.container_mnt
        );
    }
    Ok(())
}

fn env_and_args(ctx: &Ctx) -> Result<()> {
    let dir = ctx.mkdir("hooks")?;
    let mut b = ctx.bundle(&["true"])?;
    let out = dir.join("out");
    let script = format!(
        "echo \"$KOS_HOOK_ENV|$0|$1|${{OTHER:-unset}}\" > {}",
        out.display()
    );
    b.set_hook(
        "createRuntime",
        json!([{
            "path": "/bin/sh", "args": ["sh", "-c", script, "a0", "a1"], "env": ["KOS_HOOK_ENV=yes"]
        }]),
    );
    let _c = ctx.create_with(
        &b,
        &[],
        Call {
            env: vec![("OTHER".into(), "leak".into())],
            ..Call::default()
        },
    )?;
    let got = fs::read_to_string(&out).context("hook did not run")?;
    ensure!(
        got.trim() == "yes|a0|a1|unset",
        "hook saw env/args {:?}, want \"yes|a0|a1|unset\"",
        got.trim()
    );
    Ok(())
}

fn timeout(ctx: &Ctx) -> Result<()> {
    let dir = ctx.mkdir("host")?;
    let mut b = ctx.bundle(&["touch", "/hostdir/ran"])?;
    b.bind(&dir, "/hostdir", &[]);
    let marker = dir.join("hook-pid");
    // exec keeps the hook a single process, so killing it is all a timeout has to do.
    b.set_hook("createRuntime", json!([{
        "path": "/bin/sh", "args": ["sh", "-c", format!("echo $$ > {}; exec sleep 20", marker.display())], "timeout": 1
    }]));
    let start = Instant::now();
    let (out, mut c) = ctx.try_create(
        &b,
        &[],
        Call {
            timeout: Some(Duration::from_secs(25)),
            ..Call::default()
        },
    )?;
    let took = start.elapsed();
    out.expect_failure("create with a hook that outlives its timeout")?;
    ensure!(
        took < Duration::from_secs(10),
        "create took {took:?}; the 1s hook timeout was not enforced"
    );
    c.forget();
    ctx.assert_gone(&c.id, &b)?;
    ensure!(!dir.join("ran").exists(), "the program ran");
    let pid: i64 = fs::read_to_string(&marker)
        .context("the hook never started")?
        .trim()
        .parse()
        .context("hook pid")?;
    ensure!(
        !process_alive(pid),
        "the timed-out hook (pid {pid}) is still running"
    );
    Ok(())
}

fn failing_create_hook(ctx: &Ctx, kind: &str) -> Result<()> {
    let dir = ctx.mkdir("host")?;
    let mut b = ctx.bundle(&["touch", "/hostdir/ran"])?;
    b.bind(&dir, "/hostdir", &[]);
    b.set_hook(
        kind,
        json!([hook("echo kos-hook-failing >&2; exit 3", kind)]),
    );
    let (out, mut c) = ctx.try_create(&b, &[], Call::default())?;
    out.expect_failure(&format!("create with a failing {kind} hook"))?;
    c.forget();
    ctx.assert_gone(&c.id, &b)?;
    ensure!(!dir.join("ran").exists(), "the program ran");
    Ok(())
}

fn start_container_failure(ctx: &Ctx) -> Result<()> {
    let dir = ctx.mkdir("host")?;
    let mut b = ctx.bundle(&["touch", "/hostdir/ran"])?;
    b.bind(&dir, "/hostdir", &[]);
    b.set_hook("startContainer", json!([hook("exit 3", "startContainer")]));
    let c = ctx.create(&b)?;
    let out = c.start()?;
    std::thread::sleep(Duration::from_millis(200));
    ensure!(
        !dir.join("ran").exists(),
        "the program ran although startContainer failed"
    );
    out.expect_failure("start with a failing startContainer hook")?;
    let st = ctx.rt(&["state", &c.id])?;
    if st.success() {
        let v: Value = serde_json::from_str(&st.stdout).unwrap_or_default();
        ensure!(
            v["status"] == "stopped",
            "container not stopped after a failing startContainer hook: {v}"
        );
    }
    Ok(())
}

fn poststart_failure(ctx: &Ctx) -> Result<()> {
    let dir = ctx.mkdir("host")?;
    let mut b = ctx.bundle(&["sh", "-c", "touch /hostdir/ran; echo ready; sleep 1000"])?;
    b.bind(&dir, "/hostdir", &[]);
    b.set_hook(
        "poststart",
        json!([
            hook("exit 3", "poststart"),
            hook(&format!("touch {}/second", dir.display()), "poststart")
        ]),
    );
    let c = ctx.create(&b)?;
    let out = c.start()?;
    out.expect_success()
        .map_err(|e| anyhow!("a failing poststart hook must only warn: {e}"))?;
    c.wait_output("ready", WAIT)?;
    ensure!(
        c.status()? == "running",
        "container not running after a failing poststart hook"
    );
    ensure!(
        dir.join("second").exists(),
        "the remaining poststart hook did not run"
    );
    Ok(())
}

fn poststop_failure(ctx: &Ctx) -> Result<()> {
    let dir = ctx.mkdir("host")?;
    let mut b = ctx.bundle(&["true"])?;
    b.set_hook(
        "poststop",
        json!([
            hook("exit 3", "poststop"),
            hook(&format!("touch {}/second", dir.display()), "poststop")
        ]),
    );
    let mut c = ctx.create(&b)?;
    c.start_ok()?;
    c.wait_status("stopped", WAIT)?;
    c.delete()?
        .expect_success()
        .map_err(|e| anyhow!("a failing poststop hook must only warn: {e}"))?;
    ctx.assert_gone(&c.id, &b)?;
    ensure!(
        dir.join("second").exists(),
        "the remaining poststop hook did not run"
    );
    Ok(())
}

/// A poststop hook that kills the runtime, or hangs (no timeout) until the caller gives
/// up on the delete, cannot strand the container: poststop runs once it is deleted
/// (runtime.md Lifecycle step 12), so the id is gone whatever the hook does.
fn poststop_never_strands(ctx: &Ctx, script: &str) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let mut b = ctx.bundle(&["true"])?;
    b.set_hook(
        "poststop",
        json!([{"path": "/bin/sh", "args": ["sh", "-c", script]}]),
    );
    let mut c = ctx.create(&b)?;
    let mut child = std::process::Command::new(&ctx.suite.runtime)
        .arg("--root")
        .arg(&ctx.suite.state_root)
        .args(["delete", &c.id])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()?;
    let pgid = child.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && child.try_wait()?.is_none() {
        std::thread::sleep(Duration::from_millis(20));
    }
    // The caller gives up: the runtime and its hook go (the whole group, so no hook
    // process outlives the test).
    // SAFETY: kill(2) of the process group we made.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let st = child.wait()?;
    ctx.log(format!("delete: {st}"));
    c.forget();
    ctx.assert_gone(&c.id, &b)
}
