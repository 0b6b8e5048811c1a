//! Harness for kos's end-to-end tests: the release binaries (kosd, kos, the
//! shim, kosrun), a kosd per test on its own roots and socket, a loopback
//! docker-registry holding busybox images made here, and the real docker CLI
//! pointed at the same kosd for side-by-side checks. Everything a test starts
//! or makes is removed on drop, also when it fails.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

pub const DOCKER: &str = "/usr/local/bin/docker";

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A name no other test (here or in another process) uses.
pub fn uniq(what: &str) -> String {
    format!(
        "kos-{what}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    )
}

fn release_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("release")
}

fn cargo_release(pkgs: &[&str]) {
    let mut c = kos_testsupport::cargo();
    c.args(["build", "--release", "-q"]);
    for p in pkgs {
        c.args(["-p", p]);
    }
    let ok = c
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("cargo build")
        .success();
    assert!(ok, "cargo build --release {pkgs:?} failed");
}

/// A binary under test: `kos` is the one cargo built for these tests; the
/// daemon side (kosd, the shim, kosrun) is the release build of this tree,
/// unless KOS_TEST_DAEMON_DIR names a directory holding all three (kosd
/// finds the shim beside itself).
pub fn bin(name: &str) -> PathBuf {
    static DAEMON: std::sync::Once = std::sync::Once::new();
    if name == "kos" {
        return PathBuf::from(env!("CARGO_BIN_EXE_kos"));
    }
    if let Some(d) = std::env::var_os("KOS_TEST_DAEMON_DIR") {
        return PathBuf::from(d).join(name);
    }
    DAEMON.call_once(|| cargo_release(&["kosd", "kos-shim", "kosrun"]));
    release_dir().join(name)
}

/// A directory under /tmp, unmounted below and removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(what: &str) -> TempDir {
        let p = std::env::temp_dir().join(uniq(what));
        std::fs::create_dir_all(&p).expect("mkdir");
        TempDir(p)
    }
    pub fn path(&self, rel: &str) -> PathBuf {
        self.0.join(rel)
    }
}

