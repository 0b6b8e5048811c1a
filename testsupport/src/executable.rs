//! Writing a program a test then runs.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Writes `text` to `path` as an executable (mode 0755) through a child process.
///
/// A file this process held open for writing is inherited by whatever child another test
/// thread forks at that moment, and stays open in it until that child execs; running the
/// file then fails with ETXTBSY ("Text file busy"). Written by `sh`, the descriptor is never
/// ours. Panics on failure: a fixture that cannot be made is a broken test.
pub fn write_executable(path: &Path, text: &[u8]) {
    let mut child = Command::new("/bin/sh")
        .arg("-c")
        .arg("cat > \"$1\" && chmod 0755 \"$1\"")
        .arg("write_executable")
        .arg(path)
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn sh to write an executable");
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin.write_all(text).expect("write the executable's text");
    drop(stdin);
    let status = child.wait().expect("wait for sh");
    assert!(status.success(), "writing {}: {status}", path.display());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_program_runs() {
        let dir = std::env::temp_dir().join(format!("kos-write-exe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let bin = dir.join("prog");
        write_executable(&bin, b"#!/bin/sh\necho \"ran $1\"\n");
        let out = Command::new(&bin).arg("x").output();
        let _ = std::fs::remove_dir_all(&dir);
        let out = out.expect("run the program");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ran x\n");
    }

    #[test]
    fn an_unwritable_path_panics() {
        let r = std::panic::catch_unwind(|| {
            write_executable(Path::new("/nonexistent-dir/prog"), b"x");
        });
        assert!(r.is_err());
    }
}
