//! Bad input: every case must fail with a message on stderr and leave nothing behind
//! (runtime.md "Errors": "generating an error MUST leave the state of the environment as if
//! the operation were never attempted").

use std::fs;

use anyhow::{ensure, Result};
use serde_json::json;

use super::{departs, t, TestCase};
use crate::harness::bundle::Bundle;
use crate::harness::ctx::{Call, Ctx};
use crate::harness::report::Departure;

const RUNC_OCI_VERSION: &[Departure] = &[Departure {
    runtime: "runc",
    clause: "config.md Specification version: a configuration for another major version \"is not \
             compatible\" with the runtime, and runtime.md Lifecycle step 2: \"If the runtime is unable \
             to create the environment specified in the config.json, it MUST generate an error\" \
             (runc does not check ociVersion)",
}];

pub fn tests() -> Vec<TestCase> {
    vec![
        t("bad_input::missing_config", missing_config),
        t("bad_input::error_logged_as_json", error_logged_as_json),
        t("bad_input::malformed_json", malformed_json),
        departs(
            "bad_input::unsupported_oci_version_0_1_0",
            |c| oci_version(c, "0.1.0"),
            RUNC_OCI_VERSION,
        ),
        departs(
            "bad_input::unsupported_oci_version_2_0_0",
            |c| oci_version(c, "2.0.0"),
            RUNC_OCI_VERSION,
        ),
        t("bad_input::unknown_namespace_type", unknown_namespace_type),
        t("bad_input::namespace_path_missing", namespace_path_missing),
        t("bad_input::invalid_id_dotdot", |c| {
            invalid_id(c, "../kosconf-escape")
        }),
        t("bad_input::invalid_id_slash", |c| invalid_id(c, "kos/conf")),
        t("bad_input::invalid_id_empty", |c| invalid_id(c, "")),
        t("bad_input::invalid_id_dot", |c| invalid_id(c, "..")),
        t("bad_input::duplicate_id_leaves_first", duplicate_id),
        t("bad_input::missing_rootfs", missing_rootfs),
        t("bad_input::empty_args", empty_args),
        t("bad_input::missing_executable", missing_executable),
        t("bad_input::unknown_mount_type", unknown_mount_type),
        t("bad_input::bind_source_missing", bind_source_missing),
        t("bad_input::missing_process_fails_start", missing_process),
        t("bad_input::unknown_rlimit_type", unknown_rlimit_type),
        t("bad_input::unknown_sysctl", unknown_sysctl),
        t(
            "bad_input::unknown_properties_ignored",
            unknown_properties_ignored,
        ),
        t("bad_input::hook_path_missing", hook_path_missing),
        t("bad_input::seccomp_unknown_action", seccomp_unknown_action),
    ]
}

/// Runs `create` on `b` and checks it failed cleanly.
fn create_must_fail(ctx: &Ctx, b: &Bundle, why: &str, write: bool) -> Result<()> {
    let id = ctx.new_id();
    let dir = b.dir.to_string_lossy().into_owned();
    if write {
        b.write_config()?;
    }
    let out = ctx.rt(&["create", "--bundle", &dir, &id])?;
    if out.success() {
        let _ = ctx.rt(&["delete", "--force", &id]);
    }
    out.expect_failure(why)?;
    ensure!(
        !out.stderr.trim().is_empty(),
        "{why}: failed without a message on stderr"
    );
    ctx.assert_gone(&id, b)
}

fn missing_config(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(&["true"])?;
    create_must_fail(ctx, &b, "create without config.json", false)
}

/// With `--log FILE --log-format json` (how containerd drives runc) the error is a JSON
/// entry in the log, in runc's shape: {"level":"error","msg":...,"time":...}.
fn error_logged_as_json(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(&["true"])?;
    let log = b.dir.join("runtime-log.json");
    let id = ctx.new_id();
    let dir = b.dir.to_string_lossy().into_owned();
    let log_s = log.to_string_lossy().into_owned();
    let out = ctx.rt(&[
        "--log",
        &log_s,
        "--log-format",
        "json",
        "create",
        "--bundle",
        &dir,
        &id,
    ])?;
    if out.success() {
        let _ = ctx.rt(&["delete", "--force", &id]);
    }
    out.expect_failure("create without config.json")?;
    let text = fs::read_to_string(&log)?;
    let entry = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["level"] == "error")
        .ok_or_else(|| anyhow::anyhow!("no JSON error entry in the log: {text:?}"))?;
    let msg = entry["msg"].as_str().unwrap_or_default();
    ensure!(
        msg.contains("config.json"),
        "the logged error does not name config.json: {msg:?}"
    );
    ensure!(entry["time"].is_string(), "log entry without time: {entry}");
    ctx.assert_gone(&id, &b)
}

fn malformed_json(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(&["true"])?;
    fs::write(
        b.dir.join("config.json"),
        "{\"ociVersion\": \"1.0.2\", \"process\": {",
    )?;
    create_must_fail(ctx, &b, "create with malformed config.json", false)
}

fn oci_version(ctx: &Ctx, v: &str) -> Result<()> {
    let mut b = ctx.bundle(&["true"])?;
    b.config["ociVersion"] = json!(v);
    create_must_fail(ctx, &b, &format!("create with ociVersion {v}"), true)
}

fn unknown_namespace_type(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["true"])?;
    b.set_namespace("kosbogus", None);
    create_must_fail(ctx, &b, "create with namespace type kosbogus", true)
}

fn namespace_path_missing(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["true"])?;
    b.set_namespace("network", Some("/var/run/netns/kosconf-does-not-exist"));
    create_must_fail(
        ctx,
        &b,
        "create joining a namespace path that does not exist",
        true,
    )
}

