//! A runtime process killed at any moment (SIGKILL: no handler runs) must leave what an
//! engine above can recover from: `state`/`list` show the half-made container, `delete
//! --force` removes everything made under its id, and the id can be used again; a `start`
//! that dies leaves a status that says what the kernel says. Each test kills at random
//! points over a bounded number of tries.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

use super::{departs, TestCase};
use crate::harness::bundle::Bundle;
use crate::harness::ctx::{process_alive, Ctx};
use crate::harness::host::HostMount;
use crate::harness::report::Departure;

const RUNC_CREATE_KILLED: &[Departure] = &[Departure {
    runtime: "runc",
    clause: "runtime.md Delete: \"Deleting a container MUST delete the resources that were \
             created during the create step\"; a runc create killed half-way leaves cgroups \
             that delete --force does not remove",
}];

const RUNC_START_STATUS: &[Departure] = &[Departure {
    runtime: "runc",
    clause: "runtime.md State: status \"running\" once the process executed the user-specified \
             program; runc keeps saying \"created\" after a start that was killed, or could not \
             write to --root, while the program runs",
}];

pub fn tests() -> Vec<TestCase> {
    vec![
        departs(
            "crash::create_killed_then_recovered",
            create_killed,
            RUNC_CREATE_KILLED,
        ),
        departs(
            "crash::start_killed_status_from_kernel",
            start_killed,
            RUNC_START_STATUS,
        ),
        departs(
            "crash::start_with_read_only_root_status_from_kernel",
            start_read_only_root,
            RUNC_START_STATUS,
        ),
    ]
}

const TRIES: usize = 30;

/// Random delays from the kernel's generator, so each run probes other moments.
fn random_delays(n: usize, max_us: u32) -> Result<Vec<Duration>> {
    let mut buf = vec![0u8; n * 4];
    fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf
        .chunks(4)
        .map(|c| {
            let v = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            Duration::from_micros(u64::from(v % max_us))
        })
        .collect())
}

