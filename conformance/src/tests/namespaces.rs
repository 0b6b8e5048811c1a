//! Namespaces (config-linux.md "Namespaces", "User namespace mappings", "Offset for Time
//! Namespace"), checked from inside the container.

use std::fs;
use std::time::Duration;

use anyhow::{anyhow, ensure, Result};
use serde_json::json;

use super::{t, TestCase};

use crate::harness::ctx::Ctx;
use crate::harness::host::Netns;
use crate::harness::parse::{get, section, sections, status_field};
use crate::skip;

const WAIT: Duration = Duration::from_secs(10);

pub fn tests() -> Vec<TestCase> {
    vec![
        t("namespaces::pid_init_is_1", pid_init_is_1),
        t("namespaces::new_pid", |c| ns_new(c, "pid", "pid")),
        t("namespaces::new_ipc", |c| ns_new(c, "ipc", "ipc")),
        t("namespaces::new_uts", |c| ns_new(c, "uts", "uts")),
        t("namespaces::new_mount", |c| ns_new(c, "mount", "mnt")),
        t("namespaces::new_network", |c| ns_new(c, "network", "net")),
        t("namespaces::new_cgroup", |c| ns_new(c, "cgroup", "cgroup")),
        t(
            "namespaces::absent_type_is_inherited",
            absent_type_is_inherited,
        ),
        t("namespaces::uts_hostname", uts_hostname),
        t("namespaces::uts_domainname", uts_domainname),
        t("namespaces::network_only_lo", network_only_lo),
        t("namespaces::network_lo_up", network_lo_up),
        t("namespaces::cgroup_ns_root_view", cgroup_ns_root_view),
        t("namespaces::ipc_isolated", ipc_isolated),
        t("namespaces::user_uid_gid_mappings", user_uid_gid_mappings),
        t("namespaces::time_offsets", time_offsets),
        t("namespaces::join_netns_by_path", join_netns_by_path),
        t(
            "namespaces::join_other_container_uts_ipc",
            join_other_container_uts_ipc,
        ),
        t(
            "namespaces::join_other_container_pid",
            join_other_container_pid,
        ),
    ]
}

fn ns_links_script() -> String {
    ["pid", "ipc", "uts", "mnt", "net", "cgroup", "user"]
        .iter()
        .map(|k| section(k, &format!("readlink /proc/self/ns/{k}")))
        .collect()
}

fn pid_init_is_1(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(&["sh", "-c", "echo $$; ls -d /proc/[0-9]* | wc -l"])?;
    let out = ctx.run_ok(&b)?;
    let mut lines = out.lines();
    ensure!(
        lines.next() == Some("1"),
        "the container process is not pid 1 in its pid namespace: {out:?}"
    );
    let n: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .unwrap_or(usize::MAX);
    ensure!(
        n <= 3,
        "{n} processes visible in a new pid namespace (want the shell and its children only)"
    );
    Ok(())
}

/// A namespace listed without a path is new: its link differs from the runtime's (host's).
fn ns_new(ctx: &Ctx, kind: &str, link: &str) -> Result<()> {
    let script = ns_links_script();
    let mut b = ctx.bundle(&["sh", "-c", &script])?;
    b.set_namespace(kind, None);
    let s = sections(&ctx.run_ok(&b)?);
    let inside = get(&s, link)?.trim().to_string();
    let host = ctx.host_ns(link)?;
    ensure!(
        inside.starts_with(&format!("{link}:[")),
        "readlink /proc/self/ns/{link} printed {inside:?}"
    );
    ensure!(
        inside != host,
        "{kind} namespace requested but the container shares the host's {host}"
    );
    Ok(())
}

/// config-linux.md: "If a namespace type is not specified in the namespaces array, the
/// container MUST inherit the runtime namespace of that type."
fn absent_type_is_inherited(ctx: &Ctx) -> Result<()> {
    let script = ns_links_script();
    let mut b = ctx.bundle(&["sh", "-c", &script])?;
    b.remove_namespace("network");
    b.remove_namespace("ipc");
    let s = sections(&ctx.run_ok(&b)?);
    for link in ["net", "ipc"] {
        let inside = get(&s, link)?.trim().to_string();
        let host = ctx.host_ns(link)?;
        ensure!(
            inside == host,
            "{link} not listed, so it must be the runtime's {host}, got {inside}"
        );
    }
    Ok(())
}

fn uts_hostname(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["hostname"])?;
    b.config["hostname"] = json!("kos-conf-host");
    let out = ctx.run_ok(&b)?;
    ensure!(
        out.trim() == "kos-conf-host",
        "hostname inside is {:?}",
        out.trim()
    );
    let host = fs::read_to_string("/proc/sys/kernel/hostname")?;
    ensure!(
        host.trim() != "kos-conf-host",
        "the container changed the host's hostname"
    );
    Ok(())
}

