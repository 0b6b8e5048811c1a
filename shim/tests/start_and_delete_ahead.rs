//! Fewer runtime execs for kosd: start at create (KOS's own options message; `run --detach`
//! in Create, with the task API unchanged: CREATED until Start, TaskStart then TaskExit, an
//! early exit held for Start) and the runtime's delete started when a container's processes
//! are all gone, before the Delete request.

mod support;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use containerd_shim_protos::api;
use protobuf::well_known_types::any::Any;
use protobuf::MessageField;

use support::ttrpc::{Client, Shim, FAILED_PRECONDITION, NOT_FOUND};
use support::{alive, kill9, wait_for};

const CREATED: i32 = 1;
const RUNNING: i32 = 2;
const STOPPED: i32 = 3;

/// The options kosd sends: runc's fields (kosrun and its root) and `start_at_create`.
fn options(root: &Path, start_at_create: bool) -> Any {
    support::runtime_options(&support::kosrun().to_string_lossy(), root, start_at_create)
}

fn create(
    shim: &mut Shim,
    id: &str,
    args: &[&str],
    start_at_create: bool,
) -> Result<u32, support::ttrpc::RpcError> {
    let b = shim.bundle(id, args, false);
    let mut r = api::CreateTaskRequest::new();
    r.id = id.to_string();
    r.bundle = b.to_string_lossy().into_owned();
    r.options = MessageField::some(options(&shim.runtime_root(), start_at_create));
    let resp: api::CreateTaskResponse = shim.client.call("Create", &r)?;
    Ok(resp.pid)
}

fn start(c: &mut Client, id: &str) -> Result<u32, support::ttrpc::RpcError> {
    let mut r = api::StartRequest::new();
    r.id = id.into();
    let resp: api::StartResponse = c.call("Start", &r)?;
    Ok(resp.pid)
}

fn state(c: &mut Client, id: &str) -> api::StateResponse {
    let mut r = api::StateRequest::new();
    r.id = id.into();
    c.call("State", &r).expect("state")
}

fn kill(c: &mut Client, id: &str, exec_id: &str, signal: u32) {
    let mut k = api::KillRequest::new();
    k.id = id.into();
    k.exec_id = exec_id.into();
    k.signal = signal;
    let _: api::Empty = c.call("Kill", &k).expect("kill");
}

fn wait(c: &mut Client, id: &str, exec_id: &str) -> u32 {
    let mut r = api::WaitRequest::new();
    r.id = id.into();
    r.exec_id = exec_id.into();
    let resp: api::WaitResponse = c.call("Wait", &r).expect("wait");
    assert!(resp.exited_at.seconds > 0);
    resp.exit_status
}

fn delete(c: &mut Client, id: &str) -> api::DeleteResponse {
    let mut r = api::DeleteRequest::new();
    r.id = id.into();
    c.call("Delete", &r).expect("delete")
}

/// Wait for the init on a connection of its own, answered in the background.
fn wait_in_background(address: &str, id: &str) -> mpsc::Receiver<(u32, Instant)> {
    let (tx, rx) = mpsc::channel();
    let mut c = Client::connect(address);
    let id = id.to_string();
    std::thread::spawn(move || {
        let code = wait(&mut c, &id, "");
        let _ = tx.send((code, Instant::now()));
    });
    rx
}

/// kosrun's state directory of container `id`.
fn state_dir(shim: &Shim, id: &str) -> PathBuf {
    shim.runtime_root().join(id)
}

/// Nothing of the runtime's is left for `id`: no state directory, no cgroup.
fn assert_gone(shim: &Shim, id: &str) {
    assert!(!state_dir(shim, id).exists(), "state of {id} left");
    let left = shim.cgroup_dirs(id);
    assert!(left.is_empty(), "{left:?}");
}

/// The task's events from the fake event service (after waiting for `n` of them).
fn topics(shim: &Shim, n: usize) -> Vec<String> {
    wait_for("events", Duration::from_secs(10), || {
        shim.events.topics().len() >= n
    });
    shim.events.topics()
}

