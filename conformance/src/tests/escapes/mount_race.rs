//! CVE-2021-30465: a mount destination raced between a directory and a symlink.
//!
//! The runtime checks a destination inside the rootfs and then mounts on it by path; if a
//! component is swapped for a symlink to a host directory in between, the mount (and the
//! directories the runtime creates for it) lands on the host side. Here a host thread keeps
//! exchanging `/kosrace` in the rootfs with a symlink to a host directory (renameat2
//! RENAME_EXCHANGE, as fast as it can) while the runtime creates containers whose config
//! mounts tmpfs filesystems at `/kosrace/m0`...`/kosrace/m39`, many times over. The race is
//! not deterministic: a vulnerable runtime is caught on most runs, not necessarily on all.
//!
//! Blocked means: in every container that was created, a createContainer hook's view of the
//! container's mount namespace (before the root switch, when host paths are still visible)
//! shows every one of those mounts inside the rootfs; the host directory gains no entry and
//! the host mount table no such mount. A create that fails (the runtime saw the race) is
//! fine.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::{ensure, Context, Result};
use serde_json::json;

use super::common::{
    create_container_hook, dir_entries, host_tool, mounts_with_source, require_plain_container_runs,
};
use crate::harness::ctx::{Call, Ctx};

const ITERATIONS: usize = 30;
const MOUNTS: usize = 40;
const SOURCE: &str = "kos-race-30465";

/// Sets the flag on drop, so the swapping thread stops however the test ends.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

fn exchange_until(a: &Path, b: &Path, stop: &AtomicBool, swaps: &AtomicU64) {
    let (Ok(ca), Ok(cb)) = (
        CString::new(a.as_os_str().as_bytes()),
        CString::new(b.as_os_str().as_bytes()),
    ) else {
        return;
    };
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: two valid NUL-terminated paths; RENAME_EXCHANGE swaps them atomically.
        let rc = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                ca.as_ptr(),
                libc::AT_FDCWD,
                cb.as_ptr(),
                libc::RENAME_EXCHANGE,
            )
        };
        if rc == 0 {
            swaps.fetch_add(1, Ordering::Relaxed);
        } else {
            std::thread::yield_now();
        }
    }
}

pub fn cve_2021_30465(ctx: &Ctx) -> Result<()> {
    require_plain_container_runs(ctx)?;
    let victim = ctx.mkdir("kosvictim")?;
    fs::write(victim.join("kos-victim-file"), "kos\n")?;
    let victim_before = dir_entries(&victim)?;
    let hook_dir = ctx.mkdir("koshook")?;
    let seen = hook_dir.join("mountinfo");

    let mut b = ctx.bundle(&["true"])?;
    let race_dir = b.in_rootfs("/kosrace");
    let race_link = b.in_rootfs("/kosrace-swap");
    fs::create_dir(&race_dir)?;
    symlink(&victim, &race_link)?;
    for i in 0..MOUNTS {
        b.add_mount(
            json!({"destination": format!("/kosrace/m{i}"), "type": "tmpfs",
            "source": SOURCE, "options": ["size=16k"]}),
        );
    }
    let script = format!(
        "{} /proc/self/mountinfo > {}",
        host_tool("cat")?.display(),
        seen.display()
    );
    b.set_hook("createContainer", create_container_hook(&script));
    let rootfs = fs::canonicalize(b.rootfs())?;

    let stop = AtomicBool::new(false);
    let swaps = AtomicU64::new(0);
    let mut created = 0usize;
    std::thread::scope(|s| -> Result<()> {
        let _stop = StopOnDrop(&stop);
        s.spawn(|| exchange_until(&race_dir, &race_link, &stop, &swaps));
        for i in 0..ITERATIONS {
            let _ = fs::remove_file(&seen);
            let (out, c) = ctx.try_create(&b, &[], Call::default())?;
            if out.success() {
                created += 1;
                let text = fs::read_to_string(&seen)
                    .with_context(|| format!("iteration {i}: the hook left no mountinfo"))?;
                let points = mounts_with_source(&text, SOURCE);
                ensure!(
                    points.len() == MOUNTS,
                    "iteration {i}: {} of the {MOUNTS} race mounts exist in the container: \
                     {points:?}",
                    points.len()
                );
                let outside: Vec<_> = points
                    .iter()
                    .filter(|p| !Path::new(p).starts_with(&rootfs))
                    .collect();
                ensure!(
                    outside.is_empty(),
                    "iteration {i}: mounts landed outside the rootfs {}: {outside:?}",
                    rootfs.display()
                );
            }
            drop(c);
            ensure!(
                dir_entries(&victim)? == victim_before,
                "iteration {i}: the host directory behind the symlink changed: {:?}",
                dir_entries(&victim)?
            );
        }
        Ok(())
    })?;
    let host_mi = fs::read_to_string("/proc/self/mountinfo")?;
    let on_host = mounts_with_source(&host_mi, SOURCE);
    ensure!(
        on_host.is_empty(),
        "race mounts appeared in the host mount table at {on_host:?}"
    );
    let n = swaps.load(Ordering::Relaxed);
    ensure!(n > 0, "the swapping thread never exchanged the paths");
    ctx.log(format!(
        "{created} of {ITERATIONS} creates succeeded under {n} exchanges"
    ));
    Ok(())
}
