//! Test harness: the example server as a real process, a loopback docker-registry holding
//! busybox images built from /bin/busybox (pushed with skopeo, never downloaded), CRI
//! clients over the unix socket, and Drop guards that remove what a test made.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::image_service_client::ImageServiceClient;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
use sha2::Digest as _;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};
use tower::service_fn;

mod cri;
// Not every test binary makes CRI calls (images.rs only pulls).
#[allow(unused_imports)]
pub use self::cri::*;

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Unique on this machine for this run (other engineers' tests run at the same time).
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// A directory removed on drop, after detaching every mount below it.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Scratch {
        let p = std::env::temp_dir().join(unique(tag));
        std::fs::create_dir_all(&p).expect("mkdir scratch");
        Scratch(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

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

impl Drop for Scratch {
    fn drop(&mut self) {
        for m in mounts_under(&self.0) {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A docker-registry on a free loopback port, killed on drop.
pub struct Registry {
    _process: kos_testsupport::RegistryProcess,
    pub addr: String,
    _dir: Scratch,
}

impl Registry {
    pub fn start() -> Registry {
        let dir = Scratch::new("kcri-reg");
        let process = kos_testsupport::RegistryProcess::spawn(
            &dir.path().join("config.yml"),
            &dir.path().join("storage"),
            None,
            "",
        );
        Registry {
            addr: process.addr(),
            _process: process,
            _dir: dir,
        }
    }

    /// Pushes a busybox image as `repo_tag` running `cmd`; returns the reference.
    pub fn push_busybox(&self, repo_tag: &str, cmd: &[&str]) -> String {
        let work = Scratch::new("kcri-img");
        let archive = work.path().join("img.tar");
        docker_archive(&archive, cmd);
        let reference = format!("{}/{repo_tag}", self.addr);
        let out = Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .arg(format!("docker-archive:{}", archive.display()))
            .arg(format!("docker://{reference}"))
            .output()
            .expect("skopeo");
        assert!(
            out.status.success(),
            "skopeo copy: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        reference
    }
}

const APPLETS: &[&str] = &[
    "sh", "true", "false", "cat", "echo", "sleep", "ls", "ps", "id", "env", "hostname", "wget",
    "nc", "ip", "ifconfig", "grep", "test", "touch", "mount", "head", "kill", "printf", "sed",
    "httpd", "mkdir",
];

fn sha256_hex(b: &[u8]) -> String {
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// A docker-save archive of one busybox layer (binary plus applet links).
pub fn docker_archive(dest: &Path, cmd: &[&str]) {
    let work = dest.with_extension("d");
    let root = work.join("root");
    let out = work.join("out");
    for d in ["bin", "tmp", "etc", "proc", "sys", "dev"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    std::fs::create_dir_all(&out).expect("mkdir");
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox-static");
    for a in APPLETS {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).expect("applet");
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n",
    )
    .expect("passwd");
    std::fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n").expect("group");
    let layer = work.join("layer.tar");
    let st = Command::new("tar")
        .arg("--numeric-owner")
        .arg("-C")
        .arg(&root)
        .arg("-cf")
        .arg(&layer)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success());
    let bytes = std::fs::read(&layer).expect("layer");
    let diff = sha256_hex(&bytes);
    std::fs::create_dir_all(out.join(&diff)).expect("mkdir");
    std::fs::write(out.join(&diff).join("layer.tar"), &bytes).expect("write layer");
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": cmd, "Env": ["PATH=/bin"], "WorkingDir": "/"},
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{diff}")]},
    });
    let cfg = serde_json::to_vec(&config).expect("json");
    let cfg_hex = sha256_hex(&cfg);
    std::fs::write(out.join(format!("{cfg_hex}.json")), &cfg).expect("write config");
    let manifest = serde_json::json!([{
        "Config": format!("{cfg_hex}.json"),
        "RepoTags": ["kos-cri-test/busybox:latest"],
        "Layers": [format!("{diff}/layer.tar")],
    }]);
    std::fs::write(
        out.join("manifest.json"),
        serde_json::to_vec(&manifest).expect("json"),
    )
    .expect("write manifest");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&out)
        .arg("-cf")
        .arg(dest)
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success());
    let _ = std::fs::remove_dir_all(&work);
}

/// target/<profile>/ of this test binary.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// The example server (cargo test builds examples with the tests).
pub fn server_binary() -> PathBuf {
    let p = target_dir().join("examples/kos-cri-server");
    assert!(
        p.is_file(),
        "{} missing: run cargo test -p kos-cri",
        p.display()
    );
    p
}

/// target/release with the shim and kosrun (built once when missing).
pub fn release_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release");
    if !dir.join("containerd-shim-kos-v2").is_file() || !dir.join("kosrun").is_file() {
        let st = kos_testsupport::cargo()
            .args(["build", "--release", "-p", "kos-shim", "-p", "kosrun"])
            .status()
            .expect("cargo build");
        assert!(st.success());
    }
    dir
}

/// The CRI server as a process with its own data dir, exec root and socket.
pub struct Server {
    child: Option<Child>,
    pub dir: Scratch,
    pub args: Vec<String>,
}

impl Server {
    pub fn start(extra: &[(&str, String)]) -> Server {
        let dir = Scratch::new("kcri");
        let rel = release_dir();
        let mut args: Vec<String> = vec![
            "--socket".into(),
            dir.path().join("cri.sock").to_string_lossy().into_owned(),
            "--data-dir".into(),
            dir.path().join("data").to_string_lossy().into_owned(),
            "--exec-root".into(),
            dir.path().join("run").to_string_lossy().into_owned(),
            "--shim".into(),
            rel.join("containerd-shim-kos-v2")
                .to_string_lossy()
                .into_owned(),
            "--runtime".into(),
            rel.join("kosrun").to_string_lossy().into_owned(),
            "--registry-config-dir".into(),
            dir.path().join("certs.d").to_string_lossy().into_owned(),
            "--cni-conf-dir".into(),
            dir.path().join("net.d").to_string_lossy().into_owned(),
            "--cgroup-root".into(),
            unique("kos-cri-test"),
        ];
        for (k, v) in extra {
            args.push(k.to_string());
            args.push(v.clone());
        }
        let mut s = Server {
            child: None,
            dir,
            args,
        };
        s.spawn();
        s
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("cri.sock")
    }

    pub fn cgroup_root(&self) -> String {
        let i = self
            .args
            .iter()
            .position(|a| a == "--cgroup-root")
            .expect("flag");
        self.args[i + 1].clone()
    }

    fn spawn(&mut self) {
        let _ = std::fs::remove_file(self.socket());
        let child = Command::new(server_binary())
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start kos-cri-server");
        self.child = Some(child);
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            if std::os::unix::net::UnixStream::connect(self.socket()).is_ok() {
                return;
            }
            if let Some(c) = self.child.as_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("kos-cri-server exited: {st}");
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("kos-cri-server did not listen");
    }

    /// Stops the server process (SIGTERM), leaving pods and shims running.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let end = Instant::now() + Duration::from_secs(10);
            while Instant::now() < end {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub async fn runtime(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(channel(self.socket()).await)
    }

    pub async fn images(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(channel(self.socket()).await)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
        // Whatever a failed test left: shims of this server's namespace, pins, cgroups.
        let run = self.dir.path().join("run");
        for pid in pids_with_cmdline(&run.to_string_lossy()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for m in mounts_under(self.dir.path()) {
            let _ = nix::mount::umount2(&m, nix::mount::MntFlags::MNT_DETACH);
        }
        remove_cgroups(&self.cgroup_root());
    }
}

pub async fn channel(sock: PathBuf) -> Channel {
    Endpoint::try_from("http://[::]:50051")
        .expect("endpoint")
        .connect_with_connector(service_fn(move |_: Uri| {
            let p = sock.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(p).await?)) }
        }))
        .await
        .expect("connect to CRI")
}

/// Pids whose command line contains `needle`.
pub fn pids_with_cmdline(needle: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if pid == me {
            continue;
        }
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            if String::from_utf8_lossy(&c)
                .replace('\0', " ")
                .contains(needle)
            {
                out.push(pid);
            }
        }
    }
    out
}

/// Cgroup directories named `name` under every hierarchy, leaves first.
pub fn cgroup_dirs(name: &str) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join(name))
        .filter(|p| p.is_dir())
        .collect();
    let mut all = Vec::new();
    while let Some(d) = roots.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                roots.push(e.path());
            }
        }
        all.push(d);
    }
    all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    all
}

pub fn remove_cgroups(name: &str) {
    // Processes a failed test left (container inits) first, or the directories stay busy.
    for d in cgroup_dirs(name) {
        if let Ok(procs) = std::fs::read_to_string(d.join("cgroup.procs")) {
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    for d in cgroup_dirs(name) {
        let _ = std::fs::remove_dir(&d);
    }
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

/// The image spec of a CRI request for `image`.
pub fn spec(image: &str) -> Option<k8s_cri::v1::ImageSpec> {
    Some(k8s_cri::v1::ImageSpec {
        image: image.into(),
        ..Default::default()
    })
}
