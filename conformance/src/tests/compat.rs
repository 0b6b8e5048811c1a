//! Configs and uses that runc, crun and youki accept, and that an engine above the runtime
//! relies on: later spec minors, big annotations, seccomp profiles that touch the
//! runtime's own syscalls, propagation modes, hook environments, tmpcopyup, bind mounts
//! over device nodes, containers without a mount namespace.

use std::fs;
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Result};
use serde_json::json;

use super::{departs, t, TestCase};
use crate::harness::ctx::{Call, Ctx};
use crate::harness::host::mounts_under;
use crate::harness::report::Departure;

const RUNC_GETCWD: &[Departure] = &[Departure {
    runtime: "runc",
    clause: "config-linux.md Seccomp applies to the container process; runc checks the working \
             directory with getcwd after loading the filter (without noNewPrivileges), so a \
             profile denying getcwd fails create",
}];

const RUNC_NO_MNTNS_UNDO: &[Departure] = &[Departure {
    runtime: "runc",
    clause: "runtime.md Delete: \"Deleting a container MUST delete the resources that were \
             created during the create step\"; without a mount namespace runc leaves the \
             config's mounts in the host's namespace",
}];

const RUNC_NO_PROC_FDS: &[Departure] = &[Departure {
    runtime: "runc",
    clause: "config.md Mounts: a container need not mount /proc; runc closes its descriptors \
             through /proc/self/fd inside the root and fails without it",
}];

const RUNC_NO_MNTNS_UNDO_AND_PROC: &[Departure] = &[Departure {
    runtime: "runc",
    clause: "runtime.md Delete: \"Deleting a container MUST delete the resources that were \
             created during the create step\"; without a mount namespace runc leaves the \
             config's mounts (and its bind of the rootfs) in the host's namespace",
}];

const RUNC_UNBINDABLE: &[Departure] = &[Departure {
    runtime: "runc",
    clause: "config-linux.md rootfsPropagation: \"unbindable\" is a valid mode; runc makes / \
             unbindable before it binds the rootfs, and the bind fails",
}];

pub fn tests() -> Vec<TestCase> {
    vec![
        t("compat::oci_version_1_3_0_runs", |c| {
            later_minor(c, "1.3.0")
        }),
        t("compat::oci_version_1_9_0_runs", |c| {
            later_minor(c, "1.9.0")
        }),
        t("compat::annotations_1_mib", annotations_1_mib),
        t("compat::long_init_error_reported", long_init_error),
        departs(
            "compat::seccomp_denying_getcwd",
            seccomp_denying_getcwd,
            RUNC_GETCWD,
        ),
        departs(
            "compat::exec_seccomp_denying_getcwd",
            exec_seccomp_denying_getcwd,
            RUNC_GETCWD,
        ),
        t(
            "compat::seccomp_notify_getcwd_create_returns",
            seccomp_notify_getcwd,
        ),
        t(
            "compat::preserve_fds_only_callers",
            preserve_fds_only_callers,
        ),
        t(
            "compat::exec_preserve_fds_only_callers",
            exec_preserve_fds_only_callers,
        ),
        departs(
            "compat::rootfs_propagation_unbindable",
            rootfs_unbindable,
            RUNC_UNBINDABLE,
        ),
        t("compat::hook_without_env_gets_runtime_env", hook_env),
        t("compat::tmpcopyup_across_filesystems", tmpcopyup),
        t("compat::bind_over_dev_null", bind_over_dev_null),
        t("compat::bind_over_listed_device", bind_over_listed_device),
        departs(
            "compat::readonly_root_without_proc",
            readonly_root_without_proc,
            RUNC_NO_PROC_FDS,
        ),
        departs(
            "compat::no_mount_namespace_mounts_done_and_undone",
            no_mount_ns,
            RUNC_NO_MNTNS_UNDO,
        ),
        departs(
            "compat::no_mount_namespace_close_range_denied",
            no_mount_ns_close_range_denied,
            RUNC_NO_MNTNS_UNDO_AND_PROC,
        ),
    ]
}

