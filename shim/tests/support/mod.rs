//! Test harness: a private containerd 1.6 with the shim on its PATH, busybox images built
//! from /bin/busybox (never downloaded), a ttrpc client to drive the shim directly, and Drop
//! guards that leave no process, mount, cgroup, socket or directory behind.
#![allow(dead_code)]

pub mod image;
pub mod ttrpc;

use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A name unique on this machine for this test run (tests run in parallel, and other
/// engineers' tests at the same time).
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn shim_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_containerd-shim-kos-v2"))
}

/// `$KOSRUN` (make test's shipped kosrun) when set, else target/release/kosrun, built
/// once if it is not there yet.
pub fn kosrun() -> PathBuf {
    static K: OnceLock<PathBuf> = OnceLock::new();
    K.get_or_init(|| {
        if let Some(p) = kos_testsupport::kosrun_from_env() {
            return p;
        }
        let target = shim_binary()
            .parent()
            .and_then(Path::parent)
            .expect("target dir")
            .to_path_buf();
        let k = target.join("release/kosrun");
        if !k.is_file() {
            let st = kos_testsupport::cargo()
                .args(["build", "--release", "-p", "kosrun"])
                .status()
                .expect("cargo build kosrun");
            assert!(st.success(), "building kosrun failed");
        }
        k
    })
    .clone()
}

/// A directory removed (after unmounting whatever is under it) on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(unique(name));
        std::fs::create_dir_all(&p).expect("mkdir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        unmount_under(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Every mount point at or below `dir`, deepest first, detached.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut v: Vec<PathBuf> = info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v
}

pub fn unmount_under(dir: &Path) {
    for m in mounts_under(dir) {
        let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Removes cgroup directories named `name` directly under each hierarchy root (and what
/// is below them), leaves first.
pub fn remove_cgroups(name: &str) {
    let Ok(roots) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    let mut dirs: Vec<PathBuf> = roots
        .filter_map(|e| e.ok())
        .map(|e| e.path().join(name))
        .chain(std::iter::once(
            PathBuf::from("/sys/fs/cgroup/unified").join(name),
        ))
        .filter(|p| p.is_dir())
        .collect();
    let mut all = Vec::new();
    while let Some(d) = dirs.pop() {
        if let Ok(rd) = std::fs::read_dir(&d) {
            for e in rd.filter_map(|e| e.ok()) {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    dirs.push(e.path());
                }
            }
        }
        all.push(d);
    }
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    // A cgroup whose last task is still exiting refuses rmdir (EBUSY) for a moment: the
    // runtime's delete may have ended just before.
    for _ in 0..50 {
        all.retain(|d| std::fs::remove_dir(d).is_err() && d.exists());
        if all.is_empty() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Pids of processes whose command line contains `needle`.
pub fn pids_with_cmdline(needle: &str) -> Vec<i32> {
    let mut out = Vec::new();
    let me = std::process::id() as i32;
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains(needle) {
                out.push(pid);
            }
        }
    }
    out
}

pub fn alive(pid: i32) -> bool {
    // A zombie is dead for our purposes.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit(')')
                .next()
                .map(|r| !r.trim_start().starts_with('Z'))
                .unwrap_or(false)
        })
        .unwrap_or(false)
}

