//! Seccomp filters installed in real (forked) processes.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{IoSliceMut, Read};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;

use common::{in_child, say, set_no_new_privs, status_field, unique, Cleanup, Outcome};
use kos_security::seccomp::{self, ContainerProcessState};
use nix::sys::signal::Signal;
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

fn compile(json: &str) -> seccomp::SeccompProgram {
    seccomp::compile(&seccomp::parse_profile(json).unwrap()).unwrap()
}

#[test]
fn errno_action_and_proc_status() {
    let prog = compile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW",
            "syscalls":[{"names":["uname"],"action":"SCMP_ACT_ERRNO","errnoRet":99},
                        {"names":["mkdirat","mkdir"],"action":"SCMP_ACT_ERRNO"}]}"#,
    );
    let report = in_child(|out| {
        set_no_new_privs();
        if let Err(e) = prog.install() {
            say(out, format!("install: {e}"));
            return 1;
        }
        let mut u: libc::utsname = unsafe { std::mem::zeroed() };
        let r = unsafe { libc::uname(&mut u) };
        say(
            out,
            format!(
                "uname {r} {}",
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
            ),
        );
        let e = std::fs::create_dir("/tmp/kos-never-made").unwrap_err();
        say(out, format!("mkdir {}", e.raw_os_error().unwrap_or(0)));
        say(out, format!("Seccomp {}", status_field("Seccomp")));
        say(
            out,
            format!("Seccomp_filters {}", status_field("Seccomp_filters")),
        );
        say(out, format!("NoNewPrivs {}", status_field("NoNewPrivs")));
        0
    })
    .ok();
    assert!(report.contains("uname -1 99\n"), "{report}");
    assert!(
        report.contains(&format!("mkdir {}\n", libc::EPERM)),
        "{report}"
    );
    assert!(report.contains("Seccomp 2\n"), "{report}");
    assert!(report.contains("Seccomp_filters 1\n"), "{report}");
    assert!(report.contains("NoNewPrivs 1\n"), "{report}");
}

#[test]
fn trap_action_raises_sigsys() {
    let prog = compile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["getppid"],"action":"SCMP_ACT_TRAP"}]}"#,
    );
    let out = in_child(|out| {
        set_no_new_privs();
        prog.install().unwrap();
        say(out, "installed");
        unsafe { libc::getppid() };
        say(out, "survived");
        0
    });
    match out {
        Outcome::Signaled(Signal::SIGSYS, r) => assert_eq!(r, "installed\n"),
        other => panic!("expected SIGSYS, got {other:?}"),
    }
}

#[test]
fn kill_actions_kill() {
    for action in [
        "SCMP_ACT_KILL_PROCESS",
        "SCMP_ACT_KILL_THREAD",
        "SCMP_ACT_KILL",
    ] {
        let prog = compile(&format!(
            r#"{{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{{"names":["getppid"],"action":"{action}"}}]}}"#
        ));
        let out = in_child(|out| {
            set_no_new_privs();
            prog.install().unwrap();
            say(out, "installed");
            unsafe { libc::getppid() };
            say(out, "survived");
            0
        });
        match out {
            Outcome::Signaled(Signal::SIGSYS, r) => assert_eq!(r, "installed\n", "{action}"),
            other => panic!("{action}: expected death by SIGSYS, got {other:?}"),
        }
    }
}

#[test]
fn argument_conditions_in_kernel() {
    // socket(AF_INET6, ...) refused, other families and everything else allowed; personality
    // only PER_LINUX.
    let prog = compile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[
            {"names":["socket"],"action":"SCMP_ACT_ERRNO","errnoRet":97,
             "args":[{"index":0,"value":10,"op":"SCMP_CMP_EQ"}]},
            {"names":["personality"],"action":"SCMP_ACT_ERRNO","errnoRet":1,
             "args":[{"index":0,"value":4294967295,"valueTwo":4,"op":"SCMP_CMP_MASKED_EQ"}]}]}"#,
    );
    let report = in_child(|out| {
        set_no_new_privs();
        prog.install().unwrap();
        let v6 = unsafe { libc::socket(libc::AF_INET6, libc::SOCK_STREAM, 0) };
        let e6 = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        let v4 = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        say(out, format!("v6 {v6} {e6} v4ok {}", v4 >= 0));
        let p = unsafe { libc::personality(4) };
        say(out, format!("pers4 {p}"));
        let q = unsafe { libc::personality(0xffff_ffff) };
        say(out, format!("query_ok {}", q >= 0));
        0
    })
    .ok();
    assert!(report.contains("v6 -1 97 v4ok true"), "{report}");
    assert!(report.contains("pers4 -1"), "{report}");
    assert!(report.contains("query_ok true"), "{report}");
}

