//! `exec` and terminals, as runc's command line defines them: the new process joins
//! everything the container's init has (namespaces, cgroup, seccomp filter, capabilities),
//! exec's flags change only what they name, and pty masters travel over `--console-socket`.
//!
//! Each test checks both sides: what the exec'd process reports from inside, and what the
//! host sees of it in /proc.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::os::unix::io::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use serde_json::json;

use super::{departs, t, TestCase};
use crate::harness::bundle::Bundle;
use crate::harness::console;
use crate::harness::ctx::{process_alive, processes_in_cgroup, Call, Container, Ctx};
use crate::harness::parse::{get, mountinfo, section, sections, status_field};
use crate::harness::report::Departure;
use crate::skip;

const WAIT: Duration = Duration::from_secs(10);
/// The init of most tests: up until killed (pid 1 ignores an unhandled SIGTERM).
const LONG: &[&str] = &["sh", "-c", "echo ready; exec sleep 1000"];
/// Every namespace link a process has that a container can hold.
const NS_KINDS: &[&str] = &["pid", "mnt", "net", "uts", "ipc", "cgroup", "user"];
const CAP_SYS_ADMIN: u32 = 21;

const RUNC_NOFILE_RACE: &[Departure] = &[Departure {
    runtime: "runc",
    clause: "config.md process.rlimits (runc issue #4195, fixed in runc 1.1.13 by PR #4266): \
             runc 1.1.5 built with Go >= 1.19 sets an exec'd process's rlimits with prlimit \
             while its Go init raises the RLIMIT_NOFILE soft limit to the hard one, so the \
             exec'd process sometimes gets soft = hard",
}];

pub fn tests() -> Vec<TestCase> {
    vec![
        t("exec::joins_every_namespace", joins_every_namespace),
        t(
            "exec::joins_every_namespace_userns",
            joins_every_namespace_userns,
        ),
        t("exec::user_in_userns_maps", user_in_userns_maps),
        t("exec::lands_in_init_cgroup", lands_in_init_cgroup),
        t("exec::cgroup_flag_sub_cgroup", cgroup_flag_sub_cgroup),
        t("exec::cgroup_flag_root_is_own", cgroup_flag_root),
        t("exec::seccomp_filter_applies", seccomp_filter_applies),
        t("exec::capabilities_match_init", capabilities_match_init),
        t("exec::cap_flag_adds_capability", cap_flag_adds_capability),
        t(
            "exec::cap_flag_leaves_inheritable_alone",
            cap_flag_leaves_inheritable_alone,
        ),
        departs("exec::rlimits", rlimits, RUNC_NOFILE_RACE),
        t("exec::oom_score_adj", oom_score_adj),
        t("exec::in_created_container", in_created_container),
        t(
            "exec::ignore_paused_waits_for_resume",
            ignore_paused_waits_for_resume,
        ),
        t("exec::no_new_privs_flag", no_new_privs_flag),
        t("exec::env_cwd_user_groups", env_cwd_user_groups),
        t("exec::detach_pid_file", detach_pid_file),
        t("exec::pid_file_relative", pid_file_relative),
        t("exec::preserve_fds", preserve_fds),
        t("exec::listen_fds_not_passed", listen_fds_not_passed),
        t("exec::exit_code_on_signal", exit_code_on_signal),
        t("exec::missing_program_fails", missing_program_fails),
        t("exec::missing_cwd_fails", missing_cwd_fails),
        t(
            "exec::cgroup_flag_missing_sub_fails",
            cgroup_flag_missing_sub_fails,
        ),
        t("exec::concurrent_execs", concurrent_execs),
        t(
            "exec::delete_force_kills_exec_without_pidns",
            delete_force_kills_exec_without_pidns,
        ),
        t("exec::paused_fails", paused_fails),
        t("exec::unknown_id_fails", unknown_id_fails),
        t("exec::stopped_fails_cleanly", stopped_fails_cleanly),
        t("exec::forwards_signal_TERM", |c| {
            forwards_signal(c, "TERM", libc::SIGTERM)
        }),
        t("exec::forwards_signal_HUP", |c| {
            forwards_signal(c, "HUP", libc::SIGHUP)
        }),
        t("exec::forwards_signal_USR1", |c| {
            forwards_signal(c, "USR1", libc::SIGUSR1)
        }),
        t("exec::tty_console_socket", tty_console_socket),
        t(
            "exec::process_json_terminal_console_socket",
            process_json_terminal_console_socket,
        ),
        t(
            "exec::tty_without_terminal_fails",
            tty_without_terminal_fails,
        ),
        t("exec::tty_caller_terminal", tty_caller_terminal),
        t("exec::tty_relays_window_size", tty_relays_window_size),
        t(
            "exec::console_socket_without_detach_fails",
            console_socket_without_detach_fails,
        ),
        t(
            "exec::console_socket_without_tty_fails",
            console_socket_without_tty_fails,
        ),
        t(
            "terminal::run_detach_console_socket",
            run_detach_console_socket,
        ),
        t(
            "terminal::run_console_socket_without_detach_fails",
            run_console_socket_without_detach_fails,
        ),
        t(
            "terminal::create_console_socket_without_terminal_fails",
            create_console_socket_without_terminal_fails,
        ),
    ]
}

/// create + start, waiting until the init printed "ready".
fn started<'a>(ctx: &'a Ctx, b: &Bundle) -> Result<Container<'a>> {
    let c = ctx.create(b)?;
    c.start_ok()?;
    c.wait_output("ready", WAIT)?;
    Ok(c)
}

/// `exec ID args...` with `flags` before the id; fails unless it exited 0.
fn exec_ok(ctx: &Ctx, c: &Container, flags: &[&str], args: &[&str]) -> Result<String> {
    let mut v = vec!["exec"];
    v.extend_from_slice(flags);
    v.push(&c.id);
    v.extend_from_slice(args);
    let out = ctx.rt(&v)?;
    out.expect_success()?;
    Ok(out.stdout)
}

/// The namespace links of a host process, by kind.
fn host_ns_links(pid: i64) -> Result<BTreeMap<String, String>> {
    NS_KINDS
        .iter()
        .map(|k| {
            let l = fs::read_link(format!("/proc/{pid}/ns/{k}"))
                .with_context(|| format!("reading /proc/{pid}/ns/{k}"))?;
            Ok((k.to_string(), l.to_string_lossy().into_owned()))
        })
        .collect()
}

/// Runs an exec that prints its own namespace links and compares them with the init's.
fn assert_exec_joins(ctx: &Ctx, c: &Container) -> Result<()> {
    let init = host_ns_links(c.pid()?)?;
    let script: String = NS_KINDS
        .iter()
        .map(|k| section(k, &format!("readlink /proc/self/ns/{k}")))
        .collect();
    let out = exec_ok(ctx, c, &[], &["sh", "-c", &script])?;
    let s = sections(&out);
    for k in NS_KINDS {
        let inside = get(&s, k)?.trim();
        ensure!(
            inside == init[*k],
            "exec'd process is in {k} namespace {inside:?}, the init in {:?}",
            init[*k]
        );
    }
    Ok(())
}

fn joins_every_namespace(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(LONG)?;
    b.set_namespace("cgroup", None);
    let c = started(ctx, &b)?;
    // The container must really have its own namespaces, or the comparison proves nothing.
    let init = host_ns_links(c.pid()?)?;
    for k in ["pid", "mnt", "net", "uts", "ipc", "cgroup"] {
        ensure!(
            init[k] != ctx.host_ns(k)?,
            "the container's init shares the host's {k} namespace"
        );
    }
    assert_exec_joins(ctx, &c)
}

