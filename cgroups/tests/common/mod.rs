//! Shared test helpers: unique kos-named cgroups, guards that always clean up, sleepers.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use kos_cgroups::Manager;
use oci_spec::runtime::LinuxResources;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A cgroup path unique to this process and call, containing "kos".
pub fn unique_path(tag: &str) -> String {
    format!(
        "/kos-test-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

/// Kills everything in the cgroup and removes it when dropped, even after a failed assert.
pub struct CgGuard(pub Manager);

impl Drop for CgGuard {
    fn drop(&mut self) {
        let _ = self.0.thaw();
        let _ = self.0.kill_all(libc::SIGKILL);
        if let Err(e) = self.0.remove() {
            eprintln!("cleanup: {e}");
        }
    }
}

impl std::ops::Deref for CgGuard {
    type Target = Manager;
    fn deref(&self) -> &Manager {
        &self.0
    }
}

/// A child process that is killed and reaped when dropped.
pub struct ChildGuard(pub Child);

impl ChildGuard {
    pub fn pid(&self) -> i32 {
        self.0.id() as i32
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn sleeper() -> ChildGuard {
    ChildGuard(
        Command::new("/bin/busybox")
            .args(["sleep", "1000"])
            .stdin(Stdio::null())
            .spawn()
            .expect("spawn busybox sleep"),
    )
}

pub fn resources(json: &str) -> LinuxResources {
    serde_json::from_str(json).expect("resources json")
}

pub fn read(p: impl AsRef<Path>) -> String {
    let p = p.as_ref();
    std::fs::read_to_string(p)
        .unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
        .trim()
        .to_string()
}

/// Waits (bounded) until `f` holds.
pub fn wait_until(mut f: impl FnMut() -> bool) -> bool {
    // 15 s: the whole suite runs two test binaries at once on two cores, and a freshly
    // spawned shell can take seconds to get going there.
    for _ in 0..1500 {
        if f() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    false
}

/// The state letter of /proc/<pid>/stat ("S", "T", "Z", ...), or None once gone.
pub fn proc_state(pid: i32) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = s.rsplit_once(')')?.1;
    after.trim_start().chars().next()
}

/// A block device on this machine as (major, minor), for throttle tests.
pub fn some_block_device() -> Option<(u64, u64)> {
    for e in std::fs::read_dir("/sys/block").ok()?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("loop") || name.starts_with("ram") || name.starts_with("zram") {
            continue;
        }
        let dev = std::fs::read_to_string(e.path().join("dev")).ok()?;
        let (a, b) = dev.trim().split_once(':')?;
        return Some((a.parse().ok()?, b.parse().ok()?));
    }
    None
}

/// A shell that counts as fast as it can into a file, so a test can see it stop and resume.
pub struct Counter {
    pub child: ChildGuard,
    pub file: std::path::PathBuf,
}

impl Counter {
    pub fn spawn(tag: &str) -> Counter {
        let file = std::env::temp_dir().join(format!(
            "kos-counter-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        ));
        let script = format!(
            "i=0; while true; do i=$((i+1)); echo $i > {}; done",
            file.display()
        );
        let child = ChildGuard(
            Command::new("/bin/busybox")
                .args(["sh", "-c", &script])
                .stdin(Stdio::null())
                .spawn()
                .expect("spawn counter"),
        );
        Counter { child, file }
    }

    /// The current count. The shell truncates before each write, so an empty read is
    /// retried; a process frozen between truncate and write reads as 0 every time.
    pub fn value(&self) -> u64 {
        for _ in 0..100 {
            if let Some(v) = std::fs::read_to_string(&self.file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                return v;
            }
        }
        0
    }

    /// Whether the count moves within `ms` milliseconds.
    pub fn moving(&self, ms: u64) -> bool {
        let a = self.value();
        std::thread::sleep(std::time::Duration::from_millis(ms));
        self.value() != a
    }
}

impl Drop for Counter {
    fn drop(&mut self) {
        // The shell first, or it writes the file again after we remove it.
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
        let _ = std::fs::remove_file(&self.file);
    }
}

/// Records that the calling test cannot run here because the machine lacks a kernel feature
/// (`reason` names it). A missing tool is never a skip: scripts/deps.sh installs it. `make
/// test` points KOS_TEST_SKIPS at a directory and counts the lines written there.
pub fn skip(reason: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .to_string();
    let line = format!("{} {test}: {reason}\n", env!("CARGO_PKG_NAME"));
    eprint!("KOS-SKIP {line}");
    if let Some(dir) = std::env::var_os("KOS_TEST_SKIPS") {
        use std::io::Write;
        let p = Path::new(&dir).join("skips.log");
        // One O_APPEND write per line: concurrent tests never interleave.
        let res = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = res {
            panic!("recording the skip in {}: {e}", p.display());
        }
    }
}

/// Waits up to `ms` milliseconds for `fd` to become readable.
pub fn readable(fd: std::os::fd::BorrowedFd<'_>, ms: i32) -> bool {
    use std::os::fd::AsRawFd;
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let n = unsafe { libc::poll(&mut p, 1, ms) };
    n == 1 && p.revents & libc::POLLIN != 0
}

/// A process in `cg` that, once told to go, touches 64 MiB: more than the small memory
/// limits the OOM tests set, with no swap to spill into.
pub fn memory_hog(cg: &Manager) -> ChildGuard {
    use std::io::Write;
    let mut c = ChildGuard(
        Command::new("/bin/busybox")
            .args([
                "sh",
                "-c",
                "read go; exec /bin/busybox dd if=/dev/zero of=/dev/null bs=64M count=1",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn busybox sh"),
    );
    cg.add_process(c.pid()).unwrap();
    c.0.stdin.take().unwrap().write_all(b"go\n").unwrap();
    c
}

/// Runs the OOM scenario on a memory-limited `cg`: no event before, exactly one kill seen
/// through the watch's descriptor, the victim dead of SIGKILL, then `Gone` once removed.
pub fn check_oom_watch(cg: &Manager) {
    use std::os::fd::AsFd;
    use std::os::unix::process::ExitStatusExt;
    let mut w = kos_cgroups::OomWatch::open(cg)
        .unwrap()
        .expect("a memory cgroup to watch");
    assert_eq!(w.read_events().unwrap(), 0, "no OOM yet");
    assert!(!readable(w.as_fd(), 0), "readable before any OOM");
    let mut hog = memory_hog(cg);
    let mut kills = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while kills == 0 && std::time::Instant::now() < deadline {
        if readable(w.as_fd(), 1000) {
            kills += w.read_events().unwrap();
        }
    }
    // One process, one allocation: exactly one kill, counted once.
    assert_eq!(kills, 1, "OOM kills reported within 20 s");
    let st = hog.0.wait().unwrap();
    assert_eq!(st.signal(), Some(libc::SIGKILL), "hog: {st:?}");
    // Drained: nothing more pending, and a spurious read counts nothing.
    assert!(!readable(w.as_fd(), 200));
    assert_eq!(w.read_events().unwrap(), 0);
    cg.remove().unwrap();
    assert!(readable(w.as_fd(), 5000), "no wake-up when the cgroup went");
    match w.read_events() {
        Err(kos_cgroups::Error::Gone { .. }) => {}
        other => panic!("after removal: {other:?}"),
    }
}

/// The container's directory in the v1 hierarchy carrying `controller`, as the manager
/// reports it for mounting.
pub fn v1_dir(cg: &Manager, controller: &str) -> Option<std::path::PathBuf> {
    cg.mount_sources()
        .into_iter()
        .find(|s| !s.v2 && s.controllers.iter().any(|c| c == controller))
        .map(|s| s.host_dir)
}

/// The container's directory in the v2 hierarchy.
pub fn v2_dir(cg: &Manager) -> Option<std::path::PathBuf> {
    cg.mount_sources()
        .into_iter()
        .find(|s| s.v2)
        .map(|s| s.host_dir)
}
