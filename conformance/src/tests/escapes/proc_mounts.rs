//! Attacks on the runtime's view of /proc: a fake /proc (CVE-2019-16884), /proc as a
//! symlink in the rootfs (CVE-2023-27561 / CVE-2023-28642), and the runtime's own writes to
//! procfs files redirected by a mount placed over them (CVE-2025-52881).

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::process::Command;

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::{json, Value};

use super::common::{
    covering_mount, create_container_hook, dir_entries, host_tool, parse_mountinfo,
    require_plain_container_runs, writable_proc_submounts, Guarded,
};
use crate::harness::bundle::Bundle;
use crate::harness::ctx::{Call, Ctx};
use crate::harness::parse::{get, sections};

/// A bundle whose program only leaves a mark in a host directory: if it ever runs, the
/// runtime accepted the config.
fn marking_bundle(ctx: &Ctx) -> Result<(Bundle, std::path::PathBuf)> {
    let mark = ctx.mkdir("kosmark")?;
    fs::set_permissions(&mark, fs::Permissions::from_mode(0o777))?;
    let mut b = ctx.bundle(&["touch", "/kosmark/ran"])?;
    b.bind(&mark, "/kosmark", &[]);
    Ok((b, mark))
}

fn without_proc_mount(b: &mut Bundle) {
    if let Value::Array(m) = &mut b.config["mounts"] {
        m.retain(|m| m["destination"] != "/proc");
    }
}

/// Create must fail, leave nothing behind and never run the program.
fn expect_refused(ctx: &Ctx, b: &Bundle, mark: &std::path::Path, what: &str) -> Result<()> {
    let (out, mut c) = ctx.try_create(b, &[], Call::default())?;
    if out.success() {
        let _ = c.start();
        std::thread::sleep(std::time::Duration::from_millis(100));
        bail!(
            "{what}: the runtime accepted the config (create exited 0){}",
            if mark.join("ran").exists() {
                " and the program ran"
            } else {
                ""
            }
        );
    }
    c.forget();
    ctx.assert_gone(&c.id, b)?;
    ensure!(!mark.join("ran").exists(), "{what}: the program ran");
    Ok(())
}

/// CVE-2019-16884: a runtime that writes LSM labels to /proc/self/attr/* can be made to
/// write them into a fake /proc the config mounts (a tmpfs or a bind of a directory the
/// attacker filled), so the container runs unconfined. SELinux and AppArmor are not enabled
/// on the test machine, so the label writes themselves cannot be observed; what a runtime
/// can show is that it never lets anything but procfs sit at /proc.
///
/// Blocked means: create fails for a tmpfs at /proc, a host directory bound at /proc, and a
/// host directory bound over /proc/self/attr; the program never runs and nothing is left.
pub fn cve_2019_16884(ctx: &Ctx) -> Result<()> {
    require_plain_container_runs(ctx)?;
    let fake = ctx.mkdir("kosfakeproc")?;
    fs::create_dir_all(fake.join("self/attr"))?;
    fs::write(fake.join("self/attr/exec"), "")?;
    let before = dir_entries(&fake)?;

    let (mut b, mark) = marking_bundle(ctx)?;
    without_proc_mount(&mut b);
    b.add_mount(
        json!({"destination": "/proc", "type": "tmpfs", "source": "kos-fake-proc",
        "options": ["size=64k"]}),
    );
    expect_refused(ctx, &b, &mark, "tmpfs at /proc")?;

    let (mut b, mark) = marking_bundle(ctx)?;
    without_proc_mount(&mut b);
    b.bind(&fake, "/proc", &[]);
    expect_refused(ctx, &b, &mark, "host directory bound at /proc")?;

    let (mut b, mark) = marking_bundle(ctx)?;
    b.bind(&fake.join("self/attr"), "/proc/self/attr", &[]);
    expect_refused(ctx, &b, &mark, "host directory bound over /proc/self/attr")?;

    ensure!(
        dir_entries(&fake)? == before && fs::read(fake.join("self/attr/exec"))?.is_empty(),
        "the fake /proc directory on the host was written to"
    );
    Ok(())
}