/// Runs the runtime with `args` under `root`, SIGKILLs it after `delay` (if still
/// running) and returns whether it was killed before it finished.
fn kill_after(ctx: &Ctx, root: &Path, args: &[&str], delay: Duration) -> Result<bool> {
    let out = ctx.dir.join(format!("killed{}.out", ctx.suite.next()));
    let mut child = Command::new(&ctx.suite.runtime)
        .arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(fs::File::create(&out)?)
        .stderr(Stdio::null())
        .spawn()
        .context("spawning the runtime")?;
    std::thread::sleep(delay);
    let killed = child.try_wait()?.is_none();
    if killed {
        // SAFETY: kill(2) of our own child.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    }
    let st = child.wait()?;
    ctx.log(format!(
        "{args:?} after {delay:?}: {}",
        if killed {
            "killed".into()
        } else {
            format!("{st}")
        }
    ));
    Ok(killed)
}

fn state_of(ctx: &Ctx, id: &str) -> Result<Option<Value>> {
    let out = ctx.rt(&["state", id])?;
    if !out.success() {
        return Ok(None);
    }
    Ok(Some(serde_json::from_str(&out.stdout)?))
}

/// The time one create of this bundle takes here, to aim the kills inside it.
fn create_time(ctx: &Ctx, b: &Bundle) -> Result<Duration> {
    let start = Instant::now();
    let mut c = ctx.create(b)?;
    let took = start.elapsed();
    c.delete_force()?.expect_success()?;
    Ok(took)
}

fn create_killed(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(&["sleep", "1000"])?;
    b.write_config()?;
    let dir = b.dir.to_string_lossy().into_owned();
    let span = create_time(ctx, &b)?.as_micros() as u32;
    let root = ctx.suite.state_root.clone();
    let mut killed_count = 0;
    for (i, delay) in random_delays(TRIES, span.max(1000) * 3 / 2)?
        .into_iter()
        .enumerate()
    {
        let id = ctx.new_id();
        let killed = kill_after(ctx, &root, &["create", "--bundle", &dir, &id], delay)?;
        killed_count += usize::from(killed);
        let st = state_of(ctx, &id)?;
        let listed = ctx
            .rt(&["list", "-q"])?
            .stdout
            .lines()
            .any(|l| l.trim() == id);
        match &st {
            Some(v) => {
                let status = v["status"].as_str().unwrap_or_default();
                ensure!(
                    ["creating", "created", "stopped"].contains(&status),
                    "try {i}: a create killed after {delay:?} left status {status:?}"
                );
                ensure!(listed, "try {i}: `state` shows {id} but `list` does not");
            }
            None => ensure!(!listed, "try {i}: `list` shows {id} but `state` fails"),
        }
        let out = ctx.rt(&["delete", "--force", &id])?;
        out.expect_success()?;
        ctx.assert_gone(&id, &b)
            .with_context(|| format!("try {i} (killed after {delay:?}, state {st:?})"))?;
        // The id is free again.
        let mut c = ctx
            .try_create_id(&b, &id, &[], Default::default())
            .map(|(out, c)| (out.success(), c))?;
        ensure!(
            c.0,
            "try {i}: create of {id} again failed after the recovery"
        );
        c.1.delete_force()?.expect_success()?;
        ctx.assert_gone(&id, &b)?;
    }
    ctx.log(format!(
        "{killed_count} of {TRIES} creates were killed before they finished"
    ));
    Ok(())
}

/// The program writes a marker into its rootfs the moment it runs.
fn marker_bundle(ctx: &Ctx) -> Result<Bundle> {
    ctx.bundle(&["sh", "-c", "touch /kos-ran; exec sleep 1000"])
}

/// After a `start` was killed: the status is running exactly when the program ran. A
/// "created" that the kernel contradicts for good is the failure this catches.
fn check_after_killed_start(ctx: &Ctx, root: &Path, b: &Bundle, id: &str, i: usize) -> Result<()> {
    let marker = b.in_rootfs("/kos-ran");
    let status = |ctx: &Ctx| -> Result<String> {
        let out = run_at(ctx, root, &["state", id])?;
        out.expect_success()?;
        let v: Value = serde_json::from_str(&out.stdout)?;
        Ok(v["status"].as_str().unwrap_or_default().to_string())
    };
    let first = status(ctx)?;
    ensure!(
        first == "created" || first == "running",
        "try {i}: status {first:?} after a killed start"
    );
    if first == "created" {
        // The init may have been released just before the kill and be on its way.
        std::thread::sleep(Duration::from_millis(300));
        if status(ctx)? == "created" {
            ensure!(
                !marker.exists(),
                "try {i}: the program ran but the status stays \"created\""
            );
            let out = run_at(ctx, root, &["start", id])?;
            out.expect_success()
                .with_context(|| format!("try {i}: start after a killed start"))?;
        }
    }
    ctx.wait_until(Duration::from_secs(10), "the program's marker", || {
        Ok(marker.exists())
    })?;
    let now = status(ctx)?;
    ensure!(
        now == "running",
        "try {i}: the program runs but the status is {now:?}"
    );
    Ok(())
}

fn run_at(ctx: &Ctx, root: &Path, args: &[&str]) -> Result<crate::harness::runtime::Output> {
    let root_s = root.to_string_lossy().into_owned();
    let mut v = vec!["--root", root_s.as_str()];
    v.extend_from_slice(args);
    // `rt` adds the suite's --root first; the later one wins in every runc-style parser,
    // but to be exact the command is run without it.
    let n = ctx.suite.next();
    crate::harness::runtime::run_command(
        &ctx.suite.runtime,
        &v.iter().map(std::ffi::OsString::from).collect::<Vec<_>>(),
        &crate::harness::runtime::RunOpts {
            timeout: crate::harness::runtime::default_timeout(),
            cwd: None,
            env: vec![],
            fds: vec![],
            stdout: ctx.dir.join(format!("at{n}.out")),
            stderr: ctx.dir.join(format!("at{n}.err")),
        },
    )
}

fn start_killed(ctx: &Ctx) -> Result<()> {
    let root = ctx.suite.state_root.clone();
    for (i, delay) in random_delays(TRIES, 20_000)?.into_iter().enumerate() {
        let b = marker_bundle(ctx)?;
        let mut c = ctx.create(&b)?;
        kill_after(ctx, &root, &["start", &c.id], delay)?;
        let r = check_after_killed_start(ctx, &root, &b, &c.id, i);
        c.delete_force()?.expect_success()?;
        r.with_context(|| format!("start killed after {delay:?}"))?;
        ctx.assert_gone(&c.id, &b)?;
    }
    Ok(())
}

/// The state directory turns read-only between create and start: the program runs, and
/// the status says so though nothing could be recorded.
fn start_read_only_root(ctx: &Ctx) -> Result<()> {
    let root = ctx.dir.join("roroot");
    let mnt = HostMount::tmpfs(&root)?;
    let b = marker_bundle(ctx)?;
    b.write_config()?;
    let id = ctx.new_id();
    let dir = b.dir.to_string_lossy().into_owned();
    run_at(ctx, &root, &["create", "--bundle", &dir, &id])?.expect_success()?;
    let cleanup = |ctx: &Ctx| {
        let _ = remount(&root, false);
        let _ = run_at(ctx, &root, &["delete", "--force", &id]);
    };
    let r = (|| -> Result<()> {
        remount(&root, true)?;
        let out = run_at(ctx, &root, &["start", &id])?;
        ctx.log(out.describe());
        let marker = b.in_rootfs("/kos-ran");
        ctx.wait_until(Duration::from_secs(10), "the program's marker", || {
            Ok(marker.exists())
        })?;
        let st = run_at(ctx, &root, &["state", &id])?;
        st.expect_success()?;
        let v: Value = serde_json::from_str(&st.stdout)?;
        ensure!(
            v["status"] == "running",
            "the program runs but the status is {}",
            v["status"]
        );
        let pid = v["pid"].as_i64().unwrap_or(0);
        ensure!(
            process_alive(pid),
            "state names pid {pid}, which is not alive"
        );
        Ok(())
    })();
    cleanup(ctx);
    drop(mnt);
    r?;
    ctx.assert_gone(&id, &b)
}

fn remount(target: &Path, ro: bool) -> Result<()> {
    let flags = libc::MS_REMOUNT | if ro { libc::MS_RDONLY } else { 0 };
    let tgt = std::ffi::CString::new(target.as_os_str().as_encoded_bytes())?;
    // SAFETY: valid target; remount needs no source or type.
    let rc = unsafe {
        libc::mount(
            std::ptr::null(),
            tgt.as_ptr(),
            std::ptr::null(),
            flags,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        bail!(
            "remount {} {}: {}",
            target.display(),
            if ro { "ro" } else { "rw" },
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}
