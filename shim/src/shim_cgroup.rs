//! `ShimCgroup` of containerd's runc options: the cgroup the shim itself is accounted in.
//! containerd hands the options to the `start` action on stdin (a protobuf `Any`); kosd, which
//! gives no stdin, has it applied at Create from the request's options.

use std::io::Read;
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use protobuf::well_known_types::any::Any;
use protobuf::Message;

use crate::options::RuntimeOptions;

/// More than any runtime options message; a larger input is not options.
const MAX_OPTIONS: usize = 64 * 1024;
/// containerd writes the options before it waits for the shim's answer; a writer that keeps
/// the pipe open without writing is not containerd.
const STDIN_WAIT: Duration = Duration::from_secs(2);

/// The runtime options containerd passes on stdin, when stdin is a pipe or a file carrying
/// them (a terminal, /dev/null or nothing at all carry none).
pub fn options_from_stdin() -> Result<Option<RuntimeOptions>, String> {
    let stdin = std::io::stdin();
    let Ok(st) = nix::sys::stat::fstat(stdin.as_fd()) else {
        return Ok(None);
    };
    let kind = st.st_mode & libc::S_IFMT;
    if kind != libc::S_IFIFO && kind != libc::S_IFREG {
        return Ok(None);
    }
    let data = read_bounded_with_deadline(&mut stdin.lock(), Instant::now() + STDIN_WAIT)
        .map_err(|e| format!("reading the runtime options on stdin: {e}"))?;
    if data.is_empty() {
        return Ok(None);
    }
    let any = Any::parse_from_bytes(&data)
        .map_err(|e| format!("runtime options on stdin are not a protobuf Any: {e}"))?;
    RuntimeOptions::from_any(Some(&any)).map(Some)
}

fn read_bounded_with_deadline(
    r: &mut (impl Read + AsFd),
    deadline: Instant,
) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut pfd = [nix::poll::PollFd::new(
            r.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let ms = u16::try_from(left.as_millis()).unwrap_or(u16::MAX);
        match nix::poll::poll(&mut pfd, ms) {
            Ok(0) => return Err(std::io::Error::other("timed out waiting for the writer")),
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
        match r.read(&mut buf) {
            Ok(0) => return Ok(out),
            Ok(n) => {
                if out.len() + n > MAX_OPTIONS {
                    return Err(std::io::Error::other(format!(
                        "more than {MAX_OPTIONS} bytes"
                    )));
                }
                out.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Moves `pid` into the cgroup `path` in every hierarchy where that cgroup exists (as
/// containerd's runc shim does: a slice need not exist under every v1 controller). The
/// cgroup belongs to the caller: it is never created here.
pub fn join(path: &str, pid: i32) -> Result<(), String> {
    let mgr = kos_cgroups::Manager::new(Some(path), "shim")
        .map_err(|e| format!("shim cgroup {path:?}: {e}"))?;
    let dirs: Vec<_> = mgr
        .mount_sources()
        .into_iter()
        .map(|m| m.host_dir)
        .filter(|d| d.is_dir())
        .collect();
    if dirs.is_empty() {
        return Err(format!(
            "shim cgroup {path:?} does not exist in any cgroup hierarchy"
        ));
    }
    for d in dirs {
        let procs = d.join("cgroup.procs");
        std::fs::write(&procs, pid.to_string()).map_err(|e| {
            format!(
                "moving the shim into cgroup {path:?} ({}): {e}",
                procs.display()
            )
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn stdin_reader_is_bounded_and_gives_up_on_a_silent_writer() {
        let (mut r, mut w) = std::os::unix::net::UnixStream::pair().expect("pair");
        w.write_all(b"abc").expect("write");
        let far = Instant::now() + Duration::from_secs(5);
        let t = Instant::now();
        let e = read_bounded_with_deadline(&mut r, Instant::now() + Duration::from_millis(200))
            .expect_err("silent writer");
        assert!(e.to_string().contains("timed out"), "{e}");
        assert!(t.elapsed() < Duration::from_secs(2));
        drop(w);
        assert!(read_bounded_with_deadline(&mut r, far)
            .expect("eof")
            .is_empty());

        let (mut r, mut w) = std::os::unix::net::UnixStream::pair().expect("pair");
        let big = vec![0u8; MAX_OPTIONS + 1];
        let writer = std::thread::spawn(move || {
            let _ = w.write_all(&big);
        });
        let e = read_bounded_with_deadline(&mut r, far).expect_err("too big");
        assert!(e.to_string().contains("more than"), "{e}");
        drop(r);
        writer.join().expect("writer");
    }

    #[test]
    fn a_missing_cgroup_is_named_in_the_error() {
        let e = join("/kos-shim-no-such-cgroup-here", std::process::id() as i32)
            .expect_err("missing cgroup");
        assert!(e.contains("/kos-shim-no-such-cgroup-here"), "{e}");
        assert!(e.contains("does not exist"), "{e}");
    }
}
