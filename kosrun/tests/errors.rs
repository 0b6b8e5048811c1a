//! Errors say what happened: a setup the kernel cut short names how, not just that it ended.

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
