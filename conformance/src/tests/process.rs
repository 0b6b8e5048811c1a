//! The process (config.md "Process", "User"; config-linux.md "Seccomp"), checked from inside.

use std::fs::{self, File};
use std::os::unix::io::AsRawFd;

use anyhow::{ensure, Context, Result};
use kos_testsupport::executable::try_write_executable;
use serde_json::json;

use super::{t, TestCase};
use crate::harness::ctx::{Call, Ctx};
use crate::harness::parse::{get, section, sections, status_field};

pub fn tests() -> Vec<TestCase> {
    vec![
        t("process::args", args),
        t("process::args_path_lookup", args_path_lookup),
        t("process::env_exact", env_exact),
        t("process::cwd", cwd),
        t("process::cwd_missing_created_or_error", cwd_missing),
        t("process::user_uid_gid_additional_gids", user_ids),
        t("process::user_umask", umask),
        t("process::rlimit_nofile", rlimit_nofile),
        t("process::rlimit_core_and_nproc", rlimit_core_and_nproc),
        t("process::rlimit_above_hard_limit_fails", rlimit_too_high),
        t("process::oom_score_adj", oom_score_adj),
        t("process::no_new_privileges_set", |c| nnp(c, true)),
        t("process::no_new_privileges_unset", |c| nnp(c, false)),
        t("process::capabilities", capabilities),
        t(
            "process::capability_removed_is_enforced",
            capability_removed_is_enforced,
        ),
        t(
            "process::ambient_capabilities_non_root",
            ambient_capabilities_non_root,
        ),
        t("process::seccomp_errno", seccomp_errno),
        t("process::no_host_fds_leaked", no_host_fds_leaked),
        t("process::preserve_fds", preserve_fds),
        t("process::listen_fds_passed", listen_fds),
        t("process::terminal_false_no_tty", terminal_false),
        t("process::scheduler_batch", scheduler_batch),
        t("process::io_priority", io_priority),
        t("process::personality_linux32", personality_linux32),
    ]
}

fn args(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(&["printf", "[%s]", "a", "b c", "", "$HOME"])?;
    let out = ctx.run_ok(&b)?;
    ensure!(out == "[a][b c][][$HOME]", "args arrived as {out:?}");
    Ok(())
}

/// config.md args: execvp semantics, so a bare name is looked up in the process's PATH.
fn args_path_lookup(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["kos-hello", "arg"])?;
    fs::create_dir(b.in_rootfs("/kosbin"))?;
    let script = b.in_rootfs("/kosbin/kos-hello");
    try_write_executable(&script, b"#!/bin/sh\necho hello-from-path \"$1\"\n")
        .with_context(|| format!("writing {}", script.display()))?;
    b.config["process"]["env"] = json!(["PATH=/kosbin:/bin"]);
    let out = ctx.run_ok(&b)?;
    ensure!(
        out.trim() == "hello-from-path arg",
        "PATH lookup ran {out:?}"
    );
    Ok(())
}

fn env_exact(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["env"])?;
    b.config["process"]["env"] = json!(["PATH=/bin", "KOS_A=1", "KOS_B=two words", "KOS_EMPTY="]);
    let (out, _c) = ctx.run_with(
        &b,
        &[],
        Call {
            env: vec![("KOS_HOST_LEAK".into(), "leaked".into())],
            ..Call::default()
        },
    )?;
    out.expect_success()?;
    let lines: Vec<&str> = out.stdout.lines().collect();
    for want in ["PATH=/bin", "KOS_A=1", "KOS_B=two words", "KOS_EMPTY="] {
        ensure!(lines.contains(&want), "env lacks {want:?}: {lines:?}");
    }
    ensure!(
        !out.stdout.contains("KOS_HOST_LEAK"),
        "the runtime's environment leaked in: {lines:?}"
    );
    Ok(())
}

fn cwd(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["pwd"])?;
    b.config["process"]["cwd"] = json!("/etc");
    let out = ctx.run_ok(&b)?;
    ensure!(out.trim() == "/etc", "cwd is {:?}", out.trim());
    Ok(())
}

