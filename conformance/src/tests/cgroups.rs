//! Control groups (config-linux.md "Control groups", "cgroupsPath", resources), read from the
//! host's cgroup files of the container process, on v1, hybrid or v2 hosts alike.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, ensure, Result};
use serde_json::json;

use super::{departs, t, TestCase};
use crate::harness::ctx::{process_alive, Ctx};
use crate::harness::parse::mountinfo;

const LONG: &[&str] = &["sh", "-c", "echo ready; exec sleep 1000"];

pub fn tests() -> Vec<TestCase> {
    vec![
        t("cgroups::absolute_path_honoured", absolute_path_honoured),
        t("cgroups::memory_limit", memory_limit),
        t("cgroups::pids_limit_enforced", pids_limit_enforced),
        t("cgroups::cpu_shares", cpu_shares),
        t("cgroups::update_pids_limit", update_pids_limit),
        departs(
            "cgroups::shared_path_of_live_container_refused",
            shared_path_refused,
            RUNC_SHARED_CGROUP,
        ),
        departs(
            "cgroups::delete_force_spares_nested_container",
            nested_container_spared,
            RUNC_NESTED_KILL,
        ),
    ]
}

const RUNC_SHARED_CGROUP: &[crate::harness::report::Departure] = &[crate::harness::report::Departure {
    runtime: "runc",
    clause: "runtime.md Errors and Delete: a second container in the cgroup of a live one is \
             later killed by the first one's delete; runc (on a hybrid host) accepts the shared path",
}];

const RUNC_NESTED_KILL: &[crate::harness::report::Departure] =
    &[crate::harness::report::Departure {
        runtime: "runc",
        clause:
            "runtime.md Delete: deleting a container deletes the resources created for it; runc's \
             delete --force kills every process below its cgroupsPath, another container's too",
    }];

/// A second container asking for the cgroup a live container already holds is refused (runc:
/// "cgroup is not empty"), and the first one is untouched.
fn shared_path_refused(ctx: &Ctx) -> Result<()> {
    let a = ctx.bundle(&["sleep", "1000"])?;
    let c = ctx.create(&a)?;
    c.start_ok()?;
    let pid = c.pid()?;
    let mut b = ctx.bundle(&["sleep", "1000"])?;
    b.config["linux"]["cgroupsPath"] = a.config["linux"]["cgroupsPath"].clone();
    let (out, mut c2) = ctx.try_create(&b, &[], crate::harness::ctx::Call::default())?;
    if out.success() {
        let _ = c2.delete_force();
    } else {
        c2.forget();
    }
    out.expect_failure("create in the cgroup of a live container")?;
    ensure!(
        c.status()? == "running" && c.pid()? == pid && process_alive(pid),
        "the first container was disturbed"
    );
    Ok(())
}

