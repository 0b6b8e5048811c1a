//! Under kosrun, the early delete of a container whose processes are all gone is done by the
//! kosrun library in a forked child of the shim, with no runtime exec; any other runtime
//! is exec'd as before. Its poststop hooks run with none of the shim's descriptors.

mod support;

use std::path::Path;
use std::time::Duration;

use containerd_shim_protos::api;

use support::ttrpc::Shim;
use support::wait_for;

fn calls(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Creates (with start at create) and starts `id` from `bundle` under `runtime`; its exit
/// code.
fn run_to_exit(shim: &mut Shim, runtime: &Path, id: &str, bundle: &Path) -> u32 {
    shim.create_and_start(runtime, id, bundle, true);
    let mut w = api::WaitRequest::new();
    w.id = id.into();
    let resp: api::WaitResponse = shim.client.call("Wait", &w).expect("wait");
    resp.exit_status
}

fn delete(shim: &mut Shim, id: &str) -> u32 {
    let mut d = api::DeleteRequest::new();
    d.id = id.into();
    let resp: api::DeleteResponse = shim.client.call("Delete", &d).expect("delete");
    resp.exit_status
}

/// Runs `sh -c "exit 4"` under a logging runtime called `name`: whether the runtime was
/// asked to `delete` (before the Delete request, and in all).
fn delete_calls_under(name: &str) -> (bool, bool) {
    let mut shim = Shim::start(&format!("libdel-{name}"));
    let (runtime, log) = support::logging_runtime(shim.dir.path(), name);
    let id = "x1";
    let b = shim.bundle(id, &["sh", "-c", "exit 4"], false);
    assert_eq!(run_to_exit(&mut shim, &runtime, id, &b), 4);
    let state = shim.runtime_root().join(id);
    wait_for(
        "the runtime's state gone before Delete",
        Duration::from_secs(10),
        || !state.exists(),
    );
    let left = shim.cgroup_dirs(id);
    assert!(left.is_empty(), "cgroups left: {left:?}");
    let is_delete = |l: &String| l.split_whitespace().any(|w| w == "delete");
    let before = calls(&log).iter().any(is_delete);
    assert_eq!(delete(&mut shim, id), 4);
    let all = calls(&log);
    // The create did go through the wrapper: the log is the one in use.
    assert!(all.iter().any(|l| l.contains(id)), "{all:?}");
    (before, all.iter().any(is_delete))
}

#[test]
fn early_delete_under_kosrun_runs_no_runtime_binary() {
    assert_eq!(delete_calls_under("kosrun"), (false, false));
}

#[test]
fn early_delete_under_another_runtime_execs_its_delete() {
    assert_eq!(delete_calls_under("other-runtime"), (true, true));
}

/// A poststop hook writes its PATH and, from `ls -l /proc/self/fd`, its descriptors.
fn add_poststop_hook(bundle: &Path, out: &Path) {
    let cfg = bundle.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cfg).expect("read")).expect("json");
    let script = format!(
        "echo \"$PATH\" > '{o}.path'; exec /bin/ls -l /proc/self/fd > '{o}.fds'",
        o = out.display()
    );
    v["hooks"] = serde_json::json!({
        "poststop": [{"path": "/bin/sh", "args": ["sh", "-c", script], "timeout": 10}]
    });
    std::fs::write(&cfg, v.to_string()).expect("write");
}

#[test]
fn poststop_hooks_of_the_library_delete_get_no_shim_descriptor() {
    let mut shim = Shim::start("libdel-hook");
    let (runtime, _log) = support::logging_runtime(shim.dir.path(), "kosrun");
    let id = "h1";
    let b = shim.bundle(id, &["true"], false);
    let out = shim.dir.path().join("hook-out");
    add_poststop_hook(&b, &out);
    assert_eq!(run_to_exit(&mut shim, &runtime, id, &b), 0);
    let fds_file = out.with_extension("fds");
    wait_for("the poststop hook", Duration::from_secs(10), || {
        fds_file.exists()
    });
    let fds = std::fs::read_to_string(&fds_file).expect("hook output");
    // ls's own descriptor of the directory it lists aside, only the hook's stdio.
    let open: Vec<&str> = fds
        .lines()
        .filter_map(|l| l.split_once(" -> "))
        .filter(|(_, target)| !(target.starts_with("/proc/") && target.ends_with("/fd")))
        .filter_map(|(name, _)| name.split_whitespace().last())
        .filter(|n| !["0", "1", "2"].contains(n))
        .collect();
    assert!(fds.contains(" 0 -> "), "{fds}");
    assert!(open.is_empty(), "descriptors reached the hook:\n{fds}");
    // The runtime's environment, as a hook without `env` gets from kosrun.
    let path = std::fs::read_to_string(out.with_extension("path")).expect("hook PATH");
    assert!(path.contains("/bin"), "{path}");
    assert_eq!(delete(&mut shim, id), 0);
}
