//! The start action's outcome as the launcher reads it, with stand-in shim binaries (shell
//! scripts): the address taken from the output before the process is reaped, kept only when
//! the action succeeds; a failed action's last stderr line; no address, no client.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use kos_shim_client::LaunchOptions;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let p = std::env::temp_dir().join(format!(
            "kos-launch-action-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).expect("mkdir");
        Scratch(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A stand-in for the shim binary whose `start` runs `script`.
fn fake_shim(dir: &Path, script: &str) -> LaunchOptions {
    let bin = dir.join("fake-shim");
    kos_testsupport::write_executable(&bin, format!("#!/bin/sh\n{script}\n").as_bytes());
    LaunchOptions {
        shim_binary: bin,
        namespace: "kos-launch-action-test".into(),
        address: dir.to_path_buf(),
        publish_binary: PathBuf::from("/bin/true"),
        ttrpc_address: dir.join("events.sock"),
        debug: false,
    }
}

/// A socket listening in `dir`, and a stand-in shim whose `start` prints its address,
/// closes its output and then runs `then`.
fn listening_fake_shim(
    dir: &Path,
    then: &str,
) -> (LaunchOptions, std::os::unix::net::UnixListener, PathBuf) {
    let sock = dir.join("shim.sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).expect("bind");
    let opts = fake_shim(
        dir,
        &format!("echo unix://{}; exec >&-; {then}", sock.display()),
    );
    (opts, listener, sock)
}

fn launch_error(opts: &LaunchOptions, dir: &Path) -> String {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    match rt.block_on(opts.launch("x1", dir)) {
        Ok(_) => panic!("launched"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_failed_start_reports_its_status_and_last_stderr_line() {
    let s = Scratch::new();
    let opts = fake_shim(&s.0, "echo starting >&2; echo 'no bundle here' >&2; exit 3");
    let e = launch_error(&opts, &s.0);
    assert!(e.contains("failed") && e.contains("no bundle here"), "{e}");
    assert!(!e.contains("starting"), "{e}");
}

#[test]
fn a_start_that_prints_no_address_gives_no_client() {
    let s = Scratch::new();
    let opts = fake_shim(&s.0, "echo hello");
    let e = launch_error(&opts, &s.0);
    assert!(
        e.contains("printed no socket address") && e.contains("hello"),
        "{e}"
    );
}

/// The address is printed and the socket accepts, but the action then fails: no client.
#[test]
fn a_start_that_fails_after_printing_its_address_gives_no_client() {
    let s = Scratch::new();
    let (opts, _listener, _) =
        listening_fake_shim(&s.0, "sleep 0.3; echo 'lost its bundle' >&2; exit 1");
    let e = launch_error(&opts, &s.0);
    assert!(e.contains("lost its bundle"), "{e}");
}

/// The output ends before the process does (as a shim whose daemon keeps running while the
/// start process finishes): the connection is made, and the launch waits for the status.
#[test]
fn the_address_is_used_once_the_output_ends_and_the_start_succeeds() {
    let s = Scratch::new();
    let (opts, listener, sock) = listening_fake_shim(&s.0, "sleep 0.3");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let t = std::time::Instant::now();
    let launched = rt.block_on(opts.launch("x1", &s.0)).expect("launch");
    assert_eq!(launched.address, format!("unix://{}", sock.display()));
    // The status was waited for: the stand-in slept after closing its output.
    assert!(t.elapsed() >= std::time::Duration::from_millis(300));
    listener.set_nonblocking(true).expect("nonblocking");
    assert!(listener.accept().is_ok(), "no connection was made");
}