/// config.md Specification version: a later minor of 1.x only adds optional properties,
/// which a runtime ignores (config.md "unknown properties MUST be ignored").
fn later_minor(ctx: &Ctx, v: &str) -> Result<()> {
    let mut b = ctx.bundle(&["echo", "kos-later-minor"])?;
    b.config["ociVersion"] = json!(v);
    b.config["kosFuture"] = json!({"added": ["in", "a", "later", "minor"]});
    b.config["linux"]["kosFutureLinux"] = json!(1);
    b.config["process"]["kosFutureProcess"] = json!(true);
    let out = ctx.run_ok(&b)?;
    ensure!(out.contains("kos-later-minor"), "output {out:?}");
    Ok(())
}

/// 1 MiB of annotations (runc's own limit) reaches the state and the container runs.
fn annotations_1_mib(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["sleep", "1000"])?;
    let mut ann = serde_json::Map::new();
    for i in 0..16 {
        ann.insert(
            format!("org.kos.test.big{i}"),
            json!("x".repeat(64 * 1024 - 64)),
        );
    }
    b.config["annotations"] = serde_json::Value::Object(ann);
    let c = ctx.create(&b)?;
    c.start_ok()?;
    let st = c.state()?;
    ensure!(
        st["annotations"]["org.kos.test.big15"]
            .as_str()
            .is_some_and(|s| s.len() == 64 * 1024 - 64),
        "state does not carry the annotations whole"
    );
    Ok(())
}

/// An error of the container's setup longer than any single message still reaches the
/// caller, naming what was wrong.
fn long_init_error(ctx: &Ctx) -> Result<()> {
    let name = format!("kos-missing-{}", "n".repeat(100 * 1024));
    let b = ctx.bundle(&[name.as_str()])?;
    let (out, mut c) = ctx.try_create(&b, &[], Call::default())?;
    if out.success() {
        // runc reports a missing program at start.
        let st = c.start()?;
        st.expect_failure("start of a missing program")?;
        ensure!(
            st.stderr.contains("kos-missing-nnn"),
            "the error does not name the program: {:?}",
            &st.stderr[..st.stderr.len().min(300)]
        );
        return Ok(());
    }
    c.forget();
    ensure!(
        out.stderr.contains("kos-missing-nnn"),
        "the error does not name the program: {:?}",
        &out.stderr[..out.stderr.len().min(300)]
    );
    ctx.assert_gone(&c.id, &b)
}

fn seccomp_profile(rules: serde_json::Value) -> serde_json::Value {
    json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_AARCH64"],
        "syscalls": rules
    })
}

/// config-linux.md Seccomp: the filter is for the container's program. A profile denying
/// getcwd must not break the runtime's own checks before it.
fn seccomp_denying_getcwd(ctx: &Ctx) -> Result<()> {
    for (nnp, uid) in [(true, 0), (false, 0), (false, 1000)] {
        let mut b = ctx.bundle(&[
            "sh",
            "-c",
            "echo kos-no-getcwd; grep -E '^Cap(Prm|Eff)' /proc/self/status",
        ])?;
        b.config["process"]["noNewPrivileges"] = json!(nnp);
        b.config["process"]["user"] = json!({"uid": uid, "gid": uid});
        b.config["process"]["cwd"] = json!("/tmp");
        b.config["linux"]["seccomp"] = seccomp_profile(json!([
            {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
        ]));
        let out = ctx.run_ok(&b)?;
        ensure!(
            out.contains("kos-no-getcwd"),
            "noNewPrivileges={nnp} uid={uid}: output {out:?}"
        );
        // Loading the filter without no_new_privs takes CAP_SYS_ADMIN; the program must
        // not keep it (the config does not grant it).
        for line in out.lines().filter(|l| l.starts_with("Cap")) {
            let mask = line
                .split_whitespace()
                .nth(1)
                .and_then(|h| u64::from_str_radix(h, 16).ok())
                .unwrap_or(0);
            ensure!(
                mask & (1 << 21) == 0,
                "noNewPrivileges={nnp} uid={uid}: the program holds CAP_SYS_ADMIN: {line}"
            );
        }
    }
    Ok(())
}

/// The same for a process started by `exec`, which takes the container's profile.
fn exec_seccomp_denying_getcwd(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["sleep", "1000"])?;
    b.config["process"]["noNewPrivileges"] = json!(false);
    b.config["linux"]["seccomp"] = seccomp_profile(json!([
        {"names": ["getcwd"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
    ]));
    let c = ctx.create(&b)?;
    c.start_ok()?;
    let out = ctx.rt(&["exec", "--cwd", "/tmp", &c.id, "echo", "kos-exec-no-getcwd"])?;
    out.expect_success()?;
    ensure!(
        out.stdout.contains("kos-exec-no-getcwd"),
        "output {:?}",
        out.stdout
    );
    Ok(())
}

/// A seccomp agent: accepts one connection and keeps the listener it is sent.
struct Agent {
    got: std::sync::mpsc::Receiver<Result<OwnedFd, String>>,
}

impl Agent {
    fn start(sock: &Path) -> Result<Agent> {
        let listener = UnixListener::bind(sock)?;
        listener.set_nonblocking(true)?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            let r = loop {
                match listener.accept() {
                    Ok((conn, _)) => break recv_fd(conn.as_raw_fd()),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if Instant::now() > deadline {
                            break Err("no runtime connected".into());
                        }
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    Err(e) => break Err(e.to_string()),
                }
            };
            let _ = tx.send(r);
        });
        Ok(Agent { got: rx })
    }
}