fn unmount_under(root: &Path) {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut points: Vec<String> = info
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(str::to_string))
        .filter(|m| Path::new(m).starts_with(root))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for p in points {
        let c = std::ffi::CString::new(p).expect("mount point");
        // SAFETY: a valid NUL-terminated path; failures are ignored on cleanup.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        unmount_under(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// docker-registry on a free loopback port, killed on drop.
pub struct Registry {
    _process: kos_testsupport::RegistryProcess,
    pub addr: String,
    _dir: TempDir,
}

impl Registry {
    pub fn start() -> Registry {
        let dir = TempDir::new("reg");
        let process = kos_testsupport::RegistryProcess::spawn(
            &dir.path("config.yml"),
            &dir.path("data"),
            None,
            "",
        );
        Registry {
            addr: process.addr(),
            _process: process,
            _dir: dir,
        }
    }

    pub fn name(&self, repo_tag: &str) -> String {
        format!("{}/{repo_tag}", self.addr)
    }
}

fn hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Makes a busybox image (one layer: /bin/busybox, its applets, passwd and
/// group, plus `extra` files) as an OCI layout and pushes it with skopeo.
pub fn push_busybox(reference: &str, extra: &[(&str, &str)], config: serde_json::Value) {
    let work = TempDir::new("img");
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, data: &[u8], mode: u32, link: Option<&str>| {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h.set_mode(mode);
        match link {
            Some(t) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_size(0);
                tar.append_link(&mut h, path, t).expect("tar link");
            }
            None if path.ends_with('/') => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_size(0);
                tar.append_data(&mut h, path, std::io::empty())
                    .expect("tar dir");
            }
            None => {
                h.set_size(data.len() as u64);
                tar.append_data(&mut h, path, data).expect("tar file");
            }
        }
    };
    for d in [
        "bin/", "etc/", "tmp/", "root/", "proc/", "sys/", "dev/", "home/", "var/",
    ] {
        add(d, b"", if d == "tmp/" { 0o1777 } else { 0o755 }, None);
    }
    let bb = std::fs::read("/bin/busybox").expect("busybox");
    add("bin/busybox", &bb, 0o755, None);
    let applets = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    for a in String::from_utf8_lossy(&applets.stdout).lines() {
        if !a.is_empty() && a != "busybox" {
            add(&format!("bin/{a}"), b"", 0o777, Some("busybox"));
        }
    }
    add(
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
        0o644,
        None,
    );
    add("etc/group", b"root:x:0:\nnogroup:x:65534:\n", 0o644, None);
    for (p, c) in extra {
        add(p, c.as_bytes(), 0o755, None);
    }
    let layer = tar.into_inner().expect("layer");
    let blobs = work.path("oci/blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("blobs");
    let put = |b: &[u8]| -> String {
        let h = hex(b);
        std::fs::write(blobs.join(&h), b).expect("blob");
        h
    };
    let layer_hex = put(&layer);
    let mut cfg = serde_json::json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["sh"],
    });
    if let (Some(c), Some(extra)) = (cfg.as_object_mut(), config.as_object()) {
        for (k, v) in extra {
            c.insert(k.clone(), v.clone());
        }
    }
    let image_config = serde_json::json!({
        "architecture": "amd64", "os": "linux", "created": "2024-01-01T00:00:00Z",
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_hex}")]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "kos tests: busybox"}],
    })
    .to_string();
    let cfg_hex = put(image_config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{cfg_hex}"), "size": image_config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{layer_hex}"), "size": layer.len()}],
    })
    .to_string();
    let man_hex = put(manifest.as_bytes());
    std::fs::write(
        work.path("oci/index.json"),
        serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{man_hex}"), "size": manifest.len(), "annotations": {"org.opencontainers.image.ref.name": "img"}}]}).to_string(),
    )
    .expect("index");
    std::fs::write(
        work.path("oci/oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("layout");
    let out = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:img", work.path("oci").display()))
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo");
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A kosd of the test's own, stopped and cleaned up on drop.
pub struct Daemon {
    proc: Option<Child>,
    pub dir: TempDir,
    pub sock: PathBuf,
    /// The daemon's own bridge and nft table name; its cgroup parent is `kos-test-NAME`.
    name: String,
}

/// A name of at most 15 characters (an interface name), unique per test daemon.
fn daemon_name() -> String {
    format!(
        "kosc{}x{}",
        std::process::id() % 1_000_000,
        SEQ.fetch_add(1, Ordering::SeqCst)
    )
}

/// Removes a cgroup parent in every hierarchy, deepest first, killing what still runs there.
fn remove_cgroup_parent(parent: &str) {
    let mut roots: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .collect();
    roots.push(PathBuf::from("/sys/fs/cgroup"));
    let mut all = Vec::new();
    let mut todo: Vec<PathBuf> = roots
        .into_iter()
        .map(|r| r.join(parent))
        .filter(|p| p.is_dir())
        .collect();
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(e.path());
            }
        }
        all.push(d);
    }
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for d in &all {
        let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            // SAFETY: killing what runs in this test daemon's own cgroup parent.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    for d in &all {
        let until = Instant::now() + Duration::from_secs(5);
        while std::fs::remove_dir(d).is_err() && d.exists() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Daemon {
    pub fn start() -> Daemon {
        Daemon::start_with(&[])
    }

    /// A kosd with extra flags (unit directories, TLS listeners, ...).
    pub fn start_with(extra: &[String]) -> Daemon {
        let kosd = bin("kosd");
        let dir = TempDir::new("kosd");
        let sock = dir.path("run/kos.sock");
        std::fs::write(dir.path("daemon.json"), "{}").expect("daemon.json");
        let log = std::fs::File::create(dir.path("kosd.log")).expect("log");
        let name = daemon_name();
        let proc = Command::new(kosd)
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .arg("--data-root")
            .arg(dir.path("data"))
            .arg("--exec-root")
            .arg(dir.path("run"))
            .arg("--config-file")
            .arg(dir.path("daemon.json"))
            .args(["--bridge", &name, "--nft-table", &name])
            .arg("--cgroup-parent")
            .arg(format!("kos-test-{name}"))
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("kosd");
        let mut d = Daemon {
            proc: Some(proc),
            dir,
            sock,
            name,
        };
        let until = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut s) = std::os::unix::net::UnixStream::connect(&d.sock) {
                let _ = s.write_all(b"GET /_ping HTTP/1.0\r\n\r\n");
                let mut r = String::new();
                let _ = s.read_to_string(&mut r);
                if r.ends_with("OK") {
                    break;
                }
            }
            if let Some(Ok(Some(st))) = d.proc.as_mut().map(Child::try_wait) {
                panic!("kosd exited ({st}): {}", d.log());
            }
            assert!(Instant::now() < until, "kosd did not answer: {}", d.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.sock.display())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path("kosd.log")).unwrap_or_default()
    }

    fn cmd(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        c.arg("-H").arg(self.host());
        c.env_remove("DOCKER_HOST")
            .env_remove("KOS_HOST")
            .env_remove("DOCKER_CONTEXT");
        c.env("DOCKER_CONFIG", self.dir.path("docker-config"));
        c.env("TZ", "UTC");
        c.stdin(Stdio::null());
        c
    }

    pub fn kos_command(&self) -> Command {
        self.cmd(&bin("kos"))
    }

    pub fn kos(&self, args: &[&str]) -> Output {
        self.kos_command().args(args).output().expect("kos")
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        self.cmd(Path::new(DOCKER))
            .args(args)
            .output()
            .expect("docker")
    }

    pub fn docker_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.cmd(Path::new(DOCKER));
        for (k, v) in env {
            c.env(k, v);
        }
        c.args(args).output().expect("docker")
    }

    pub fn kos_in(&self, args: &[&str], input: &[u8]) -> Output {
        piped(self.kos_command().args(args), input)
    }

    pub fn docker_in(&self, args: &[&str], input: &[u8]) -> Output {
        piped(self.cmd(Path::new(DOCKER)).args(args), input)
    }

    /// kos, asserting success; stdout.
    pub fn kos_ok(&self, args: &[&str]) -> String {
        let o = self.kos(args);
        assert!(
            o.status.success(),
            "kos {args:?} -> {:?}\nstdout: {}\nstderr: {}\nkosd log tail: {}",
            o.status.code(),
            out(&o),
            err(&o),
            tail(&self.log())
        );
        out(&o)
    }

    pub fn docker_ok(&self, args: &[&str]) -> String {
        let o = self.docker(args);
        assert!(
            o.status.success(),
            "docker {args:?} -> {:?}\nstdout: {}\nstderr: {}",
            o.status.code(),
            out(&o),
            err(&o)
        );
        out(&o)
    }

    /// Processes whose command line names this daemon's directory.
    fn leftovers(&self) -> Vec<i32> {
        // With the trailing slash: daemon 1's dir must not match daemon 12's.
        let key = format!("{}/", self.dir.0.to_string_lossy());
        let me = self.proc.as_ref().map(|c| c.id() as i32);
        let mut v = Vec::new();
        for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            if Some(pid) == me {
                continue;
            }
            if let Ok(c) = std::fs::read(format!("/proc/{pid}/cmdline")) {
                if String::from_utf8_lossy(&c).contains(&key)
                    && !String::from_utf8_lossy(&c).contains("docker")
                {
                    v.push(pid);
                }
            }
        }
        v
    }
}

