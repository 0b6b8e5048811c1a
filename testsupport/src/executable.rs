//! Writing a program a test then runs.
//!
//! A file this process held open for writing is inherited by whatever child another test
//! thread forks at that moment, and stays open in it until that child execs; running the
//! file then fails with ETXTBSY ("Text file busy"). So programs are written and copied by a
//! child process of their own: the descriptor is never ours.

use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};

/// Writes `text` to `path` as an executable (mode 0755). Panics on failure: a fixture that
/// cannot be made is a broken test.
pub fn write_executable(path: &Path, text: &[u8]) {
    if let Err(e) = try_write_executable(path, text) {
        panic!("writing {}: {e}", path.display());
    }
}

/// Writes `text` to `path` as an executable (mode 0755).
pub fn try_write_executable(path: &Path, text: &[u8]) -> io::Result<()> {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg("cat > \"$1\" && chmod 0755 \"$1\"")
        .arg("write_executable")
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()?;
    let written = match child.stdin.take() {
        Some(mut stdin) => stdin.write_all(text),
        None => Err(io::Error::other("sh has no stdin pipe")),
    };
    let status = child.wait()?;
    written?;
    succeeded("sh", status)
}

/// Copies the program `src` to `dst` with mode 0755.
pub fn copy_executable(src: &Path, dst: &Path) -> io::Result<()> {
    let status = Command::new("cp").arg("--").arg(src).arg(dst).status()?;
    succeeded("cp", status)?;
    // chmod opens nothing, so it is safe in this process.
    std::fs::set_permissions(dst, std::fs::Permissions::from_mode(0o755))
}

fn succeeded(what: &str, status: ExitStatus) -> io::Result<()> {
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("{what} failed: {status}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_and_copied_programs_run() {
        let dir = std::env::temp_dir().join(format!("kos-write-exe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let (a, b) = (dir.join("a"), dir.join("b"));
        write_executable(&a, b"#!/bin/sh\necho \"ran $1\"\n");
        let copied = copy_executable(&a, &b);
        let out = Command::new(&b).arg("x").output();
        let _ = std::fs::remove_dir_all(&dir);
        copied.expect("copy the program");
        let out = out.expect("run the copy");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ran x\n");
    }

    #[test]
    fn an_unwritable_path_panics() {
        let r = std::panic::catch_unwind(|| {
            write_executable(Path::new("/nonexistent-dir/prog"), b"x");
        });
        assert!(r.is_err());
    }

    #[test]
    fn failures_are_errors() {
        assert!(try_write_executable(Path::new("/nonexistent-dir/prog"), b"x").is_err());
        let e = copy_executable(Path::new("/nonexistent-src"), Path::new("/tmp/x"))
            .expect_err("no such source");
        assert!(e.to_string().contains("cp failed"), "{e}");
    }
}
