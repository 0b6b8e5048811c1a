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
