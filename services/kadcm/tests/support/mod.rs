//! What kadcm's integration tests share: unique names, temp dirs, guards for the dummy links
//! and loop devices the tests make, and busybox containers run by the release kosrun.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub fn unique(what: &str) -> String {
    format!(
        "kadcm-{what}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

pub struct TempDir(pub PathBuf);

impl TempDir {
    /// Under /var/tmp, a disk filesystem (loop backing files, container rootfs).
    pub fn new(what: &str) -> TempDir {
        let p = Path::new("/var/tmp").join(unique(what));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A one-ended virtual link `kosdm<hex>` (at most 15 characters), deleted on drop: a dummy
/// device, or an ifb device on kernels built without CONFIG_DUMMY (like this VM's); both are
/// plain netdevs that announce themselves with the same uevents.
pub struct DummyLink(pub String);

impl DummyLink {
    pub fn new() -> DummyLink {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let name = format!("kosdm{:05x}{:x}", std::process::id() & 0xfffff, n & 0xf);
        let dummy = Command::new("ip")
            .args(["link", "add", &name, "type", "dummy"])
            .stderr(Stdio::null())
            .status()
            .expect("ip");
        if !dummy.success() {
            run(Command::new("ip").args(["link", "add", &name, "type", "ifb"]));
        }
        DummyLink(name)
    }

    pub fn delete(&self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.0])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for DummyLink {
    fn drop(&mut self) {
        self.delete();
    }
}

/// A loop device over a small file, detached on drop.
pub struct LoopDev {
    pub dev: PathBuf,
    _file: TempDir,
}

impl LoopDev {
    pub fn new() -> LoopDev {
        let dir = TempDir::new("loop");
        let f = dir.0.join("disk.img");
        std::fs::write(&f, vec![0x5au8; 1 << 20]).expect("backing file");
        let out = run(Command::new("losetup").args(["-f", "--show"]).arg(&f));
        let dev = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        let lp = LoopDev { dev, _file: dir };
        assert!(
            lp.dev.to_string_lossy().starts_with("/dev/loop"),
            "losetup gave {:?}",
            lp.dev
        );
        lp
    }

    pub fn detach(&self) {
        // Only while it is still ours: after a detach the number may go to someone else.
        let back = std::fs::read_to_string(format!("/sys/block/{}/loop/backing_file", self.name()))
            .unwrap_or_default();
        if back
            .trim()
            .starts_with(&self._file.0.to_string_lossy().into_owned())
        {
            let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
        }
    }

    pub fn name(&self) -> String {
        self.dev
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

impl Drop for LoopDev {
    fn drop(&mut self) {
        self.detach();
    }
}

/// The release kosrun (`cargo build --release -p kosrun`), else the debug one, or $KOSRUN.
pub fn kosrun() -> PathBuf {
    if let Some(p) = kos_testsupport::kosrun_from_env() {
        return p;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    for p in [target.join("release/kosrun"), target.join("debug/kosrun")] {
        if p.exists() {
            return p;
        }
    }
    panic!(
        "no kosrun under {}: build it with `cargo build --release -p kosrun`",
        target.display()
    );
}

/// A detached busybox container (`kosrun run -d`) with its own state root, force-deleted
/// on drop.
pub struct Container {
    pub id: String,
    pub root: TempDir,
    pub bundle: TempDir,
}

impl Container {
    pub fn start(args: &[&str]) -> Container {
        Container::start_with(args, |_| {})
    }

    /// Like `start`, with the OCI config changed by `tweak` first.
    pub fn start_with(
        args: &[&str],
        tweak: impl FnOnce(&mut oci_spec::runtime::Spec),
    ) -> Container {
        let c = Container {
            id: unique("ctr"),
            root: TempDir::new("root"),
            bundle: TempDir::new("bundle"),
        };
        let rootfs = c.bundle.0.join("rootfs");
        for d in ["bin", "proc", "sys", "dev", "tmp", "etc"] {
            std::fs::create_dir_all(rootfs.join(d)).expect("rootfs dir");
        }
        kos_testsupport::executable::copy_executable(
            Path::new("/bin/busybox"),
            &rootfs.join("bin/busybox"),
        )
        .expect("busybox");
        for a in [
            "sh", "sleep", "test", "ls", "dd", "cat", "echo", "head", "wc",
        ] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).expect("applet");
        }
        run(Command::new(kosrun()).args(["spec", "-b"]).arg(&c.bundle.0));
        let path = c.bundle.0.join("config.json");
        let mut cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("config")).expect("json");
        cfg["process"]["args"] = serde_json::json!(args);
        cfg["process"]["terminal"] = serde_json::json!(false);
        let mut spec: oci_spec::runtime::Spec = serde_json::from_value(cfg).expect("spec");
        tweak(&mut spec);
        std::fs::write(&path, serde_json::to_vec_pretty(&spec).expect("json")).expect("write");
        let out = c.kosrun(&["run", "-d", "-b", &c.bundle.0.to_string_lossy(), &c.id]);
        assert!(
            out.status.success(),
            "run -d: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        c
    }

    /// Output through files: the detached init keeps inherited pipes open.
    pub fn kosrun(&self, args: &[&str]) -> Output {
        let dir = TempDir::new("out");
        let (o, e) = (dir.0.join("o"), dir.0.join("e"));
        let status = Command::new(kosrun())
            .arg("--root")
            .arg(&self.root.0)
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&o).expect("stdout"))
            .stderr(std::fs::File::create(&e).expect("stderr"))
            .status()
            .expect("kosrun");
        Output {
            status,
            stdout: std::fs::read(&o).unwrap_or_default(),
            stderr: std::fs::read(&e).unwrap_or_default(),
        }
    }

    /// `sh -c script` inside; (exit success, stdout+stderr).
    pub fn sh(&self, script: &str) -> (bool, String) {
        let out = self.kosrun(&["exec", &self.id, "sh", "-c", script]);
        let mut s = String::from_utf8_lossy(&out.stdout).into_owned();
        s.push_str(&String::from_utf8_lossy(&out.stderr));
        (out.status.success(), s)
    }

    pub fn runtime(&self) -> kadcm::container::Runtime {
        kadcm::container::Runtime {
            binary: kosrun(),
            root: Some(self.root.0.clone()),
        }
    }

    /// The container's v1 devices cgroup directory.
    pub fn devices_cgroup(&self) -> Option<PathBuf> {
        let pid = self.runtime().container(&self.id).ok()?.pid;
        let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        cg.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrl, p) = (f.next()?, f.next()?, f.next()?);
            ctrl.split(',')
                .any(|c| c == "devices")
                .then(|| PathBuf::from(format!("/sys/fs/cgroup/devices{p}")))
        })
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = self.kosrun(&["delete", "--force", &self.id]);
    }
}

pub fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn write_policy(dir: &Path, rego: &str) -> PathBuf {
    let p = dir.join("policy.rego");
    std::fs::write(&p, rego).expect("policy");
    p
}

/// Records that the calling test cannot run here because the machine lacks a kernel feature
/// (`reason` names it), for `make test`'s skip count ($KOS_TEST_SKIPS/skips.log).
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
