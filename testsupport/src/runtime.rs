//! Which kosrun binary a test drives.

use std::sync::OnceLock;

/// `$KOSRUN` when it is set, else `built` (a package's own build, such as
/// `env!("CARGO_BIN_EXE_kosrun")`). `make test` sets `KOSRUN` to the kosrun KOS ships
/// (scripts/build-kosrun.sh: a musl build, not the workspace's glibc one), so the tests
/// cover the binary users get.
pub fn kosrun_or(built: &'static str) -> &'static str {
    static CHOSEN: OnceLock<String> = OnceLock::new();
    CHOSEN.get_or_init(|| match std::env::var("KOSRUN") {
        Ok(p) if !p.is_empty() => p,
        _ => built.to_string(),
    })
}