fn recv_fd(sock: i32) -> Result<OwnedFd, String> {
    // SAFETY: blocking mode for the accepted socket.
    unsafe { libc::fcntl(sock, libc::F_SETFL, 0) };
    let mut data = vec![0u8; 64 * 1024];
    let mut iov = [IoSliceMut::new(&mut data)];
    let mut cbuf = [0u8; 64];
    // SAFETY: a zeroed msghdr pointing at live buffers.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = iov.as_mut_ptr().cast();
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.as_mut_ptr().cast();
    msg.msg_controllen = cbuf.len();
    // SAFETY: recvmsg into the buffers above.
    let n = unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(std::io::Error::last_os_error().to_string());
    }
    // SAFETY: walking the control messages the kernel filled in.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let fd = std::ptr::read_unaligned(libc::CMSG_DATA(c) as *const i32);
                return Ok(OwnedFd::from_raw_fd(fd));
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    Err("no descriptor came with the state".into())
}

/// A NOTIFY rule on a syscall the runtime itself might make while setting up must not
/// trap the init on its own notification: create returns and hands over the listener.
fn seccomp_notify_getcwd(ctx: &Ctx) -> Result<()> {
    let dir = ctx.mkdir("agent")?;
    let sock = dir.join("agent.sock");
    let agent = Agent::start(&sock)?;
    let mut b = ctx.bundle(&["true"])?;
    b.config["process"]["cwd"] = json!("/tmp");
    let mut prof = seccomp_profile(json!([{"names": ["getcwd"], "action": "SCMP_ACT_NOTIFY"}]));
    prof["listenerPath"] = json!(sock.to_string_lossy());
    b.config["linux"]["seccomp"] = prof;
    let (out, _c) = ctx.try_create(
        &b,
        &[],
        Call {
            timeout: Some(Duration::from_secs(20)),
            ..Call::default()
        },
    )?;
    out.expect_success()?;
    let fd = agent
        .got
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| anyhow!("the agent got nothing"))?
        .map_err(|e| anyhow!("agent: {e}"))?;
    ensure!(fd.as_raw_fd() >= 0, "no listener");
    Ok(())
}

/// `--preserve-fds N` passes the caller's descriptors 3..3+N-1 that exist, never one of
/// the runtime's own (CVE-2024-21626 class): the container holds stdio and exactly the
/// descriptors of that range this suite itself hands down, nothing else.
fn preserve_fds_only_callers(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(&["sh", "-c", "ls /proc/$$/fd; :"])?;
    let (out, _c) = ctx.run_with(&b, &["--preserve-fds", "20"], Call::default())?;
    if !out.success() {
        // Refusing descriptors the caller does not have (runc) leaks nothing either.
        ensure!(
            !out.stderr.trim().is_empty(),
            "run --preserve-fds 20 failed without a message"
        );
        return Ok(());
    }
    let mut fds: Vec<i32> = out
        .stdout
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    fds.sort();
    let mut want = vec![0, 1, 2];
    want.extend(inherited_by_children(3..23));
    ensure!(
        fds == want,
        "container holds fds {fds:?}, want {want:?} (stdio and what the caller passed)"
    );
    Ok(())
}