/// What the container reports about the procfs it sees through /proc.
const PROC_VIEW: &str = "p=$(readlink -f /proc); echo \"@@real\"; echo \"$p\"; \
    echo @@fstype; stat -f -c %T \"$p/\" 2>&1; \
    echo @@masked; for f in kcore keys timer_list sched_debug latency_stats timer_stats; do \
      [ -e \"$p/$f\" ] && stat -c \"$f %F %t:%T\" \"$p/$f\" 2>&1; done; \
    echo @@mounts; cat \"$p/self/mountinfo\" 2>&1; echo @@end";

/// CVE-2023-27561 / CVE-2023-28642: the rootfs ships /proc as a symlink. A runtime that
/// follows it on the host side mounts procfs wherever it points (a host directory, or a
/// directory the attacker controls), and one that masks paths by name without following it
/// leaves /proc/kcore and friends readable in the procfs the container does see.
///
/// Two links are tried: to a directory inside the rootfs, and to an absolute path that is a
/// real directory on the host. Blocked means: create fails, or the container sees procfs
/// through its /proc with every masked file masked (the 1:3 null device), /proc/sys
/// read-only and no writable piece of procfs mounted elsewhere; the host directory is
/// untouched and no mount appears on the host.
pub fn cve_2023_27561(ctx: &Ctx) -> Result<()> {
    require_plain_container_runs(ctx)?;
    let victim = ctx.mkdir("kosvictim")?;
    fs::write(victim.join("kos-victim-file"), "kos\n")?;
    let victim_before = dir_entries(&victim)?;
    for target in [
        "/kosfakeproc".to_string(),
        victim.to_string_lossy().into_owned(),
    ] {
        let b = ctx.bundle(&["sh", "-c", PROC_VIEW])?;
        let proc_dir = b.in_rootfs("/proc");
        fs::remove_dir(&proc_dir)?;
        fs::create_dir_all(b.in_rootfs("/kosfakeproc"))?;
        symlink(&target, &proc_dir)?;
        let (out, _c) = ctx.run(&b)?;
        if out.success() {
            check_proc_view(&out.stdout).with_context(|| format!("with /proc -> {target}"))?;
        } else {
            ctx.log(format!("/proc -> {target}: refused"));
        }
        ensure!(
            dir_entries(&victim)? == victim_before,
            "with /proc -> {target}: the host directory {} changed: {:?}",
            victim.display(),
            dir_entries(&victim)?
        );
        let host_mounts = crate::harness::host::mounts_under(&victim);
        ensure!(
            host_mounts.is_empty(),
            "with /proc -> {target}: mounts appeared on the host at {host_mounts:?}"
        );
    }
    Ok(())
}

fn check_proc_view(out: &str) -> Result<()> {
    let s = sections(out);
    let real = get(&s, "real")?.trim().to_string();
    let fstype = get(&s, "fstype")?.trim();
    ensure!(
        fstype == "proc",
        "the container's /proc (-> {real}) is not procfs but {fstype:?}: procfs went elsewhere"
    );
    let masked = get(&s, "masked")?;
    ensure!(
        !masked.trim().is_empty(),
        "no masked file exists in the container's procfs: {masked:?}"
    );
    for line in masked.lines() {
        ensure!(
            line.ends_with("character special file 1:3"),
            "a masked path is readable in the procfs the container sees: {line:?}"
        );
    }
    let mounts = parse_mountinfo(get(&s, "mounts")?)?;
    let sys = format!("{real}/sys");
    let cover = covering_mount(&mounts, &sys)
        .ok_or_else(|| anyhow!("no mount covers {sys} in the container"))?;
    ensure!(
        cover.has_opt("ro"),
        "{sys} (readonlyPaths /proc/sys) is writable in the container: {cover:?}"
    );
    let w = writable_proc_submounts(&mounts);
    ensure!(
        w.iter().all(|m| *m == real),
        "writable pieces of procfs are mounted in the container at {w:?}"
    );
    Ok(())
}

/// A namespaced sysctl (network) the runtime writes for the container.
const SYSCTL_KEY: &str = "net.ipv4.ip_unprivileged_port_start";
const SYSCTL_FILE: &str = "/proc/sys/net/ipv4/ip_unprivileged_port_start";
const SYSCTL_VALUE: &str = "555";