#[test]
fn default_profile_in_kernel() {
    let prog = seccomp::compile(&seccomp::default_profile()).unwrap();
    let report = in_child(|out| {
        set_no_new_privs();
        prog.install().unwrap();
        let r = unsafe { libc::unshare(libc::CLONE_NEWUSER) };
        say(
            out,
            format!(
                "unshare {r} {}",
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
            ),
        );
        // fork goes through clone without namespace flags: allowed.
        match unsafe { libc::fork() } {
            0 => unsafe { libc::_exit(7) },
            pid if pid > 0 => {
                let mut st = 0;
                unsafe { libc::waitpid(pid, &mut st, 0) };
                say(out, format!("fork child exit {}", libc::WEXITSTATUS(st)));
            }
            _ => say(out, "fork failed"),
        }
        let ok = std::fs::read_to_string("/proc/self/status").is_ok();
        say(out, format!("read ok {ok}"));
        0
    })
    .ok();
    assert!(
        report.contains(&format!("unshare -1 {}", libc::EPERM)),
        "{report}"
    );
    assert!(report.contains("fork child exit 7"), "{report}");
    assert!(report.contains("read ok true"), "{report}");
}

/// i386 getpid through `int 0x80` from a 64-bit process.
#[cfg(target_arch = "x86_64")]
fn i386_getpid() -> i64 {
    let mut ax: i64 = 20;
    unsafe {
        std::arch::asm!("int 0x80", inout("rax") ax, options(nostack));
    }
    ax
}

#[cfg(target_arch = "x86_64")]
#[test]
fn foreign_abi_denied_unless_listed() {
    // Does this kernel run i386 syscalls at all?
    let probe = in_child(|out| {
        say(
            out,
            format!("{}", i386_getpid() == i64::from(std::process::id())),
        );
        0
    });
    if !matches!(&probe, Outcome::Exited(0, r) if r == "true\n") {
        common::skip(&format!("the kernel has no IA-32 emulation ({probe:?})"));
        return;
    }
    let native_only = compile(r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#);
    let out = in_child(|out| {
        set_no_new_privs();
        native_only.install().unwrap();
        say(out, "installed");
        say(out, format!("{}", i386_getpid()));
        0
    });
    assert!(
        matches!(&out, Outcome::Signaled(Signal::SIGSYS, r) if r == "installed\n"),
        "{out:?}"
    );
    let with_x86 = compile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86"],
            "syscalls":[{"names":["getuid"],"action":"SCMP_ACT_ERRNO"}]}"#,
    );
    let report = in_child(|out| {
        set_no_new_privs();
        with_x86.install().unwrap();
        say(
            out,
            format!("{}", i386_getpid() == i64::from(std::process::id())),
        );
        0
    })
    .ok();
    assert_eq!(report, "true\n");
}

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