/// The same for `exec --preserve-fds`.
fn exec_preserve_fds_only_callers(ctx: &Ctx) -> Result<()> {
    let b = ctx.bundle(&["sleep", "1000"])?;
    let c = ctx.create(&b)?;
    c.start_ok()?;
    let out = ctx.rt(&[
        "exec",
        "--preserve-fds",
        "20",
        &c.id,
        "sh",
        "-c",
        "ls /proc/$$/fd; :",
    ])?;
    if !out.success() {
        ensure!(
            !out.stderr.trim().is_empty(),
            "exec --preserve-fds 20 failed without a message"
        );
        return Ok(());
    }
    let mut fds: Vec<i32> = out
        .stdout
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    fds.sort();
    let mut want = vec![0, 1, 2];
    want.extend(inherited_by_children(3..23));
    ensure!(
        fds == want,
        "the exec'd process holds fds {fds:?}, want {want:?}"
    );
    Ok(())
}

/// Descriptors of this process in `range` that a child inherits (open, not close-on-exec).
fn inherited_by_children(range: std::ops::Range<i32>) -> Vec<i32> {
    range
        // SAFETY: F_GETFD only reads descriptor flags.
        .filter(|fd| {
            let f = unsafe { libc::fcntl(*fd, libc::F_GETFD) };
            f >= 0 && f & libc::FD_CLOEXEC == 0
        })
        .collect()
}

/// config-linux.md rootfsPropagation "unbindable": a bind mount of / inside fails.
fn rootfs_unbindable(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&[
        "sh",
        "-c",
        "mkdir -p /kosmnt; mount --bind / /kosmnt && echo bound || echo refused",
    ])?;
    b.config["linux"]["rootfsPropagation"] = json!("unbindable");
    let caps = json!(["CAP_SYS_ADMIN", "CAP_KILL"]);
    b.config["process"]["capabilities"] =
        json!({"bounding": caps, "effective": caps, "permitted": caps});
    let out = ctx.run_ok(&b)?;
    ensure!(
        out.contains("refused") && !out.contains("bound"),
        "a bind mount of / succeeded under unbindable propagation: {out:?}"
    );
    Ok(())
}

/// A hook without `env` gets the runtime's environment (runc, youki), PATH included.
fn hook_env(ctx: &Ctx) -> Result<()> {
    let dir = ctx.mkdir("hookenv")?;
    let mut b = ctx.bundle(&["true"])?;
    let f = dir.join("env");
    b.set_hook(
        "prestart",
        json!([{"path": "/bin/sh",
                "args": ["sh", "-c", format!("echo \"$KOS_HOOK_MARK:$PATH\" > {}", f.display())]}]),
    );
    let (out, _c) = ctx.run_with(
        &b,
        &[],
        Call {
            env: vec![("KOS_HOOK_MARK".into(), "kos-present".into())],
            ..Call::default()
        },
    )?;
    out.expect_success()?;
    let got = fs::read_to_string(&f)?;
    ensure!(
        got.starts_with("kos-present:") && got.trim().len() > "kos-present:".len(),
        "the hook saw {got:?}"
    );
    Ok(())
}

/// tmpcopyup copies the directory's files onto the tmpfs, though the rootfs is another
/// filesystem (copy_file_range across filesystems fails with EXDEV).
fn tmpcopyup(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&[
        "sh",
        "-c",
        "cat /kosdata/a /kosdata/sub/b; grep -c . /proc/mounts >/dev/null",
    ])?;
    fs::create_dir_all(b.in_rootfs("/kosdata/sub"))?;
    fs::write(b.in_rootfs("/kosdata/a"), "kos-copied-a\n")?;
    fs::write(b.in_rootfs("/kosdata/sub/b"), "kos-copied-b\n")?;
    b.add_mount(
        json!({"destination": "/kosdata", "type": "tmpfs", "source": "tmpfs",
                       "options": ["tmpcopyup", "mode=755"]}),
    );
    let out = ctx.run_ok(&b)?;
    ensure!(
        out.contains("kos-copied-a") && out.contains("kos-copied-b"),
        "tmpcopyup lost the files: {out:?}"
    );
    Ok(())
}