fn joins_every_namespace_userns(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(LONG)?;
    b.set_namespace("cgroup", None);
    b.set_namespace("user", None);
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    let c = started(ctx, &b)?;
    let pid = c.pid()?;
    ensure!(
        host_ns_links(pid)?["user"] != ctx.host_ns("user")?,
        "the container's init shares the host's user namespace"
    );
    assert_exec_joins(ctx, &c)?;
    let out = exec_ok(
        ctx,
        &c,
        &[],
        &["sh", "-c", "cat /proc/self/uid_map; echo @; id -u"],
    )?;
    let norm = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ");
    let host_map = fs::read_to_string(format!("/proc/{pid}/uid_map"))?;
    ensure!(
        norm(&out) == format!("{} @ 0", norm(&host_map)),
        "exec'd process saw uid_map and uid {:?}; the init's map is {:?}",
        norm(&out),
        norm(&host_map)
    );
    Ok(())
}

/// A /proc/PID/cgroup text as hierarchy-controllers -> path ("" is the v2 hierarchy).
fn parse_cgroups(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ':');
            let _id = f.next()?;
            Some((f.next()?.to_string(), f.next()?.to_string()))
        })
        .collect()
}

/// The cgroups of a host process.
fn cgroup_map(pid: i64) -> Result<BTreeMap<String, String>> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .with_context(|| format!("reading /proc/{pid}/cgroup"))?;
    Ok(parse_cgroups(&text))
}

/// A process started with `exec --detach --pid-file`; killed on Drop if still alive and
/// still in the container's pid namespace (so a reused pid is never hit).
struct Detached {
    pid: i64,
    pid_ns: String,
}

impl Detached {
    fn alive(&self) -> bool {
        process_alive(self.pid)
            && fs::read_link(format!("/proc/{}/ns/pid", self.pid))
                .is_ok_and(|l| l.to_string_lossy() == self.pid_ns)
    }
}

impl Drop for Detached {
    fn drop(&mut self) {
        if self.alive() {
            // SAFETY: kill(2) of a process checked to be in the test container's pid ns.
            unsafe {
                libc::kill(self.pid as i32, libc::SIGKILL);
            }
        }
    }
}

/// `exec --detach --pid-file F flags ID args`; returns the pid F names.
fn exec_detached(ctx: &Ctx, c: &Container, flags: &[&str], args: &[&str]) -> Result<Detached> {
    let pf = ctx.mkdir("pidf")?.join("exec.pid");
    let pfs = pf.to_string_lossy().into_owned();
    let mut v = vec!["exec", "--detach", "--pid-file", pfs.as_str()];
    v.extend_from_slice(flags);
    v.push(&c.id);
    v.extend_from_slice(args);
    let pid_ns = host_ns_links(c.pid()?)?["pid"].clone();
    ctx.rt(&v)?.expect_success()?;
    let text = fs::read_to_string(&pf).context("exec --detach wrote no pid file")?;
    let pid: i64 = text
        .trim()
        .parse()
        .with_context(|| format!("pid file holds {text:?}"))?;
    ensure!(pid > 0, "pid file holds {pid}");
    Ok(Detached { pid, pid_ns })
}

fn lands_in_init_cgroup(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = started(ctx, &b)?;
    let init = cgroup_map(c.pid()?)?;
    let d = exec_detached(ctx, &c, &[], &["sleep", "1000"])?;
    let mine = cgroup_map(d.pid)?;
    ensure!(
        mine == init,
        "exec'd process (host pid {}) is in cgroups {mine:?}, the init in {init:?}",
        d.pid
    );
    // And from inside, without a cgroup namespace, the same paths.
    let out = exec_ok(ctx, &c, &[], &["cat", "/proc/self/cgroup"])?;
    let inside = parse_cgroups(&out);
    ensure!(
        inside == init,
        "foreground exec reads cgroups {inside:?}, the init is in {init:?}"
    );
    Ok(())
}

/// A cgroup directory the test made below the container's; its processes are killed and
/// the directory removed on Drop, before the container's own guard deletes the container.
struct SubCgroup {
    dir: PathBuf,
}

