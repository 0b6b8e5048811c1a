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
        t("bad_input::uid_no_change_refused", |c| {
            user_id(c, "uid", 4_294_967_295)
        }),
        t("bad_input::gid_no_change_refused", |c| {
            user_id(c, "gid", 4_294_967_295)
        }),
        t("bad_input::uid_above_int32_refused", |c| {
            user_id(c, "uid", 2_147_483_648)
        }),
        t(
            "bad_input::exec_user_no_change_refused",
            exec_user_no_change,
        ),
        departs(
            "bad_input::hook_timeout_zero",
            |c| hook_timeout(c, 0),
            RUNC_HOOK_TIMEOUT,
        ),
        departs(
            "bad_input::hook_timeout_negative",
            |c| hook_timeout(c, -1),
            RUNC_HOOK_TIMEOUT,
        ),
        departs("bad_input::config_json_fifo", config_fifo, RUNC_CONFIG_FIFO),
        t("bad_input::config_json_dev_zero", config_dev_zero),
        departs(
            "bad_input::rlimit_without_values",
            rlimit_without_values,
            RUNC_RLIMIT_VALUES,
        ),
        t("bad_input::rootfs_symlink", rootfs_symlink),
        t("bad_input::intel_rdt_without_rdt", intel_rdt),
        t("bad_input::sysctl_net_in_host_netns", |c| {
            host_ns_sysctl(c, "network", "net", "net.ipv4.ip_forward")
        }),
        departs(
            "bad_input::sysctl_domainname_in_host_uts",
            |c| host_ns_sysctl(c, "uts", "uts", "kernel.domainname"),
            RUNC_HOST_NS_SYSCTL,
        ),
        departs(
            "bad_input::sysctl_msgmax_in_host_ipc",
            |c| host_ns_sysctl(c, "ipc", "ipc", "kernel.msgmax"),
            RUNC_HOST_NS_SYSCTL,
        ),
    ]
}

const RUNC_CONFIG_FIFO: &[Departure] = &[Departure {
    runtime: "runc",
    clause: "runtime.md Errors: a config.json that cannot be read must fail the operation; runc \
             opens a FIFO in its place and waits for a writer forever",
}];

const RUNC_HOOK_TIMEOUT: &[Departure] = &[Departure {
    runtime: "runc",
    clause: "config.md POSIX-platform Hooks: \"timeout ... MUST be greater than zero\"; runc \
             takes 0 or less as no timeout",
}];

const RUNC_RLIMIT_VALUES: &[Departure] = &[Departure {
    runtime: "runc",
    clause: "config.md POSIX process rlimits: soft and hard are REQUIRED; runc takes a missing \
             value as 0",
}];

const RUNC_HOST_NS_SYSCTL: &[Departure] = &[Departure {
    runtime: "runc",
    clause: "config-linux.md Sysctl and runtime.md Errors: a sysctl of a namespace the container \
             joined from the host changes the host; runc checks this for net.* only",
}];

/// config.md User: ids the kernel cannot make a process's own ((uid_t)-1 is setresuid's
/// "no change", so the container would stay root); runc refuses above 2147483647.
fn user_id(ctx: &Ctx, field: &str, id: u64) -> Result<()> {
    let mut b = ctx.bundle(&["true"])?;
    b.config["process"]["user"][field] = json!(id);
    create_must_fail(
        ctx,
        &b,
        &format!("create with process.user.{field} {id}"),
        true,
    )
}

fn exec_user_no_change(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(&["sleep", "1000"])?;
    let c = ctx.create(&b)?;
    c.start_ok()?;
    let out = ctx.rt(&[
        "exec",
        "--user",
        "4294967295:4294967295",
        &c.id,
        "sh",
        "-c",
        "id -u > /tmp/kos-exec-ran",
    ])?;
    out.expect_failure("exec --user 4294967295:4294967295")?;
    ensure!(
        !b.in_rootfs("/tmp/kos-exec-ran").exists(),
        "the process ran"
    );
    Ok(())
}

fn hook_timeout(ctx: &Ctx, timeout: i64) -> Result<()> {
    let mut b = ctx.bundle(&["true"])?;
    b.set_hook(
        "prestart",
        json!([{"path": "/bin/true", "timeout": timeout}]),
    );
    create_must_fail(
        ctx,
        &b,
        &format!("create with hook timeout {timeout}"),
        true,
    )
}

/// config.json must be a regular file: a FIFO in its place must not hang the runtime.
fn config_fifo(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(&["true"])?;
    let p = std::ffi::CString::new(b.dir.join("config.json").to_string_lossy().as_bytes())?;
    // SAFETY: valid path.
    ensure!(
        unsafe { libc::mkfifo(p.as_ptr(), 0o600) } == 0,
        "mkfifo: {}",
        std::io::Error::last_os_error()
    );
    create_must_fail(ctx, &b, "create with config.json a FIFO", false)
}

/// An endless config.json (a link to /dev/zero) is refused, not read until memory runs out.
fn config_dev_zero(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(&["true"])?;
    std::os::unix::fs::symlink("/dev/zero", b.dir.join("config.json"))?;
    create_must_fail(ctx, &b, "create with config.json -> /dev/zero", false)
}

fn rlimit_without_values(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["true"])?;
    b.config["process"]["rlimits"] = json!([{"type": "RLIMIT_CPU"}]);
    create_must_fail(
        ctx,
        &b,
        "create with an rlimit of neither soft nor hard",
        true,
    )
}

/// runc refuses a rootfs that is a symlink ("not an absolute path, or a symlink").
fn rootfs_symlink(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["true"])?;
    std::os::unix::fs::symlink("rootfs", b.dir.join("rootfs-link"))?;
    b.config["root"]["path"] = json!("rootfs-link");
    create_must_fail(ctx, &b, "create with a symlinked rootfs", true)
}

/// config-linux.md IntelRdt: "If intelRdt is set, the runtime MUST ... or generate an error".
fn intel_rdt(ctx: &Ctx) -> Result<()> {
    if std::path::Path::new("/sys/fs/resctrl/schemata").exists() {
        crate::skip!("this host has Intel RDT (resctrl mounted)");
    }
    let mut b = ctx.bundle(&["true"])?;
    b.config["linux"]["intelRdt"] = json!({"closID": "kosconf", "l3CacheSchema": "L3:0=f"});
    create_must_fail(ctx, &b, "create with intelRdt on a host without RDT", true)
}

/// A sysctl for a namespace the container joined from the host would change the host.
/// The value written is the host's own, so a runtime that wrongly writes it changes nothing.
fn host_ns_sysctl(ctx: &Ctx, ns: &str, link: &str, key: &str) -> Result<()> {
    let current = fs::read_to_string(format!("/proc/sys/{}", key.replace('.', "/")))?;
    let mut b = ctx.bundle(&["true"])?;
    // This suite's own namespace: the host's, and joinable (pid 1's may not be here).
    b.set_namespace(ns, Some(&format!("/proc/{}/ns/{link}", std::process::id())));
    if ns == "uts" {
        if let Some(o) = b.config.as_object_mut() {
            o.remove("hostname");
        }
    }
    b.config["linux"]["sysctl"] = json!({key: current.trim()});
    create_must_fail(
        ctx,
        &b,
        &format!("create with {key} in the host's {ns} namespace"),
        true,
    )
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