/// Start at create, a program that exits at once with `code`: CREATED until Start, no exit
/// seen (event or Wait) before Start, then TaskStart before TaskExit and Wait with `code`.
fn started_at_create_exits_with(name: &str, args: &[&str], code: u32) {
    let mut shim = Shim::start(name);
    let id = "s1";
    let pid = create(&mut shim, id, args, true).expect("create");
    assert!(pid > 0);
    let waiter = wait_in_background(&shim.address, id);
    // The program has had ample time to run and exit: nothing of it shows yet.
    std::thread::sleep(Duration::from_millis(500));
    let s = state(&mut shim.client, id);
    assert_eq!(s.status.value(), CREATED);
    assert_eq!(s.pid, pid);
    assert!(
        waiter.try_recv().is_err(),
        "Wait answered before Start ({name})"
    );
    assert_eq!(shim.events.topics(), ["/tasks/create"]);
    // kosrun's state stays: nothing is deleted ahead of a held exit.
    assert!(state_dir(&shim, id).is_dir());

    let started_at = Instant::now();
    assert_eq!(start(&mut shim.client, id).expect("start"), pid);
    let (got, at) = waiter
        .recv_timeout(Duration::from_secs(10))
        .expect("Wait answered after Start");
    assert_eq!(got, code);
    assert!(at >= started_at);
    assert_eq!(
        topics(&shim, 3),
        ["/tasks/create", "/tasks/start", "/tasks/exit"]
    );
    let s = state(&mut shim.client, id);
    assert_eq!((s.status.value(), s.exit_status), (STOPPED, code));
    let d = delete(&mut shim.client, id);
    assert_eq!((d.pid, d.exit_status), (pid, code));
    assert!(!state_dir(&shim, id).exists());
    assert_eq!(
        topics(&shim, 4),
        [
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete"
        ]
    );
}

#[test]
fn start_at_create_holds_an_immediate_exit_for_start() {
    started_at_create_exits_with("sac0", &["true"], 0);
}

#[test]
fn start_at_create_holds_an_exit_code_for_start() {
    started_at_create_exits_with("sac3", &["sh", "-c", "exit 3"], 3);
}

#[test]
fn start_at_create_runs_the_program_before_start() {
    let mut shim = Shim::start("sacrun");
    // The program writes into its own root, the bundle's rootfs, before any Start.
    let pid = create(
        &mut shim,
        "r1",
        &["sh", "-c", "echo ran > /ran; exec sleep 1000"],
        true,
    )
    .expect("create");
    let marker = shim.dir.path().join("r1/rootfs/ran");
    wait_for("the program's output", Duration::from_secs(10), || {
        marker.exists()
    });
    assert!(alive(pid as i32));
    assert_eq!(state(&mut shim.client, "r1").status.value(), CREATED);
    assert_eq!(start(&mut shim.client, "r1").expect("start"), pid);
    assert_eq!(state(&mut shim.client, "r1").status.value(), RUNNING);
    // A second Start is refused as for any started task.
    let e = start(&mut shim.client, "r1").expect_err("second start");
    assert_eq!(e.code, FAILED_PRECONDITION, "{e:?}");
    kill(&mut shim.client, "r1", "", 9);
    assert_eq!(wait(&mut shim.client, "r1", ""), 137);
    delete(&mut shim.client, "r1");
}

#[test]
fn start_at_create_kill_and_delete_before_start_leave_nothing() {
    let mut shim = Shim::start("sackill");
    // Killed, then deleted, never started.
    let pid = create(&mut shim, "k1", &["sleep", "1000"], true).expect("create");
    assert!(alive(pid as i32));
    kill(&mut shim.client, "k1", "", 9);
    assert_eq!(wait(&mut shim.client, "k1", ""), 137);
    let d = delete(&mut shim.client, "k1");
    assert_eq!(d.exit_status, 137);
    assert!(!alive(pid as i32));
    assert_gone(&shim, "k1");
    // Deleted with no Kill: Delete kills it, as it kills a created task's waiting init.
    let pid = create(&mut shim, "k2", &["sleep", "1000"], true).expect("create");
    assert!(alive(pid as i32));
    let d = delete(&mut shim.client, "k2");
    assert_eq!(d.exit_status, 137);
    assert!(!alive(pid as i32));
    assert_gone(&shim, "k2");
    // An exec before Start is refused, as for a created task.
    let pid = create(&mut shim, "k3", &["sleep", "1000"], true).expect("create");
    let mut x = api::ExecProcessRequest::new();
    x.id = "k3".into();
    x.exec_id = "x".into();
    let mut spec = Any::new();
    spec.value =
        br#"{"args":["true"],"cwd":"/","env":["PATH=/bin"],"user":{"uid":0,"gid":0}}"#.to_vec();
    x.spec = MessageField::some(spec);
    let _: api::Empty = shim.client.call("Exec", &x).expect("exec added");
    let mut sr = api::StartRequest::new();
    sr.id = "k3".into();
    sr.exec_id = "x".into();
    let e = shim
        .client
        .call::<_, api::StartResponse>("Start", &sr)
        .expect_err("exec before start");
    assert_eq!(e.code, FAILED_PRECONDITION, "{e:?}");
    assert!(e.message.contains("not started"), "{}", e.message);
    assert_eq!(state(&mut shim.client, "k3").status.value(), CREATED);
    let d = delete(&mut shim.client, "k3");
    assert_eq!(d.exit_status, 137);
    assert!(!alive(pid as i32));
    let topics = shim.events.topics();
    assert!(
        !topics.iter().any(|t| t == "/tasks/start"),
        "a task never started published TaskStart: {topics:?}"
    );
}