/// config.md: cwd "is the working directory that will be set for the executable". A
/// runtime may create a missing one or refuse, but must never run elsewhere.
fn cwd_missing(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["pwd"])?;
    b.config["process"]["cwd"] = json!("/kos-missing/deeper");
    let (out, _c) = ctx.run(&b)?;
    if out.success() {
        ensure!(
            out.stdout.trim() == "/kos-missing/deeper",
            "ran in {:?} instead of the configured cwd",
            out.stdout.trim()
        );
    } else {
        ensure!(
            !out.stderr.trim().is_empty(),
            "failed without an error message"
        );
    }
    Ok(())
}

fn user_ids(ctx: &Ctx) -> Result<()> {
    let script = [
        section("status", "cat /proc/self/status"),
        section("id", "id"),
    ]
    .concat();
    let mut b = ctx.bundle(&["sh", "-c", &script])?;
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [2000, 3000]});
    let s = sections(&ctx.run_ok(&b)?);
    let st = get(&s, "status")?;
    ensure!(
        status_field(st, "Uid").as_deref() == Some("1000 1000 1000 1000"),
        "Uid: {:?}",
        status_field(st, "Uid")
    );
    ensure!(
        status_field(st, "Gid").as_deref() == Some("1000 1000 1000 1000"),
        "Gid: {:?}",
        status_field(st, "Gid")
    );
    let groups = status_field(st, "Groups").unwrap_or_default();
    let g: Vec<&str> = groups.split(' ').collect();
    ensure!(
        g.contains(&"2000") && g.contains(&"3000"),
        "Groups {groups:?} lack the additionalGids"
    );
    ensure!(
        !g.contains(&"0"),
        "Groups {groups:?} still hold root's group"
    );
    Ok(())
}

fn umask(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["sh", "-c", "umask; touch /tmp/f; stat -c %a /tmp/f"])?;
    b.config["process"]["user"]["umask"] = json!(0o027);
    let out = ctx.run_ok(&b)?;
    let l: Vec<&str> = out.lines().collect();
    ensure!(
        l.first() == Some(&"0027"),
        "umask inside is {:?}",
        l.first()
    );
    ensure!(
        l.get(1) == Some(&"640"),
        "file created with mode {:?}",
        l.get(1)
    );
    Ok(())
}

fn rlimit_nofile(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&[
        "sh",
        "-c",
        "ulimit -Sn; ulimit -Hn; grep 'Max open files' /proc/self/limits",
    ])?;
    b.config["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 777, "hard": 4096}]);
    let out = ctx.run_ok(&b)?;
    let l: Vec<&str> = out.lines().collect();
    ensure!(
        l.first() == Some(&"777") && l.get(1) == Some(&"4096"),
        "RLIMIT_NOFILE inside: {out:?}"
    );
    Ok(())
}

