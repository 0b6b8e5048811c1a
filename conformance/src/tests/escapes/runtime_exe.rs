//! CVE-2019-5736: overwriting the runtime binary through /proc/<pid>/exe.
//!
//! While a container is being created its init is still the runtime: /proc/<init>/exe is
//! the runtime's binary on the host. A process that can see that init (here: a second
//! container joined to the first one's pid namespace) opens /proc/1/exe and writes to it,
//! or keeps a descriptor and reopens /proc/self/fd/N for writing once the runtime has
//! exec'd the user's program and no longer holds the binary busy.
//!
//! Once created, the target's init is still the runtime's binary but already holds the
//! container's final credentials (uid 0, the config's capabilities), and the attacker runs
//! with the same: the kernel's uid and capability comparisons for /proc/<pid>/exe let it
//! through, so only the runtime's own protection stands between it and the binary
//! (kosrun: the init is made non-dumpable until execve, so nobody without CAP_SYS_PTRACE
//! can open its exe link; runc 1.1: the init runs from a read-only copy of the binary).
//! The kept descriptor is a read-only one held by a background process (busybox cannot
//! open O_PATH); the kernel applies the same /proc/<pid>/exe access check to both kinds.
//! A kosrun built without the non-dumpable step fails this test: the reopen overwrites
//! the copy.
//!
//! Blocked means: both writes fail, and the runtime binary on the host is byte-identical
//! afterwards. The target is a copy of the runtime made by the test, so a vulnerable
//! runtime damages only the copy.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, ensure, Context, Result};
use kos_testsupport::executable::copy_executable;

use super::common::snapshot;
use crate::harness::ctx::Ctx;
use crate::harness::parse::{get, sections};
use crate::harness::runtime::{default_timeout, run_command, Output, RunOpts};

const WAIT: Duration = Duration::from_secs(10);

/// The attacker: holds /proc/1/exe open in a background process, tries a direct write,
/// signals the test, waits for the target's runtime to be gone, then reopens for writing.
const ATTACK: &str = "\
echo @@exe; readlink /proc/1/exe 2>&1; \
echo @@open; sleep 60 3</proc/1/exe & holder=$!; sleep 0.2; \
if [ -e /proc/$holder/fd/3 ]; then echo held; else echo refused; fi; \
echo @@write; if (echo kos-cve-2019-5736 >> /proc/1/exe) 2>&1; then echo wrote; else echo refused; fi; \
touch /kosx/held; i=0; while [ ! -e /kosx/go ] && [ $i -lt 300 ]; do sleep 0.05; i=$((i+1)); done; \
echo @@reopen; if [ -e /proc/$holder/fd/3 ]; then \
  if (echo kos-cve-2019-5736 >> /proc/$holder/fd/3) 2>&1; then echo wrote; else echo refused; fi; \
else echo nothing-held; fi; \
echo @@end; touch /kosx/done";

/// Force-deletes a container created outside the harness's own guards.
struct Doomed<'a> {
    ctx: &'a Ctx<'a>,
    id: String,
}

impl Drop for Doomed<'_> {
    fn drop(&mut self) {
        let _ = self.ctx.rt(&["delete", "--force", &self.id]);
    }
}

/// Runs `program` (a copy of the runtime) with the suite's --root.
fn run_copy(ctx: &Ctx, program: &Path, args: &[&str]) -> Result<Output> {
    let mut full: Vec<std::ffi::OsString> =
        vec!["--root".into(), ctx.suite.state_root.clone().into()];
    full.extend(args.iter().map(std::ffi::OsString::from));
    let n = ctx.suite.next();
    let out = run_command(
        program,
        &full,
        &RunOpts {
            timeout: default_timeout(),
            cwd: None,
            env: vec![],
            fds: vec![],
            stdout: ctx.dir.join(format!("copy{n}.out")),
            stderr: ctx.dir.join(format!("copy{n}.err")),
        },
    )?;
    ctx.log(format!(
        "{} [{:.2}s]",
        out.describe(),
        out.elapsed.as_secs_f64()
    ));
    Ok(out)
}