impl Drop for SubCgroup {
    fn drop(&mut self) {
        let procs = self.dir.join("cgroup.procs");
        let start = Instant::now();
        loop {
            let pids: Vec<i32> = fs::read_to_string(&procs)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect();
            if pids.is_empty() || start.elapsed() > Duration::from_secs(5) {
                break;
            }
            for p in pids {
                // SAFETY: kill(2) of pids in a cgroup this test created.
                unsafe {
                    libc::kill(p, libc::SIGKILL);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = fs::remove_dir(&self.dir);
    }
}

/// The host directory of `pid`'s cgroup in the hierarchy carrying `controller`, and whether
/// that is a v1 hierarchy (else the v2 one, which must offer the controller).
fn controller_dir(pid: i64, controller: &str) -> Result<Option<(PathBuf, bool)>> {
    let mi = mountinfo(&fs::read_to_string("/proc/self/mountinfo")?);
    let own = cgroup_map(pid)?;
    for m in mi.iter().filter(|m| m.fstype == "cgroup") {
        if !m.has_super_opt(controller) {
            continue;
        }
        if let Some((_, path)) = own
            .iter()
            .find(|(ctrls, _)| ctrls.split(',').any(|c| c == controller))
        {
            let dir = PathBuf::from(&m.mount_point).join(path.trim_start_matches('/'));
            return Ok(Some((dir, true)));
        }
    }
    let Some(v2) = mi.iter().find(|m| m.fstype == "cgroup2") else {
        return Ok(None);
    };
    let root = PathBuf::from(&v2.mount_point);
    let ctrls = fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
    if !ctrls.split_whitespace().any(|c| c == controller) {
        return Ok(None);
    }
    let Some(path) = own.get("") else {
        return Ok(None);
    };
    Ok(Some((root.join(path.trim_start_matches('/')), false)))
}

/// `--cgroup /` names the container's own cgroup (runc and youki accept it).
fn cgroup_flag_root(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = started(ctx, &b)?;
    let init = cgroup_map(c.pid()?)?;
    let d = exec_detached(ctx, &c, &["--cgroup", "/"], &["sleep", "1000"])?;
    let mine = cgroup_map(d.pid)?;
    ensure!(
        mine == init,
        "with --cgroup /, the exec'd process's cgroups are {mine:?}, the init's {init:?}"
    );
    Ok(())
}

fn cgroup_flag_sub_cgroup(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = started(ctx, &b)?;
    let init_pid = c.pid()?;
    let Some((dir, v1)) = controller_dir(init_pid, "pids")? else {
        skip!("no cgroup hierarchy offers the pids controller");
    };
    let name = format!("kos-sub-{}-{}", std::process::id(), ctx.suite.next());
    let sub_dir = dir.join(&name);
    fs::create_dir(&sub_dir).with_context(|| format!("creating {}", sub_dir.display()))?;
    let _sub = SubCgroup {
        dir: sub_dir.clone(),
    };
    let flag = if v1 {
        format!("pids:{name}")
    } else {
        name.clone()
    };
    let init = cgroup_map(init_pid)?;
    let d = exec_detached(ctx, &c, &["--cgroup", &flag], &["sleep", "1000"])?;
    let mine = cgroup_map(d.pid)?;
    let key = if v1 {
        init.keys()
            .find(|k| k.split(',').any(|c| c == "pids"))
            .cloned()
            .ok_or_else(|| anyhow!("the init has no pids cgroup: {init:?}"))?
    } else {
        String::new()
    };
    for (k, path) in &init {
        let want = if *k == key {
            format!("{}/{name}", path.trim_end_matches('/'))
        } else {
            path.clone()
        };
        ensure!(
            mine.get(k) == Some(&want),
            "with --cgroup {flag}, the exec'd process's {k:?} cgroup is {:?}, want {want:?} \
             (all: {mine:?})",
            mine.get(k)
        );
    }
    let procs = fs::read_to_string(sub_dir.join("cgroup.procs"))?;
    ensure!(
        procs.lines().any(|l| l.trim() == d.pid.to_string()),
        "{} does not list the exec'd pid {}: {procs:?}",
        sub_dir.display(),
        d.pid
    );
    Ok(())
}

fn seccomp_filter_applies(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(LONG)?;
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"],
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
    });
    let c = started(ctx, &b)?;
    let host = fs::read_to_string(format!("/proc/{}/status", c.pid()?))?;
    ensure!(
        status_field(&host, "Seccomp").as_deref() == Some("2"),
        "the init itself is not under a seccomp filter: Seccomp {:?}",
        status_field(&host, "Seccomp")
    );
    let script = [
        section("mkdir", "mkdir /tmp/kos-exec-dir; echo rc=$?"),
        section("status", "cat /proc/self/status"),
    ]
    .concat();
    let out = exec_ok(ctx, &c, &[], &["sh", "-c", &script])?;
    let s = sections(&out);
    let mk = get(&s, "mkdir")?;
    ensure!(
        mk.contains("rc=1") && mk.contains("Operation not permitted"),
        "mkdir in the exec'd process was not refused with EPERM: {mk:?}"
    );
    ensure!(
        !b.in_rootfs("/tmp/kos-exec-dir").exists(),
        "the exec'd process created the directory"
    );
    let st = get(&s, "status")?;
    ensure!(
        status_field(st, "Seccomp").as_deref() == Some("2"),
        "exec'd process Seccomp {:?}, want 2 (filter)",
        status_field(st, "Seccomp")
    );
    Ok(())
}

fn hex_field(status: &str, key: &str) -> Result<u64> {
    let v = status_field(status, key).ok_or_else(|| anyhow!("no {key} in {status:?}"))?;
    u64::from_str_radix(&v, 16).map_err(|e| anyhow!("{key} {v:?}: {e}"))
}

const CAP_FIELDS: &[&str] = &["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"];

fn capabilities_match_init(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = started(ctx, &b)?;
    let host = fs::read_to_string(format!("/proc/{}/status", c.pid()?))?;
    let out = exec_ok(ctx, &c, &[], &["cat", "/proc/self/status"])?;
    for f in CAP_FIELDS {
        let (want, got) = (hex_field(&host, f)?, hex_field(&out, f)?);
        ensure!(
            got == want,
            "exec'd process {f} {got:#x}, the init's {want:#x}"
        );
    }
    ensure!(
        hex_field(&out, "CapEff")? & (1 << CAP_SYS_ADMIN) == 0,
        "the default config gives no CAP_SYS_ADMIN, yet the exec'd process has it"
    );
    Ok(())
}

/// runc's `--cap` adds to the bounding, effective and permitted sets.
fn cap_flag_adds_capability(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = started(ctx, &b)?;
    let host = fs::read_to_string(format!("/proc/{}/status", c.pid()?))?;
    // sethostname needs CAP_SYS_ADMIN: the added capability must work, not only show.
    let script = [
        section("status", "cat /proc/self/status"),
        section("sethost", "hostname kos-cap-host && hostname"),
    ]
    .concat();
    let out = exec_ok(ctx, &c, &["--cap", "CAP_SYS_ADMIN"], &["sh", "-c", &script])?;
    let s = sections(&out);
    let st = get(&s, "status")?;
    let bit = 1u64 << CAP_SYS_ADMIN;
    for f in ["CapPrm", "CapEff", "CapBnd"] {
        let (init, got) = (hex_field(&host, f)?, hex_field(st, f)?);
        ensure!(
            got == init | bit,
            "with --cap CAP_SYS_ADMIN the exec'd {f} is {got:#x}, want the init's {init:#x} \
             plus bit {CAP_SYS_ADMIN} = {:#x}",
            init | bit
        );
    }
    let sh = get(&s, "sethost")?;
    ensure!(
        sh.trim() == "kos-cap-host",
        "sethostname with the added CAP_SYS_ADMIN failed: {sh:?}"
    );
    // Without the flag the same call is refused: the capability came from --cap.
    let out = ctx.rt(&["exec", &c.id, "hostname", "kos-nocap-host"])?;
    out.expect_failure("sethostname without CAP_SYS_ADMIN")?;
    Ok(())
}

/// Since CVE-2022-29162, `--cap` leaves the inheritable set as the config has it (empty
/// here), for root and for a non-root user alike.
fn cap_flag_leaves_inheritable_alone(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = started(ctx, &b)?;
    let host = fs::read_to_string(format!("/proc/{}/status", c.pid()?))?;
    let init_inh = hex_field(&host, "CapInh")?;
    ensure!(
        init_inh == 0,
        "the init's CapInh is {init_inh:#x}, the config gives none"
    );
    for user in [None, Some("1000:1000")] {
        let mut flags = vec!["--cap", "CAP_SYS_ADMIN"];
        if let Some(u) = user {
            flags.extend_from_slice(&["-u", u]);
        }
        let out = exec_ok(ctx, &c, &flags, &["cat", "/proc/self/status"])?;
        let (inh, amb) = (hex_field(&out, "CapInh")?, hex_field(&out, "CapAmb")?);
        ensure!(
            inh == 0 && amb == 0,
            "exec {flags:?}: CapInh {inh:#x}, CapAmb {amb:#x}; --cap must not fill the \
             inheritable or ambient set the config leaves empty (CVE-2022-29162)"
        );
    }
    Ok(())
}

/// The exec'd process gets the config's rlimits, as the init does.
fn rlimits(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(LONG)?;
    b.config["process"]["rlimits"] = json!([
        {"type": "RLIMIT_NOFILE", "hard": 1000, "soft": 900},
        {"type": "RLIMIT_NPROC", "hard": 3000, "soft": 2900}
    ]);
    let c = started(ctx, &b)?;
    let script = [
        section("nofile", "ulimit -S -n; ulimit -H -n"),
        section("nproc", "ulimit -S -u; ulimit -H -u"),
    ]
    .concat();
    let out = exec_ok(ctx, &c, &[], &["sh", "-c", &script])?;
    let s = sections(&out);
    let norm = |t: &str| t.split_whitespace().collect::<Vec<_>>().join(" ");
    ensure!(
        norm(get(&s, "nproc")?) == "2900 3000",
        "exec'd RLIMIT_NPROC soft/hard {:?}, want 2900 3000",
        norm(get(&s, "nproc")?)
    );
    ensure!(
        norm(get(&s, "nofile")?) == "900 1000",
        "exec'd RLIMIT_NOFILE soft/hard {:?}, want 900 1000",
        norm(get(&s, "nofile")?)
    );
    Ok(())
}

/// The exec'd process gets the config's oom_score_adj, as the init does.
fn oom_score_adj(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(LONG)?;
    // Raising the score needs no privilege, so this works without CAP_SYS_RESOURCE.
    b.config["process"]["oomScoreAdj"] = json!(517);
    let c = started(ctx, &b)?;
    let init = fs::read_to_string(format!("/proc/{}/oom_score_adj", c.pid()?))?;
    ensure!(init.trim() == "517", "the init's oom_score_adj is {init:?}");
    let out = exec_ok(ctx, &c, &[], &["cat", "/proc/self/oom_score_adj"])?;
    ensure!(
        out.trim() == "517",
        "exec'd oom_score_adj {:?}, want the config's 517",
        out.trim()
    );
    Ok(())
}

/// runc lets exec run in a created container; the init stays created, waiting for start.
fn in_created_container(ctx: &Ctx) -> Result<()> {
    let dir = ctx.mkdir("host")?;
    let mut b = ctx.bundle(&["touch", "/kos-host/init-ran"])?;
    b.bind(&dir, "/kos-host", &[]);
    let c = ctx.create(&b)?;
    let init_pid = c.pid()?;
    let out = exec_ok(
        ctx,
        &c,
        &[],
        &["sh", "-c", "hostname; cat /proc/1/status | grep ^State"],
    )?;
    ensure!(
        out.lines().next() == Some("kosconf"),
        "exec in a created container is not in its uts namespace: {out:?}"
    );
    ensure!(
        c.status()? == "created" && c.pid()? == init_pid,
        "exec started or replaced the created container"
    );
    ensure!(
        !dir.join("init-ran").exists(),
        "the init's program ran because of an exec"
    );
    c.start_ok()?;
    ctx.wait_until(WAIT, "the init's program to run after start", || {
        Ok(dir.join("init-ran").exists())
    })?;
    Ok(())
}

/// `--ignore-paused` lets exec proceed into a frozen container; the program runs only
/// once the container is resumed.
fn ignore_paused_waits_for_resume(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = started(ctx, &b)?;
    ctx.rt(&["pause", &c.id])?.expect_success()?;
    let marker = b.in_rootfs("/tmp/kos-ran-after-resume");
    let (out, early) = std::thread::scope(|s| {
        let h = s.spawn(|| {
            ctx.rt(&[
                "exec",
                "--ignore-paused",
                &c.id,
                "touch",
                "/tmp/kos-ran-after-resume",
            ])
        });
        std::thread::sleep(Duration::from_millis(500));
        let early = marker.exists();
        let resumed = ctx.rt(&["resume", &c.id]);
        let out = h.join().map_err(|_| anyhow!("exec thread panicked"));
        (
            out.and_then(|o| o).and_then(|o| resumed.map(|r| (o, r))),
            early,
        )
    });
    let (out, resumed) = out?;
    resumed.expect_success()?;
    out.expect_success()?;
    ensure!(!early, "the program ran while the container was paused");
    ensure!(marker.exists(), "the program did not run after resume");
    ensure!(c.status()? == "running", "the container is not running");
    Ok(())
}

fn no_new_privs_flag(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(LONG)?;
    b.config["process"]["noNewPrivileges"] = json!(false);
    let c = started(ctx, &b)?;
    let host = fs::read_to_string(format!("/proc/{}/status", c.pid()?))?;
    ensure!(
        status_field(&host, "NoNewPrivs").as_deref() == Some("0"),
        "init has NoNewPrivs {:?} although the config says false",
        status_field(&host, "NoNewPrivs")
    );
    let plain = exec_ok(ctx, &c, &[], &["cat", "/proc/self/status"])?;
    ensure!(
        status_field(&plain, "NoNewPrivs").as_deref() == Some("0"),
        "exec without --no-new-privs: NoNewPrivs {:?}, want the config's 0",
        status_field(&plain, "NoNewPrivs")
    );
    let nnp = exec_ok(ctx, &c, &["--no-new-privs"], &["cat", "/proc/self/status"])?;
    ensure!(
        status_field(&nnp, "NoNewPrivs").as_deref() == Some("1"),
        "exec --no-new-privs: NoNewPrivs {:?}, want 1",
        status_field(&nnp, "NoNewPrivs")
    );
    Ok(())
}

fn env_cwd_user_groups(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = started(ctx, &b)?;
    let script = [
        section("env", "echo \"$KOS_NEW|$TERM|$PATH\""),
        section("pwd", "pwd"),
        section("ids", "id -u; id -g; id -G"),
        section("status", "grep -E '^(Uid|Gid|Groups):' /proc/self/status"),
    ]
    .concat();
    let out = exec_ok(
        ctx,
        &c,
        &[
            "-e",
            "KOS_NEW=kos-v",
            "-e",
            "TERM=kos-term",
            "--cwd",
            "/etc",
            "-u",
            "1000:1000",
            "--additional-gids",
            "2000",
            "--additional-gids",
            "3000",
        ],
        &["sh", "-c", &script],
    )?;
    let s = sections(&out);
    ensure!(
        get(&s, "env")?.trim() == "kos-v|kos-term|/bin:/sbin",
        "env: want the new variable, TERM replaced and the config's PATH kept; got {:?}",
        get(&s, "env")?
    );
    ensure!(
        get(&s, "pwd")?.trim() == "/etc",
        "cwd {:?}",
        get(&s, "pwd")?
    );
    let ids: Vec<&str> = get(&s, "ids")?.lines().map(str::trim).collect();
    ensure!(ids.len() == 3, "id printed {ids:?}");
    ensure!(
        ids[0] == "1000" && ids[1] == "1000",
        "uid/gid {:?}, want 1000 1000",
        &ids[..2]
    );
    let mut groups: Vec<&str> = ids[2].split_whitespace().collect();
    groups.sort();
    ensure!(
        groups == ["1000", "2000", "3000"],
        "groups {groups:?}, want the primary 1000 and the additional 2000 3000"
    );
    let st = get(&s, "status")?;
    ensure!(
        status_field(st, "Uid").as_deref() == Some("1000 1000 1000 1000")
            && status_field(st, "Gid").as_deref() == Some("1000 1000 1000 1000"),
        "status ids: {st:?}"
    );
    let mut sup: Vec<String> = status_field(st, "Groups")
        .unwrap_or_default()
        .split(' ')
        .filter(|g| !g.is_empty())
        .map(str::to_string)
        .collect();
    sup.sort();
    ensure!(
        sup.iter().any(|g| g == "2000") && sup.iter().any(|g| g == "3000"),
        "supplementary groups in status {sup:?} lack 2000 and 3000"
    );
    Ok(())
}

fn detach_pid_file(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = started(ctx, &b)?;
    let init_pid = c.pid()?;
    let marker = "/tmp/kos-detached-tick";
    let d = exec_detached(
        ctx,
        &c,
        &[],
        &[
            "sh",
            "-c",
            &format!("i=0; while :; do i=$((i+1)); echo $i > {marker}; sleep 0.05; done"),
        ],
    )?;
    ensure!(
        d.alive(),
        "the detached process {} is not running after exec returned",
        d.pid
    );
    let init_ns = host_ns_links(init_pid)?;
    let ns = host_ns_links(d.pid)?;
    for k in ["pid", "mnt", "net", "uts", "ipc"] {
        ensure!(
            ns[k] == init_ns[k],
            "pid file names {}, which is in {k} namespace {} (the init's is {})",
            d.pid,
            ns[k],
            init_ns[k]
        );
    }
    ensure!(
        cgroup_map(d.pid)? == cgroup_map(init_pid)?,
        "detached process cgroups {:?} differ from the init's {:?}",
        cgroup_map(d.pid)?,
        cgroup_map(init_pid)?
    );
    // It keeps working after the runtime left.
    let tick = b.in_rootfs(marker);
    let first = fs::read_to_string(&tick).unwrap_or_default();
    ctx.wait_until(WAIT, "the detached process to keep running", || {
        let now = fs::read_to_string(&tick).unwrap_or_default();
        Ok(!now.is_empty() && now != first)
    })?;
    ensure!(d.alive(), "the detached process {} died", d.pid);
    // The container's ps sees it too.
    let ps = ctx.rt(&["ps", "--format", "json", &c.id])?;
    ps.expect_success()?;
    ensure!(
        ps.stdout.contains(&d.pid.to_string()),
        "`ps` of the container does not list the detached pid {}: {:?}",
        d.pid,
        ps.stdout
    );
    Ok(())
}

/// Lists the shell's own fds; `:` keeps the shell from exec'ing `ls` in its place.
const LIST_FDS: &str = "ls /proc/$$/fd; :";

fn preserve_fds(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = started(ctx, &b)?;
    let dir = ctx.mkdir("fds")?;
    let target = dir.join("through-fd3");
    let f3 = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&target)?;
    let f9 = File::open("/proc/self/status")?;
    let script = format!("{LIST_FDS}; echo kos-via-fd3 >&3");
    let out = ctx.rt_with(
        &["exec", "--preserve-fds", "1", &c.id, "sh", "-c", &script],
        Call {
            fds: vec![(f3.as_raw_fd(), 3), (f9.as_raw_fd(), 9)],
            ..Call::default()
        },
    )?;
    out.expect_success()?;
    let mut fds: Vec<i32> = out
        .stdout
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    fds.sort();
    ensure!(
        fds == [0, 1, 2, 3],
        "exec'd process holds fds {fds:?}, want 0 1 2 and the preserved 3 (not the \
         inherited 9)"
    );
    let got = fs::read_to_string(&target)?;
    ensure!(
        got == "kos-via-fd3\n",
        "what the process wrote to fd 3 did not reach the host file: {got:?}"
    );
    Ok(())
}