#[test]
fn notify_listener_receives_the_call() {
    let sock_path = unique("notify.sock");
    let _cleanup = Cleanup(sock_path.clone());
    let listener = UnixListener::bind(&sock_path).unwrap();
    let json = format!(
        r#"{{"defaultAction":"SCMP_ACT_ALLOW","listenerPath":"{}","listenerMetadata":"kos-meta",
            "flags":["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV","SECCOMP_FILTER_FLAG_TSYNC"],
            "syscalls":[{{"names":["getppid"],"action":"SCMP_ACT_NOTIFY"}}]}}"#,
        sock_path.display()
    );
    let prog = compile(&json);
    assert!(prog.has_notify());
    // The agent: accept the runtime's connection, take the fd, answer one notification.
    let agent = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 65536];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let (n, fd) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = recvmsg::<()>(
                conn.as_raw_fd(),
                &mut iov,
                Some(&mut cmsg),
                MsgFlags::empty(),
            )
            .unwrap();
            let mut fd = None;
            for c in msg.cmsgs().unwrap() {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    fd = fds.first().copied();
                }
            }
            (msg.bytes, fd.unwrap())
        };
        let mut rest = Vec::new();
        (&conn).read_to_end(&mut rest).unwrap();
        let mut payload = buf[..n].to_vec();
        payload.extend_from_slice(&rest);
        let state: ContainerProcessState = serde_json::from_slice(&payload).unwrap();
        let listener_fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut req = Notif::default();
        let r = unsafe { libc::ioctl(listener_fd.as_raw_fd(), SECCOMP_IOCTL_NOTIF_RECV, &mut req) };
        assert_eq!(r, 0, "NOTIF_RECV: {}", std::io::Error::last_os_error());
        let resp = NotifResp {
            id: req.id,
            val: 4242,
            error: 0,
            flags: 0,
        };
        let r = unsafe { libc::ioctl(listener_fd.as_raw_fd(), SECCOMP_IOCTL_NOTIF_SEND, &resp) };
        assert_eq!(r, 0, "NOTIF_SEND: {}", std::io::Error::last_os_error());
        (state, req.data.nr, req.pid)
    });
    let report = in_child(|out| {
        set_no_new_privs();
        let fd = prog.install().unwrap().expect("listener fd");
        // In kosrun the init hands the fd to the parent; here the child plays both roles.
        let mut st = oci_spec::runtime::State::default();
        st.set_id("kos-notify-test".into());
        st.set_pid(Some(std::process::id() as i32));
        st.set_version("1.2.0".into());
        prog.send_listener(fd.as_fd(), &st).unwrap();
        drop(fd);
        let v = unsafe { libc::getppid() };
        say(out, format!("getppid {v}"));
        0
    })
    .ok();
    let (state, nr, pid) = agent.join().unwrap();
    assert_eq!(report, "getppid 4242\n");
    assert_eq!(nr, libc::SYS_getppid as i32);
    assert_eq!(state.fds, vec!["seccompFd".to_string()]);
    assert_eq!(state.metadata.as_deref(), Some("kos-meta"));
    assert_eq!(state.state.id(), "kos-notify-test");
    assert_eq!(state.pid as u32, pid, "state pid is the notifying process");
}

#[test]
fn flags_are_accepted_by_the_kernel() {
    let prog = compile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW",
            "flags":["SECCOMP_FILTER_FLAG_LOG","SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
            "syscalls":[{"names":["getppid"],"action":"SCMP_ACT_LOG"}]}"#,
    );
    let report = in_child(|out| {
        set_no_new_privs();
        match prog.install() {
            Ok(_) => say(out, format!("ppid_ok {}", unsafe { libc::getppid() } > 0)),
            Err(e) => say(out, format!("err {e}")),
        }
        0
    })
    .ok();
    assert_eq!(report, "ppid_ok true\n");
}

#[test]
fn malformed_profiles_are_clear_errors() {
    for (json, needle) in [
        (r#"{"defaultAction":"SCMP_ACT_BOGUS"}"#, "SCMP_ACT_BOGUS"),
        (
            r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":1,"op":"SCMP_CMP_FOO"}]}]}"#,
            "SCMP_CMP_FOO",
        ),
        (
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_Z80"]}"#,
            "SCMP_ARCH_Z80",
        ),
        (r#"{"defaultAction":"#, "EOF"),
    ] {
        let e = seccomp::parse_profile(json).unwrap_err();
        assert!(e.to_string().contains(needle), "{e} should name {needle}");
    }
    let p = seccomp::parse_profile(
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["getppid"],"action":"SCMP_ACT_NOTIFY"}]}"#,
    )
    .unwrap();
    let e = seccomp::compile(&p).unwrap_err();
    assert!(e.to_string().contains("listenerPath"), "{e}");
}

/// Syscalls the child needs after installing the sweep's filter (reporting, allocating: a
/// thread's malloc arena grows with mprotect; exiting); everything else gets its own errno.
#[cfg(target_arch = "x86_64")]
const SWEEP_ALLOWED: &[&str] = &[
    "write",
    "exit",
    "exit_group",
    "mmap",
    "mprotect",
    "munmap",
    "mremap",
    "brk",
    "madvise",
    "futex",
    "rt_sigprocmask",
    "rt_sigreturn",
    "sigaltstack",
];

