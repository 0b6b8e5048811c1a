//! Device nodes in the container's /dev swapped for symlinks while the runtime uses them:
//! /dev/null as the source of masked-path binds (CVE-2025-31133) and /dev/console as the
//! target of the terminal bind (CVE-2025-52565).

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use serde_json::json;

use super::common::{
    covering_mount, create_container_hook, host_tool, parse_mountinfo, writable_proc_submounts,
    Guarded, CORE_PATTERN,
};
use crate::harness::bundle::Bundle;
use crate::harness::console;
use crate::harness::ctx::{Call, Ctx};
use crate::harness::parse::{get, sections};

const WAIT: Duration = Duration::from_secs(10);

/// A createContainer hook that replaces `node` in the rootfs with a symlink to the host's
/// core_pattern (as the container's procfs will show it) and leaves a mark proving it ran.
fn swap_node_hook(b: &mut Bundle, node: &str, mark: &Path) -> Result<()> {
    let script = format!(
        "{rm} -f {p}; {ln} -s {CORE_PATTERN} {p}; {touch} {m}",
        rm = host_tool("rm")?.display(),
        ln = host_tool("ln")?.display(),
        touch = host_tool("touch")?.display(),
        p = b.in_rootfs(node).display(),
        m = mark.display(),
    );
    b.set_hook("createContainer", create_container_hook(&script));
    Ok(())
}

fn hook_mark(ctx: &Ctx) -> Result<PathBuf> {
    let d = ctx.mkdir("koshook")?;
    fs::set_permissions(&d, fs::Permissions::from_mode(0o755))?;
    Ok(d.join("swapped"))
}

/// A failed create only proves something if the attack itself happened.
fn refused_after_attack(ctx: &Ctx, mark: &Path, what: &str) -> Result<()> {
    ensure!(
        mark.exists(),
        "{what}: create failed before the hook could plant the symlink, so the attack never ran"
    );
    ctx.log(format!(
        "{what}: create failed after the symlink was planted (refused)"
    ));
    Ok(())
}

/// Lists the masked files of the default config as the container sees them, into a file
/// on the host. Nothing goes to stdout: a runtime that "reopens" stdio through the swapped
/// /dev/null would make it the host's core_pattern. The script never touches /dev/null.
const MASKED_VIEW: &str = "s0=$(readlink /proc/$$/fd/0); s1=$(readlink /proc/$$/fd/1); \
    s2=$(readlink /proc/$$/fd/2); exec > /kosout/report 2>&1; \
    echo @@stdio; echo \"$s0\"; echo \"$s1\"; echo \"$s2\"; \
    echo @@null; readlink /dev/null; \
    echo @@masked; for f in kcore keys timer_list sched_debug latency_stats timer_stats; do \
      [ -e /proc/$f ] && stat -c \"$f %F %t:%T\" /proc/$f 2>&1; done; \
    echo @@mounts; cat /proc/self/mountinfo; echo @@end";

/// CVE-2025-31133: masked files are hidden by bind-mounting /dev/null over them. If the
/// runtime takes /dev/null from the container's /dev, an attacker who swapped it for a
/// symlink to /proc/sys/kernel/core_pattern gets a writable core_pattern bound at
/// /proc/kcore and the other masked files, which is a host escape at the next crash.
/// The swap is made by a createContainer hook (the race winner).
///
/// Blocked means: create fails after the swap, or every masked file is the 1:3 null device
/// and no writable piece of procfs is mounted anywhere in the container; the host's
/// core_pattern is unchanged (the test never writes to it; if a runtime changes it anyway,
/// it is restored).
pub fn cve_2025_31133(ctx: &Ctx) -> Result<()> {
    let host = Guarded::take(Path::new(CORE_PATTERN))?;
    let mark = hook_mark(ctx)?;
    let report = ctx.mkdir("kosout")?;
    fs::set_permissions(&report, fs::Permissions::from_mode(0o777))?;
    let mut b = ctx.bundle(&["sh", "-c", MASKED_VIEW])?;
    b.bind(&report, "/kosout", &[]);
    swap_node_hook(&mut b, "/dev/null", &mark)?;
    let (out, _c) = ctx.run(&b)?;
    host.check_unchanged()?;
    if out.success() {
        ensure!(mark.exists(), "the hook that swaps /dev/null did not run");
        let text =
            fs::read_to_string(report.join("report")).context("the container wrote no report")?;
        ctx.log(format!("container report: {text:?}"));
        let s = sections(&text);
        let stdio = get(&s, "stdio")?;
        ensure!(
            !stdio.contains("/proc/"),
            "the container's stdio was replaced by the procfs file the swapped /dev/null names \
             (anything it prints is written there): {stdio:?}"
        );
        let masked = get(&s, "masked")?;
        ensure!(
            !masked.trim().is_empty(),
            "no masked file exists in the container's /proc: {text:?}"
        );
        for line in masked.lines() {
            ensure!(
                line.ends_with("character special file 1:3"),
                "a masked file is not the null device after /dev/null was swapped for a link \
                 to core_pattern: {line:?}"
            );
        }
        let mounts = parse_mountinfo(get(&s, "mounts")?)?;
        let w = writable_proc_submounts(&mounts);
        ensure!(
            w.is_empty(),
            "writable pieces of procfs are mounted in the container at {w:?} \
             (/dev/null was a link to core_pattern when the runtime masked paths)"
        );
    } else {
        refused_after_attack(ctx, &mark, "/dev/null swapped for a link")?;
    }
    host.check_unchanged()
}

