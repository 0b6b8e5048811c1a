//! Test support: a kosd per test (own data root, exec root and socket), the
//! real docker CLI and Python SDK against it, a loopback docker-registry, and
//! busybox images built here and pushed with skopeo. Everything is removed on
//! drop, also when a test fails.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

static COUNTER: AtomicU64 = AtomicU64::new(0);

pub const DOCKER: &str = "/usr/local/bin/docker";

pub fn unique(tag: &str) -> String {
    format!(
        "kosd-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A directory removed on drop, after unmounting anything below it.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let p = PathBuf::from("/tmp").join(unique(tag));
        std::fs::create_dir_all(&p).expect("scratch dir");
        Scratch(p)
    }
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

pub fn unmount_below(root: &Path) {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut targets: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .filter(|t| Path::new(t).starts_with(root))
        .collect();
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for t in targets {
        let c = std::ffi::CString::new(t).expect("path");
        // SAFETY: valid C string.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        unmount_below(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// docker-registry on a loopback port, killed on drop.
pub struct Registry {
    _process: kos_testsupport::RegistryProcess,
    pub addr: String,
    _dir: Scratch,
}

impl Registry {
    pub fn start() -> Registry {
        Self::start_with("")
    }

    /// With extra top-level YAML (e.g. an htpasswd `auth:` section).
    pub fn start_with(extra: &str) -> Registry {
        let dir = Scratch::new("registry");
        let process = kos_testsupport::RegistryProcess::spawn(
            &dir.join("config.yml"),
            &dir.join("storage"),
            None,
            extra,
        );
        Registry {
            addr: process.addr(),
            _process: process,
            _dir: dir,
        }
    }

    pub fn image(&self, repo_tag: &str) -> String {
        format!("{}/{}", self.addr, repo_tag)
    }
}

/// What goes into a test image besides busybox.
#[derive(Default, Clone)]
pub struct ImageSpec {
    pub cmd: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub env: Vec<String>,
    pub labels: Vec<(String, String)>,
    pub volumes: Vec<String>,
    pub workdir: Option<String>,
    pub user: Option<String>,
    pub healthcheck: Option<serde_json::Value>,
    /// Extra files: (path inside the image, contents).
    pub files: Vec<(String, String)>,
}

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// A busybox image as `spec` says, pushed to `reg` as `<tag>:1` and pulled into `k`; its
/// reference.
pub fn pulled_busybox(k: &Kosd, reg: &Registry, tag: &str, spec: &ImageSpec) -> String {
    let img = reg.image(&format!("{tag}:1"));
    push_busybox(&img, spec);
    k.docker_ok(&["pull", "-q", &img]);
    img
}

/// Builds a busybox image as an OCI layout and pushes it to `reference` with skopeo.
pub fn push_busybox(reference: &str, spec: &ImageSpec) {
    push_busybox_as(reference, spec, None)
}

/// The same, to a registry that wants `user:password`.
pub fn push_busybox_with_creds(reference: &str, creds: &str) {
    push_busybox_as(reference, &ImageSpec::default(), Some(creds))
}

fn push_busybox_as(reference: &str, spec: &ImageSpec, creds: Option<&str>) {
    let work = Scratch::new("img");
    let root = work.join("rootfs");
    for d in ["bin", "etc", "tmp", "root", "var", "proc", "sys", "dev"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("copy busybox");
    let list = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" && !applet.is_empty() {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(applet));
        }
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000:app:/home/app:/bin/sh\n",
    )
    .expect("passwd");
    std::fs::write(
        root.join("etc/group"),
        "root:x:0:\nnogroup:x:65534:\napp:x:1000:\nextra:x:1001:app\n",
    )
    .expect("group");
    for (p, c) in &spec.files {
        let dst = root.join(p.trim_start_matches('/'));
        std::fs::create_dir_all(dst.parent().expect("parent")).expect("mkdir");
        std::fs::write(dst, c).expect("file");
    }
    let layer = work.join("layer.tar");
    let st = Command::new("tar")
        .args(["--numeric-owner", "--owner=0", "--group=0", "-C"])
        .arg(&root)
        .arg("-cf")
        .arg(&layer)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success());
    let layer_bytes = std::fs::read(&layer).expect("layer");
    let layer_hex = sha256_hex(&layer_bytes);
    let blobs = work.join("oci/blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("blobs");
    std::fs::write(blobs.join(&layer_hex), &layer_bytes).expect("blob");
    let mut cfg = serde_json::json!({
        "Env": std::iter::once("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string())
            .chain(spec.env.iter().cloned()).collect::<Vec<_>>(),
        "Cmd": spec.cmd.clone().unwrap_or_else(|| vec!["sh".into()]),
    });
    if let Some(e) = &spec.entrypoint {
        cfg["Entrypoint"] = serde_json::json!(e);
    }
    if !spec.labels.is_empty() {
        let m: serde_json::Map<String, serde_json::Value> = spec
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::json!(v)))
            .collect();
        cfg["Labels"] = serde_json::Value::Object(m);
    }
    if !spec.volumes.is_empty() {
        let m: serde_json::Map<String, serde_json::Value> = spec
            .volumes
            .iter()
            .map(|v| (v.clone(), serde_json::json!({})))
            .collect();
        cfg["Volumes"] = serde_json::Value::Object(m);
    }
    if let Some(w) = &spec.workdir {
        cfg["WorkingDir"] = serde_json::json!(w);
    }
    if let Some(u) = &spec.user {
        cfg["User"] = serde_json::json!(u);
    }
    if let Some(h) = &spec.healthcheck {
        cfg["Healthcheck"] = h.clone();
    }
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": cfg,
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_hex}")]},
        "history": [{"created": "2024-01-01T00:00:00Z", "created_by": "kosd test: busybox"}],
    })
    .to_string();
    let config_hex = sha256_hex(config.as_bytes());
    std::fs::write(blobs.join(&config_hex), &config).expect("config");
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{config_hex}"), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{layer_hex}"), "size": layer_bytes.len()}],
    })
    .to_string();
    let manifest_hex = sha256_hex(manifest.as_bytes());
    std::fs::write(blobs.join(&manifest_hex), &manifest).expect("manifest");
    std::fs::write(
        work.join("oci/index.json"),
        serde_json::json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": format!("sha256:{manifest_hex}"), "size": manifest.len(), "annotations": {"org.opencontainers.image.ref.name": "t"}}],
        })
        .to_string(),
    )
    .expect("index");
    std::fs::write(
        work.join("oci/oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("layout");
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--quiet", "--dest-tls-verify=false"]);
    if let Some(c) = creds {
        cmd.arg("--dest-creds").arg(c);
    }
    let out = cmd
        .arg(format!("oci:{}:t", work.join("oci").display()))
        .arg(format!("docker://{reference}"))
        .output()
        .expect("skopeo");
    assert!(
        out.status.success(),
        "skopeo copy failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running kosd, stopped (and everything it made removed) on drop.
pub struct Kosd {
    /// This daemon's own bridge and nft table, so tests never share them.
    pub bridge: String,
    pub child: Option<Child>,
    pub dir: Scratch,
    pub sock: PathBuf,
    pub extra: Vec<String>,
    pub log: PathBuf,
    /// This daemon's own `--cgroup-parent`, removed (with anything left in it) on drop.
    pub cgroup_parent: String,
}

/// The shim, runtime and kos-dns kosd drives, built once per test binary.
pub fn ensure_helpers() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let st = kos_testsupport::cargo()
            .args([
                "build", "-q", "-p", "kos-shim", "-p", "kosrun", "-p", "kos-dns",
            ])
            .status()
            .expect("cargo build");
        assert!(st.success(), "building the shim and kosrun failed");
    });
}

