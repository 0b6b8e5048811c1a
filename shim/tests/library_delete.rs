//! Under kosrun, the early delete of a container whose processes are all gone is done by the
//! kosrun library in a forked child of the shim, with no runtime exec; any other runtime
//! is exec'd as before. Its poststop hooks run with none of the shim's descriptors.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_shim_protos::api;
use protobuf::MessageField;

use support::ttrpc::Shim;
use support::wait_for;

/// A runtime named `name` in `dir` that appends its arguments, one line per call, to a log
/// and runs kosrun. Returns the runtime and its log.
fn logging_runtime(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let sub = dir.join(format!("rt-{name}"));
    std::fs::create_dir_all(&sub).expect("mkdir");
    let log = sub.join("calls");
    let bin = sub.join(name);
    std::fs::write(
        &bin,
        format!(
            "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
            log.display(),
            support::kosrun().display()
        ),
    )
    .expect("write runtime wrapper");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    (bin, log)
}

fn calls(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Creates and starts `id` (with its bundle already made) under `runtime`; its exit code.
fn run_to_exit(shim: &mut Shim, runtime: &Path, id: &str, bundle: &Path) -> u32 {
    let mut r = api::CreateTaskRequest::new();
    r.id = id.to_string();
    r.bundle = bundle.to_string_lossy().into_owned();
    r.options = MessageField::some(support::runtime_options(
        &runtime.to_string_lossy(),
        &shim.runtime_root(),
        true,
    ));
    let _: api::CreateTaskResponse = shim.client.call("Create", &r).expect("create");
    let mut s = api::StartRequest::new();
    s.id = id.into();
    let _: api::StartResponse = shim.client.call("Start", &s).expect("start");
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

/// The container's directories left in any cgroup hierarchy.
fn cgroup_dirs(shim: &Shim, id: &str) -> Vec<PathBuf> {
    let rel = format!("{}/{id}", shim.cgroup_parent);
    std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join(&rel))
        .filter(|p| p.is_dir())
        .collect()
}

/// Runs `sh -c "exit 4"` under a logging runtime called `name`: whether the runtime was
/// asked to `delete` (before the Delete request, and in all).
fn delete_calls_under(name: &str) -> (bool, bool) {
    let mut shim = Shim::start(&format!("libdel-{name}"));
    let (runtime, log) = logging_runtime(shim.dir.path(), name);
    let id = "x1";
    let b = shim.bundle(id, &["sh", "-c", "exit 4"], false);
    assert_eq!(run_to_exit(&mut shim, &runtime, id, &b), 4);
    let state = shim.runtime_root().join(id);
    wait_for(
        "the runtime's state gone before Delete",
        Duration::from_secs(10),
        || !state.exists(),
    );
    let left = cgroup_dirs(&shim, id);
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
    let (runtime, _log) = logging_runtime(shim.dir.path(), "kosrun");
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
