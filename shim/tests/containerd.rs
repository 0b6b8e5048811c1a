//! containerd 1.6 driving the shim: `ctr run --runtime io.containerd.kos.v2` and friends,
//! against a private containerd the harness starts and removes.

mod support;

use std::io::Read;
use std::process::Stdio;
use std::time::Duration;

use support::{alive, kill9, mounts_under, stderr, stdout, wait_for, Containerd};

const RT: &str = "io.containerd.kos.v2";

#[test]
fn run_rm_relays_output_and_exit_code() {
    let c = Containerd::start("runrm");
    let out = c.ctr(&[
        "run",
        "--rm",
        "--runtime",
        RT,
        &c.image,
        "r1",
        "sh",
        "-c",
        "echo out1; echo err1 >&2; echo out2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "out1\nout2\n");
    assert!(stderr(&out).contains("err1\n"), "stderr: {}", stderr(&out));
    // --rm: the container, its shim and its rootfs mount are gone.
    let ls = stdout(&c.ctr(&["containers", "ls", "-q"]));
    assert!(!ls.lines().any(|l| l == "r1"), "{ls}");
    wait_for("shim exit", Duration::from_secs(10), || {
        c.shim_pid("r1").is_none()
    });
    assert!(mounts_under(c.dir.path()).is_empty());

    // stdin through the fifo, EOF through CloseIO.
    let mut child = c
        .ctr_cmd(&[
            "run",
            "--rm",
            "--runtime",
            RT,
            &c.image,
            "r2",
            "sh",
            "-c",
            "cat; echo done",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("ctr");
    {
        use std::io::Write;
        let mut i = child.stdin.take().expect("stdin");
        i.write_all(b"line a\nline b\n").expect("write");
    }
    let out = child.wait_with_output().expect("ctr");
    assert!(out.status.success());
    assert_eq!(stdout(&out), "line a\nline b\ndone\n");
}

#[test]
fn detached_task_exec_pause_resume_metrics_kill() {
    let c = Containerd::start("detached");
    let out = c.ctr(&[
        "run",
        "-d",
        "--runtime",
        RT,
        &c.image,
        "d1",
        "sleep",
        "1000",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(c.task_status("d1"), "RUNNING");
    let pid = c.task_pid("d1");
    assert!(alive(pid));

    let out = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "d1",
        "sh",
        "-c",
        "echo in-exec $$; exit 5",
    ]);
    assert_eq!(out.status.code(), Some(5), "{}", stderr(&out));
    assert!(stdout(&out).starts_with("in-exec "), "{}", stdout(&out));

    // No descriptor of the shim or the runtime reaches the container.
    let out = c.ctr(&["task", "exec", "--exec-id", "fds", "d1", "ls", "/proc/1/fd"]);
    let fds: Vec<String> = stdout(&out).split_whitespace().map(String::from).collect();
    assert_eq!(fds, ["0", "1", "2"], "{}", stderr(&out));

    // ps lists the init (the exec is gone).
    let ps = stdout(&c.ctr(&["task", "ps", "d1"]));
    assert!(
        ps.lines()
            .any(|l| l.split_whitespace().next() == Some(&pid.to_string())),
        "{ps}"
    );

    // pause freezes the process, resume thaws it.
    assert!(c.ctr(&["task", "pause", "d1"]).status.success());
    assert_eq!(c.task_status("d1"), "PAUSED");
    let state = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    assert!(
        state
            .lines()
            .any(|l| l.starts_with("State:") && (l.contains("D") || l.contains("S"))),
        "{state}"
    );
    assert!(
        !c.ctr(&["task", "exec", "--exec-id", "e2", "d1", "true"])
            .status
            .success()
            || c.task_status("d1") == "PAUSED"
    );
    assert!(c.ctr(&["task", "resume", "d1"]).status.success());
    assert_eq!(c.task_status("d1"), "RUNNING");

    // metrics come from the container's cgroup.
    let m = c.ctr(&["task", "metrics", "d1"]);
    assert!(m.status.success(), "{}", stderr(&m));
    let text = stdout(&m);
    assert!(
        text.contains("pids.current")
            && (text.contains("memory.usage_in_bytes") || text.contains("memory.usage")),
        "{text}"
    );
    let current: u64 = text
        .lines()
        .find(|l| l.starts_with("pids.current"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("pids.current");
    assert_eq!(current, 1);

    // kill: the task stops with 128+9, and delete reports it.
    assert!(c.ctr(&["task", "kill", "-s", "9", "d1"]).status.success());
    wait_for("d1 stopped", Duration::from_secs(10), || {
        c.task_status("d1") == "STOPPED"
    });
    assert!(!alive(pid));
    let del = c.ctr(&["task", "delete", "d1"]);
    assert!(del.status.success(), "{}", stderr(&del));
    assert!(c.ctr(&["containers", "rm", "d1"]).status.success());
    wait_for("shim exit", Duration::from_secs(10), || {
        c.shim_pid("d1").is_none()
    });
}

#[test]
fn terminal_run_and_exec() {
    let c = Containerd::start("tty");
    let out = c.ctr_tty(&[
        "run",
        "--rm",
        "-t",
        "--runtime",
        RT,
        &c.image,
        "t1",
        "sh",
        "-c",
        "tty; echo tty-done",
    ]);
    let text = stdout(&out);
    assert!(text.contains("/dev/pts/"), "{text}");
    assert!(text.contains("tty-done"), "{text}");

    let out = c.ctr(&[
        "run",
        "-d",
        "--runtime",
        RT,
        &c.image,
        "t2",
        "sleep",
        "1000",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = c.ctr_tty(&[
        "task",
        "exec",
        "-t",
        "--exec-id",
        "x1",
        "t2",
        "sh",
        "-c",
        "tty; exit 4",
    ]);
    let text = stdout(&out);
    assert!(text.contains("/dev/pts/"), "{text}");
    // Without a terminal, the same exec has none.
    let out = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "x2",
        "t2",
        "sh",
        "-c",
        "tty || echo no-tty",
    ]);
    assert!(stdout(&out).contains("no-tty"), "{}", stdout(&out));
}

#[test]
fn oom_kill_is_reported_as_an_event() {
    let c = Containerd::start("oom");
    let mut events = c
        .ctr_cmd(&["events"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("ctr events");
    std::thread::sleep(Duration::from_millis(300));
    // dd's 64 MiB buffer cannot fit in 16 MiB.
    let out = c.ctr(&[
        "run",
        "--rm",
        "--memory-limit",
        "16777216",
        "--runtime",
        RT,
        &c.image,
        "o1",
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=64M",
        "count=1",
    ]);
    assert_eq!(out.status.code(), Some(137), "{}", stderr(&out));
    std::thread::sleep(Duration::from_millis(500));
    kill9(events.id() as i32);
    let mut text = String::new();
    events
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut text)
        .expect("read");
    let _ = events.wait();
    let topics: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("o1"))
        .filter_map(|l| l.split_whitespace().nth(5))
        .collect();
    for want in [
        "/tasks/create",
        "/tasks/start",
        "/tasks/oom",
        "/tasks/exit",
        "/tasks/delete",
    ] {
        assert!(topics.contains(&want), "no {want} in {text}");
    }
}

#[test]
fn containerd_restart_sees_exit_that_happened_while_down() {
    let mut c = Containerd::start("restart");
    let out = c.ctr(&[
        "run",
        "-d",
        "--runtime",
        RT,
        &c.image,
        "s1",
        "sleep",
        "1000",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let pid = c.task_pid("s1");
    let shim = c.shim_pid("s1").expect("shim");
    c.stop();
    // The container dies while containerd is away; the shim reaps it.
    kill9(pid);
    wait_for("container exit", Duration::from_secs(5), || !alive(pid));
    assert!(alive(shim));
    c.restart();
    wait_for("STOPPED after restart", Duration::from_secs(10), || {
        c.task_status("s1") == "STOPPED"
    });
    let del = c.ctr(&["task", "delete", "s1"]);
    assert!(del.status.success(), "{}", stderr(&del));
    assert!(stderr(&del).contains("137") || del.status.success());
    assert!(c.ctr(&["containers", "rm", "s1"]).status.success());
    wait_for("shim exit", Duration::from_secs(10), || !alive(shim));

    // A task still running across a restart keeps working.
    let out = c.ctr(&[
        "run",
        "-d",
        "--runtime",
        RT,
        &c.image,
        "s2",
        "sleep",
        "1000",
    ]);
    assert!(out.status.success());
    c.restart();
    assert_eq!(c.task_status("s2"), "RUNNING");
    let out = c.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "after",
        "s2",
        "echo",
        "still-here",
    ]);
    assert_eq!(stdout(&out), "still-here\n", "{}", stderr(&out));
}

#[test]
fn sigkilled_shim_is_noticed_and_delete_cleans_up() {
    let c = Containerd::start("shimkill");
    let out = c.ctr(&[
        "run",
        "-d",
        "--runtime",
        RT,
        &c.image,
        "k1",
        "sleep",
        "1000",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let pid = c.task_pid("k1");
    let shim = c.shim_pid("k1").expect("shim");
    // ctr made the task's fifos; with the task gone on its own nobody else removes them.
    let fifo_dir = std::fs::read_link(format!("/proc/{shim}/fd/7"))
        .ok()
        .and_then(|p| p.parent().map(|d| d.to_path_buf()))
        .filter(|d| d.starts_with("/run/containerd/fifo"));
    let socket = std::fs::read_to_string(c.dir.path().join(format!(
        "state/io.containerd.runtime.v2.task/{}/k1/address",
        c.ns
    )))
    .expect("address file");
    kill9(shim);
    // containerd sees the connection drop and runs `containerd-shim-kos-v2 delete`, which
    // force-deletes the container through the runtime.
    wait_for(
        "container killed by the delete action",
        Duration::from_secs(20),
        || !alive(pid),
    );
    wait_for("task gone", Duration::from_secs(20), || {
        !stdout(&c.ctr(&["tasks", "ls", "-q"]))
            .lines()
            .any(|l| l == "k1")
    });
    assert!(c.ctr(&["containers", "rm", "k1"]).status.success());
    let rootfs_mounts: Vec<_> = mounts_under(c.dir.path())
        .into_iter()
        .filter(|m| m.to_string_lossy().contains("k1"))
        .collect();
    assert!(rootfs_mounts.is_empty(), "{rootfs_mounts:?}");
    // The delete action removed the dead shim's socket.
    let sock = socket.trim().trim_start_matches("unix://").to_string();
    assert!(!std::path::Path::new(&sock).exists(), "{sock} left behind");
    if let Some(d) = fifo_dir {
        let _ = std::fs::remove_dir_all(d);
    }
}
