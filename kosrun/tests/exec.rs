//! `kosrun exec` and terminals against the real kernel: namespaces, cgroup,
//! confinement, exit status, detach, tty modes and bad input.

mod exec_support;
mod support;

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use exec_support::*;
use serde_json::json;

const SLEEP: &[&str] = &["sleep", "100000"];

#[test]
fn exec_joins_namespaces_and_cgroup_and_forwards_status() {
    let c = Container::start(SLEEP, |cfg| cfg["hostname"] = json!("kos-exec-host"));
    let init = c.pid().to_string();
    let out = c.exec(
        &[],
        &[
            "sh",
            "-c",
            "hostname; echo pid=$$; for n in pid mnt net uts ipc; do readlink /proc/self/ns/$n; done; cat /proc/self/cgroup; exit 7",
        ],
    );
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(7), "{s} {}", text(&out.stderr));
    assert!(s.contains("kos-exec-host"), "{s}");
    // In the container's pid namespace the shell is a small pid, not a host one.
    let pid: i32 = s
        .lines()
        .find_map(|l| l.strip_prefix("pid="))
        .and_then(|p| p.parse().ok())
        .expect("pid line");
    assert!(
        pid > 1 && pid < 100,
        "pid {pid} is not in the container's namespace"
    );
    for ns in ["pid", "mnt", "net", "uts", "ipc"] {
        let want = ns_of(&init, ns);
        assert!(s.contains(&want), "{ns}: want {want} in {s}");
    }
    let init_cg = std::fs::read_to_string(format!("/proc/{init}/cgroup")).expect("init cgroup");
    let pids_line = init_cg
        .lines()
        .find(|l| l.contains(":pids:"))
        .expect("pids line");
    assert!(s.contains(pids_line), "cgroup {pids_line} not in {s}");
    // Nothing left behind in the container: only the init.
    assert_eq!(c.cgroup_pids(), vec![init.parse::<i32>().expect("pid")]);
}

#[test]
fn exec_flags_shape_the_process() {
    let c = Container::start(SLEEP, |_| {});
    let out = c.exec(
        &[
            "-e",
            "KOS_A=1",
            "--env",
            "PATH=/bin",
            "-u",
            "1000:1001",
            "-g",
            "2000",
            "--cwd",
            "/tmp",
            "--no-new-privs",
        ],
        &[
            "sh",
            "-c",
            "echo A=$KOS_A PATH=$PATH; id -u; id -g; pwd; grep -E '^(NoNewPrivs|Groups)' /proc/self/status",
        ],
    );
    let s = text(&out.stdout);
    assert!(out.status.success(), "{s} {}", text(&out.stderr));
    assert!(s.contains("A=1 PATH=/bin"), "{s}");
    assert!(s.contains("\n1000\n1001\n/tmp\n"), "{s}");
    assert!(s.contains("NoNewPrivs:\t1"), "{s}");
    assert!(s.contains("Groups:\t2000"), "{s}");
}

fn cap_line(status: &str, name: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .expect("cap line")
}

#[test]
fn exec_has_the_container_caps_and_cap_adds() {
    let c = Container::start(SLEEP, |_| {});
    let init = std::fs::read_to_string(format!("/proc/{}/status", c.pid())).expect("status");
    let out = c.exec(&[], &["cat", "/proc/self/status"]);
    let s = text(&out.stdout);
    assert_eq!(cap_line(&s, "CapBnd:"), cap_line(&init, "CapBnd:"), "{s}");
    assert_eq!(cap_line(&s, "CapEff:"), cap_line(&init, "CapEff:"), "{s}");
    let out = c.exec(&["--cap", "CAP_SYS_ADMIN"], &["cat", "/proc/self/status"]);
    let s = text(&out.stdout);
    let sys_admin = 1u64 << 21;
    assert_eq!(
        cap_line(&init, "CapBnd:") & sys_admin,
        0,
        "init must lack it"
    );
    assert_ne!(cap_line(&s, "CapBnd:") & sys_admin, 0, "{s}");
    assert_ne!(cap_line(&s, "CapEff:") & sys_admin, 0, "{s}");
}

#[test]
fn exec_gets_the_container_seccomp_filter() {
    let c = Container::start(SLEEP, |cfg| {
        cfg["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]
        });
    });
    let out = c.exec(
        &[],
        &[
            "sh",
            "-c",
            "grep Seccomp: /proc/self/status; mkdir /tmp/kos-x",
        ],
    );
    let s = text(&out.stdout);
    assert!(s.contains("Seccomp:\t2"), "{s}");
    assert!(!out.status.success(), "mkdir was allowed: {s}");
}