/// A bind mount onto /dev/null, which the runtime also creates, works as in runc.
fn bind_over_dev_null(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["sh", "-c", "echo x > /dev/null && echo kos-null-ok"])?;
    b.bind(Path::new("/dev/null"), "/dev/null", &[]);
    let out = ctx.run_ok(&b)?;
    ensure!(out.contains("kos-null-ok"), "output {out:?}");
    Ok(())
}

/// A device listed in linux.devices and also bind mounted from the host at that path.
fn bind_over_listed_device(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&["sh", "-c", "test -c /dev/kosdev && echo kos-dev-ok"])?;
    b.config["linux"]["devices"] = json!([
        {"path": "/dev/kosdev", "type": "c", "major": 1, "minor": 5, "fileMode": 438, "uid": 0, "gid": 0}
    ]);
    b.bind(Path::new("/dev/zero"), "/dev/kosdev", &[]);
    let out = ctx.run_ok(&b)?;
    ensure!(out.contains("kos-dev-ok"), "output {out:?}");
    Ok(())
}

/// root.readonly without /proc among the mounts: the remount must not need /proc.
fn readonly_root_without_proc(ctx: &Ctx) -> Result<()> {
    let mut b = ctx.bundle(&[
        "sh",
        "-c",
        "touch /kos-rw 2>/dev/null && echo writable || echo readonly",
    ])?;
    b.config["root"]["readonly"] = json!(true);
    if let Some(m) = b.config["mounts"].as_array_mut() {
        m.retain(|m| m["destination"] != "/proc");
    }
    if let Some(l) = b.config["linux"].as_object_mut() {
        l.remove("maskedPaths");
        l.remove("readonlyPaths");
    }
    let out = ctx.run_ok(&b)?;
    ensure!(out.contains("readonly"), "output {out:?}");
    Ok(())
}

fn without_mount_ns(ctx: &Ctx, args: &[&str]) -> Result<crate::harness::bundle::Bundle> {
    let mut b = ctx.bundle(args)?;
    b.remove_namespace("mount");
    // Only mounts that make sense in the host's namespace: proc and a tmpfs.
    b.config["mounts"] = json!([
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "mode=1777"]}
    ]);
    if let Some(l) = b.config["linux"].as_object_mut() {
        l.remove("maskedPaths");
        l.remove("readonlyPaths");
    }
    Ok(b)
}

/// Without a mount namespace the config's mounts are still made (runc does), and they
/// live in the host's namespace, so delete removes them.
fn no_mount_ns(ctx: &Ctx) -> Result<()> {
    let b = without_mount_ns(
        ctx,
        &[
            "sh",
            "-c",
            "test -e /proc/self/status && echo kos-has-proc; sleep 1000",
        ],
    )?;
    let mut c = ctx.create(&b)?;
    c.start_ok()?;
    c.wait_output("kos-has-proc", Duration::from_secs(10))?;
    let rootfs = b.rootfs();
    ensure!(
        !mounts_under(&rootfs).is_empty(),
        "no mount under the rootfs in the host's namespace"
    );
    c.delete_force()?.expect_success()?;
    let left = mounts_under(&rootfs);
    ensure!(left.is_empty(), "delete left mounts behind: {left:?}");
    Ok(())
}

/// Without a mount namespace and with close_range denied by seccomp, the runtime still
/// closes its descriptors (no /proc needed inside the root) and the program runs.
fn no_mount_ns_close_range_denied(ctx: &Ctx) -> Result<()> {
    let mut b = without_mount_ns(ctx, &["sh", "-c", "ls /proc/$$/fd; :"])?;
    b.config["linux"]["seccomp"] = seccomp_profile(json!([
        {"names": ["close_range"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
    ]));
    let (out, _c) = ctx.run(&b)?;
    out.expect_success()?;
    let mut fds: Vec<i32> = out
        .stdout
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    fds.sort();
    ensure!(
        fds == [0, 1, 2],
        "container holds fds {fds:?}, want only stdio"
    );
    Ok(())
}