fn paused_fails(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = started(ctx, &b)?;
    let cg = b.config["linux"]["cgroupsPath"]
        .as_str()
        .unwrap_or("")
        .trim_start_matches('/')
        .to_string();
    let before = live_in_cgroup(&cg);
    ensure!(
        !before.is_empty(),
        "no process in the container cgroup /{cg}"
    );
    ctx.rt(&["pause", &c.id])?.expect_success()?;
    let out = ctx.rt_with(
        &["exec", &c.id, "sh", "-c", "echo kos-ran-while-paused"],
        Call {
            timeout: Some(Duration::from_secs(5)),
            ..Call::default()
        },
    );
    // Resume whatever happened, so a hung exec does not keep the container frozen.
    let resumed = ctx.rt(&["resume", &c.id]);
    let out = out?;
    out.expect_failure("exec in a paused container")?;
    ensure!(
        !out.stderr.trim().is_empty(),
        "exec in a paused container failed without a message"
    );
    resumed?.expect_success()?;
    std::thread::sleep(Duration::from_millis(100));
    let after = live_in_cgroup(&cg);
    ensure!(
        after.len() == before.len(),
        "the failed exec left processes behind: before {before:?}, after {after:?}"
    );
    ensure!(
        !out.stdout.contains("kos-ran-while-paused"),
        "the program ran although exec failed"
    );
    ensure!(
        c.status()? == "running",
        "the failed exec changed the container"
    );
    let ok = exec_ok(ctx, &c, &[], &["echo", "kos-after-resume"])?;
    ensure!(
        ok.contains("kos-after-resume"),
        "exec after resume printed {ok:?}"
    );
    Ok(())
}