/// A program kosrun's create accepts and the exec refuses: executable, in no known format.
fn bad_program(shim: &Shim, id: &str) {
    let p = shim.dir.path().join(id).join("rootfs/bad");
    kos_testsupport::write_executable(&p, b"\x01\x02 not a program\n");
}

fn create_bad(
    shim: &mut Shim,
    id: &str,
    start_at_create: bool,
) -> Result<u32, support::ttrpc::RpcError> {
    let b = shim.bundle(id, &["/bad"], false);
    bad_program(shim, id);
    let mut r = api::CreateTaskRequest::new();
    r.id = id.to_string();
    r.bundle = b.to_string_lossy().into_owned();
    r.options = MessageField::some(options(&shim.runtime_root(), start_at_create));
    let resp: api::CreateTaskResponse = shim.client.call("Create", &r)?;
    Ok(resp.pid)
}

/// The runtime's error at Start without the option, and at Create with it: the same line.
#[test]
fn start_at_create_reports_the_program_error_from_create() {
    let mut shim = Shim::start("sacerr");
    create_bad(&mut shim, "e1", false).expect("create");
    let at_start = start(&mut shim.client, "e1").expect_err("start of a bad program");
    let at_create = create_bad(&mut shim, "e2", true).expect_err("create with start");
    assert_eq!(at_start.code, at_create.code);
    assert!(!at_create.message.contains('\n'), "{}", at_create.message);
    // "<runtime> <step>: <message>": the runtime's message is the same.
    let tail = |m: &str| {
        m.split_once(": ")
            .map(|(_, t)| t.to_string())
            .expect("step: message")
    };
    assert_eq!(tail(&at_start.message), tail(&at_create.message));
    assert!(at_create.message.contains("/bad"), "{}", at_create.message);
    // Nothing of e2 is left, and the shim knows no e2.
    assert!(!state_dir(&shim, "e2").exists());
    assert!(shim.cgroup_dirs("e2").is_empty());
    let mut r = api::StateRequest::new();
    r.id = "e2".into();
    assert!(shim
        .client
        .call::<_, api::StateResponse>("State", &r)
        .is_err());
}

#[test]
fn delete_ahead_removes_the_runtime_state_before_delete() {
    let mut shim = Shim::start("dahead");
    for (id, sac) in [("d1", false), ("d2", true)] {
        let pid = create(&mut shim, id, &["sh", "-c", "exit 5"], sac).expect("create");
        start(&mut shim.client, id).expect("start");
        assert_eq!(wait(&mut shim.client, id, ""), 5);
        let dir = state_dir(&shim, id);
        wait_for(
            "the runtime's state gone without a Delete",
            Duration::from_secs(10),
            || !dir.exists(),
        );
        assert!(
            shim.cgroup_dirs(id).is_empty(),
            "{:?}",
            shim.cgroup_dirs(id)
        );
        // What needed the runtime's state is answered without it.
        let s = state(&mut shim.client, id);
        assert_eq!((s.status.value(), s.exit_status), (STOPPED, 5));
        let mut p = api::PidsRequest::new();
        p.id = id.into();
        let pids: api::PidsResponse = shim.client.call("Pids", &p).expect("pids");
        assert!(pids.processes.is_empty());
        // NotFound: what containerd's metrics skip for a task without figures.
        let mut st = api::StatsRequest::new();
        st.id = id.into();
        let e = shim
            .client
            .call::<_, api::StatsResponse>("Stats", &st)
            .expect_err("stats after the cgroup went");
        assert_eq!(e.code, NOT_FOUND, "{e:?}");
        let mut u = api::UpdateTaskRequest::new();
        u.id = id.into();
        let mut res = Any::new();
        res.value = br#"{"pids":{"limit":77}}"#.to_vec();
        u.resources = MessageField::some(res);
        let e = shim
            .client
            .call::<_, api::Empty>("Update", &u)
            .expect_err("update after exit");
        assert_eq!(e.code, FAILED_PRECONDITION, "{e:?}");
        let d = delete(&mut shim.client, id);
        assert_eq!((d.pid, d.exit_status), (pid, 5));
        assert!(d.exited_at.seconds > 0);
    }
}

