//! Programs a test writes into a bundle and the runtime then executes.
//!
//! Tests run on several threads, and the runtimes they start fork. A file this process held
//! open for writing is inherited by a child forked at that moment and stays open in it until
//! that child execs, so executing the file then fails with ETXTBSY ("Text file busy"). The
//! file is therefore written by a child process of its own: its descriptor is never ours.

use anyhow::{ensure, Context, Result};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Writes `text` to `path` with mode 0755.
pub fn write_executable(path: &Path, text: &[u8]) -> Result<()> {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg("cat > \"$1\" && chmod 0755 \"$1\"")
        .arg("write_executable")
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .context("spawning sh to write an executable")?;
    let mut stdin = child.stdin.take().context("sh's stdin")?;
    stdin
        .write_all(text)
        .with_context(|| format!("writing {}", path.display()))?;
    drop(stdin);
    let status = child.wait().context("waiting for sh")?;
    ensure!(status.success(), "writing {}: {status}", path.display());
    Ok(())
}

/// Copies the program `src` to `dst` with mode 0755.
pub fn copy_executable(src: &Path, dst: &Path) -> Result<()> {
    let status = Command::new("cp")
        .arg("--")
        .arg(src)
        .arg(dst)
        .status()
        .context("spawning cp")?;
    ensure!(
        status.success(),
        "copying {} to {}: {status}",
        src.display(),
        dst.display()
    );
    let chmod = Command::new("chmod").arg("0755").arg(dst).status();
    ensure!(
        chmod.as_ref().is_ok_and(|s| s.success()),
        "chmod 0755 {}: {chmod:?}",
        dst.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_and_copied_programs_run() {
        let dir = std::env::temp_dir().join(format!("kosconf-exe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let a = dir.join("a");
        let b = dir.join("b");
        let made = write_executable(&a, b"#!/bin/sh\necho \"ran $1\"\n")
            .and_then(|()| copy_executable(&a, &b));
        let out = Command::new(&b).arg("x").output();
        let _ = std::fs::remove_dir_all(&dir);
        made.expect("make the programs");
        assert_eq!(out.expect("run the copy").stdout, b"ran x\n");
    }

    #[test]
    fn a_failed_write_says_which_file() {
        let err = write_executable(Path::new("/nonexistent-kos-dir/prog"), b"x")
            .expect_err("no such directory");
        assert!(
            err.to_string().contains("/nonexistent-kos-dir/prog"),
            "{err}"
        );
    }
}