#[test]
fn exec_detached_with_process_json_and_pid_file() {
    let c = Container::start(SLEEP, |_| {});
    let dir = TempDir::new("exec-pj");
    let pj = dir.0.join("process.json");
    std::fs::write(
        &pj,
        serde_json::to_vec(&json!({
            "args": ["sleep", "1000"], "cwd": "/", "env": ["PATH=/bin"],
            "user": {"uid": 0, "gid": 0}
        }))
        .expect("json"),
    )
    .expect("write process.json");
    let pf = dir.0.join("exec.pid");
    let out = c.exec(
        &[
            "--process",
            &pj.to_string_lossy(),
            "--detach",
            "--pid-file",
            &pf.to_string_lossy(),
        ],
        &[],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pid = std::fs::read_to_string(&pf).expect("pid file");
    let pid = pid.trim();
    let init = c.pid().to_string();
    assert_eq!(ns_of(pid, "pid"), ns_of(&init, "pid"));
    assert_eq!(ns_of(pid, "mnt"), ns_of(&init, "mnt"));
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("cmdline");
    assert_eq!(cmdline, b"sleep\x001000\x00");
    assert!(c.cgroup_pids().contains(&pid.parse().expect("pid")));
    // It is the container's: killing them all takes it too.
    let out = c.kosrun(&["kill", "--all", &c.id, "KILL"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn exec_keeps_host_descriptors_out_unless_preserved() {
    let c = Container::start(SLEEP, |_| {});
    let dir = TempDir::new("exec-fds");
    let file = std::fs::File::create(dir.0.join("out")).expect("file");
    let raw = file.as_raw_fd();
    let mut cmd = c.cmd();
    cmd.args(["exec", "--preserve-fds", "1", &c.id, "sh", "-c"])
        .arg("echo kept >&3; ls /proc/self/fd")
        .stdin(Stdio::null());
    // SAFETY: dup2 in the child before exec; fd 9 is an inherited, unpreserved one.
    unsafe {
        cmd.pre_exec(move || {
            // dup2 onto itself keeps close-on-exec, so a file that already is fd 3
            // or 9 gets its flag cleared instead.
            for target in [3, 9] {
                let rc = if raw == target {
                    libc::fcntl(target, libc::F_SETFD, 0)
                } else {
                    libc::dup2(raw, target)
                };
                if rc < 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let out = output_via_files(&mut cmd);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let listed: Vec<String> = text(&out.stdout).lines().map(str::to_string).collect();
    assert!(listed.contains(&"3".to_string()), "{listed:?}");
    assert!(
        !listed.contains(&"9".to_string()),
        "fd 9 leaked: {listed:?}"
    );
    let written = std::fs::read_to_string(dir.0.join("out")).expect("out");
    assert_eq!(written, "kept\n");
}

#[test]
fn signals_reach_the_exec_process() {
    let c = Container::start(SLEEP, |_| {});
    let mut child = c
        .cmd()
        .args(["exec", &c.id, "sh", "-c"])
        .arg("trap 'exit 42' TERM; echo ready; while true; do sleep 0.1; done")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .expect("exec");
    let mut buf = [0u8; 6];
    child
        .stdout
        .as_mut()
        .expect("stdout")
        .read_exact(&mut buf)
        .expect("ready");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let st = child.wait().expect("wait");
    assert_eq!(st.code(), Some(42));
}

#[test]
fn exec_refuses_stopped_unknown_paused_and_bad_input() {
    // Unknown container.
    let c = Container::start(SLEEP, |_| {});
    let out = c.exec(&[], &["true"]);
    assert!(out.status.success());
    let out = c.kosrun(&["exec", "kos-no-such-container", "true"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("does not exist"),
        "{}",
        text(&out.stderr)
    );

    // Malformed process.json: clear error, nothing new in the container.
    let dir = TempDir::new("exec-bad");
    let pj = dir.0.join("process.json");
    std::fs::write(&pj, "{\"args\": [\"true\"], \"cwd\": ").expect("write");
    let out = c.exec(&["--process", &pj.to_string_lossy()], &[]);
    let e = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        e.contains("process.json") && e.contains("process file"),
        "{e}"
    );
    std::fs::write(
        &pj,
        "{\"args\": [], \"cwd\": \"/\", \"user\": {\"uid\": 0, \"gid\": 0}}",
    )
    .expect("write");
    let out = c.exec(&["--process", &pj.to_string_lossy()], &[]);
    assert!(
        text(&out.stderr).contains("no command"),
        "{}",
        text(&out.stderr)
    );

    // A tty without a tty.
    let out = c.exec(&["-t"], &["true"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("stdin is not a terminal"),
        "{}",
        text(&out.stderr)
    );
    // A program that is not there, and a cwd that is not there.
    let out = c.exec(&[], &["/kos-nonexistent"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("/kos-nonexistent"),
        "{}",
        text(&out.stderr)
    );
    let out = c.exec(&["--cwd", "/kos-nowhere"], &["true"]);
    assert!(
        text(&out.stderr).contains("/kos-nowhere"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        c.cgroup_pids(),
        vec![c.pid()],
        "a failed exec left a process"
    );

    // Paused: refused unless asked.
    let pid = c.pid();
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("cgroup");
    let freezer = cg
        .lines()
        .find_map(|l| l.split_once(":freezer:").map(|(_, p)| p.to_string()))
        .map(|p| format!("/sys/fs/cgroup/freezer{p}/freezer.state"));
    if let Some(f) = freezer.filter(|f| std::path::Path::new(f).exists()) {
        std::fs::write(&f, "FROZEN").expect("freeze");
        let out = c.exec(&[], &["true"]);
        std::fs::write(&f, "THAWED").expect("thaw");
        assert!(!out.status.success());
        assert!(
            text(&out.stderr).contains("paused"),
            "{}",
            text(&out.stderr)
        );
    }

    // Stopped.
    let out = c.kosrun(&["kill", &c.id, "KILL"]);
    assert!(out.status.success());
    let t = Instant::now();
    while c.state()["status"] != "stopped" && t.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = c.exec(&[], &["true"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("stopped"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn exec_tty_uses_the_callers_terminal() {
    require_tool("script", "bsdutils");
    let c = Container::start(SLEEP, |_| {});
    // The caller's settings must come back after raw mode.
    let inner = format!(
        "stty cols 91 rows 33; before=$(stty -g); {} --root {} exec -t {} sh -c 'tty; stty size; exit 5'; rc=$?; \
         [ \"$(stty -g)\" = \"$before\" ] && echo kos-restored; exit $rc",
        kosrun(),
        c.root.0.display(),
        c.id
    );
    let out = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script");
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(5), "{s}");
    assert!(s.contains("/dev/pts/"), "{s}");
    assert!(s.contains("33 91"), "{s}");
    assert!(
        s.contains("kos-restored"),
        "terminal settings not restored: {s}"
    );
}

#[test]
fn run_with_terminal_uses_the_callers_terminal() {
    require_tool("script", "bsdutils");
    let root = TempDir::new("run-tty-root");
    let b = TempDir::new("run-tty-bundle");
    bundle(&b.0, &["sh", "-c", "tty; stty size; exit 4"], |cfg| {
        cfg["process"]["terminal"] = json!(true);
    });
    let id = unique("run-tty");
    let inner = format!(
        "stty cols 77 rows 22; {} --root {} run -b {} {}",
        kosrun(),
        root.0.display(),
        b.0.display(),
        id
    );
    let out = Command::new("script")
        .args(["-qec", &inner, "/dev/null"])
        .stdin(Stdio::null())
        .output()
        .expect("script");
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{s}");
    assert!(s.contains("/dev/"), "{s}");
    assert!(s.contains("22 77"), "{s}");
    // The container was deleted and the tty socket directory with it.
    let list = std::fs::read_dir(&root.0).map(|d| d.count()).unwrap_or(0);
    assert_eq!(list, 0);
}

/// Receive the pty master a console socket gets (runc's protocol).
fn recv_master(conn: &std::os::unix::net::UnixStream) -> OwnedFd {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = [0u8; 64];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )
    .expect("recvmsg");
    for c in msg.cmsgs().expect("cmsgs") {
        if let ControlMessageOwned::ScmRights(fds) = c {
            // SAFETY: the kernel just gave us this descriptor.
            return unsafe { OwnedFd::from_raw_fd(fds[0]) };
        }
    }
    panic!("no descriptor on the console socket");
}

#[test]
fn exec_tty_with_console_socket() {
    let c = Container::start(SLEEP, |_| {});
    let dir = TempDir::new("exec-console");
    let sock = dir.0.join("console.sock");
    let listener = UnixListener::bind(&sock).expect("bind");
    let out = c.exec(
        &[
            "-t",
            "--detach",
            "--console-socket",
            &sock.to_string_lossy(),
        ],
        &["sh", "-c", "tty; echo kos-console-ok; sleep 1"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let (conn, _) = listener.accept().expect("accept");
    let master = recv_master(&conn);
    let mut f = std::fs::File::from(master);
    let mut got = String::new();
    let mut buf = [0u8; 256];
    let t = Instant::now();
    while !got.contains("kos-console-ok") && t.elapsed() < Duration::from_secs(5) {
        match f.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.push_str(&String::from_utf8_lossy(&buf[..n])),
        }
    }
    assert!(got.contains("/dev/pts/"), "{got:?}");
    assert!(got.contains("kos-console-ok"), "{got:?}");
}

#[test]
fn exec_into_a_sub_cgroup() {
    let c = Container::start(SLEEP, |_| {});
    let init = c.pid();
    let cg = std::fs::read_to_string(format!("/proc/{init}/cgroup")).expect("cgroup");
    let Some(path) = cg
        .lines()
        .find_map(|l| l.split_once(":pids:").map(|(_, p)| p.to_string()))
    else {
        skip("no cgroup v1 pids hierarchy on this host");
        return;
    };
    let sub = std::path::PathBuf::from(format!("/sys/fs/cgroup/pids{path}/kos-sub"));
    std::fs::create_dir(&sub).expect("mkdir sub-cgroup");
    struct Rmdir(std::path::PathBuf);
    impl Drop for Rmdir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir(&self.0);
        }
    }
    let _rm = Rmdir(sub);
    let out = c.exec(&["--cgroup", "pids:kos-sub"], &["cat", "/proc/self/cgroup"]);
    let s = text(&out.stdout);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(s.contains(&format!(":pids:{path}/kos-sub")), "{s}");
    // Other controllers stay at the container's own cgroup.
    assert!(s.contains(&format!(":memory:{path}\n")), "{s}");
    let out = c.exec(&["--cgroup", "pids:kos-missing"], &["true"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("kos-missing"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(c.cgroup_pids(), vec![init], "a failed exec left a process");
}

#[test]
fn exec_joins_user_and_cgroup_namespaces() {
    let c = Container::start(SLEEP, |cfg| {
        let ns = cfg["linux"]["namespaces"]
            .as_array_mut()
            .expect("namespaces");
        ns.push(json!({"type": "user"}));
        ns.push(json!({"type": "cgroup"}));
        cfg["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
        cfg["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    });
    let init = c.pid().to_string();
    let out = c.exec(
        &["-u", "5:5"],
        &[
            "sh",
            "-c",
            "readlink /proc/self/ns/user; readlink /proc/self/ns/cgroup; cat /proc/self/uid_map",
        ],
    );
    let s = text(&out.stdout);
    assert!(out.status.success(), "{s}{}", text(&out.stderr));
    assert!(s.contains(&ns_of(&init, "user")), "{s}");
    assert!(s.contains(&ns_of(&init, "cgroup")), "{s}");
    assert!(s.contains("200000"), "{s}");
    // uid 5 in the container is host uid 200005.
    let pf = TempDir::new("exec-userns");
    let pidfile = pf.0.join("pid");
    let out = c.exec(
        &["-u", "5:5", "-d", "--pid-file", &pidfile.to_string_lossy()],
        &["sleep", "30"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let pid = std::fs::read_to_string(&pidfile).expect("pid file");
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid.trim())).expect("status");
    assert!(status.contains("Uid:\t200005"), "{status}");
}

#[test]
fn run_with_terminal_without_a_tty_is_refused_cleanly() {
    let root = TempDir::new("run-notty-root");
    let b = TempDir::new("run-notty-bundle");
    bundle(&b.0, &["true"], |cfg| {
        cfg["process"]["terminal"] = json!(true)
    });
    let id = unique("run-notty");
    let out = output_via_files(
        Command::new(kosrun())
            .arg("--root")
            .arg(&root.0)
            .args(["run", "-b"])
            .arg(&b.0)
            .arg(&id)
            .stdin(Stdio::null()),
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("stdin is not a terminal"),
        "{}",
        text(&out.stderr)
    );
    assert!(!root.0.join(&id).exists(), "state left behind");
    assert!(
        !std::path::Path::new(&format!("/sys/fs/cgroup/pids/{id}")).exists(),
        "cgroup left behind"
    );
}