fn unknown_id_fails(ctx: &Ctx) -> Result<()> {
    let id = format!(
        "kosconf-{}-missing-{}",
        std::process::id(),
        ctx.suite.next()
    );
    let out = ctx.rt(&["exec", &id, "true"])?;
    out.expect_failure("exec in a container that does not exist")?;
    ensure!(
        !out.stderr.trim().is_empty(),
        "exec of an unknown id failed without a message"
    );
    ctx.rt(&["state", &id])?
        .expect_failure("state of an id a failed exec named")?;
    let list = ctx.rt(&["list", "-q"])?;
    ensure!(
        !list.stdout.lines().any(|l| l.trim() == id),
        "a failed exec made {id} appear in list"
    );
    Ok(())
}

fn stopped_fails_cleanly(ctx: &Ctx) -> Result<()> {
    let dir = ctx.mkdir("host")?;
    let mut b = ctx.bundle(&["true"])?;
    b.bind(&dir, "/kos-host", &[]);
    let c = ctx.create(&b)?;
    c.start_ok()?;
    c.wait_status("stopped", WAIT)?;
    let out = ctx.rt(&["exec", &c.id, "touch", "/kos-host/ran"])?;
    out.expect_failure("exec in a stopped container")?;
    ensure!(
        !out.stderr.trim().is_empty(),
        "exec in a stopped container failed without a message"
    );
    ensure!(
        !dir.join("ran").exists(),
        "the program ran in a stopped container"
    );
    ensure!(
        c.status()? == "stopped",
        "the failed exec changed the state"
    );
    let cg = b.config["linux"]["cgroupsPath"]
        .as_str()
        .unwrap_or("")
        .trim_start_matches('/');
    let left = live_in_cgroup(cg);
    ensure!(
        left.is_empty(),
        "processes {left:?} in the stopped container's cgroup after the failed exec"
    );
    Ok(())
}

/// Live (not zombie) host processes in the cgroup `cg`: an exited init may wait a while for
/// the host's reaper.
fn live_in_cgroup(cg: &str) -> Vec<i32> {
    processes_in_cgroup(cg)
        .into_iter()
        .filter(|p| process_alive(i64::from(*p)))
        .collect()
}

/// Reads a pid written by a shell.
fn read_pid(p: &Path) -> Option<i32> {
    fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// A signal sent to the runtime's exec process reaches the exec'd program, whose exit
/// status comes back as exec's.
fn forwards_signal(ctx: &Ctx, name: &str, sig: libc::c_int) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = started(ctx, &b)?;
    let dir = ctx.mkdir("sig")?;
    let rt_pid_file = dir.join("runtime.pid");
    let ready = b.in_rootfs("/tmp/kos-sig-ready");
    let script = format!(
        "trap 'echo got-{name}; exit 43' {name}; echo up > /tmp/kos-sig-ready; \
         while :; do sleep 0.05; done"
    );
    let prefix = format!("echo $$ > '{}';", rt_pid_file.display());
    let out = std::thread::scope(|s| -> Result<_> {
        let h = s.spawn(|| {
            ctx.rt_with(
                &["exec", &c.id, "sh", "-c", &script],
                Call {
                    sh_prefix: Some(prefix.clone()),
                    ..Call::default()
                },
            )
        });
        let waited = ctx.wait_until(WAIT, "the exec'd shell to set its trap", || {
            Ok(ready.exists() && read_pid(&rt_pid_file).is_some())
        });
        if waited.is_ok() {
            if let Some(p) = read_pid(&rt_pid_file) {
                // SAFETY: kill(2) of the runtime process this test started.
                unsafe {
                    libc::kill(p, sig);
                }
            }
        }
        let out = h.join().map_err(|_| anyhow!("exec thread panicked"))?;
        waited?;
        out
    })?;
    ensure!(
        out.stdout.contains(&format!("got-{name}")),
        "SIG{name} sent to the runtime did not reach the exec'd shell's trap: {}",
        out.describe()
    );
    ensure!(
        out.code() == Some(43),
        "exec exited {:?}, want the 43 the trap exits with: {}",
        out.code(),
        out.describe()
    );
    ensure!(
        c.status()? == "running",
        "the forwarded signal reached the container's init"
    );
    Ok(())
}