fn rlimit_core_and_nproc(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["cat", "/proc/self/limits"])?;
    b.config["process"]["rlimits"] = json!([
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0},
        {"type": "RLIMIT_NPROC", "soft": 300, "hard": 400},
        {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024}
    ]);
    let out = ctx.run_ok(&b)?;
    let row = |name: &str| {
        out.lines()
            .find(|l| l.starts_with(name))
            .map(|l| {
                l[name.len()..]
                    .split_whitespace()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
    };
    ensure!(
        row("Max core file size") == "0 0",
        "core limit: {:?}",
        row("Max core file size")
    );
    ensure!(
        row("Max processes") == "300 400",
        "nproc limit: {:?}",
        row("Max processes")
    );
    ensure!(
        row("Max open files") == "512 1024",
        "nofile limit: {:?}",
        row("Max open files")
    );
    Ok(())
}

/// Raising a hard limit above the runtime's own needs CAP_SYS_RESOURCE; without it the
/// runtime must fail the create instead of running with a different limit.
fn rlimit_too_high(ctx: &Ctx) -> Result<()> {
    let mut host = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut host);
    }
    let nr_open: u64 = fs::read_to_string("/proc/sys/fs/nr_open")?.trim().parse()?;
    let want = host.rlim_max.saturating_add(1000);
    if want > nr_open {
        crate::skip!(
            "host hard RLIMIT_NOFILE {} is already near fs.nr_open",
            host.rlim_max
        );
    }
    // Probe whether this process could raise it; if so the runtime may too, legitimately.
    let probe = libc::rlimit {
        rlim_cur: host.rlim_cur,
        rlim_max: want,
    };
    // SAFETY: setrlimit with a valid struct; restored right after if it succeeded.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &probe) } == 0 {
        // SAFETY: as above.
        unsafe {
            libc::setrlimit(libc::RLIMIT_NOFILE, &host);
        }
        crate::skip!("this host lets root raise hard limits (CAP_SYS_RESOURCE), nothing to refuse");
    }
    let dir = ctx.mkdir("host")?;
    let mut b = ctx.bundle(&["touch", "/hostdir/ran"])?;
    b.bind(&dir, "/hostdir", &[]);
    b.config["process"]["rlimits"] = json!([{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": want}]);
    let (out, c) = ctx.run(&b)?;
    out.expect_failure(&format!(
        "RLIMIT_NOFILE hard {want} above the runtime's hard limit {}",
        host.rlim_max
    ))?;
    ensure!(
        !dir.join("ran").exists(),
        "the program ran although its rlimit could not be set"
    );
    ensure!(
        !out.stderr.trim().is_empty(),
        "failed without an error message"
    );
    let mut c = c;
    let _ = c.delete_force();
    ctx.assert_gone(&c.id, &b)
}

fn oom_score_adj(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["cat", "/proc/self/oom_score_adj"])?;
    b.config["process"]["oomScoreAdj"] = json!(500);
    let out = ctx.run_ok(&b)?;
    ensure!(
        out.trim() == "500",
        "oom_score_adj inside is {:?}",
        out.trim()
    );
    Ok(())
}

fn nnp(ctx: &Ctx, on: bool) -> Result<()> {
    let mut b = ctx.bundle(&["cat", "/proc/self/status"])?;
    b.config["process"]["noNewPrivileges"] = json!(on);
    let host = fs::read_to_string("/proc/self/status")?;
    if !on && status_field(&host, "NoNewPrivs").as_deref() == Some("1") {
        crate::skip!("the suite itself runs with no_new_privs, so the container inherits it");
    }
    let out = ctx.run_ok(&b)?;
    let want = if on { "1" } else { "0" };
    ensure!(
        status_field(&out, "NoNewPrivs").as_deref() == Some(want),
        "NoNewPrivs inside: {:?}, want {want}",
        status_field(&out, "NoNewPrivs")
    );
    Ok(())
}

fn capabilities(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["cat", "/proc/self/status"])?;
    let caps = json!(["CAP_CHOWN", "CAP_KILL"]);
    b.config["process"]["capabilities"] = json!({
        "bounding": caps, "effective": caps, "permitted": caps
    });
    let out = ctx.run_ok(&b)?;
    // CAP_CHOWN is bit 0, CAP_KILL bit 5.
    for f in ["CapBnd", "CapEff", "CapPrm"] {
        ensure!(
            status_field(&out, f).as_deref() == Some("0000000000000021"),
            "{f} is {:?}, want only CHOWN|KILL (0x21)",
            status_field(&out, f)
        );
    }
    ensure!(
        status_field(&out, "CapAmb").as_deref() == Some("0000000000000000"),
        "ambient caps not empty"
    );
    Ok(())
}

/// Root without CAP_CHOWN cannot chown; with it, it can.
fn capability_removed_is_enforced(ctx: &Ctx) -> Result<()> {
    let script = "touch /tmp/f; chown 1000 /tmp/f; echo rc=$?";
    let mut without = ctx.bundle(&["sh", "-c", script])?;
    let caps = json!(["CAP_KILL"]);
    without.config["process"]["capabilities"] =
        json!({"bounding": caps, "effective": caps, "permitted": caps});
    let (out, _c) = ctx.run(&without)?;
    out.expect_success()?;
    ensure!(
        out.stdout.contains("rc=1"),
        "chown succeeded without CAP_CHOWN: {:?}",
        out.stdout
    );
    let mut with = ctx.bundle(&["sh", "-c", script])?;
    let caps = json!(["CAP_KILL", "CAP_CHOWN"]);
    with.config["process"]["capabilities"] =
        json!({"bounding": caps, "effective": caps, "permitted": caps});
    let out = ctx.run_ok(&with)?;
    ensure!(out.contains("rc=0"), "chown failed with CAP_CHOWN: {out:?}");
    Ok(())
}

