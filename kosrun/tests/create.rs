//! `create` as a caller sees it: the half-made container while it runs, and an init the
//! kernel cut short named with how it ended.

mod support;

use std::process::Stdio;

use support::*;

/// An init killed during setup (here by its own memory limit) is reported with the signal
/// and the limit that likely caused it, not as a bare "exited during setup".
#[test]
fn init_killed_in_setup_names_the_signal_and_limit() {
    let bundle = TempDir::new("err-bundle");
    let root = TempDir::new("err-root");
    let mut c = spec_config(&bundle.0, &["true"]);
    c["linux"]["cgroupsPath"] = serde_json::json!(format!("/{}", unique("err-cg")));
    c["linux"]["resources"] = serde_json::json!({"memory": {"limit": 100}});
    write_config(&bundle.0, &c);
    let id = unique("err");
    let out = output_via_files(
        std::process::Command::new(kosrun())
            .arg("--root")
            .arg(&root.0)
            .args(["create", "-b"])
            .arg(&bundle.0)
            .arg(&id)
            .stdin(Stdio::null()),
    );
    let err = text(&out.stderr);
    assert!(
        !out.status.success(),
        "create succeeded under a 100-byte limit"
    );
    assert!(
        err.contains("killed by SIGKILL") && err.contains("memory.limit 100"),
        "error does not say how the init ended: {err}"
    );
    let st = std::process::Command::new(kosrun())
        .arg("--root")
        .arg(&root.0)
        .args(["state", &id])
        .stderr(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .expect("state");
    assert!(!st.success(), "a failed create left state behind");
}

/// While `create` runs (here: during its createRuntime hook) the container already exists
/// for `list`, as creating: an engine polling the runtime never misses a half-made one.
#[test]
fn list_shows_creating_during_create() {
    let bundle = TempDir::new("creating-bundle");
    let root = TempDir::new("creating-root");
    let seen = bundle.0.join("seen.json");
    let mut c = spec_config(&bundle.0, &["true"]);
    c["linux"]["cgroupsPath"] = serde_json::json!(format!("/{}", unique("creating-cg")));
    // The hook's stdout is captured by kosrun; a shell writes it where we can read it.
    c["hooks"]["createRuntime"] = serde_json::json!([{
        "path": "/bin/sh",
        "args": ["sh", "-c", format!("{} --root {} list --format json > {}",
            kosrun(), root.0.display(), seen.display())],
        "timeout": 10
    }]);
    write_config(&bundle.0, &c);
    let id = unique("creating");
    let run = |args: &[&str]| {
        output_via_files(
            std::process::Command::new(kosrun())
                .arg("--root")
                .arg(&root.0)
                .args(args)
                .stdin(Stdio::null()),
        )
    };
    let out = run(&["create", "-b", &bundle.0.to_string_lossy(), &id]);
    let _cleanup = Deleter(root.0.clone(), id.clone());
    assert!(out.status.success(), "create: {}", text(&out.stderr));
    let list: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&seen).expect("hook output")).expect("json");
    let me = list
        .as_array()
        .and_then(|a| a.iter().find(|c| c["id"] == id.as_str()))
        .unwrap_or_else(|| panic!("list during create does not show {id}: {list}"));
    assert_eq!(me["status"], "creating", "{me}");
    assert!(me["pid"].as_i64().is_some_and(|p| p > 0), "{me}");
    // Once create has returned it is "created".
    let st = run(&["state", &id]);
    let st: serde_json::Value = serde_json::from_slice(&st.stdout).expect("state json");
    assert_eq!(st["status"], "created");
}

/// Force-deletes a container of a private --root when the test ends, however it ends.
struct Deleter(std::path::PathBuf, String);