impl Kosd {
    pub fn start(extra: &[&str]) -> Kosd {
        ensure_helpers();
        let dir = Scratch::new("d");
        let sock = dir.join("exec/kos.sock");
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let bridge = format!("kost{}x{n}", std::process::id() % 100000);
        let mut k = Kosd {
            cgroup_parent: format!("kos-test-{bridge}"),
            bridge,
            child: None,
            log: dir.join("kosd.log"),
            dir,
            sock,
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        k.spawn();
        k
    }

    pub fn data_root(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn exec_root(&self) -> PathBuf {
        self.dir.join("exec")
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.sock.display())
    }

    /// Starts (again) on the same roots.
    pub fn spawn(&mut self) {
        if !self.dir.join("daemon.json").exists() {
            std::fs::write(self.dir.join("daemon.json"), "{}").expect("daemon.json");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_kosd"))
            .arg("-H")
            .arg(self.host())
            .arg("--data-root")
            .arg(self.data_root())
            .arg("--exec-root")
            .arg(self.exec_root())
            .arg("--config-file")
            .arg(self.dir.join("daemon.json"))
            .arg("--bridge")
            .arg(&self.bridge)
            .arg("--nft-table")
            .arg(&self.bridge)
            .arg("--cgroup-parent")
            .arg(&self.cgroup_parent)
            .args(&self.extra)
            .env("KOSD_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start kosd");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(mut s) = std::os::unix::net::UnixStream::connect(&self.sock) {
                let _ = s.write_all(b"GET /_ping HTTP/1.0\r\n\r\n");
                let mut b = String::new();
                let _ = s.read_to_string(&mut b);
                if b.contains("OK") {
                    return;
                }
            }
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("kosd exited with {st}: {}", self.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "kosd did not come up: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// SIGTERM and wait; returns the exit status.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        // SAFETY: signalling our own child.
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(st)) = c.try_wait() {
                return Some(st);
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                return c.wait().ok();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL, as a crash.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn docker_cmd(&self) -> Command {
        let mut c = Command::new(DOCKER);
        c.arg("-H").arg(self.host());
        c.env("DOCKER_CONFIG", self.dir.join("docker-config"));
        c.env_remove("DOCKER_HOST");
        c.env_remove("DOCKER_CONTEXT");
        c.env_remove("DOCKER_BUILDKIT");
        c
    }

    /// Runs the docker CLI; returns the output whatever the status.
    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_cmd()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run docker")
    }

    /// Runs the docker CLI, asserting success; returns stdout.
    pub fn docker_ok(&self, args: &[&str]) -> String {
        let o = self.docker(args);
        assert!(
            o.status.success(),
            "docker {args:?} failed ({}): {}{}\n--- kosd log tail ---\n{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr),
            tail(&self.log_text(), 40)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The docker CLI run in `dir` with extra environment; the output whatever the status.
    pub fn docker_in(&self, dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
        let mut c = self.docker_cmd();
        c.current_dir(dir).args(args).stdin(Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().expect("run docker")
    }

    /// docker with stdin bytes.
    pub fn docker_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut c = self
            .docker_cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("docker");
        c.stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
        c.wait_with_output().expect("docker")
    }

    /// Runs a Python script with the docker SDK pointed at this kosd.
    pub fn python(&self, script: &str) -> Output {
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .env("DOCKER_HOST", self.host())
            .output()
            .expect("python3")
    }

    /// A raw HTTP/1.0 request on the socket; returns (status, body).
    pub fn http(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        let mut s = std::os::unix::net::UnixStream::connect(&self.sock).expect("connect");
        let head = format!(
            "{method} {path} HTTP/1.0\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        // The daemon may refuse (and close) before a large body is all sent.
        let _ = s.write_all(head.as_bytes()).and_then(|_| s.write_all(body));
        let mut r = Vec::new();
        let _ = s.read_to_end(&mut r);
        let r = String::from_utf8_lossy(&r).into_owned();
        let status = r
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = r
            .split_once("\r\n\r\n")
            .map(|x| x.1)
            .unwrap_or("")
            .to_string();
        (status, body)
    }

    /// Processes whose command line mentions our directory (shims, containers' runtime).
    pub fn leftover_processes(&self) -> Vec<(i32, String)> {
        // With the trailing slash: daemon 1's dir must not match daemon 12's.
        let needle = format!("{}/", self.dir.0.to_string_lossy());
        let mut out = Vec::new();
        let me = self.child.as_ref().map(|c| c.id() as i32);
        if let Ok(rd) = std::fs::read_dir("/proc") {
            for e in rd.flatten() {
                let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                    continue;
                };
                if Some(pid) == me {
                    continue;
                }
                if let Ok(c) = std::fs::read(format!("/proc/{pid}/cmdline")) {
                    let c = String::from_utf8_lossy(&c).replace('\0', " ");
                    // The running daemon's own kos-dns child belongs to it; once the
                    // daemon is stopped, a kos-dns still there is a leftover.
                    if me.is_some() && me == parent_pid(pid) && c.contains("kos-dns") {
                        continue;
                    }
                    if c.contains(&needle) && !c.contains(DOCKER) && !c.contains("skopeo") {
                        out.push((pid, c));
                    }
                }
            }
        }
        out
    }
}

/// The parent of a process, from /proc/PID/stat (after the parenthesised command name).
fn parent_pid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    after.split_whitespace().nth(1)?.parse().ok()
}

pub fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

impl Drop for Kosd {
    fn drop(&mut self) {
        self.stop();
        // Whatever the daemon left (a crashed test): shims and their containers.
        for (pid, _) in self.leftover_processes() {
            // SAFETY: killing a process this test's daemon started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(50));
        remove_cgroups(&self.cgroup_dirs());
        unmount_below(&self.dir.0);
        // The daemon keeps its bridges and table (as dockerd keeps docker0): remove ours.
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &self.bridge])
            .stderr(Stdio::null())
            .status();
        if let Ok(links) = std::fs::read_dir("/sys/class/net") {
            for l in links.flatten() {
                let name = l.file_name().to_string_lossy().into_owned();
                if name == self.bridge || self.user_bridges().contains(&name) {
                    let _ = Command::new("ip").args(["link", "del", &name]).status();
                }
            }
        }
    }
}

/// Removes cgroup directories and everything below them, killing what still runs there.
pub fn remove_cgroups(tops: &[PathBuf]) {
    let mut all = Vec::new();
    let mut todo = tops.to_vec();
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                todo.push(e.path());
            }
        }
        all.push(d);
    }
    // Deepest first: a cgroup goes only once its children have.
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for d in &all {
        let procs = std::fs::read_to_string(d.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            // SAFETY: killing what runs in this test daemon's own cgroup parent.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    for d in &all {
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::remove_dir(d).is_err() && d.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Kosd {
    /// This daemon's cgroup parent in every hierarchy where it exists (v1 controllers,
    /// the hybrid's unified tree, or a v2 root).
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        let mut roots: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        roots.push(PathBuf::from("/sys/fs/cgroup"));
        roots
            .into_iter()
            .map(|r| r.join(&self.cgroup_parent))
            .filter(|p| p.is_dir())
            .collect()
    }

    /// The container's cgroup directory in one v1 controller's hierarchy.
    pub fn v1_cgroup(&self, controller: &str, id: &str) -> PathBuf {
        PathBuf::from("/sys/fs/cgroup")
            .join(controller)
            .join(&self.cgroup_parent)
            .join(id)
    }

    /// Bridges of user networks this daemon made (names recorded in its network state).
    pub fn user_bridges(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Ok(rd) = std::fs::read_dir(self.data_root().join("network/networks")) {
            for f in rd.flatten() {
                if let Ok(s) = std::fs::read_to_string(f.path()) {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&s) {
                        if let Some(b) = v["bridge"].as_str().filter(|b| b.starts_with("kos")) {
                            out.push(b.to_string());
                        }
                    }
                }
            }
        }
        out
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
        // One O_APPEND write per line: concurrent tests never interleave.
        let res = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(Path::new(&dir).join("skips.log"))
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = res {
            panic!("recording the skip: {e}");
        }
    }
}