fn uts_domainname(ctx: &Ctx) -> Result<()> {
    ctx.require_spec("1.1.0", "domainname")?;
    let mut b = ctx.bundle(&["cat", "/proc/sys/kernel/domainname"])?;
    // domainname arrived with runtime-spec 1.1.
    b.config["ociVersion"] = json!("1.1.0");
    b.config["domainname"] = json!("kos.example");
    let out = ctx.run_ok(&b)?;
    ensure!(
        out.trim() == "kos.example",
        "domainname inside is {:?}",
        out.trim()
    );
    let host = fs::read_to_string("/proc/sys/kernel/domainname")?;
    ensure!(
        host.trim() != "kos.example",
        "the container changed the host's domainname"
    );
    Ok(())
}

fn network_only_lo(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(&["cat", "/proc/net/dev"])?;
    let out = ctx.run_ok(&b)?;
    let ifs: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim()))
        .collect();
    ensure!(
        ifs == ["lo"],
        "a new network namespace must hold only lo, found {ifs:?}"
    );
    Ok(())
}

/// Not a spec clause but what runc does and workloads assume: the loopback of a new network
/// namespace is up (IFF_UP is bit 0 of the interface flags).
fn network_lo_up(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(&["cat", "/sys/class/net/lo/flags"])?;
    let out = ctx.run_ok(&b)?;
    let flags = u32::from_str_radix(out.trim().trim_start_matches("0x"), 16)
        .map_err(|e| anyhow!("bad lo flags {out:?}: {e}"))?;
    ensure!(flags & 1 == 1, "lo is down in the new network namespace (flags {flags:#x}); runc brings it up (compatibility, not a spec clause)");
    Ok(())
}

fn cgroup_ns_root_view(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["cat", "/proc/self/cgroup"])?;
    b.set_namespace("cgroup", None);
    let out = ctx.run_ok(&b)?;
    for l in out.lines().filter(|l| !l.trim().is_empty()) {
        let path = l.splitn(3, ':').nth(2).unwrap_or("");
        ensure!(
            path == "/",
            "in a cgroup namespace every cgroup path must be /, got line {l:?}"
        );
    }
    Ok(())
}

/// A System V shm segment made on the host must not be visible in a new ipc namespace.
fn ipc_isolated(ctx: &Ctx) -> Result<()> {
    // SAFETY: plain shmget/shmctl on a private key; removed below.
    let id = unsafe { libc::shmget(libc::IPC_PRIVATE, 4096, libc::IPC_CREAT | 0o600) };
    ensure!(
        id >= 0,
        "shmget on the host failed: {}",
        std::io::Error::last_os_error()
    );
    struct Rm(i32);
    impl Drop for Rm {
        fn drop(&mut self) {
            // SAFETY: removing the segment this test made.
            unsafe {
                libc::shmctl(self.0, libc::IPC_RMID, std::ptr::null_mut());
            }
        }
    }
    let _rm = Rm(id);
    let b = ctx.bundle(&["cat", "/proc/sysvipc/shm"])?;
    let out = ctx.run_ok(&b)?;
    let ids: Vec<&str> = out
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    ensure!(
        !ids.contains(&id.to_string().as_str()),
        "host shm segment {id} is visible inside: {out:?}"
    );
    Ok(())
}

fn user_uid_gid_mappings(ctx: &Ctx) -> Result<()> {
    let script = [
        section("uid_map", "cat /proc/self/uid_map"),
        section("gid_map", "cat /proc/self/gid_map"),
        section("id", "id -u; id -g"),
    ]
    .concat();
    let mut b = ctx.bundle(&["sh", "-c", &script])?;
    b.set_namespace("user", None);
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    let c = ctx.create(&b)?;
    let pid = c.pid()?;
    let host_status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    c.start_ok()?;
    c.wait_status("stopped", WAIT)?;
    let s = sections(&c.output());
    let norm = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ");
    ensure!(
        norm(get(&s, "uid_map")?) == "0 100000 65536",
        "uid_map inside: {:?}",
        get(&s, "uid_map")?
    );
    ensure!(
        norm(get(&s, "gid_map")?) == "0 200000 65536",
        "gid_map inside: {:?}",
        get(&s, "gid_map")?
    );
    ensure!(
        norm(get(&s, "id")?) == "0 0",
        "id inside: {:?}",
        get(&s, "id")?
    );
    let uid = status_field(&host_status, "Uid").unwrap_or_default();
    ensure!(
        uid.split(' ').next() == Some("100000"),
        "host sees the container process as uid {uid:?}, want 100000"
    );
    Ok(())
}

