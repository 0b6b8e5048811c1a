//! The cargo a test runs to build another binary of the workspace.

use std::process::Command;

/// The cargo that built the tests, without the CARGO_MANIFEST_DIR that cargo test sets for
/// the test binary: inherited, it re-runs the build scripts that track it (ring's), and the
/// whole tree, release binaries included, rebuilds for every package directory in turn.
pub fn cargo() -> Command {
    let mut c = Command::new(env!("CARGO"));
    c.env_remove("CARGO_MANIFEST_DIR");
    c
}