impl Drop for Deleter {
    fn drop(&mut self) {
        let _ = std::process::Command::new(kosrun())
            .arg("--root")
            .arg(&self.0)
            .args(["delete", "--force", &self.1])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// Run kosrun with a JSON log and return its exit status and the logged error record.
fn json_error(root: &std::path::Path, log: &std::path::Path, args: &[&str]) -> serde_json::Value {
    let out = output_via_files(
        std::process::Command::new(kosrun())
            .arg("--root")
            .arg(root)
            .arg("--log")
            .arg(log)
            .args(["--log-format", "json"])
            .args(args)
            .stdin(Stdio::null()),
    );
    assert!(!out.status.success(), "kosrun {args:?} succeeded");
    let logged = std::fs::read_to_string(log).expect("read log");
    let last = logged.lines().last().expect("an error was logged");
    serde_json::from_str(last).expect("log line is JSON")
}

/// A config error says which kind, stage and spec field failed, so a supervisor can map it
/// to a status code without parsing the text; the text itself stays the one-line message.
#[test]
fn config_errors_carry_kind_stage_and_field_in_the_json_log() {
    let bundle = TempDir::new("kind-bundle");
    let root = TempDir::new("kind-root");
    let base = spec_config(&bundle.0, &["true"]);
    let mut c = base.clone();
    c["process"]["user"]["uid"] = serde_json::json!(4294967295u64);
    write_config(&bundle.0, &c);
    let log = bundle.0.join("log.json");
    let id = unique("kind");
    let bundle_arg = bundle.0.to_string_lossy().into_owned();
    let rec = json_error(&root.0, &log, &["create", "-b", &bundle_arg, &id]);
    assert_eq!(rec["level"], "error", "{rec}");
    assert_eq!(rec["kind"], "invalid_config", "{rec}");
    assert_eq!(rec["stage"], "validate", "{rec}");
    assert_eq!(rec["field"], "process.user.uid", "{rec}");
    assert_eq!(
        rec["msg"], "config.json: process.user.uid 4294967295 is out of range (at most 2147483647)",
        "{rec}"
    );

    // A key the host owns is refused at its own sysctl entry.
    let mut c = base;
    let no_net: Vec<serde_json::Value> = c["linux"]["namespaces"]
        .as_array()
        .expect("namespaces")
        .iter()
        .filter(|n| n["type"] != "network")
        .cloned()
        .collect();
    c["linux"]["namespaces"] = serde_json::Value::from(no_net);
    c["linux"]["sysctl"] = serde_json::json!({"net.ipv4.ip_forward": "1"});
    write_config(&bundle.0, &c);
    let rec = json_error(&root.0, &log, &["create", "-b", &bundle_arg, &id]);
    assert_eq!(rec["kind"], "invalid_config", "{rec}");
    assert_eq!(rec["field"], "linux.sysctl[net.ipv4.ip_forward]", "{rec}");
}

/// Operations on a container that is not there are NotFound, not a generic failure.
#[test]
fn missing_container_is_not_found_in_the_json_log() {
    let root = TempDir::new("kind-nf-root");
    let log = root.0.join("log.json");
    let id = unique("kind-nf");
    for op in ["start", "state", "delete"] {
        let rec = json_error(&root.0, &log, &[op, &id]);
        assert_eq!(rec["kind"], "not_found", "{op}: {rec}");
    }
}

/// Eight `create`s of one id at once, in several rounds: exactly one wins each round, the
/// others fail saying the id exists, and the winner's container is whole (created, its init
/// waiting) and deletes cleanly. (runc 1.1 broke in 18 of 30 such rounds.)
#[test]
fn racing_creates_of_one_id_have_exactly_one_winner() {
    let bundle = TempDir::new("race-bundle");
    let root = TempDir::new("race-root");
    let mut c = spec_config(&bundle.0, &["true"]);
    let cgroup = unique("race-cg");
    c["linux"]["cgroupsPath"] = serde_json::json!(format!("/{cgroup}"));
    write_config(&bundle.0, &c);
    for round in 0..5 {
        let id = unique("race");
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(8));
        let racers: Vec<_> = (0..8)
            .map(|_| {
                let (b, r, id, barrier) = (
                    bundle.0.clone(),
                    root.0.clone(),
                    id.clone(),
                    barrier.clone(),
                );
                std::thread::spawn(move || {
                    barrier.wait();
                    output_via_files(
                        std::process::Command::new(kosrun())
                            .arg("--root")
                            .arg(&r)
                            .args(["create", "-b"])
                            .arg(&b)
                            .arg(&id)
                            .stdin(Stdio::null()),
                    )
                })
            })
            .collect();
        let outs: Vec<_> = racers
            .into_iter()
            .map(|h| h.join().expect("racer"))
            .collect();
        let winners = outs.iter().filter(|o| o.status.success()).count();
        let losers: Vec<String> = outs
            .iter()
            .filter(|o| !o.status.success())
            .map(|o| text(&o.stderr))
            .collect();
        // Delete whatever won before asserting, so a failure leaves nothing running.
        let state = output_via_files(
            std::process::Command::new(kosrun())
                .arg("--root")
                .arg(&root.0)
                .args(["state", &id]),
        );
        let deleted = output_via_files(
            std::process::Command::new(kosrun())
                .arg("--root")
                .arg(&root.0)
                .args(["delete", "--force", &id]),
        );
        assert_eq!(
            winners, 1,
            "round {round}: {winners} winners; losers said {losers:?}"
        );
        for e in &losers {
            assert!(e.contains("already exists"), "round {round}: {e}");
        }
        let st: serde_json::Value = serde_json::from_slice(&state.stdout)
            .unwrap_or_else(|e| panic!("round {round}: state: {e}: {}", text(&state.stderr)));
        assert_eq!(st["status"], "created", "round {round}: {st}");
        assert!(st["pid"].as_i64().unwrap_or(0) > 0, "round {round}: {st}");
        assert!(deleted.status.success(), "{}", text(&deleted.stderr));
        assert!(
            !root.0.join(&id).exists(),
            "round {round}: state of {id} left"
        );
    }
    let left: Vec<_> = std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join(&cgroup))
        .filter(|p| p.is_dir())
        .collect();
    assert!(left.is_empty(), "cgroups left: {left:?}");
}