/// delete --force of a container kills only its own processes: another container whose
/// cgroupsPath lies below keeps running.
fn nested_container_spared(ctx: &Ctx) -> Result<()> {
    let a = ctx.bundle(&["sleep", "1000"])?;
    let mut ca = ctx.create(&a)?;
    ca.start_ok()?;
    let mut b = ctx.bundle(&["sleep", "1000"])?;
    let outer = a.config["linux"]["cgroupsPath"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    b.config["linux"]["cgroupsPath"] = serde_json::json!(format!("{outer}/kosnested"));
    let mut cb = ctx.create(&b)?;
    cb.start_ok()?;
    let pid_b = cb.pid()?;
    let pid_a = ca.pid()?;
    ca.delete_force()?.expect_success()?;
    ctx.wait_until(Duration::from_secs(5), "the outer init to die", || {
        Ok(!process_alive(pid_a))
    })?;
    let r = (|| -> Result<()> {
        ensure!(
            process_alive(pid_b),
            "delete --force of the outer container killed the nested one"
        );
        ensure!(
            cb.status()? == "running",
            "the nested container is {}",
            cb.status()?
        );
        Ok(())
    })();
    cb.delete_force()?;
    // The outer cgroup could only go once the nested one had gone.
    for dir in crate::harness::ctx::cgroup_hierarchies() {
        let _ = fs::remove_dir(dir.join(outer.trim_start_matches('/')));
    }
    r
}

/// The host directory of `pid`'s cgroup for `controller`: the v1 hierarchy carrying it, or the
/// v2 hierarchy when no v1 one does and v2 offers it.
fn controller_dir(pid: i64, controller: &str) -> Result<PathBuf> {
    let mi = mountinfo(&fs::read_to_string("/proc/self/mountinfo")?);
    let own = fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    for m in mi.iter().filter(|m| m.fstype == "cgroup") {
        if !m.has_super_opt(controller) {
            continue;
        }
        for l in own.lines() {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
            if ctrls.split(',').any(|c| c == controller) {
                return Ok(PathBuf::from(&m.mount_point).join(path.trim_start_matches('/')));
            }
        }
    }
    let v2 = mi
        .iter()
        .find(|m| m.fstype == "cgroup2")
        .ok_or_else(|| anyhow!("no cgroup hierarchy offers {controller}"))?;
    let path = own
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or_else(|| anyhow!("process {pid} has no v2 cgroup"))?;
    let root = PathBuf::from(&v2.mount_point);
    let ctrls = fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    ensure!(
        ctrls.split_whitespace().any(|c| c == controller),
        "no cgroup hierarchy offers {controller}"
    );
    Ok(root.join(path.trim_start_matches('/')))
}

fn read_trim(p: PathBuf) -> Result<String> {
    fs::read_to_string(&p)
        .map(|s| s.trim().to_string())
        .map_err(|e| anyhow!("reading {}: {e}", p.display()))
}

/// config-linux.md cgroupsPath: "In the case of an absolute path (starting with /), the
/// runtime MUST take the path to be relative to the cgroups mount point."
fn absolute_path_honoured(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let cg = b.config["linux"]["cgroupsPath"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let c = ctx.create(&b)?;
    let pid = c.pid()?;
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup"))?;
    let pure_v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let mut seen = 0;
    for l in text.lines() {
        let path = l.splitn(3, ':').nth(2).unwrap_or("");
        let ctrls = l.split(':').nth(1).unwrap_or("");
        // Hierarchies the runtime does not manage (named ones, the controller-less v2 one on a
        // hybrid host) may stay where they were.
        let managed = if pure_v2 {
            ctrls.is_empty()
        } else {
            ["memory", "pids", "cpu", "devices", "freezer"]
                .iter()
                .any(|c| ctrls.split(',').any(|x| x == *c))
        };
        if managed {
            ensure!(
                path == cg,
                "cgroup line {l:?}: want the configured path {cg}"
            );
            seen += 1;
        }
    }
    ensure!(seen > 0, "no managed cgroup hierarchy in {text:?}");
    Ok(())
}

fn memory_limit(ctx: &Ctx) -> Result<()> {
    const LIMIT: u64 = 64 * 1024 * 1024;
    let mut b = ctx.bundle(LONG)?;
    b.config["linux"]["resources"]["memory"] = json!({"limit": LIMIT});
    let c = ctx.create(&b)?;
    let dir = controller_dir(c.pid()?, "memory")?;
    let v = if dir.join("memory.max").exists() {
        read_trim(dir.join("memory.max"))?
    } else {
        read_trim(dir.join("memory.limit_in_bytes"))?
    };
    ensure!(
        v == LIMIT.to_string(),
        "memory limit in {} is {v}, want {LIMIT}",
        dir.display()
    );
    Ok(())
}

fn pids_limit_enforced(ctx: &Ctx) -> Result<()> {
    // A failed fork is fatal to the shell, so the forking happens in a subshell, and the
    // count uses builtins only: at the limit nothing more can be forked.
    let script = "( i=0; while [ $i -lt 16 ]; do sleep 3 & i=$((i+1)); done ) 2>/dev/null; \
                  set -- /proc/[0-9]*; echo running=$#";
    let mut b = ctx.bundle(&["sh", "-c", script])?;
    b.config["linux"]["resources"]["pids"] = json!({"limit": 6});
    let c = ctx.create(&b)?;
    let dir = controller_dir(c.pid()?, "pids")?;
    ensure!(
        read_trim(dir.join("pids.max"))? == "6",
        "pids.max in {} is not 6",
        dir.display()
    );
    c.start_ok()?;
    c.wait_status("stopped", Duration::from_secs(15))?;
    let out = c.output();
    let running: usize = out
        .lines()
        .find_map(|l| l.strip_prefix("running="))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| anyhow!("no process count printed: {out:?}"))?;
    ensure!(
        running <= 6,
        "{running} processes ran under a pids limit of 6"
    );
    Ok(())
}

fn cpu_shares(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(LONG)?;
    b.config["linux"]["resources"]["cpu"] = json!({"shares": 512});
    let c = ctx.create(&b)?;
    let dir = controller_dir(c.pid()?, "cpu")?;
    if dir.join("cpu.shares").exists() {
        let v = read_trim(dir.join("cpu.shares"))?;
        ensure!(v == "512", "cpu.shares is {v}, want 512");
    } else {
        // The usual v1->v2 conversion maps shares 512 to weight 20; accept any weight below the
        // default 100, since the spec does not fix the formula.
        let w: u64 = read_trim(dir.join("cpu.weight"))?.parse()?;
        ensure!(
            w < 100,
            "cpu.weight {w} does not reflect shares 512 (< default 1024)"
        );
    }
    Ok(())
}

fn update_pids_limit(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = ctx.create(&b)?;
    ctx.rt(&["update", "--pids-limit", "42", &c.id])?
        .expect_success()?;
    let dir = controller_dir(c.pid()?, "pids")?;
    let v = read_trim(dir.join("pids.max"))?;
    ensure!(v == "42", "pids.max after update is {v}, want 42");
    Ok(())
}
