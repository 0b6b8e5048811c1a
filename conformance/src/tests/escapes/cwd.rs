//! CVE-2024-21626: a working directory reached through a descriptor the runtime leaked.
//!
//! The runtime switches into the container's root and then changes to process.cwd. If it
//! still holds a descriptor of a host directory (a cgroup directory, the state directory,
//! the bundle) when it does, `process.cwd = /proc/self/fd/N` puts the process in that host
//! directory, outside the new root, where `..` climbs to the host's `/`. The test tries
//! every N from 3 to 12, and once more with a host directory passed on purpose as fd 3
//! through --preserve-fds.
//!
//! Blocked means: for each N, create fails, or the process's working directory is inside
//! the container (climbing `..` from it reaches a root holding the rootfs's marker file and
//! no host file is listed) and it holds no descriptor beyond 0-2 and the preserved ones.

use std::fs::{self, File};
use std::os::fd::AsRawFd;

use anyhow::{ensure, Context, Result};
use serde_json::json;

use super::common::require_plain_container_runs;
use crate::harness::bundle::Bundle;
use crate::harness::ctx::{Call, Ctx};
use crate::harness::parse::{get, sections};

const MARKER: &str = "kos-rootfs-marker-21626";
const HOST_SECRET: &str = "kos-host-secret-21626";

const SCRIPT: &str = "echo @@here; ls -a . 2>&1; \
    echo @@up; cd ../../../../../../../../../..; ls -a 2>&1; \
    echo @@fds; ls /proc/$$/fd; echo @@end";

/// Checks one run; `Ok(false)` when the runtime refused it.
fn check(
    ctx: &Ctx,
    b: &Bundle,
    n: i32,
    extra: &[&str],
    call: Call,
    preserved: &[i32],
) -> Result<bool> {
    let (out, _c) = ctx.run_with(b, extra, call)?;
    if !out.success() {
        return Ok(false);
    }
    let s = sections(&out.stdout);
    let ctx_msg = || format!("process.cwd /proc/self/fd/{n}: output {:?}", out.stdout);
    let here = get(&s, "here").with_context(ctx_msg)?;
    let up = get(&s, "up").with_context(ctx_msg)?;
    ensure!(
        !here.contains(HOST_SECRET) && !up.contains(HOST_SECRET),
        "process.cwd /proc/self/fd/{n} put the process in a host directory: it lists \
         {HOST_SECRET} ({:?})",
        out.stdout
    );
    ensure!(
        up.lines().any(|l| l.trim() == MARKER),
        "process.cwd /proc/self/fd/{n} is outside the container: climbing `..` from it reaches \
         a root without the rootfs marker; it lists {:?} (cwd lists {:?})",
        up.lines().take(20).collect::<Vec<_>>(),
        here.lines().take(20).collect::<Vec<_>>()
    );
    let mut fds: Vec<i32> = get(&s, "fds")
        .with_context(ctx_msg)?
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    fds.sort();
    let mut want = vec![0, 1, 2];
    want.extend_from_slice(preserved);
    ensure!(
        fds == want,
        "with process.cwd /proc/self/fd/{n} the process holds descriptors {fds:?}, want {want:?}"
    );
    Ok(true)
}

pub fn cve_2024_21626(ctx: &Ctx) -> Result<()> {
    require_plain_container_runs(ctx)?;
    let mut b = ctx.bundle(&["sh", "-c", SCRIPT])?;
    fs::write(b.in_rootfs(MARKER), "")?;
    let mut refused = Vec::new();
    for n in 3..=12 {
        b.config["process"]["cwd"] = json!(format!("/proc/self/fd/{n}"));
        if !check(ctx, &b, n, &[], Call::default(), &[])? {
            refused.push(n);
        }
    }
    ctx.log(format!("cwd /proc/self/fd/N refused for N in {refused:?}"));

    // A host directory handed over on purpose: it may be used as fd 3, but the runtime must
    // not make it the working directory of a process it put in a new root.
    let host = ctx.mkdir("koshostdir")?;
    fs::write(host.join(HOST_SECRET), "")?;
    let dir = File::open(&host).with_context(|| format!("opening {}", host.display()))?;
    b.config["process"]["cwd"] = json!("/proc/self/fd/3");
    let call = Call {
        fds: vec![(dir.as_raw_fd(), 3)],
        ..Call::default()
    };
    check(ctx, &b, 3, &["--preserve-fds", "1"], call, &[3])?;
    Ok(())
}