fn invalid_id(ctx: &Ctx, id: &str) -> Result<()> {
    let b = ctx.bundle(&["true"])?;
    b.write_config()?;
    let dir = b.dir.to_string_lossy().into_owned();
    let out = ctx.rt(&["create", "--bundle", &dir, id])?;
    if out.success() {
        let _ = ctx.rt(&["delete", "--force", id]);
    }
    out.expect_failure(&format!("create with invalid id {id:?}"))?;
    ensure!(!out.stderr.trim().is_empty(), "failed without a message");
    let escaped = ctx.suite.state_root.join(id);
    if id.contains('/') && !id.is_empty() {
        ensure!(
            !escaped.exists(),
            "state for {id:?} was written at {}",
            escaped.display()
        );
    }
    let parent = ctx
        .suite
        .state_root
        .parent()
        .map(|p| p.join("kosconf-escape"));
    ensure!(
        !parent.is_some_and(|p| p.exists()),
        "state escaped the runtime root"
    );
    let list = ctx.rt(&["list", "-q"])?;
    ensure!(
        !list.stdout.lines().any(|l| !l.is_empty() && l == id),
        "list shows {id:?}"
    );
    Ok(())
}

fn duplicate_id(ctx: &Ctx) -> Result<()> {
    let a = ctx.bundle(&["sh", "-c", "exec sleep 1000"])?;
    let c = ctx.create(&a)?;
    let pid = c.pid()?;
    let b = ctx.bundle(&["true"])?;
    let (out, mut c2) = ctx.try_create_id(&b, &c.id, &[], Call::default())?;
    c2.forget();
    out.expect_failure("create with a duplicate id")?;
    ensure!(!out.stderr.trim().is_empty(), "failed without a message");
    ensure!(
        c.status()? == "created" && c.pid()? == pid,
        "the first container was changed"
    );
    Ok(())
}

fn missing_rootfs(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["true"])?;
    b.config["root"]["path"] = json!("kos-no-such-rootfs");
    create_must_fail(ctx, &b, "create with a missing rootfs", true)
}

/// config.md process.args: "at least one entry is REQUIRED".
fn empty_args(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["true"])?;
    b.config["process"]["args"] = json!([]);
    let (out, _c) = ctx.run(&b)?;
    out.expect_failure("run with empty process.args")?;
    ensure!(!out.stderr.trim().is_empty(), "failed without a message");
    Ok(())
}

fn missing_executable(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(&["/kos-no-such-binary"])?;
    let (out, mut c) = ctx.run(&b)?;
    out.expect_failure("run of a program that does not exist")?;
    ensure!(!out.stderr.trim().is_empty(), "failed without a message");
    let _ = c.delete_force();
    ctx.assert_gone(&c.id, &b)
}

fn unknown_mount_type(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["true"])?;
    b.add_mount(json!({"destination": "/mnt/x", "type": "kosnotafs", "source": "none"}));
    create_must_fail(ctx, &b, "create with a mount of unknown type", true)
}

fn bind_source_missing(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["true"])?;
    let missing = ctx.dir.join("kos-missing-source");
    b.bind(&missing, "/mnt/x", &[]);
    create_must_fail(
        ctx,
        &b,
        "create with a bind source that does not exist",
        true,
    )
}

/// config.md: process "is REQUIRED when start is called".
fn missing_process(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["true"])?;
    if let Some(o) = b.config.as_object_mut() {
        o.remove("process");
    }
    b.write_config()?;
    let (out, mut c) = ctx.try_create(&b, &[], Call::default())?;
    if !out.success() {
        ensure!(
            !out.stderr.trim().is_empty(),
            "create failed without a message"
        );
        c.forget();
        return ctx.assert_gone(&c.id, &b);
    }
    c.start()?
        .expect_failure("start of a container with no process")?;
    let _ = c.delete_force();
    Ok(())
}

/// config.md rlimits: "the runtime MUST generate an error for any values which cannot be
/// mapped to a relevant kernel interface".
fn unknown_rlimit_type(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["true"])?;
    b.config["process"]["rlimits"] = json!([{"type": "RLIMIT_KOSBOGUS", "soft": 1, "hard": 1}]);
    create_must_fail(ctx, &b, "create with rlimit type RLIMIT_KOSBOGUS", true)
}

fn unknown_sysctl(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["true"])?;
    b.config["linux"]["sysctl"] = json!({"net.kosbogus.value": "1"});
    create_must_fail(ctx, &b, "create with an unknown sysctl", true)
}

/// config.md: runtimes "MUST NOT generate an error if they encounter an unknown property.
/// Instead they MUST ignore unknown properties."
fn unknown_properties_ignored(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["echo", "kos-unknown-ok"])?;
    b.config["kosUnknownTop"] = json!({"nested": [1, 2, 3]});
    b.config["process"]["kosUnknownProcess"] = json!("x");
    b.config["linux"]["kosUnknownLinux"] = json!(true);
    let out = ctx.run_ok(&b)?;
    ensure!(
        out.contains("kos-unknown-ok"),
        "container did not run: {out:?}"
    );
    Ok(())
}

fn hook_path_missing(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["true"])?;
    b.set_hook("createRuntime", json!([{"path": "/kos-no-such-hook"}]));
    create_must_fail(
        ctx,
        &b,
        "create with a createRuntime hook that does not exist",
        true,
    )
}

fn seccomp_unknown_action(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["true"])?;
    b.config["linux"]["seccomp"] = json!({"defaultAction": "SCMP_ACT_KOSBOGUS"});
    create_must_fail(ctx, &b, "create with an unknown seccomp action", true)
}
