//! kaim in front of the real kosd, driven by the real docker CLI running inside a cgroup the
//! test makes (standing in for the client's container): what the policy allows gets kosd's
//! own answers; what it denies is refused with the policy's reason and never reaches kosd.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const DOCKER: &str = "/usr/local/bin/docker";

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"))
}

/// kosd, its shim and kosrun, built once per test binary from this tree: a build failure fails
/// the test, so it never passes against a stale kosd.
fn kosd_binary() -> PathBuf {
    static ONCE: std::sync::Once = std::sync::Once::new();
    let bin = target_dir().join("debug/kosd");
    ONCE.call_once(|| {
        let st = kos_testsupport::cargo()
            .args([
                "build", "-q", "-p", "kosd", "-p", "kos-shim", "-p", "kosrun",
            ])
            .status()
            .expect("cargo build");
        assert!(st.success(), "building kosd, its shim and kosrun failed");
    });
    assert!(bin.exists(), "no kosd binary at {}", bin.display());
    bin
}

struct Kosd {
    child: std::process::Child,
    dir: TempDir,
    sock: PathBuf,
    /// The daemon's own bridge and nft table; its cgroup parent is `kos-test-NAME`.
    name: String,
}

static SEQ: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl Kosd {
    fn start() -> Kosd {
        let bin = kosd_binary();
        let dir = TempDir::new("kosd");
        let sock = dir.0.join("exec/kos.sock");
        std::fs::write(dir.0.join("daemon.json"), "{}").expect("daemon.json");
        let log = std::fs::File::create(dir.0.join("kosd.log")).expect("log");
        let name = format!(
            "kosk{}x{}",
            std::process::id() % 1_000_000,
            SEQ.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        );
        let child = Command::new(bin)
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .arg("--data-root")
            .arg(dir.0.join("data"))
            .arg("--exec-root")
            .arg(dir.0.join("exec"))
            .arg("--config-file")
            .arg(dir.0.join("daemon.json"))
            .args(["--bridge", &name, "--nft-table", &name])
            .arg("--cgroup-parent")
            .arg(format!("kos-test-{name}"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start kosd");
        let mut k = Kosd {
            child,
            dir,
            sock,
            name,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !k.sock.exists() {
            if let Ok(Some(st)) = k.child.try_wait() {
                panic!("kosd exited: {st}: {}", k.log());
            }
            assert!(
                Instant::now() < deadline,
                "kosd did not come up: {}",
                k.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        k
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("kosd.log")).unwrap_or_default()
    }
}

impl Drop for Kosd {
    fn drop(&mut self) {
        // SAFETY: kill(2) of our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Mounts kosd may have left under its roots go before the directory.
        let _ = Command::new("umount")
            .args(["-R", "-l"])
            .arg(&self.dir.0)
            .stderr(Stdio::null())
            .status();
        // What a stopped kosd keeps: this test's bridge, table and (empty) cgroup parent.
        let _ = Command::new("nft")
            .args(["delete", "table", "inet", &self.name])
            .stderr(Stdio::null())
            .status();
        if Path::new("/sys/class/net").join(&self.name).exists() {
            let _ = Command::new("ip")
                .args(["link", "del", &self.name])
                .status();
        }
        let parent = format!("kos-test-{}", self.name);
        for e in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let d = e.path().join(&parent);
            if d.is_dir() {
                let _ = std::fs::remove_dir(&d);
            }
        }
    }
}

#[test]
fn docker_cli_through_kaim_to_kosd() {
    let kosd = Kosd::start();
    let dir = TempDir::new("k");
    let cgroup = TestCgroup::new(&unique("cli"));
    let sock = dir.0.join("ci.sock");
    let audit = dir.0.join("audit.log");
    let _kaim = Kaim::start(
        &[
            "--upstream".into(),
            format!("unix://{}", kosd.sock.display()),
            "--audit".into(),
            audit.display().to_string(),
            "--grant".into(),
            format!(
                "ci=ci1:{}:{}:{}",
                policy_path("ci-create.rego"),
                sock.display(),
                cgroup.path
            ),
        ],
        &[&sock],
    );
    let docker_config = dir.0.join("docker-config");
    std::fs::create_dir_all(&docker_config).expect("docker config dir");
    let docker = |args: &[&str]| {
        let out = cgroup
            .command(DOCKER)
            .arg("-H")
            .arg(format!("unix://{}", sock.display()))
            .args(args)
            .env("DOCKER_CONFIG", &docker_config)
            .stdin(Stdio::null())
            .output()
            .expect("docker CLI");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };

    // Allowed: kosd's own answers come back.
    let (ok, v) = docker(&["version", "--format", "{{.Server.APIVersion}}"]);
    assert!(ok && v.trim() == "1.47", "{v}");
    let (ok, ps) = docker(&["ps", "-a", "--format", "{{.ID}}"]);
    assert!(ok, "{ps}");

    // Denied by the body check, with the policy's reason, nothing made in kosd.
    for (args, why) in [
        (
            vec!["create", "--privileged", "registry.local/ci/build:1"],
            "privileged",
        ),
        (
            vec!["create", "-v", "/:/host", "registry.local/ci/build:1"],
            "host binds",
        ),
        (
            vec![
                "create",
                "--cap-add",
                "SYS_ADMIN",
                "registry.local/ci/build:1",
            ],
            "capabilities",
        ),
        (
            vec!["create", "--pid", "host", "registry.local/ci/build:1"],
            "pidmode",
        ),
        (
            vec!["create", "busybox"],
            "image must be under registry.local/ci/",
        ),
        (
            vec!["image", "pull", "registry.local/ci/build:1"],
            "no allow rule matched",
        ),
    ] {
        let (ok, out) = docker(&args);
        assert!(!ok, "{args:?} succeeded: {out}");
        assert!(
            out.contains("kaim: ") && out.contains(why),
            "{args:?}: {out}"
        );
    }

    // An allowed create reaches kosd, which answers for itself (the image is not there).
    let body = r#"{"Image":"registry.local/ci/nothere:1","Cmd":["true"]}"#;
    let req = format!(
        "POST /v1.47/containers/create HTTP/1.1\r\nHost: d\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let r = raw_request(cgroup.command("python3"), &sock, req.as_bytes(), false);
    assert_eq!(status_of(&r), 404, "{r}");
    assert!(!r.contains("kaim: "), "kosd, not kaim, answered: {r}");

    // kosd itself has no containers: nothing denied got through.
    let out = Command::new(DOCKER)
        .arg("-H")
        .arg(format!("unix://{}", kosd.sock.display()))
        .args(["ps", "-aq"])
        .env("DOCKER_CONFIG", &docker_config)
        .output()
        .expect("docker ps direct");
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).trim().is_empty());

    let log = std::fs::read_to_string(&audit).expect("audit");
    assert!(log
        .lines()
        .any(|l| l.contains("\"decision\":\"deny\"") && l.contains("privileged")));
    assert!(log
        .lines()
        .any(|l| l.contains("\"decision\":\"allow\"") && l.contains("/containers/create")));
}

/// The release (or debug) kosrun, or $KOSRUN.
fn kosrun() -> PathBuf {
    if let Some(p) = kos_testsupport::kosrun_from_env() {
        return p;
    }
    let release = target_dir().join("release/kosrun");
    if release.exists() {
        return release;
    }
    target_dir().join("debug/kosrun")
}

/// A busybox container run by kosrun with the static docker CLI and kaim's grant socket
/// directory bound in; force-deleted on drop.
struct ClientContainer {
    id: String,
    root: TempDir,
    _bundle: TempDir,
}

impl ClientContainer {
    fn start(id: String, sock_dir: &Path) -> ClientContainer {
        let c = ClientContainer {
            id,
            root: TempDir::new("kosrun-root"),
            _bundle: TempDir::new("bundle"),
        };
        let bundle = &c._bundle.0;
        let rootfs = bundle.join("rootfs");
        for d in ["bin", "proc", "sys", "dev", "tmp", "etc", "run/kaim"] {
            std::fs::create_dir_all(rootfs.join(d)).expect("rootfs dir");
        }
        kos_testsupport::executable::copy_executable(
            Path::new("/bin/busybox"),
            &rootfs.join("bin/busybox"),
        )
        .expect("busybox");
        for a in ["sh", "sleep"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).expect("applet");
        }
        std::fs::write(rootfs.join("bin/docker"), b"").expect("mount point");
        let st = Command::new(kosrun())
            .args(["spec", "-b"])
            .arg(bundle)
            .status()
            .expect("kosrun spec");
        assert!(st.success());
        let path = bundle.join("config.json");
        let mut cfg: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("config")).expect("json");
        cfg["process"]["args"] = serde_json::json!(["sleep", "1000"]);
        cfg["process"]["terminal"] = serde_json::json!(false);
        cfg["process"]["env"] = serde_json::json!(["PATH=/bin", "DOCKER_CONFIG=/tmp/.docker"]);
        let mounts = cfg["mounts"].as_array_mut().expect("mounts");
        mounts.push(
            serde_json::json!({"destination": "/bin/docker", "type": "bind",
            "source": DOCKER, "options": ["bind", "ro"]}),
        );
        mounts.push(
            serde_json::json!({"destination": "/run/kaim", "type": "bind",
            "source": sock_dir, "options": ["bind"]}),
        );
        std::fs::write(&path, serde_json::to_vec_pretty(&cfg).expect("json")).expect("write");
        let out = c.kosrun(&["run", "-d", "-b", &bundle.to_string_lossy(), &c.id]);
        assert!(out.0, "run -d: {}", out.1);
        c
    }

    /// (success, stdout+stderr), through files: the detached init holds inherited pipes.
    fn kosrun(&self, args: &[&str]) -> (bool, String) {
        let out_dir = TempDir::new("out");
        let (o, e) = (out_dir.0.join("o"), out_dir.0.join("e"));
        let st = Command::new(kosrun())
            .arg("--root")
            .arg(&self.root.0)
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&o).expect("o"))
            .stderr(std::fs::File::create(&e).expect("e"))
            .status()
            .expect("kosrun");
        let text = format!(
            "{}{}",
            std::fs::read_to_string(&o).unwrap_or_default(),
            std::fs::read_to_string(&e).unwrap_or_default()
        );
        (st.success(), text)
    }

    fn docker(&self, args: &[&str]) -> (bool, String) {
        let mut v = vec!["exec", &self.id, "docker", "-H", "unix:///run/kaim/ci.sock"];
        v.extend_from_slice(args);
        self.kosrun(&v)
    }
}