fn exe_of(pid: i64) -> Option<PathBuf> {
    fs::read_link(format!("/proc/{pid}/exe")).ok()
}

pub fn cve_2019_5736(ctx: &Ctx) -> Result<()> {
    let real = ctx.suite.runtime.clone();
    let copy = ctx.dir.join("kos-runtime-copy");
    copy_executable(&real, &copy).with_context(|| format!("copying {}", real.display()))?;
    let real_before = snapshot(&real)?;
    let copy_before = snapshot(&copy)?;

    let flags = ctx.mkdir("kosx")?;
    fs::set_permissions(&flags, fs::Permissions::from_mode(0o777))?;

    // The target: created by the runtime copy, so its init's exe is the copy.
    let a = ctx.bundle(&["sleep", "30"])?;
    a.write_config()?;
    let a_id = ctx.new_id();
    let a_dir = a.dir.to_string_lossy().into_owned();
    let _a_guard = Doomed {
        ctx,
        id: a_id.clone(),
    };
    run_copy(ctx, &copy, &["create", "--bundle", &a_dir, &a_id])?.expect_success()?;
    let st = ctx.rt(&["state", &a_id])?;
    st.expect_success()?;
    let pid_a = serde_json::from_str::<serde_json::Value>(&st.stdout)?["pid"]
        .as_i64()
        .ok_or_else(|| anyhow!("state of {a_id} has no pid: {}", st.stdout))?;

    // The attacker: the same config (uid 0, the default capabilities), in the target's pid
    // namespace, where the target's init is pid 1.
    let mut b = ctx.bundle(&["sh", "-c", ATTACK])?;
    let pidns = format!("/proc/{pid_a}/ns/pid");
    b.set_namespace("pid", Some(&pidns));
    b.bind(&flags, "/kosx", &[]);
    let attacker = ctx.create(&b)?;
    attacker.start_ok()?;
    let held = ctx.wait_until(WAIT, "the attacker's first attempts", || {
        Ok(flags.join("held").exists())
    });
    if let Err(e) = held {
        return Err(anyhow!("{e}; attacker output: {:?}", attacker.output()));
    }

    // Let the target's runtime exec the user's program: from then on nothing executes the
    // binary and a write through a kept descriptor would no longer fail with ETXTBSY.
    ctx.rt(&["start", &a_id])?.expect_success()?;
    ctx.wait_until(WAIT, "the target's init to exec its program", || {
        Ok(exe_of(pid_a).is_some_and(|e| e != copy && !e.starts_with("/memfd:")))
    })?;
    fs::write(flags.join("go"), "")?;
    ctx.wait_until(WAIT, "the attacker's reopen attempt", || {
        Ok(flags.join("done").exists())
    })
    .map_err(|e| anyhow!("{e}; attacker output: {:?}", attacker.output()))?;

    let out = attacker.output();
    ctx.log(format!("attacker output: {out:?}"));
    let s = sections(&out);
    let copy_after = snapshot(&copy)?;
    ensure!(
        copy_after == copy_before,
        "the runtime binary (copy at {}) was modified through /proc/<init>/exe: {} bytes before, \
         {} after; attacker output: {out:?}",
        copy.display(),
        copy_before.len(),
        copy_after.len()
    );
    ensure!(
        snapshot(&real)? == real_before,
        "the runtime binary {} itself changed during the test",
        real.display()
    );
    let write = get(&s, "write")?.trim();
    ensure!(
        write == "refused" || write.ends_with("refused"),
        "a direct write to /proc/1/exe (the runtime's init) succeeded: {write:?}"
    );
    let reopen = get(&s, "reopen")?.trim();
    ensure!(
        reopen.ends_with("refused") || reopen == "nothing-held",
        "reopening a kept /proc/1/exe descriptor for writing succeeded: {reopen:?}"
    );
    Ok(())
}
