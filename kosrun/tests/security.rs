//! Confinement seen from inside real containers run by kosrun: capability sets, capabilities
//! used and refused, seccomp actions and argument conditions, the NOTIFY hand-over to an
//! agent at listenerPath, Landlock through the `org.kos.landlock` annotation, and bad input
//! refused before the container exists.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod security_support;
mod support;

use std::io::{IoSliceMut, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use serde_json::{json, Value};

use security_support::{cap_mask, caps_all_sets, kosrun, status_field, Sandbox};

/// A profile allowing everything but `rules`.
fn allow_but(rules: Value) -> Value {
    json!({ "defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules })
}

fn mask_of(status: &str, key: &str) -> u64 {
    let v = status_field(status, key).unwrap_or_else(|| panic!("{key} missing in:\n{status}"));
    u64::from_str_radix(v, 16).unwrap()
}

#[test]
fn status_shows_the_configured_capabilities_nnp_and_filter() {
    let caps = ["CAP_NET_BIND_SERVICE", "CAP_KILL"];
    let mut sb = Sandbox::new(&["cat", "/proc/self/status"]);
    sb.config["process"]["capabilities"] = caps_all_sets(&caps);
    sb.config["process"]["noNewPrivileges"] = json!(true);
    sb.config["linux"]["seccomp"] = allow_but(json!([
        {"names": ["kexec_load"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}
    ]));
    let r = sb.run();
    assert_eq!(r.code(), 0, "{r:?}");
    let want = cap_mask(&caps);
    for key in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(
            mask_of(&r.stdout, key),
            want,
            "{key} in the container, want {want:#x}"
        );
    }
    assert_eq!(status_field(&r.stdout, "NoNewPrivs"), Some("1"));
    assert_eq!(status_field(&r.stdout, "Seccomp"), Some("2"));
    assert_eq!(status_field(&r.stdout, "Seccomp_filters"), Some("1"));
}

#[test]
fn status_of_an_unprivileged_user_with_ambient_capabilities() {
    let mut sb = Sandbox::new(&["cat", "/proc/self/status"]);
    sb.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    sb.config["process"]["capabilities"] = caps_all_sets(&["CAP_NET_BIND_SERVICE"]);
    sb.config["process"]["noNewPrivileges"] = json!(false);
    sb.config["linux"]
        .as_object_mut()
        .unwrap()
        .remove("seccomp");
    let r = sb.run();
    assert_eq!(r.code(), 0, "{r:?}");
    let want = cap_mask(&["CAP_NET_BIND_SERVICE"]);
    for key in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
        assert_eq!(mask_of(&r.stdout, key), want, "{key}");
    }
    assert_eq!(status_field(&r.stdout, "NoNewPrivs"), Some("0"));
    assert_eq!(status_field(&r.stdout, "Seccomp"), Some("0"));
    let uid = status_field(&r.stdout, "Uid").unwrap();
    assert!(uid.split_whitespace().all(|u| u == "1000"), "Uid {uid}");
}

#[test]
fn chown_needs_cap_chown() {
    let script = "touch /tmp/f && chown 1:1 /tmp/f 2>&1; echo rc=$?; stat -c %u:%g /tmp/f";
    let mut with = Sandbox::sh(script);
    with.config["process"]["capabilities"] = caps_all_sets(&["CAP_CHOWN"]);
    let r = with.run();
    assert_eq!(r.code(), 0, "{r:?}");
    assert!(r.stdout.contains("rc=0\n1:1"), "with CAP_CHOWN: {r:?}");

    let mut without = Sandbox::sh(script);
    without.config["process"]["capabilities"] = caps_all_sets(&["CAP_KILL"]);
    let r = without.run();
    assert_eq!(r.code(), 0, "{r:?}");
    assert!(
        r.stdout.contains("Operation not permitted") && r.stdout.contains("rc=1\n0:0"),
        "without CAP_CHOWN: {r:?}"
    );
}

/// A listener on port 80 that gives up after a second: "rc=1" and a bind error when the
/// port is refused, killed by the timeout (rc 143) when the bind worked.
const BIND_80: &str = "timeout 1 nc -l -p 80 2>&1; echo rc=$?";

#[test]
fn port_80_for_a_non_root_user_needs_ambient_net_bind_service() {
    let mut with = Sandbox::sh(BIND_80);
    with.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    with.config["process"]["capabilities"] = caps_all_sets(&["CAP_NET_BIND_SERVICE"]);
    let r = with.run();
    assert_eq!(r.code(), 0, "{r:?}");
    assert!(
        !r.stdout.contains("bind") && !r.stdout.contains("rc=1\n"),
        "uid 1000 with ambient CAP_NET_BIND_SERVICE: {r:?}"
    );

    let mut without = Sandbox::sh(BIND_80);
    without.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    without.config["process"]["capabilities"] = caps_all_sets(&["CAP_KILL"]);
    let r = without.run();
    assert_eq!(r.code(), 0, "{r:?}");
    assert!(
        r.stdout.contains("Permission denied") && r.stdout.contains("rc=1\n"),
        "uid 1000 without CAP_NET_BIND_SERVICE: {r:?}"
    );
}

fn mkdir_with_errno(errno: u32) -> String {
    let mut sb = Sandbox::sh("mkdir /tmp/x 2>&1; echo rc=$?; test -d /tmp/x && echo made; true");
    sb.config["linux"]["seccomp"] = allow_but(json!([
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno}
    ]));
    let r = sb.run();
    assert_eq!(r.code(), 0, "{r:?}");
    r.stdout
}

#[test]
fn seccomp_errno_returns_the_configured_error() {
    let eperm = mkdir_with_errno(1);
    assert!(
        eperm.contains("Operation not permitted")
            && eperm.contains("rc=1")
            && !eperm.contains("made"),
        "errnoRet 1: {eperm}"
    );
    let eacces = mkdir_with_errno(13);
    assert!(
        eacces.contains("Permission denied") && eacces.contains("rc=1") && !eacces.contains("made"),
        "errnoRet 13: {eacces}"
    );
}

/// `linux32` calls personality(PER_LINUX32 = 8), `linux64` personality(PER_LINUX = 0).
const PERSONALITY: &str = "linux32 true 2>&1; echo linux32=$?; linux64 true 2>&1; echo linux64=$?";

#[test]
fn seccomp_argument_conditions() {
    for cond in [
        json!({"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}),
        json!({"index": 0, "value": 0xff, "valueTwo": 8, "op": "SCMP_CMP_MASKED_EQ"}),
    ] {
        let mut sb = Sandbox::sh(PERSONALITY);
        sb.config["linux"]["seccomp"] = allow_but(json!([
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1, "args": [cond]}
        ]));
        let r = sb.run();
        assert_eq!(r.code(), 0, "{r:?}");
        assert!(
            r.stdout.contains("Operation not permitted")
                && r.stdout.contains("linux32=1")
                && r.stdout.contains("linux64=0"),
            "condition {cond}: {r:?}"
        );
    }
    // Without the rule both work: the refusal above came from the condition.
    let mut sb = Sandbox::sh(PERSONALITY);
    sb.config["linux"]["seccomp"] = allow_but(json!([]));
    let r = sb.run();
    assert!(
        r.stdout.contains("linux32=0") && r.stdout.contains("linux64=0"),
        "{r:?}"
    );
}

/// `args` run under a profile with `action` on sync(2). (Not uname(2): static busybox calls it
/// at startup, so every process would hit the rule before the applet runs.)
fn sync_under(action: &str, args: &[&str]) -> security_support::Ran {
    let mut sb = Sandbox::new(args);
    sb.config["linux"]["seccomp"] = allow_but(json!([{"names": ["sync"], "action": action}]));
    sb.run()
}

#[test]
fn seccomp_killing_actions_end_the_process_with_sigsys() {
    let sigsys = 128 + libc::SIGSYS;
    for action in [
        "SCMP_ACT_TRAP",
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
    ] {
        // The container's process itself makes the call: kosrun run reports the signal.
        let r = sync_under(action, &["sync"]);
        assert_eq!(
            r.code(),
            sigsys,
            "{action}: exit status of kosrun run: {r:?}"
        );
        // A child of the shell makes it: the shell sees the signal and goes on.
        let r = sync_under(action, &["sh", "-c", "sync; echo rc=$?"]);
        assert_eq!(r.code(), 0, "{action}: {r:?}");
        assert_eq!(r.stdout, format!("rc={sigsys}\n"), "{action}: {r:?}");
    }
}

#[test]
fn seccomp_log_lets_the_call_through() {
    let r = sync_under("SCMP_ACT_LOG", &["sh", "-c", "sync; echo rc=$?"]);
    assert_eq!((r.code(), r.stdout.as_str()), (0, "rc=0\n"), "{r:?}");
    let r = sync_under("SCMP_ACT_LOG", &["sync"]);
    assert_eq!(r.code(), 0, "{r:?}");
}

// The kernel's seccomp_notif / seccomp_notif_resp and their ioctls.
const SECCOMP_IOCTL_NOTIF_RECV: libc::c_ulong = 0xc050_2100;
const SECCOMP_IOCTL_NOTIF_SEND: libc::c_ulong = 0xc018_2101;

#[repr(C)]
#[derive(Default)]
struct SeccompData {
    nr: i32,
    arch: u32,
    ip: u64,
    args: [u64; 6],
}

#[repr(C)]
#[derive(Default)]
struct Notif {
    id: u64,
    pid: u32,
    flags: u32,
    data: SeccompData,
}

#[repr(C)]
struct NotifResp {
    id: u64,
    val: i64,
    error: i32,
    flags: u32,
}

/// What the agent saw: the container process state and the syscalls it answered.
struct AgentReport {
    state: Value,
    fd_count: usize,
    answered: Vec<i32>,
}

/// Accept one connection on `listener`, take the state and the seccomp fd, and answer every
/// notification with `error` (negative errno, or 0 for success with value 0) until the
/// filter's processes are gone. Everything is bounded by `deadline`.
fn agent(listener: UnixListener, error: i32, deadline: Instant) -> Result<AgentReport, String> {
    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let conn = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    return Err("no connection from the runtime".into());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(format!("accept: {e}")),
        }
    };
    conn.set_nonblocking(false).map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 65536];
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let (n, fds) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            conn.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| format!("recvmsg: {e}"))?;
        let mut fds = Vec::new();
        for c in msg.cmsgs().map_err(|e| e.to_string())? {
            if let ControlMessageOwned::ScmRights(f) = c {
                fds.extend(f);
            }
        }
        (msg.bytes, fds)
    };
    // SAFETY: SCM_RIGHTS gave us these descriptors; each is owned once here.
    let fds: Vec<OwnedFd> = fds
        .into_iter()
        .map(|f| unsafe { OwnedFd::from_raw_fd(f) })
        .collect();
    let mut payload = buf[..n].to_vec();
    (&conn)
        .read_to_end(&mut payload)
        .map_err(|e| format!("read state: {e}"))?;
    let state: Value = serde_json::from_slice(&payload).map_err(|e| format!("state JSON: {e}"))?;
    let listener_fd = fds.first().ok_or("no descriptor in SCM_RIGHTS")?;
    let mut answered = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "still notified at the deadline; answered {answered:?}"
            ));
        }
        let mut pfd = libc::pollfd {
            fd: listener_fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut pfd, 1, left.as_millis().min(1000) as i32) };
        if r < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(format!("poll: {e}"));
        }
        if pfd.revents & libc::POLLIN != 0 {
            let mut req = Notif::default();
            // SAFETY: req is a zeroed seccomp_notif the kernel fills in.
            let r = unsafe {
                libc::ioctl(
                    listener_fd.as_raw_fd(),
                    SECCOMP_IOCTL_NOTIF_RECV as _,
                    &mut req,
                )
            };
            if r != 0 {
                // ENOENT: the caller went away between poll and recv.
                continue;
            }
            let resp = NotifResp {
                id: req.id,
                val: 0,
                error,
                flags: 0,
            };
            // SAFETY: resp is a valid seccomp_notif_resp.
            let r = unsafe {
                libc::ioctl(
                    listener_fd.as_raw_fd(),
                    SECCOMP_IOCTL_NOTIF_SEND as _,
                    &resp,
                )
            };
            if r == 0 {
                answered.push(req.data.nr);
            }
        } else if pfd.revents & (libc::POLLHUP | libc::POLLERR) != 0 {
            break;
        }
    }
    Ok(AgentReport {
        state,
        fd_count: fds.len(),
        answered,
    })
}