/// Reads a /proc/sys/net file as seen from the network namespace of `pid`.
fn netns_sysctl(pid: i64, file: &str) -> Result<String> {
    let ns = fs::File::open(format!("/proc/{pid}/ns/net"))
        .with_context(|| format!("opening the network namespace of {pid}"))?;
    let fd = ns.as_raw_fd();
    let mut cmd = Command::new(host_tool("cat")?);
    cmd.arg(file);
    // SAFETY: setns is a plain syscall, async-signal-safe between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd
        .output()
        .context("reading a sysctl in the container's netns")?;
    ensure!(
        out.status.success(),
        "cat {file} in netns of {pid}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// CVE-2025-52881: the runtime's writes to procfs (sysctls, LSM labels) go through paths a
/// racing mount can cover, so they land in whatever file the attacker put there. The race
/// winner is played by a createContainer hook that bind-mounts a host file over the sysctl
/// the config asks for; the same redirection straight from the config (a bind mount over
/// the sysctl file) must be refused. SELinux and AppArmor are not enabled here, so label
/// writes cannot be observed; sysctl writes take the same path.
///
/// Blocked means: the host file is unchanged, and either create fails or the container's
/// own network namespace holds the value the config set; the host's value is unchanged.
pub fn cve_2025_52881(ctx: &Ctx) -> Result<()> {
    require_plain_container_runs(ctx)?;
    let host_value = Guarded::take(std::path::Path::new(SYSCTL_FILE))?;
    let decoy_dir = ctx.mkdir("kosdecoy")?;
    let decoy = decoy_dir.join("kos-decoy");
    fs::write(&decoy, "kos-decoy\n")?;
    let decoy_guard = Guarded::take(&decoy)?;

    // The config itself asks for the redirection: refused.
    let (mut b, mark) = marking_bundle(ctx)?;
    b.config["linux"]["sysctl"] = json!({SYSCTL_KEY: SYSCTL_VALUE});
    b.bind(&decoy, SYSCTL_FILE, &[]);
    expect_refused(ctx, &b, &mark, "a bind mount over a sysctl file")?;
    decoy_guard.check_unchanged()?;

    // A racing mount over the file, played by the hook.
    let mut b = ctx.bundle(&["true"])?;
    b.config["linux"]["sysctl"] = json!({SYSCTL_KEY: SYSCTL_VALUE});
    let target = b.in_rootfs(SYSCTL_FILE);
    let mark = decoy_dir.join("kos-hook-ran");
    let script = format!(
        "{} --bind {} {}; {} {}",
        host_tool("mount")?.display(),
        decoy.display(),
        target.display(),
        host_tool("touch")?.display(),
        mark.display()
    );
    b.set_hook("createContainer", create_container_hook(&script));
    let (out, c) = ctx.try_create(&b, &[], Call::default())?;
    let inside = if out.success() {
        Some(netns_sysctl(c.pid()?, SYSCTL_FILE)?)
    } else {
        ensure!(
            mark.exists(),
            "create failed before the hook mounted over the sysctl file, so the attack never ran"
        );
        ctx.log("create with a mount over the sysctl file failed (refused)");
        None
    };
    drop(c);
    decoy_guard
        .check_unchanged()
        .map_err(|e| anyhow!("the runtime's sysctl write was redirected: {e}"))?;
    host_value.check_unchanged()?;
    if let Some(v) = inside {
        ensure!(
            v == SYSCTL_VALUE,
            "create succeeded but the container's network namespace has {SYSCTL_KEY} = {v:?}, \
             not {SYSCTL_VALUE}: the write went somewhere else"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_view_accepts_a_masked_procfs() {
        let out = "@@real\n/proc\n@@fstype\nproc\n@@masked\nkcore character special file 1:3\n\
                   @@mounts\n1 0 0:1 / / rw - ext4 x rw\n2 1 0:2 / /proc rw - proc proc rw\n\
                   3 2 0:2 /sys /proc/sys ro - proc proc rw\n@@end\n";
        assert!(check_proc_view(out).is_ok());
        let leaky = out.replace("kcore character special file 1:3", "kcore regular file 0:0");
        assert!(check_proc_view(&leaky).is_err());
        let rw = out.replace("/sys /proc/sys ro", "/sys /proc/sys rw");
        assert!(check_proc_view(&rw).is_err());
    }
}