/// The filter as the kernel runs it (checked, converted, JIT-compiled): one errno per syscall
/// name, so each x86-64 and x32 number is its own range of the compiled search and the far
/// halves need `BPF_JA` hops; an argument rule in front of one of them. Every number
/// 0..=600 of both ABIs is called with zero arguments and must fail with its own errno (the
/// filter answers before the kernel runs anything) or the default's.
#[cfg(target_arch = "x86_64")]
#[test]
fn every_syscall_number_gets_its_own_errno_in_kernel() {
    use std::collections::BTreeMap;

    use kos_security::seccomp::Abi;

    const DEFAULT_ERRNO: i32 = 4000;
    const KILL_HIGH_SIGNAL_ERRNO: i32 = 3000;
    const X32_BIT: i64 = 0x4000_0000;
    let names: Vec<&str> = syscalls::x86_64::Sysno::iter()
        .map(|s| s.name())
        .filter(|n| !SWEEP_ALLOWED.contains(n))
        .collect();
    let errno_of = |i: usize| 100 + i as i32;
    let mut rules = vec![serde_json::json!({
        "names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": KILL_HIGH_SIGNAL_ERRNO,
        "args": [{"index": 1, "value": 0x1_0000_0000u64, "op": "SCMP_CMP_GE"}]
    })];
    rules.push(serde_json::json!({"names": SWEEP_ALLOWED, "action": "SCMP_ACT_ALLOW"}));
    for (i, n) in names.iter().enumerate() {
        rules.push(serde_json::json!({
            "names": [n], "action": "SCMP_ACT_ERRNO", "errnoRet": errno_of(i)
        }));
    }
    let profile = serde_json::json!({
        "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": DEFAULT_ERRNO,
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X32"], "syscalls": rules
    });
    let prog = compile(&profile.to_string());
    assert!(
        prog.filter().len() > 1000,
        "{} instructions",
        prog.filter().len()
    );

    // What each number must answer: the first rule naming it wins.
    let mut want: BTreeMap<i64, i32> = BTreeMap::new();
    let mut allowed = Vec::new();
    for abi in [Abi::X86_64, Abi::X32] {
        for n in SWEEP_ALLOWED {
            allowed.extend(abi.syscall_nr(n).map(i64::from));
        }
        for (i, n) in names.iter().enumerate() {
            if let Some(nr) = abi.syscall_nr(n) {
                let nr = i64::from(nr);
                if !allowed.contains(&nr) {
                    want.entry(nr).or_insert(errno_of(i));
                }
            }
        }
    }
    // The kernel passes x86-64's uretprobe and uprobe by seccomp (6.11+) and answers a call
    // from outside a uprobe trampoline with SIGILL: not called.
    let unfiltered: Vec<i64> = ["uretprobe", "uprobe"]
        .iter()
        .filter_map(|n| Abi::X86_64.syscall_nr(n).map(i64::from))
        .collect();
    let numbers: Vec<i64> = (0..=600)
        .chain((0..=600).map(|n| n | X32_BIT))
        .filter(|nr| !allowed.contains(nr) && !unfiltered.contains(nr))
        .collect();

    let report = in_child(|out| {
        let mut lines = String::with_capacity(64 * 1024);
        set_no_new_privs();
        prog.install().unwrap();
        for &nr in &numbers {
            // SAFETY: every number here is denied by the filter before the kernel runs it.
            let r = unsafe { libc::syscall(nr, 0, 0, 0, 0, 0, 0) };
            let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
            lines.push_str(&format!("{nr} {r} {e}\n"));
        }
        let kill = libc::SYS_kill;
        // SAFETY: as above; the argument rule answers.
        let r = unsafe { libc::syscall(kill, 0, 0x1_0000_0000_i64, 0, 0, 0, 0) };
        let e = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
        lines.push_str(&format!("kill-high {r} {e}\n"));
        say(out, lines);
        0
    })
    .ok();

    let mut seen = 0;
    for line in report.lines().filter(|l| !l.is_empty()) {
        let mut f = line.split(' ');
        let (what, r, e) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        if what == "kill-high" {
            assert_eq!((r, e), ("-1", KILL_HIGH_SIGNAL_ERRNO.to_string().as_str()));
            continue;
        }
        let nr: i64 = what.parse().unwrap();
        let expect = want.get(&nr).copied().unwrap_or(DEFAULT_ERRNO);
        assert_eq!(
            (r, e.parse::<i32>().unwrap()),
            ("-1", expect),
            "syscall {nr:#x}: got {r} errno {e}, want errno {expect}"
        );
        seen += 1;
    }
    assert_eq!(seen, numbers.len(), "{report}");
}