fn time_offsets(ctx: &Ctx) -> Result<()> {
    const OFFSET: i64 = 10 * 86400;
    let mut b = ctx.bundle(&["cat", "/proc/uptime"])?;
    b.set_namespace("time", None);
    b.config["linux"]["timeOffsets"] = json!({
        "boottime": {"secs": OFFSET, "nanosecs": 0},
        "monotonic": {"secs": OFFSET, "nanosecs": 0}
    });
    let supported = ctx.feature_has("/linux/namespaces", "time");
    let host_before = uptime()?;
    let (out, _c) = ctx.run(&b)?;
    if supported != Some(true) && !out.success() {
        skip!("the runtime does not list the time namespace in `features` and create fails as it must");
    }
    out.expect_success()?;
    let inside: f64 = out
        .stdout
        .split_whitespace()
        .next()
        .and_then(|x| x.parse().ok())
        .ok_or_else(|| anyhow!("bad /proc/uptime inside: {:?}", out.stdout))?;
    let host_after = uptime()?;
    ensure!(
        inside >= host_before + OFFSET as f64 - 1.0 && inside <= host_after + OFFSET as f64 + 1.0,
        "uptime inside {inside} is not host uptime ({host_before}..{host_after}) + {OFFSET}s boottime offset"
    );
    Ok(())
}

fn uptime() -> Result<f64> {
    let t = fs::read_to_string("/proc/uptime")?;
    t.split_whitespace()
        .next()
        .and_then(|x| x.parse().ok())
        .ok_or_else(|| anyhow!("bad /proc/uptime: {t:?}"))
}

fn join_netns_by_path(ctx: &Ctx) -> Result<()> {
    let name = format!("kosconf-{}-{}", std::process::id(), ctx.suite.next());
    let ns = Netns::add(&name)?;
    ns.ip(&[
        "link",
        "add",
        "kosdummy0",
        "type",
        "veth",
        "peer",
        "name",
        "kosdummy1",
    ])?;
    let mut b = ctx.bundle(&["sh", "-c", "cat /proc/net/dev; readlink /proc/self/ns/net"])?;
    b.set_namespace("network", Some(&ns.path()));
    let out = ctx.run_ok(&b)?;
    ensure!(
        out.contains("kosdummy0"),
        "container did not join netns {}: {out:?}",
        ns.path()
    );
    let want = fs::metadata(ns.path()).map(|m| std::os::unix::fs::MetadataExt::ino(&m))?;
    ensure!(
        out.contains(&format!("net:[{want}]")),
        "net ns link inside is not inode {want}: {out:?}"
    );
    Ok(())
}

fn join_other_container_uts_ipc(ctx: &Ctx) -> Result<()> {
    let mut a = ctx.bundle(&["sh", "-c", "echo ready; exec sleep 1000"])?;
    a.config["hostname"] = json!("kos-first");
    let ca = ctx.create(&a)?;
    let pid = ca.pid()?;
    let script = [
        section("hostname", "hostname"),
        section("ipc", "readlink /proc/self/ns/ipc"),
    ]
    .concat();
    let mut b = ctx.bundle(&["sh", "-c", &script])?;
    b.set_namespace("uts", Some(&format!("/proc/{pid}/ns/uts")));
    b.set_namespace("ipc", Some(&format!("/proc/{pid}/ns/ipc")));
    // A hostname may only be set on a new uts namespace.
    if let Some(o) = b.config.as_object_mut() {
        o.remove("hostname");
    }
    let s = sections(&ctx.run_ok(&b)?);
    ensure!(
        get(&s, "hostname")?.trim() == "kos-first",
        "joined uts ns shows hostname {:?}",
        get(&s, "hostname")?
    );
    let want = fs::read_link(format!("/proc/{pid}/ns/ipc"))?;
    ensure!(
        get(&s, "ipc")?.trim() == want.to_string_lossy(),
        "ipc ns {} is not the first container's {}",
        get(&s, "ipc")?.trim(),
        want.display()
    );
    Ok(())
}

fn join_other_container_pid(ctx: &Ctx) -> Result<()> {
    let a = ctx.bundle(&["sh", "-c", "echo ready; exec sleep 1000"])?;
    let ca = ctx.create(&a)?;
    ca.start_ok()?;
    ca.wait_output("ready", WAIT)?;
    let pid = ca.pid()?;
    let mut b = ctx.bundle(&[
        "sh",
        "-c",
        "readlink /proc/self/ns/pid; cat /proc/1/cmdline | tr '\\0' ' '",
    ])?;
    b.set_namespace("pid", Some(&format!("/proc/{pid}/ns/pid")));
    let out = ctx.run_ok(&b)?;
    let want = fs::read_link(format!("/proc/{pid}/ns/pid"))?;
    ensure!(
        out.contains(&*want.to_string_lossy()),
        "pid ns is not the first container's {}: {out:?}",
        want.display()
    );
    ensure!(
        out.contains("sleep 1000"),
        "pid 1 is not the first container's init: {out:?}"
    );
    Ok(())
}
