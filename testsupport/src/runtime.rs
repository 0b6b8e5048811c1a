//! Which kosrun binary a test drives.

use std::path::PathBuf;
use std::sync::OnceLock;

/// `$KOSRUN` when it is set and not empty. `make test` sets it to the kosrun KOS ships
/// (scripts/build-kosrun.sh: a musl build, not the workspace's glibc one), so the tests
/// cover the binary users get; a test's own fallback applies only to a bare `cargo test`.
pub fn kosrun_from_env() -> Option<PathBuf> {
    std::env::var_os("KOSRUN")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
}

/// [`kosrun_from_env`], else `built` (a package's own build, such as
/// `env!("CARGO_BIN_EXE_kosrun")`).
pub fn kosrun_or(built: &'static str) -> &'static str {
    static CHOSEN: OnceLock<String> = OnceLock::new();
    CHOSEN.get_or_init(|| match kosrun_from_env() {
        Some(p) => p.to_string_lossy().into_owned(),
        None => built.to_string(),
    })
}