/// Writes `pid` into the root of every cgroup hierarchy: out of the container's cgroup, out
/// of reach of the shim's kill of what the init left.
fn move_to_root_cgroups(pid: i32) {
    for e in std::fs::read_dir("/sys/fs/cgroup")
        .expect("cgroup mounts")
        .flatten()
    {
        let procs = e.path().join("cgroup.procs");
        if procs.exists() {
            std::fs::write(&procs, pid.to_string())
                .unwrap_or_else(|err| panic!("{}: {err}", procs.display()));
        }
    }
}

/// Kills a process the test moved out of its container, whatever happens.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        kill9(self.0);
    }
}

#[test]
fn delete_ahead_waits_for_an_exec_that_outlives_the_init() {
    let mut shim = Shim::start("daexec");
    let id = "h1";
    let b = shim.bundle(id, &["sleep", "1000"], false);
    // The host's pid namespace: an exec does not die with the init.
    support::share_host_pid_namespace(&b);
    let mut r = api::CreateTaskRequest::new();
    r.id = id.into();
    r.bundle = b.to_string_lossy().into_owned();
    r.options = MessageField::some(options(&shim.runtime_root(), false));
    let _: api::CreateTaskResponse = shim.client.call("Create", &r).expect("create");
    start(&mut shim.client, id).expect("start");
    let mut x = api::ExecProcessRequest::new();
    x.id = id.into();
    x.exec_id = "x".into();
    let mut spec = Any::new();
    spec.value =
        br#"{"args":["sleep","1000"],"cwd":"/","env":["PATH=/bin"],"user":{"uid":0,"gid":0}}"#
            .to_vec();
    x.spec = MessageField::some(spec);
    let _: api::Empty = shim.client.call("Exec", &x).expect("exec");
    let mut sr = api::StartRequest::new();
    sr.id = id.into();
    sr.exec_id = "x".into();
    let xs: api::StartResponse = shim.client.call("Start", &sr).expect("exec start");
    let exec_pid = xs.pid as i32;
    let _guard = KillOnDrop(exec_pid);
    move_to_root_cgroups(exec_pid);

    kill(&mut shim.client, id, "", 9);
    assert_eq!(wait(&mut shim.client, id, ""), 137);
    // The exec still runs: the runtime's state stays.
    std::thread::sleep(Duration::from_millis(700));
    assert!(alive(exec_pid));
    assert!(
        state_dir(&shim, id).is_dir(),
        "deleted ahead with an exec still running"
    );
    kill9(exec_pid);
    assert_eq!(wait(&mut shim.client, id, "x"), 137);
    let dir = state_dir(&shim, id);
    wait_for(
        "the runtime's state gone once the exec is",
        Duration::from_secs(10),
        || !dir.exists(),
    );
    let d = delete(&mut shim.client, id);
    assert_eq!(d.exit_status, 137);
}

/// kosd and the CRI server read the OOM kill count from the cgroup after the exit: an
/// OOM-killed container keeps its cgroup (and the runtime's state) until Delete.
#[test]
fn no_delete_ahead_after_an_oom_kill() {
    let mut shim = Shim::start("daoom");
    let id = "o1";
    let b = shim.bundle(
        id,
        &[
            "sh",
            "-c",
            "a=xxxxxxxxxxxxxxxx; while true; do a=\"$a$a\"; done",
        ],
        false,
    );
    let cfg = b.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cfg).expect("read")).expect("json");
    v["linux"]["resources"]["memory"] = serde_json::json!({"limit": 8 << 20, "swap": 8 << 20});
    std::fs::write(&cfg, v.to_string()).expect("write");
    let mut r = api::CreateTaskRequest::new();
    r.id = id.into();
    r.bundle = b.to_string_lossy().into_owned();
    r.options = MessageField::some(options(&shim.runtime_root(), true));
    let _: api::CreateTaskResponse = shim.client.call("Create", &r).expect("create");
    start(&mut shim.client, id).expect("start");
    assert_eq!(wait(&mut shim.client, id, ""), 137);
    std::thread::sleep(Duration::from_millis(700));
    assert!(
        state_dir(&shim, id).is_dir(),
        "deleted ahead after an OOM kill"
    );
    let oom = shim
        .cgroup_dirs(id)
        .into_iter()
        .map(|d| d.join("memory.oom_control"))
        .find(|f| f.exists())
        .expect("the memory cgroup is still there");
    let text = std::fs::read_to_string(&oom).expect("oom_control");
    assert!(
        text.lines()
            .any(|l| l.strip_prefix("oom_kill ").is_some_and(|n| n.trim() != "0")),
        "{text}"
    );
    let d = delete(&mut shim.client, id);
    assert_eq!(d.exit_status, 137);
    assert!(!state_dir(&shim, id).exists());
    assert!(
        shim.cgroup_dirs(id).is_empty(),
        "{:?}",
        shim.cgroup_dirs(id)
    );
}