/// Runs `f` (which makes the runtime connect to the socket) while a thread receives the
/// pty master; returns both results.
fn with_console<T>(
    ctx: &Ctx,
    f: impl FnOnce(&str) -> Result<T>,
) -> Result<(Result<T>, Result<OwnedFd>)> {
    let dir = ctx.mkdir("console")?;
    let sock = dir.join("console.sock");
    let listener = UnixListener::bind(&sock).context("binding the console socket")?;
    let sp = sock.to_string_lossy().into_owned();
    std::thread::scope(|s| {
        let recv = s.spawn(|| console::receive_pty(&listener, Duration::from_secs(5)));
        let r = f(&sp);
        let fd = recv
            .join()
            .map_err(|_| anyhow!("console receiver panicked"))?;
        Ok((r, fd))
    })
}

/// `tty` prints the name of the terminal on stdin; a /dev/pts/N line proves it is a pty.
fn check_tty_output(text: &str, marker: &str) -> Result<()> {
    ensure!(
        text.contains(marker),
        "the pty master did not carry the program's output: {text:?}"
    );
    ensure!(
        text.lines().any(|l| l.trim().starts_with("/dev/pts/")),
        "the program's stdin is not a pty (`tty` said {text:?})"
    );
    Ok(())
}

fn tty_console_socket(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = started(ctx, &b)?;
    let (r, master) = with_console(ctx, |sp| {
        exec_detached(
            ctx,
            &c,
            &["-t", "--console-socket", sp],
            &["sh", "-c", "tty; echo kos-exec-tty; sleep 1000"],
        )
    })?;
    let d = r?;
    let master = master?;
    let text = crate::harness::console::read_until(master.as_raw_fd(), WAIT, |t| {
        t.contains("kos-exec-tty")
    });
    check_tty_output(&text, "kos-exec-tty")?;
    ensure!(d.alive(), "the exec'd tty process died early");
    let init_pid_ns = host_ns_links(c.pid()?)?["pid"].clone();
    ensure!(
        host_ns_links(d.pid)?["pid"] == init_pid_ns,
        "the tty process is not in the container's pid namespace"
    );
    // Input typed on the master reaches the program on the slave side.
    let fd = master.as_raw_fd();
    let ctl = b"\x03"; // ^C: the line discipline turns it into SIGINT for the foreground job
                       // SAFETY: writing a valid buffer to an open fd.
    let n = unsafe { libc::write(fd, ctl.as_ptr().cast(), ctl.len()) };
    ensure!(n == 1, "writing to the pty master failed");
    ctx.wait_until(WAIT, "^C on the pty to end the program", || Ok(!d.alive()))?;
    Ok(())
}

fn tty_without_terminal_fails(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = started(ctx, &b)?;
    let cg = b.config["linux"]["cgroupsPath"]
        .as_str()
        .unwrap_or("")
        .trim_start_matches('/')
        .to_string();
    let before = live_in_cgroup(&cg);
    // The harness gives the runtime /dev/null as stdin: there is no terminal to relay.
    let out = ctx.rt(&["exec", "-t", &c.id, "sh", "-c", "echo kos-tty-ran"])?;
    out.expect_failure("exec -t with neither a console socket nor a terminal on stdin")?;
    ensure!(
        !out.stderr.trim().is_empty(),
        "exec -t without a terminal failed without a message"
    );
    std::thread::sleep(Duration::from_millis(100));
    let after = live_in_cgroup(&cg);
    ensure!(
        after.len() == before.len(),
        "the failed exec -t left processes behind: before {before:?}, after {after:?}"
    );
    ensure!(
        c.status()? == "running",
        "the failed exec changed the state"
    );
    Ok(())
}

/// runc: "cannot use console socket if runc will not detach or allocate tty".
fn console_socket_without_detach_fails(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = started(ctx, &b)?;
    let dir = ctx.mkdir("console")?;
    let sock = dir.join("console.sock");
    let _listener = UnixListener::bind(&sock).context("binding the console socket")?;
    let sp = sock.to_string_lossy().into_owned();
    let out = ctx.rt_with(
        &[
            "exec",
            "-t",
            "--console-socket",
            &sp,
            &c.id,
            "echo",
            "kos-ran",
        ],
        Call {
            timeout: Some(Duration::from_secs(5)),
            ..Call::default()
        },
    )?;
    out.expect_failure("exec -t --console-socket without --detach")?;
    Ok(())
}

fn console_socket_without_tty_fails(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = started(ctx, &b)?;
    let dir = ctx.mkdir("console")?;
    let sock = dir.join("console.sock");
    let _listener = UnixListener::bind(&sock).context("binding the console socket")?;
    let sp = sock.to_string_lossy().into_owned();
    let out = ctx.rt(&[
        "exec",
        "--console-socket",
        &sp,
        "--detach",
        &c.id,
        "touch",
        "/tmp/kos-ran",
    ])?;
    out.expect_failure("exec --detach --console-socket without -t")?;
    std::thread::sleep(Duration::from_millis(100));
    ensure!(
        !b.in_rootfs("/tmp/kos-ran").exists(),
        "the program ran although exec failed"
    );
    Ok(())
}

fn run_detach_console_socket(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["sh", "-c", "tty; echo kos-run-tty; exec sleep 1000"])?;
    b.config["process"]["terminal"] = json!(true);
    let (r, master) = with_console(ctx, |sp| {
        ctx.run_with(
            &b,
            &["--detach", "--console-socket", sp],
            Call {
                timeout: Some(WAIT),
                ..Call::default()
            },
        )
    })?;
    let (out, c) = r?;
    out.expect_success()?;
    let master = master?;
    let text = crate::harness::console::read_until(master.as_raw_fd(), WAIT, |t| {
        t.contains("kos-run-tty")
    });
    check_tty_output(&text, "kos-run-tty")?;
    ensure!(
        c.status()? == "running",
        "the detached container is not running"
    );
    ensure!(
        !out.stdout.contains("kos-run-tty"),
        "the program's output went to the runtime's stdout, not the pty"
    );
    c.kill("KILL")?.expect_success()?;
    c.wait_status("stopped", WAIT)?;
    Ok(())
}

fn run_console_socket_without_detach_fails(ctx: &Ctx) -> Result<()> {
    let dir = ctx.mkdir("host")?;
    let mut b = ctx.bundle(&["touch", "/kos-host/ran"])?;
    b.bind(&dir, "/kos-host", &[]);
    b.config["process"]["terminal"] = json!(true);
    let sock = dir.join("console.sock");
    let _listener = UnixListener::bind(&sock).context("binding the console socket")?;
    let sp = sock.to_string_lossy().into_owned();
    let (out, _c) = ctx.run_with(
        &b,
        &["--console-socket", &sp],
        Call {
            timeout: Some(Duration::from_secs(5)),
            ..Call::default()
        },
    )?;
    out.expect_failure("run --console-socket without --detach")?;
    ensure!(
        !dir.join("ran").exists(),
        "the program ran although run failed"
    );
    Ok(())
}

fn create_console_socket_without_terminal_fails(ctx: &Ctx) -> Result<()> {
    let dir = ctx.mkdir("host")?;
    let mut b = ctx.bundle(&["touch", "/kos-host/ran"])?;
    b.bind(&dir, "/kos-host", &[]);
    let sock = dir.join("console.sock");
    let _listener = UnixListener::bind(&sock).context("binding the console socket")?;
    let sp = sock.to_string_lossy().into_owned();
    let (out, c) = ctx.try_create(
        &b,
        &["--console-socket", &sp],
        Call {
            timeout: Some(Duration::from_secs(5)),
            ..Call::default()
        },
    )?;
    out.expect_failure("create --console-socket with process.terminal false")?;
    ensure!(
        c.state().is_err(),
        "the failed create left a container behind"
    );
    ensure!(
        !dir.join("ran").exists(),
        "the program ran although create failed"
    );
    Ok(())
}