fn ambient_capabilities_non_root(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["cat", "/proc/self/status"])?;
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    let caps = json!(["CAP_NET_BIND_SERVICE"]);
    b.config["process"]["capabilities"] = json!({
        "bounding": caps, "effective": caps, "permitted": caps, "inheritable": caps, "ambient": caps
    });
    let out = ctx.run_ok(&b)?;
    // CAP_NET_BIND_SERVICE is bit 10.
    for f in ["CapAmb", "CapEff", "CapPrm"] {
        ensure!(
            status_field(&out, f).as_deref() == Some("0000000000000400"),
            "{f} of uid 1000 is {:?}, want NET_BIND_SERVICE (0x400)",
            status_field(&out, f)
        );
    }
    Ok(())
}

fn seccomp_errno(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&[
        "sh",
        "-c",
        "mkdir /tmp/kosdir; echo rc=$?; touch /tmp/file && echo touch-ok",
    ])?;
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    let (out, _c) = ctx.run(&b)?;
    out.expect_success()?;
    ensure!(
        out.stdout.contains("rc=1"),
        "mkdir was not blocked: {:?}",
        out.stdout
    );
    ensure!(
        out.stderr.contains("Operation not permitted"),
        "mkdir did not fail with EPERM: {:?}",
        out.stderr
    );
    ensure!(
        out.stdout.contains("touch-ok"),
        "other syscalls were blocked too"
    );
    ensure!(
        !b.in_rootfs("/tmp/kosdir").exists(),
        "the directory was created"
    );
    Ok(())
}

/// Lists the shell's own fds (not those of `ls`, which opens the directory it reads);
/// `:` after `ls` keeps the shell from exec'ing ls as itself, so `$$` stays the shell.
const LIST_FDS: &str = "ls /proc/$$/fd; :";

fn fd_list(out: &str) -> Vec<i32> {
    let mut v: Vec<i32> = out.lines().filter_map(|l| l.trim().parse().ok()).collect();
    v.sort();
    v
}

/// An fd the runtime inherits without close-on-exec must not reach the container.
fn no_host_fds_leaked(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(&["sh", "-c", LIST_FDS])?;
    let f = File::open("/etc/hostname").or_else(|_| File::open("/proc/self/status"))?;
    let (out, _c) = ctx.run_with(
        &b,
        &[],
        Call {
            fds: vec![(f.as_raw_fd(), 7)],
            ..Call::default()
        },
    )?;
    out.expect_success()?;
    let fds = fd_list(&out.stdout);
    ensure!(
        fds == [0, 1, 2],
        "container holds fds {fds:?}, want only 0 1 2"
    );
    Ok(())
}

fn preserve_fds(ctx: &Ctx) -> Result<()> {
    let dir = ctx.mkdir("fds")?;
    fs::write(dir.join("three"), "kos-fd-three\n")?;
    fs::write(dir.join("four"), "kos-fd-four\n")?;
    let f3 = File::open(dir.join("three"))?;
    let f4 = File::open(dir.join("four"))?;
    let script = format!("{LIST_FDS}; cat <&3; cat <&4");
    let b = ctx.bundle(&["sh", "-c", &script])?;
    let (out, _c) = ctx.run_with(
        &b,
        &["--preserve-fds", "2"],
        Call {
            fds: vec![(f3.as_raw_fd(), 3), (f4.as_raw_fd(), 4)],
            ..Call::default()
        },
    )?;
    out.expect_success()?;
    let fds = fd_list(&out.stdout);
    ensure!(
        fds == [0, 1, 2, 3, 4],
        "container holds fds {fds:?}, want 0-4"
    );
    ensure!(
        out.stdout.contains("kos-fd-three") && out.stdout.contains("kos-fd-four"),
        "preserved fds unreadable: {:?}",
        out.stdout
    );
    Ok(())
}

