//! Kill of a container's init: delivered by the shim itself where that is what the runtime
//! would do (the init alone, or SIGKILL to the init of a container with its own pid
//! namespace, which ends the namespace), through the runtime's `kill` otherwise (every
//! process of a container in the host's pid namespace, a paused container). The runtime is a
//! wrapper around kosrun that logs each subcommand it is asked for.

mod support;

use std::path::Path;
use std::time::Duration;

use containerd_shim_protos::api;

use support::ttrpc::Shim;
use support::{alive, pids_with_cmdline, wait_for};

const SIGKILL: u32 = 9;
const SIGTERM: u32 = 15;

/// Creates and starts `id` running `args`; `host_pid` puts it in the host's pid namespace.
fn run(shim: &mut Shim, runtime: &Path, id: &str, args: &[&str], host_pid: bool) -> u32 {
    let b = shim.bundle(id, args, false);
    if host_pid {
        support::share_host_pid_namespace(&b);
    }
    shim.create_and_start(runtime, id, &b, false)
}

fn kill(shim: &mut Shim, id: &str, signal: u32, all: bool) {
    let mut k = api::KillRequest::new();
    k.id = id.into();
    k.signal = signal;
    k.all = all;
    let _: api::Empty = shim.client.call("Kill", &k).expect("kill");
}

fn wait(shim: &mut Shim, id: &str) -> u32 {
    let mut r = api::WaitRequest::new();
    r.id = id.into();
    let resp: api::WaitResponse = shim.client.call("Wait", &r).expect("wait");
    resp.exit_status
}

/// How many times the runtime was asked to `kill` container `id`.
fn runtime_kills(log: &Path, id: &str) -> usize {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            words
                .iter()
                .position(|w| *w == "kill")
                .is_some_and(|i| words[i..].contains(&id))
        })
        .count()
}

#[test]
fn sigkill_to_a_pid_namespace_init_comes_from_the_shim() {
    let mut shim = Shim::start("isig-own");
    let (runtime, log) = support::logging_runtime(shim.dir.path(), "logged-runtime");
    // An init with a child: the child dies with the namespace.
    let marker = format!("isigown{}", std::process::id());
    let script = format!("sh -c 'sleep 1000; : {marker}' & exec sleep 1001");
    let pid = run(&mut shim, &runtime, "own", &["sh", "-c", &script], false);
    wait_for("the init's child", Duration::from_secs(10), || {
        !pids_with_cmdline(&marker).is_empty()
    });
    assert!(alive(pid as i32));
    let calls_before = runtime_kills(&log, "own");
    kill(&mut shim, "own", SIGKILL, true);
    assert_eq!(wait(&mut shim, "own"), 128 + SIGKILL);
    assert_eq!(
        runtime_kills(&log, "own"),
        calls_before,
        "the runtime was asked to kill: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    // The create and start did go through the wrapper, so the log is the one in use.
    assert!(std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("start own"));
    wait_for(
        "the child gone with the namespace",
        Duration::from_secs(10),
        || pids_with_cmdline(&marker).is_empty(),
    );
}

#[test]
fn a_signal_to_the_init_alone_comes_from_the_shim() {
    let mut shim = Shim::start("isig-one");
    let (runtime, log) = support::logging_runtime(shim.dir.path(), "logged-runtime");
    let pid = run(
        &mut shim,
        &runtime,
        "one",
        &[
            "sh",
            "-c",
            "trap 'exit 7' TERM; touch /trapped; while :; do sleep 0.1; done",
        ],
        false,
    );
    assert!(alive(pid as i32));
    // An init without a handler ignores SIGTERM: signal only once the trap is set.
    let trapped = shim.dir.path().join("one/rootfs/trapped");
    wait_for("the trap set", Duration::from_secs(10), || trapped.exists());
    kill(&mut shim, "one", SIGTERM, false);
    assert_eq!(wait(&mut shim, "one"), 7);
    assert_eq!(runtime_kills(&log, "one"), 0);
}

#[test]
fn kill_all_in_the_host_pid_namespace_goes_through_the_runtime() {
    let mut shim = Shim::start("isig-host");
    let (runtime, log) = support::logging_runtime(shim.dir.path(), "logged-runtime");
    let marker = format!("isighost{}", std::process::id());
    // The child stays in the container's cgroup but would outlive the init without the
    // runtime's kill of every process.
    let script = format!("sh -c 'sleep 999; : {marker}' & exec sleep 1002");
    run(&mut shim, &runtime, "host", &["sh", "-c", &script], true);
    wait_for("the container's child", Duration::from_secs(10), || {
        !pids_with_cmdline(&marker).is_empty()
    });
    kill(&mut shim, "host", SIGKILL, true);
    assert_eq!(wait(&mut shim, "host"), 128 + SIGKILL);
    assert_eq!(runtime_kills(&log, "host"), 1);
    wait_for("the child gone", Duration::from_secs(10), || {
        pids_with_cmdline(&marker).is_empty()
    });
}

#[test]
fn kill_of_a_paused_container_goes_through_the_runtime() {
    let mut shim = Shim::start("isig-paused");
    let (runtime, log) = support::logging_runtime(shim.dir.path(), "logged-runtime");
    run(&mut shim, &runtime, "paused", &["sleep", "1003"], false);
    let mut p = api::PauseRequest::new();
    p.id = "paused".into();
    let _: api::Empty = shim.client.call("Pause", &p).expect("pause");
    kill(&mut shim, "paused", SIGKILL, true);
    assert_eq!(runtime_kills(&log, "paused"), 1);
    let mut r = api::ResumeRequest::new();
    r.id = "paused".into();
    // kosrun's kill of every process may have thawed the cgroup already.
    let _: Result<api::Empty, _> = shim.client.call("Resume", &r);
    assert_eq!(wait(&mut shim, "paused"), 128 + SIGKILL);
}