/// runc resolves a relative `--pid-file` against its own working directory.
fn pid_file_relative(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = started(ctx, &b)?;
    let dir = ctx.mkdir("cwd")?;
    let out = ctx.rt_with(
        &[
            "exec",
            "--detach",
            "--pid-file",
            "kos-rel.pid",
            &c.id,
            "sleep",
            "1000",
        ],
        Call {
            cwd: Some(dir.clone()),
            ..Call::default()
        },
    )?;
    out.expect_success()?;
    let text =
        fs::read_to_string(dir.join("kos-rel.pid")).context("no pid file in the runtime's cwd")?;
    let pid: i64 = text
        .trim()
        .parse()
        .with_context(|| format!("pid file holds {text:?}"))?;
    let d = Detached {
        pid,
        pid_ns: host_ns_links(c.pid()?)?["pid"].clone(),
    };
    ensure!(
        d.alive(),
        "the relative pid file names {pid}, which is not a process of the container"
    );
    Ok(())
}

/// As for `run`, a process killed by signal N makes exec exit 128+N.
fn exit_code_on_signal(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = started(ctx, &b)?;
    let out = ctx.rt(&["exec", &c.id, "sh", "-c", "kill -9 $$"])?;
    ensure!(
        out.code() == Some(137),
        "exec exited {:?}, want 128+SIGKILL = 137: {}",
        out.code(),
        out.describe()
    );
    Ok(())
}

/// Fails unless exec failed with a message naming `what`, and left no process behind.
fn assert_exec_refused(
    b: &Bundle,
    out: &crate::harness::runtime::Output,
    what: &str,
    before: usize,
) -> Result<()> {
    out.expect_failure(what)?;
    ensure!(
        !out.stderr.trim().is_empty(),
        "{what}: failed without a message"
    );
    let cg = b.config["linux"]["cgroupsPath"]
        .as_str()
        .unwrap_or("")
        .trim_start_matches('/')
        .to_string();
    std::thread::sleep(Duration::from_millis(100));
    let after = live_in_cgroup(&cg);
    ensure!(
        after.len() == before,
        "{what}: processes {after:?} in the container, {before} before the exec"
    );
    Ok(())
}

fn cg_count(b: &Bundle) -> usize {
    live_in_cgroup(
        b.config["linux"]["cgroupsPath"]
            .as_str()
            .unwrap_or("")
            .trim_start_matches('/'),
    )
    .len()
}

fn missing_program_fails(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = started(ctx, &b)?;
    let before = cg_count(&b);
    let out = ctx.rt(&["exec", &c.id, "kos-no-such-program"])?;
    assert_exec_refused(&b, &out, "exec of a program the container lacks", before)?;
    ensure!(
        out.stderr.contains("kos-no-such-program"),
        "the error does not name the missing program: {:?}",
        out.stderr
    );
    Ok(())
}

fn missing_cwd_fails(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = started(ctx, &b)?;
    let before = cg_count(&b);
    let out = ctx.rt(&[
        "exec",
        "--cwd",
        "/kos-no-such-dir",
        &c.id,
        "touch",
        "/tmp/kos-ran",
    ])?;
    assert_exec_refused(&b, &out, "exec with a missing --cwd", before)?;
    ensure!(
        !b.in_rootfs("/tmp/kos-ran").exists(),
        "the program ran without its working directory"
    );
    Ok(())
}

fn cgroup_flag_missing_sub_fails(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = started(ctx, &b)?;
    let Some((dir, v1)) = controller_dir(c.pid()?, "pids")? else {
        skip!("no cgroup hierarchy offers the pids controller");
    };
    let name = format!("kos-nosub-{}-{}", std::process::id(), ctx.suite.next());
    let flag = if v1 {
        format!("pids:{name}")
    } else {
        name.clone()
    };
    let before = cg_count(&b);
    let out = ctx.rt(&["exec", "--cgroup", &flag, &c.id, "touch", "/tmp/kos-ran"])?;
    assert_exec_refused(&b, &out, "exec --cgroup into a missing sub-cgroup", before)?;
    ensure!(
        !b.in_rootfs("/tmp/kos-ran").exists(),
        "the program ran outside the cgroup it was asked for"
    );
    if dir.join(&name).exists() {
        let _ = fs::remove_dir(dir.join(&name));
        bail!(
            "exec --cgroup created the missing sub-cgroup {}",
            dir.join(&name).display()
        );
    }
    Ok(())
}

/// A pty pair made by the test, standing in for the terminal a user runs the runtime from.
/// The master is held (unread) only so the slave does not hang up.
struct Pty {
    _master: OwnedFd,
    slave: OwnedFd,
}

impl Pty {
    fn open(rows: u16, cols: u16) -> Result<Self> {
        let (mut m, mut sl) = (-1, -1);
        let ws = libc::winsize {
            ws_row: rows,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: out-pointers to two ints, no name buffer, no termios, a valid winsize.
        let rc =
            unsafe { libc::openpty(&mut m, &mut sl, std::ptr::null_mut(), std::ptr::null(), &ws) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("openpty");
        }
        // SAFETY: openpty returned two fresh fds that nothing else owns.
        let (master, slave) = unsafe { (OwnedFd::from_raw_fd(m), OwnedFd::from_raw_fd(sl)) };
        Ok(Self {
            _master: master,
            slave,
        })
    }

    /// The slave's line discipline flags: what a runtime must restore after raw mode.
    fn modes(&self) -> Result<[u64; 4]> {
        // SAFETY: termios is plain data; tcgetattr fills it.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: a valid fd and a valid out-pointer.
        if unsafe { libc::tcgetattr(self.slave.as_raw_fd(), &mut t) } != 0 {
            return Err(std::io::Error::last_os_error()).context("tcgetattr");
        }
        Ok([
            u64::from(t.c_iflag),
            u64::from(t.c_oflag),
            u64::from(t.c_cflag),
            u64::from(t.c_lflag),
        ])
    }
}

/// `exec -t` without a console socket relays the caller's own terminal: the program gets a
/// pty of the size of the caller's, its output comes out of the runtime, its exit code is
/// exec's, and the caller's terminal modes are restored afterwards.
fn tty_caller_terminal(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = started(ctx, &b)?;
    let pty = Pty::open(33, 101)?;
    let before = pty.modes()?;
    let out = ctx.rt_with(
        &[
            "exec",
            "-t",
            &c.id,
            "sh",
            "-c",
            "tty; stty size; echo kos-caller-tty; exit 5",
        ],
        Call {
            // The runtime's stdin is the caller's terminal; stdout stays the capture file.
            fds: vec![(pty.slave.as_raw_fd(), 0)],
            ..Call::default()
        },
    )?;
    ensure!(
        out.code() == Some(5),
        "exec -t exited {:?}, want the program's 5: {}",
        out.code(),
        out.describe()
    );
    check_tty_output(&out.stdout, "kos-caller-tty")?;
    ensure!(
        out.stdout.lines().any(|l| l.trim() == "33 101"),
        "the program's pty is not the caller's size 33x101 (`stty size` said {:?})",
        out.stdout
    );
    let after = pty.modes()?;
    ensure!(
        after == before,
        "the caller's terminal modes were not restored: before {before:x?}, after {after:x?}"
    );
    Ok(())
}

/// Socket activation is for the container's init: `exec` passes only stdio and the
/// `--preserve-fds` count from 3, whatever $LISTEN_FDS the runtime was started with.
fn listen_fds_not_passed(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = started(ctx, &b)?;
    let dir = ctx.mkdir("fds")?;
    fs::write(dir.join("three"), "kos-fd-three\n")?;
    fs::write(dir.join("four"), "kos-fd-four\n")?;
    let f3 = File::open(dir.join("three"))?;
    let f4 = File::open(dir.join("four"))?;
    let script = format!("{LIST_FDS}; cat <&3");
    let out = ctx.rt_with(
        &["exec", "--preserve-fds", "1", &c.id, "sh", "-c", &script],
        Call {
            fds: vec![(f3.as_raw_fd(), 3), (f4.as_raw_fd(), 4)],
            sh_prefix: Some("LISTEN_FDS=1 LISTEN_PID=$$; export LISTEN_FDS LISTEN_PID;".into()),
            ..Call::default()
        },
    )?;
    out.expect_success()?;
    let mut fds: Vec<i32> = out
        .stdout
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    fds.sort();
    ensure!(
        fds == [0, 1, 2, 3],
        "exec'd process holds fds {fds:?}, want 0-2 and the one preserved fd 3"
    );
    ensure!(
        out.stdout.contains("kos-fd-three"),
        "fd 3 is not the runtime's fd 3: {:?}",
        out.stdout
    );
    Ok(())
}

fn set_size(fd: RawFd, rows: u16, cols: u16) -> Result<()> {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from a valid pointer.
    if unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &ws) } != 0 {
        return Err(std::io::Error::last_os_error()).context("TIOCSWINSZ");
    }
    Ok(())
}