/// Socket activation: with LISTEN_FDS/LISTEN_PID naming the runtime, fds 3.. are passed on
/// and LISTEN_FDS is set for the container.
fn listen_fds(ctx: &Ctx) -> Result<()> {
    let dir = ctx.mkdir("fds")?;
    fs::write(dir.join("three"), "kos-listen-fd\n")?;
    let f3 = File::open(dir.join("three"))?;
    let script = format!("{LIST_FDS}; echo LISTEN_FDS=$LISTEN_FDS; cat <&3");
    let b = ctx.bundle(&["sh", "-c", &script])?;
    let (out, _c) = ctx.run_with(
        &b,
        &[],
        Call {
            fds: vec![(f3.as_raw_fd(), 3)],
            sh_prefix: Some("LISTEN_FDS=1 LISTEN_PID=$$; export LISTEN_FDS LISTEN_PID;".into()),
            ..Call::default()
        },
    )?;
    out.expect_success()?;
    ensure!(
        out.stdout.contains("LISTEN_FDS=1"),
        "LISTEN_FDS not set inside: {:?}",
        out.stdout
    );
    ensure!(
        fd_list(&out.stdout) == [0, 1, 2, 3],
        "fds inside: {:?}",
        fd_list(&out.stdout)
    );
    ensure!(
        out.stdout.contains("kos-listen-fd"),
        "listen fd 3 unreadable: {:?}",
        out.stdout
    );
    Ok(())
}

fn terminal_false(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(&["sh", "-c", "tty; true"])?;
    let out = ctx.run_ok(&b)?;
    ensure!(
        out.contains("not a tty"),
        "terminal=false yet stdin is a tty: {out:?}"
    );
    Ok(())
}

/// config.md Scheduler (runtime-spec 1.2).
fn scheduler_batch(ctx: &Ctx) -> Result<()> {
    ctx.require_spec("1.2.0", "process.scheduler")?;
    let mut b = ctx.bundle(&["cat", "/proc/self/sched"])?;
    b.config["ociVersion"] = json!("1.2.0");
    b.config["process"]["scheduler"] = json!({"policy": "SCHED_BATCH"});
    let out = ctx.run_ok(&b)?;
    let policy = out
        .lines()
        .find(|l| l.starts_with("policy"))
        .and_then(|l| l.split(':').nth(1))
        .map(str::trim)
        .unwrap_or("");
    // SCHED_BATCH is policy 3.
    ensure!(
        policy == "3",
        "scheduling policy inside is {policy:?}, want SCHED_BATCH (3)"
    );
    Ok(())
}

/// config.md IO Priority (runtime-spec 1.2).
fn io_priority(ctx: &Ctx) -> Result<()> {
    ctx.require_spec("1.2.0", "process.ioPriority")?;
    let mut b = ctx.bundle(&["sh", "-c", "ionice -p $$"])?;
    b.config["ociVersion"] = json!("1.2.0");
    b.config["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_BE", "priority": 5});
    let out = ctx.run_ok(&b)?;
    ensure!(
        out.trim() == "best-effort: prio 5",
        "io priority inside is {:?}",
        out.trim()
    );
    Ok(())
}

/// config-linux.md Personality (runtime-spec 1.1).
fn personality_linux32(ctx: &Ctx) -> Result<()> {
    ctx.require_spec("1.1.0", "linux.personality")?;
    if std::env::consts::ARCH != "x86_64" {
        crate::skip!("the LINUX32 check expects an x86_64 host");
    }
    let mut b = ctx.bundle(&["uname", "-m"])?;
    b.config["ociVersion"] = json!("1.1.0");
    b.config["linux"]["personality"] = json!({"domain": "LINUX32"});
    let out = ctx.run_ok(&b)?;
    ensure!(
        out.trim() == "i686",
        "uname -m under LINUX32 is {:?}, want i686",
        out.trim()
    );
    Ok(())
}