pub fn piped(c: &mut Command, input: &[u8]) -> Output {
    let mut ch = c
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut i = ch.stdin.take().expect("stdin");
    let data = input.to_vec();
    let w = std::thread::spawn(move || {
        let _ = i.write_all(&data);
    });
    let o = ch.wait_with_output().expect("wait");
    let _ = w.join();
    o
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            // SAFETY: signalling the daemon this test started.
            unsafe { libc::kill(p.id() as i32, libc::SIGTERM) };
            let until = Instant::now() + Duration::from_secs(20);
            while p.try_wait().ok().flatten().is_none() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = p.kill();
            let _ = p.wait();
        }
        for pid in self.leftovers() {
            // SAFETY: a shim or container process of this test's daemon.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(50));
        // What the daemon keeps after it stops (as dockerd keeps docker0 and its cgroup
        // parent): this test's own bridge, table and cgroup parent.
        remove_cgroup_parent(&format!("kos-test-{}", self.name));
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &self.name])
            .stderr(Stdio::null())
            .status();
        if std::path::Path::new("/sys/class/net")
            .join(&self.name)
            .exists()
        {
            let _ = Command::new("ip")
                .args(["link", "del", &self.name])
                .status();
        }
    }
}

pub fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn tail(s: &str) -> String {
    let l: Vec<&str> = s.lines().collect();
    l[l.len().saturating_sub(30)..].join("\n")
}

/// A daemon with a registry and one pulled busybox image.
pub fn setup(tag: &str) -> (Daemon, Registry, String) {
    let d = Daemon::start();
    let r = Registry::start();
    let img = r.name(&format!("{tag}:1"));
    push_busybox(&img, &[], serde_json::json!({}));
    d.kos_ok(&["pull", "-q", &img]);
    (d, r, img)
}

/// Polls `f` until it is true or `secs` pass.
pub fn eventually(secs: u64, mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    f()
}