/// `mkdir /tmp/x` in a container whose mkdir calls go to the test's agent, which answers
/// with `error`. Returns the container's output and what the agent saw.
fn mkdir_answered_by_agent(error: i32) -> (String, AgentReport, String) {
    let mut sb = Sandbox::sh("mkdir /tmp/x 2>&1; echo rc=$?; test -d /tmp/x && echo made; true");
    let sock = sb.base.join("agent.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    sb.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock.to_str().unwrap(),
        "listenerMetadata": "kos-test",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}],
    });
    let deadline = Instant::now() + Duration::from_secs(25);
    let agent = std::thread::spawn(move || agent(listener, error, deadline));
    let r = sb.run();
    let report = agent
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("agent: {e}; run: {r:?}"));
    assert_eq!(r.code(), 0, "{r:?}");
    (r.stdout, report, sb.id.clone())
}

fn is_mkdir(nr: i32) -> bool {
    i64::from(nr) == libc::SYS_mkdir || i64::from(nr) == libc::SYS_mkdirat
}

#[test]
fn seccomp_notify_agent_answers_for_the_container() {
    let (out, report, id) = mkdir_answered_by_agent(-libc::EACCES);
    assert!(
        out.contains("Permission denied") && out.contains("rc=1") && !out.contains("made"),
        "agent answered EACCES: {out}"
    );
    assert!(!report.answered.is_empty() && report.answered.iter().all(|&n| is_mkdir(n)));
    let st = &report.state;
    assert!(
        st["ociVersion"].as_str().is_some_and(|v| !v.is_empty()),
        "{st}"
    );
    assert_eq!(st["fds"], json!(["seccompFd"]), "{st}");
    assert_eq!(report.fd_count, 1, "{st}");
    assert!(st["pid"].as_i64().is_some_and(|p| p > 0), "{st}");
    assert_eq!(st["metadata"], json!("kos-test"), "{st}");
    assert_eq!(st["state"]["id"], json!(id), "{st}");
    assert_eq!(st["state"]["pid"], st["pid"], "{st}");
    // The fd is handed over while create is still running.
    assert_eq!(st["state"]["status"], json!("creating"), "{st}");

    // Success without doing it: mkdir reports 0, yet nothing was made.
    let (out, report, _) = mkdir_answered_by_agent(0);
    assert!(
        out.contains("rc=0") && !out.contains("made"),
        "agent answered success: {out}"
    );
    assert!(!report.answered.is_empty());
}