impl Drop for ClientContainer {
    fn drop(&mut self) {
        let _ = self.kosrun(&["delete", "--force", &self.id]);
    }
}

/// A real kosrun container as the client, recognised by its container id alone (kosrun's
/// cgroup `/<id>`), the docker CLI inside it speaking through the bound grant socket.
#[test]
fn real_container_client_recognised_by_id() {
    let kosd = Kosd::start();
    let dir = TempDir::new("rc");
    let sock_dir = dir.0.join("grants");
    std::fs::create_dir_all(&sock_dir).expect("grant dir");
    let sock = sock_dir.join("ci.sock");
    let id = unique("cli");
    let _kaim = Kaim::start(
        &[
            "--upstream".into(),
            format!("unix://{}", kosd.sock.display()),
            "--audit".into(),
            dir.0.join("audit.log").display().to_string(),
            "--grant".into(),
            format!(
                "ci={id}:{}:{}",
                policy_path("ci-create.rego"),
                sock.display()
            ),
        ],
        &[&sock],
    );
    let c = ClientContainer::start(id.clone(), &sock_dir);
    let (ok, v) = c.docker(&["version", "--format", "{{.Server.APIVersion}}"]);
    assert!(ok && v.trim() == "1.47", "{v}");
    let (ok, out) = c.docker(&["create", "--privileged", "registry.local/ci/x:1"]);
    assert!(
        !ok && out.contains("kaim: privileged containers are not allowed"),
        "{out}"
    );
    // The same socket from the host: not the granted container.
    let r = raw_request(
        Command::new("python3"),
        &sock,
        b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n",
        false,
    );
    assert_eq!(status_of(&r), 403, "{r}");
    assert!(r.contains(&format!("not in container {id}")), "{r}");
}