const CONSOLE_VIEW: &str = "echo @@console; readlink /dev/console; stat -c '%F %t:%T' /dev/console; \
    echo @@cp; stat -c %F /proc/sys/kernel/core_pattern; stat -f -c %T /proc/sys/kernel/core_pattern; \
    echo @@mounts; cat /proc/self/mountinfo; echo @@end";

/// CVE-2025-52565: with a terminal, the runtime binds the pty over /dev/console. If it
/// follows a /dev/console that was swapped for a symlink, the bind lands on whatever the
/// link names (here the container's /proc/sys/kernel/core_pattern), before or around the
/// point where maskedPaths and readonlyPaths are applied. kosrun opens the pty peer with
/// TIOCGPTPEER, so the bind's source cannot be redirected; this test attacks the target.
///
/// Blocked means: create fails after the swap, or nothing is mounted on the container's
/// /proc/sys/kernel/core_pattern, which is still a read-only procfs file, and no writable
/// piece of procfs is mounted anywhere; the host's core_pattern is unchanged.
pub fn cve_2025_52565(ctx: &Ctx) -> Result<()> {
    let host = Guarded::take(Path::new(CORE_PATTERN))?;
    let mark = hook_mark(ctx)?;
    let mut b = ctx.bundle(&["sh", "-c", CONSOLE_VIEW])?;
    b.config["process"]["terminal"] = json!(true);
    swap_node_hook(&mut b, "/dev/console", &mark)?;
    let sock = b.dir.join("console.sock");
    let listener = UnixListener::bind(&sock).context("binding the console socket")?;
    let sp = sock.to_string_lossy().into_owned();
    let (created, master) = std::thread::scope(|s| {
        let recv = s.spawn(|| console::receive_pty(&listener, Duration::from_secs(5)));
        let created = ctx.try_create(&b, &["--console-socket", &sp], Call::default());
        let master = recv
            .join()
            .map_err(|_| anyhow!("console receiver panicked"));
        (created, master)
    });
    let (out, c) = created?;
    if !out.success() {
        drop(c);
        refused_after_attack(ctx, &mark, "/dev/console swapped for a link")?;
        return host.check_unchanged();
    }
    let master = master??;
    c.start_ok()?;
    let text = console::read_until_closed(master.as_raw_fd(), WAIT).replace('\r', "");
    c.wait_status("stopped", WAIT)?;
    drop(c);
    host.check_unchanged()?;
    ctx.log(format!("container output: {text:?}"));
    let s = sections(&text);
    let mounts = parse_mountinfo(get(&s, "mounts")?)?;
    let on_cp: Vec<_> = mounts
        .iter()
        .filter(|m| m.mount_point == CORE_PATTERN)
        .collect();
    ensure!(
        on_cp.is_empty(),
        "the console bind followed the /dev/console link: {CORE_PATTERN} in the container has \
         mounts {on_cp:?}"
    );
    let cp = get(&s, "cp")?;
    ensure!(
        cp.lines().map(str::trim).collect::<Vec<_>>() == ["regular empty file", "proc"]
            || cp.lines().map(str::trim).collect::<Vec<_>>() == ["regular file", "proc"],
        "{CORE_PATTERN} in the container is no longer the procfs file: {cp:?}"
    );
    let cover = covering_mount(&mounts, CORE_PATTERN)
        .ok_or_else(|| anyhow!("no mount covers {CORE_PATTERN} in the container"))?;
    ensure!(
        cover.has_opt("ro"),
        "{CORE_PATTERN} is writable in the container: {cover:?}"
    );
    let w = writable_proc_submounts(&mounts);
    ensure!(
        w.is_empty(),
        "writable pieces of procfs are mounted in the container at {w:?}"
    );
    Ok(())
}