pub fn kill9(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// A private containerd: its own root, state, sockets and config, the shim on its PATH.
pub struct Containerd {
    pub dir: TempDir,
    pub ns: String,
    child: Option<Child>,
    cri: bool,
    pub image: String,
}

impl Containerd {
    pub fn start(name: &str) -> Containerd {
        Self::start_with(name, false)
    }

    pub fn start_with(name: &str, cri: bool) -> Containerd {
        let dir = TempDir::new(&format!("kshim-{name}"));
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).expect("mkdir bin");
        // A copy (not a link) so that the shim finds the release kosrun next to itself.
        let shim = bin.join("containerd-shim-kos-v2");
        if std::fs::hard_link(shim_binary(), &shim).is_err() {
            std::fs::copy(shim_binary(), &shim).expect("copy shim");
        }
        symlink(kosrun(), bin.join("kosrun")).expect("link kosrun");
        let mut c = Containerd {
            // The CRI plugin works in containerd's k8s.io namespace (of this private
            // containerd only).
            ns: if cri {
                "k8s.io".to_string()
            } else {
                unique("kt")
            },
            dir,
            child: None,
            cri,
            image: "kos.test/busybox:latest".to_string(),
        };
        c.write_config();
        c.launch();
        let archive = c.dir.path().join("busybox.tar");
        image::docker_archive(&archive, &c.image, &["sh"]);
        let out = c.ctr(&["images", "import", archive.to_str().expect("utf8")]);
        assert!(out.status.success(), "import: {}", stderr(&out));
        if cri {
            // The sandbox ("pause") image containerd's config names, from busybox too.
            let pause = c.dir.path().join("pause.tar");
            image::docker_archive(&pause, "kos.test/pause:latest", &["sleep", "1000000"]);
            let out = c.ctr(&["images", "import", pause.to_str().expect("utf8")]);
            assert!(out.status.success(), "import: {}", stderr(&out));
        }
        c
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("c.sock")
    }

    fn write_config(&self) {
        let d = self.dir.path();
        let mut cfg = format!(
            "version = 2\nroot = \"{r}\"\nstate = \"{s}\"\n",
            r = d.join("root").display(),
            s = d.join("state").display()
        );
        if !self.cri {
            cfg.push_str("disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n");
        }
        cfg.push_str(&format!(
            "[grpc]\n  address = \"{}\"\n[ttrpc]\n  address = \"{}.ttrpc\"\n",
            self.socket().display(),
            self.socket().display()
        ));
        if self.cri {
            cfg.push_str(&cri_config(d, &self.ns));
        }
        std::fs::write(d.join("config.toml"), cfg).expect("config");
    }

    fn launch(&mut self) {
        let d = self.dir.path();
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(d.join("containerd.log"))
            .expect("log");
        let path = format!(
            "{}:{}",
            d.join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .arg("--log-level")
            .arg("debug")
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("containerd");
        self.child = Some(child);
        let sock = self.socket();
        wait_for("containerd socket", Duration::from_secs(20), || {
            std::os::unix::net::UnixStream::connect(&sock).is_ok()
        });
    }

    /// Stops containerd (SIGTERM), leaving shims and containers running.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let end = Instant::now() + Duration::from_secs(10);
            loop {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                if Instant::now() > end {
                    let _ = c.kill();
                    let _ = c.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.launch();
    }

    pub fn ctr_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ctr");
        c.arg("-a")
            .arg(self.socket())
            .arg("-n")
            .arg(&self.ns)
            .args(args);
        c.stdin(Stdio::null());
        c
    }

    pub fn ctr(&self, args: &[&str]) -> Output {
        self.ctr_cmd(args).output().expect("ctr")
    }

    /// ctr with a pseudo-terminal as its stdin/stdout (for -t), through script(1).
    pub fn ctr_tty(&self, args: &[&str]) -> Output {
        let mut line = format!("ctr -a {} -n {}", self.socket().display(), self.ns);
        for a in args {
            line.push(' ');
            line.push_str(&shell_quote(a));
        }
        Command::new("script")
            .args(["-qec", &line, "/dev/null"])
            .stdin(Stdio::null())
            .output()
            .expect("script")
    }

    /// The shim serving task `id` (from its command line).
    pub fn shim_pid(&self, id: &str) -> Option<i32> {
        let needle = format!("-address {} ", self.socket().display());
        pids_with_cmdline(&needle).into_iter().find(|p| {
            std::fs::read(format!("/proc/{p}/cmdline"))
                .map(|c| {
                    let c = String::from_utf8_lossy(&c).replace('\0', " ");
                    c.contains(&format!("-id {id} "))
                })
                .unwrap_or(false)
        })
    }

    pub fn task_pid(&self, id: &str) -> i32 {
        let out = self.ctr(&["tasks", "ls"]);
        stdout(&out)
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no task {id} in {}", stdout(&out)))
    }

    pub fn task_status(&self, id: &str) -> String {
        let out = self.ctr(&["tasks", "ls"]);
        stdout(&out)
            .lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap_or("")
            .to_string()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if self.child.is_some() {
            let ids = stdout(&self.ctr(&["tasks", "ls", "-q"]));
            for id in ids.lines().filter(|l| !l.is_empty()) {
                let _ = self.ctr(&["tasks", "kill", "-a", "-s", "9", id]);
            }
            for id in ids.lines().filter(|l| !l.is_empty()) {
                for _ in 0..50 {
                    if self.ctr(&["tasks", "rm", "-f", id]).status.success() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
            let cs = stdout(&self.ctr(&["containers", "ls", "-q"]));
            for id in cs.lines().filter(|l| !l.is_empty()) {
                let _ = self.ctr(&["containers", "rm", id]);
            }
        }
        self.stop();
        let needle = format!("-address {} ", self.socket().display());
        for pid in pids_with_cmdline(&needle) {
            kill9(pid);
        }
        unmount_under(self.dir.path());
        // k8s.io is a shared name: the CRI test removes its own pod cgroup parent instead.
        if !self.cri {
            remove_cgroups(&self.ns);
            let _ = std::fs::remove_dir_all(format!("/run/containerd/kos/{}", self.ns));
            let _ = std::fs::remove_dir_all(format!("/run/containerd/runc/{}", self.ns));
        }
    }
}

fn cri_config(d: &Path, ns: &str) -> String {
    let _ = ns;
    format!(
        r#"[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "kos.test/pause:latest"
  disable_tcp_service = true
  disable_apparmor = true
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "kos"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.kos]
      runtime_type = "io.containerd.kos.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{bin}"
    conf_dir = "{conf}"
"#,
        bin = d.join("cni-bin").display(),
        conf = d.join("cni-conf").display()
    )
}

pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Reads what a child printed so far without blocking for more (for `ctr events`).
pub fn read_available(r: &mut impl Read, buf: &mut Vec<u8>) {
    let mut chunk = [0u8; 4096];
    if let Ok(n) = r.read(&mut chunk) {
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Records that the calling test cannot run here because the machine lacks what it needs
/// (`reason` says what). `make test` points KOS_TEST_SKIPS at a directory and counts the
/// lines written there.
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

/// v1 controllers plus a cgroup2 mount at /sys/fs/cgroup/unified.
pub fn hybrid_cgroups() -> bool {
    Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists()
        && Path::new("/sys/fs/cgroup/memory").is_dir()
}

/// The bundle's container shares the host's pid namespace (its execs do not die with the
/// init).
pub fn share_host_pid_namespace(bundle: &Path) {
    let cfg = bundle.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cfg).expect("read")).expect("json");
    v["linux"]["namespaces"]
        .as_array_mut()
        .expect("namespaces")
        .retain(|n| n["type"] != "pid");
    std::fs::write(&cfg, v.to_string()).expect("write");
}

/// A runtime named `name` (in its own directory under `dir`) that appends its arguments,
/// one line per call, to a log and runs kosrun. Returns the runtime and its log.
pub fn logging_runtime(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let sub = dir.join(format!("rt-{name}"));
    std::fs::create_dir_all(&sub).expect("mkdir");
    let log = sub.join("calls");
    let bin = sub.join(name);
    let text = format!(
        "#!/bin/sh\necho \"$*\" >> '{}'\nexec '{}' \"$@\"\n",
        log.display(),
        kosrun().display()
    );
    kos_testsupport::write_executable(&bin, text.as_bytes());
    (bin, log)
}

/// The task options containerd's runc shim takes (`containerd.runc.v1.Options`: the
/// runtime binary and its root), or with `start_at_create` KOS's own message that adds it
/// (`io.kos.shim.v1.Options`, field 100), as kosd sends.
pub fn runtime_options(
    binary: &str,
    root: &Path,
    start_at_create: bool,
) -> protobuf::well_known_types::any::Any {
    let mut buf = Vec::new();
    {
        let mut os = protobuf::CodedOutputStream::vec(&mut buf);
        os.write_string(6, binary).expect("encode");
        os.write_string(7, &root.to_string_lossy()).expect("encode");
        if start_at_create {
            os.write_bool(100, true).expect("encode");
        }
        os.flush().expect("flush");
    }
    let mut a = protobuf::well_known_types::any::Any::new();
    a.type_url = if start_at_create {
        "io.kos.shim.v1.Options"
    } else {
        "containerd.runc.v1.Options"
    }
    .into();
    a.value = buf;
    a
}