/// The Landlock ABI kosrun reports (0: no Landlock).
fn landlock_abi() -> u32 {
    let out = std::process::Command::new(kosrun())
        .arg("features")
        .output()
        .unwrap();
    let f: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    f["annotations"]["org.kos.landlock.abi"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

const LANDLOCK_RULES: &str = r#"{"fs":[{"path":"/","access":["read","execute"]},{"path":"/tmp","access":["read","write","execute"]}],"net":{"bind":[8080],"connect":[53]}}"#;

#[test]
fn landlock_annotation_confines_files_and_ports() {
    let abi = landlock_abi();
    if abi < 4 {
        support::skip(&format!("Landlock ABI {abi}, net rules need 4"));
        return;
    }
    let mut sb = Sandbox::sh(
        "{ echo hi > /tmp/x; } 2>&1 && echo tmp=ok; \
         { echo hi > /etc/x; } 2>&1; echo etc=$?; \
         { echo hi > /root/x; } 2>&1; echo root=$?; \
         timeout 1 nc -l -p 8081 2>&1; echo bind8081=$?; \
         timeout 1 nc -l -p 8080 2>&1; echo bind8080=$?; \
         nc 127.0.0.1 9 </dev/null 2>&1; echo conn9=$?; \
         nc 127.0.0.1 53 </dev/null 2>&1; echo conn53=$?",
    );
    sb.config["process"]["noNewPrivileges"] = json!(true);
    sb.config["annotations"] = json!({"org.kos.landlock": LANDLOCK_RULES});
    let r = sb.run();
    assert_eq!(r.code(), 0, "{r:?}");
    let o = &r.stdout;
    let line_before = |marker: &str| -> String {
        let i = o
            .find(marker)
            .unwrap_or_else(|| panic!("{marker} missing: {o}"));
        o[..i].lines().last().unwrap_or("").to_string()
    };
    assert!(o.contains("tmp=ok"), "/tmp writable: {o}");
    assert!(o.contains("etc=1") || o.contains("etc=2"), "{o}");
    assert!(line_before("etc=").contains("Permission denied"), "{o}");
    assert!(line_before("root=").contains("Permission denied"), "{o}");
    assert!(
        line_before("bind8081=").contains("Permission denied") && o.contains("bind8081=1\n"),
        "bind 8081 refused: {o}"
    );
    assert!(
        !line_before("bind8080=").contains("bind") && o.contains("bind8080=143\n"),
        "bind 8080 allowed: {o}"
    );
    assert!(
        line_before("conn9=").contains("Permission denied"),
        "connect 9 refused: {o}"
    );
    assert!(
        !line_before("conn53=").contains("Permission denied"),
        "connect 53 allowed by Landlock (refused by nobody listening): {o}"
    );
}

/// `create` must fail with one line naming `needle`, leaving no container and no cgroup.
fn refused_before_create(sb: &Sandbox, needle: &str) {
    let r = sb.create();
    assert_ne!(r.code(), 0, "create accepted bad input: {r:?}");
    let lines: Vec<&str> = r.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one error line: {:?}", r.stderr);
    eprintln!("refused: {}", lines[0]);
    assert!(
        lines[0].contains(needle),
        "error names {needle}: {}",
        lines[0]
    );
    assert!(sb.listed().is_empty(), "kosrun list: {:?}", sb.listed());
    assert!(
        sb.leftover_cgroups().is_empty(),
        "cgroups left: {:?}",
        sb.leftover_cgroups()
    );
}

#[test]
fn landlock_path_missing_from_rootfs_is_refused() {
    if landlock_abi() == 0 {
        support::skip("Landlock is not enabled in this kernel");
        return;
    }
    let mut sb = Sandbox::sh("true");
    sb.config["process"]["noNewPrivileges"] = json!(true);
    sb.config["annotations"] = json!({
        "org.kos.landlock": r#"{"fs":[{"path":"/kos-missing","access":["read"]}]}"#
    });
    refused_before_create(&sb, "/kos-missing");
}

#[test]
fn bad_confinement_input_is_refused_before_the_container_exists() {
    type Tweak = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, Tweak, &str)> = vec![
        (
            "unknown seccomp action",
            Box::new(|c| {
                c["linux"]["seccomp"] =
                    allow_but(json!([{"names": ["mkdir"], "action": "SCMP_ACT_BOGUS"}]))
            }),
            "SCMP_ACT_BOGUS",
        ),
        (
            "argument index 6",
            Box::new(|c| {
                c["linux"]["seccomp"] = allow_but(json!([{
                    "names": ["personality"], "action": "SCMP_ACT_ERRNO",
                    "args": [{"index": 6, "value": 0, "op": "SCMP_CMP_EQ"}]
                }]))
            }),
            "index",
        ),
        (
            "unknown architecture",
            Box::new(|c| {
                c["linux"]["seccomp"] = json!({
                    "defaultAction": "SCMP_ACT_ALLOW",
                    "architectures": ["SCMP_ARCH_KOSBOGUS"],
                })
            }),
            "SCMP_ARCH_KOSBOGUS",
        ),
        (
            "unknown capability",
            Box::new(|c| c["process"]["capabilities"]["bounding"] = json!(["CAP_KOS_BOGUS"])),
            "CAP_KOS_BOGUS",
        ),
        (
            "malformed Landlock JSON",
            Box::new(|c| c["annotations"] = json!({"org.kos.landlock": "{\"fs\": [{\"path\": "})),
            "org.kos.landlock",
        ),
    ];
    for (what, tweak, needle) in cases {
        eprintln!("case: {what}");
        let mut sb = Sandbox::sh("true");
        tweak(&mut sb.config);
        refused_before_create(&sb, needle);
    }
}

/// The leftover check above looks for the cgroup by the container's id: make sure that is
/// where a container's cgroup really is, and that a finished `run` removes it.
#[test]
fn leftover_check_looks_where_the_container_cgroup_is() {
    let sb = Sandbox::sh("cat /proc/self/cgroup");
    let r = sb.run();
    assert_eq!(r.code(), 0, "{r:?}");
    let pids = r
        .stdout
        .lines()
        .find(|l| {
            l.split(':')
                .nth(1)
                .is_some_and(|c| c.split(',').any(|c| c == "pids"))
        })
        .unwrap_or_else(|| panic!("no pids line: {}", r.stdout));
    assert!(pids.ends_with(&format!(":/{}", sb.id)), "{pids}");
    assert!(
        sb.leftover_cgroups().is_empty(),
        "{:?}",
        sb.leftover_cgroups()
    );
    assert!(sb.listed().is_empty());
}