/// When the caller's terminal changes size (the terminal sends SIGWINCH), `exec -t` gives
/// the program's pty the new size, and the program sees its own SIGWINCH.
fn tty_relays_window_size(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = started(ctx, &b)?;
    let pty = Pty::open(33, 101)?;
    let dir = ctx.mkdir("winch")?;
    let rt_pid_file = dir.join("runtime.pid");
    let ready = b.in_rootfs("/tmp/kos-winch-ready");
    let script = "trap 'stty size; exit 0' WINCH; stty size > /tmp/kos-winch-ready; \
                  while :; do sleep 0.05; done";
    let prefix = format!("echo $$ > '{}';", rt_pid_file.display());
    let slave = pty.slave.as_raw_fd();
    let out = std::thread::scope(|s| -> Result<_> {
        let h = s.spawn(|| {
            ctx.rt_with(
                &["exec", "-t", &c.id, "sh", "-c", script],
                Call {
                    fds: vec![(slave, 0)],
                    sh_prefix: Some(prefix.clone()),
                    ..Call::default()
                },
            )
        });
        let waited = ctx.wait_until(WAIT, "the exec'd shell to set its trap", || {
            Ok(
                fs::read_to_string(&ready).is_ok_and(|t| t.contains("33 101"))
                    && read_pid(&rt_pid_file).is_some(),
            )
        });
        let resized = waited.and_then(|()| set_size(slave, 40, 120));
        // Signalled even after a failure above, so the exec (whose program only ends on
        // SIGWINCH) cannot hang the test.
        if let Some(p) = read_pid(&rt_pid_file) {
            // SAFETY: kill(2) of the runtime process this test started.
            unsafe {
                libc::kill(p, libc::SIGWINCH);
            }
        }
        let out = h.join().map_err(|_| anyhow!("exec thread panicked"))?;
        resized?;
        out
    })?;
    out.expect_success()?;
    ensure!(
        out.stdout.lines().any(|l| l.trim() == "40 120"),
        "after the caller's terminal became 40x120 the program's pty says {:?}",
        out.stdout
    );
    Ok(())
}

/// In a user namespace, `-u 1000:1000` is the container's 1000, which the host sees through
/// the mappings.
fn user_in_userns_maps(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(LONG)?;
    b.set_namespace("user", None);
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    let c = started(ctx, &b)?;
    let d = exec_detached(ctx, &c, &["-u", "1000:1000"], &["sleep", "1000"])?;
    let st = fs::read_to_string(format!("/proc/{}/status", d.pid))?;
    ensure!(
        status_field(&st, "Uid").as_deref() == Some("101000 101000 101000 101000")
            && status_field(&st, "Gid").as_deref() == Some("201000 201000 201000 201000"),
        "the host sees the exec'd uid/gid 1000 as Uid {:?} Gid {:?}, want 101000 and 201000",
        status_field(&st, "Uid"),
        status_field(&st, "Gid")
    );
    let out = exec_ok(ctx, &c, &["-u", "1000:1000"], &["sh", "-c", "id -u; id -g"])?;
    ensure!(
        out.split_whitespace().collect::<Vec<_>>() == ["1000", "1000"],
        "inside, the exec'd process is {out:?}, want 1000 1000"
    );
    Ok(())
}

/// Several execs at once each get their own process and their own exit code.
fn concurrent_execs(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = started(ctx, &b)?;
    let results: Vec<Result<crate::harness::runtime::Output>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..4)
            .map(|i| {
                let c = &c;
                s.spawn(move || {
                    let script = format!("sleep 0.2; echo kos-exec-{i}; exit {}", 10 + i);
                    ctx.rt(&["exec", &c.id, "sh", "-c", &script])
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .map_err(|_| anyhow!("exec thread panicked"))
                    .and_then(|r| r)
            })
            .collect()
    });
    for (i, r) in results.into_iter().enumerate() {
        let out = r?;
        ensure!(
            out.code() == Some(10 + i as i32) && out.stdout.trim() == format!("kos-exec-{i}"),
            "concurrent exec {i}: want exit {} and kos-exec-{i}, got {}; stdout {:?}",
            10 + i,
            out.describe(),
            out.stdout
        );
    }
    Ok(())
}

/// Without a pid namespace the init's death does not take exec'd processes along:
/// `delete --force` must still leave none of them running.
fn delete_force_kills_exec_without_pidns(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(LONG)?;
    b.remove_namespace("pid");
    let mut c = started(ctx, &b)?;
    let init_pid = c.pid()?;
    let d = exec_detached(ctx, &c, &[], &["sleep", "1000"])?;
    ensure!(d.alive(), "the detached process is not running");
    c.delete_force()?.expect_success()?;
    ctx.wait_until(WAIT, "the exec'd process to die with the container", || {
        Ok(!process_alive(d.pid))
    })?;
    ensure!(!process_alive(init_pid), "the init survived delete --force");
    ctx.assert_gone(&c.id, &b)
}

/// What containerd does: `exec --process` with `terminal: true`, `--detach` and a console
/// socket; the pty starts at process.consoleSize.
fn process_json_terminal_console_socket(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(LONG)?;
    let c = started(ctx, &b)?;
    let p = ctx.mkdir("proc")?.join("process.json");
    let proc_json = json!({
        "terminal": true, "user": {"uid": 0, "gid": 0},
        "args": ["sh", "-c", "tty; stty size; echo kos-json-tty $KOS_P; sleep 1000"],
        "env": ["PATH=/bin", "KOS_P=from-json"], "cwd": "/",
        "consoleSize": {"height": 21, "width": 77}
    });
    fs::write(&p, proc_json.to_string())?;
    let ps = p.to_string_lossy().into_owned();
    let (r, master) = with_console(ctx, |sp| {
        exec_detached(ctx, &c, &["--process", &ps, "--console-socket", sp], &[])
    })?;
    let d = r?;
    let master = master?;
    let text = crate::harness::console::read_until(master.as_raw_fd(), WAIT, |t| {
        t.contains("kos-json-tty from-json")
    });
    check_tty_output(&text, "kos-json-tty from-json")?;
    ensure!(
        text.lines().any(|l| l.trim() == "21 77"),
        "the pty is not process.consoleSize 21x77 (`stty size` said {text:?})"
    );
    ensure!(d.alive(), "the exec'd tty process died early");
    Ok(())
}
