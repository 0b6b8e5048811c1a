//! The real shim (release build, with kosrun beside it) launched and driven through the
//! client: create, start, state, reopen_log, exec, kill, wait, delete, shutdown, NotFound
//! mapping, and the delete action. Everything made is removed by Drop guards.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use kos_shim_client::{ErrorKind, LaunchOptions, ProcessState, RuntimeOptions, Stdio};

static SEQ: AtomicU32 = AtomicU32::new(0);

fn unique(p: &str) -> String {
    format!(
        "{p}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    )
}

/// target/release with the shim and kosrun built (once).
fn release_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/release");
    if !dir.join("containerd-shim-kos-v2").is_file() || !dir.join("kosrun").is_file() {
        let st = kos_testsupport::cargo()
            .args(["build", "--release", "-p", "kos-shim", "-p", "kosrun"])
            .status()
            .expect("cargo build");
        assert!(st.success());
    }
    dir
}

struct Scratch {
    dir: PathBuf,
    cgroup: String,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        for root in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let p = root.path().join(&self.cgroup);
            if let Ok(rd) = std::fs::read_dir(&p) {
                for e in rd.flatten() {
                    if e.path().is_dir() {
                        let _ = std::fs::remove_dir(e.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(&p);
        }
    }
}

fn bundle(dir: &Path, kosrun: &Path, id: &str, cgroup: &str) {
    let root = dir.join("rootfs/bin");
    std::fs::create_dir_all(&root).expect("mkdir");
    kos_testsupport::executable::copy_executable(Path::new("/bin/busybox"), &root.join("busybox"))
        .expect("busybox-static");
    for a in ["sh", "sleep", "echo", "cat"] {
        std::os::unix::fs::symlink("busybox", root.join(a)).expect("applet");
    }
    let st = Command::new(kosrun)
        .arg("spec")
        .current_dir(dir)
        .status()
        .expect("kosrun spec");
    assert!(st.success());
    let p = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&p).expect("read")).expect("json");
    v["process"]["args"] = serde_json::json!(["sleep", "60"]);
    v["process"]["terminal"] = serde_json::json!(false);
    v["process"]["env"] = serde_json::json!(["PATH=/bin"]);
    v["linux"]["cgroupsPath"] = serde_json::json!(format!("/{cgroup}/{id}"));
    std::fs::write(&p, serde_json::to_vec(&v).expect("json")).expect("write");
}

/// A scratch dir with a bundle of `kosrun`'s busybox `true` and the shim launched for it.
async fn launch_for_test(
    tag: &str,
    cgroup_tag: &str,
) -> (
    String,
    Scratch,
    PathBuf,
    LaunchOptions,
    kos_shim_client::Launched,
) {
    let (id, s, bundle_dir, opts) = prepare_for_test(tag, cgroup_tag);
    let shim = opts.launch(&id, &bundle_dir).await.expect("launch");
    (id, s, bundle_dir, opts, shim)
}

/// The scratch dir, bundle and launch options of [`launch_for_test`], nothing launched.
fn prepare_for_test(tag: &str, cgroup_tag: &str) -> (String, Scratch, PathBuf, LaunchOptions) {
    let rel = release_dir();
    let id = unique(tag);
    let s = Scratch {
        dir: std::env::temp_dir().join(&id),
        cgroup: unique(cgroup_tag),
    };
    let bundle_dir = s.dir.join("bundle");
    std::fs::create_dir_all(&bundle_dir).expect("mkdir");
    bundle(&bundle_dir, &rel.join("kosrun"), &id, &s.cgroup);
    let opts = LaunchOptions {
        shim_binary: rel.join("containerd-shim-kos-v2"),
        namespace: "kos-shim-client-test".into(),
        // A directory, as kosd passes: the shim's socket goes inside it (not into
        // /run/containerd/s) and leaves with the scratch dir.
        address: s.dir.clone(),
        publish_binary: PathBuf::from("/bin/true"),
        ttrpc_address: s.dir.join("events.sock"),
        debug: false,
    };
    (id, s, bundle_dir, opts)
}

/// `begin_launch` starts the shim before its future is polled: on a one-thread runtime
/// kept busy (blocked here), the shim still comes up and writes its address into the
/// bundle; the future then ends with a connected client.
#[tokio::test(flavor = "current_thread")]
async fn begin_launch_starts_the_shim_before_it_is_polled() {
    let (id, _s, bundle_dir, opts) = prepare_for_test("kshimbl", "kos-shimbl");
    let pending = opts.begin_launch(&id, &bundle_dir).expect("begin launch");
    let address = bundle_dir.join("address");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !address.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        address.exists(),
        "no shim came up before the launch was polled"
    );
    let shim = pending.await.expect("launch");
    assert_eq!(
        std::fs::read_to_string(&address).expect("address").trim(),
        shim.address
    );
    let e = shim.client.state(&id, "").await.expect_err("no task yet");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    // The bundle went as `-bundle` (the client sets no working directory); the serving
    // shim still works in it, as one containerd starts there does.
    let daemon = std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .find(|p| {
            std::fs::read(p.path().join("cmdline"))
                .map(|c| c.split(|b| *b == 0).any(|a| a == id.as_bytes()))
                .unwrap_or(false)
        })
        .expect("the serving shim");
    let cwd = std::fs::read_link(daemon.path().join("cwd")).expect("shim's cwd");
    assert_eq!(cwd, bundle_dir.canonicalize().expect("bundle"));
    shim.client.shutdown(&id).await.expect("shutdown");
}

#[tokio::test(flavor = "current_thread")]
async fn launch_and_drive_a_task() {
    let (id, s, bundle_dir, opts, shim) = launch_for_test("kshimc", "kos-shimc").await;
    assert!(
        shim.address
            .starts_with(&format!("unix://{}/", s.dir.display())),
        "shim socket outside the scratch dir: {}",
        shim.address
    );
    let c = shim.client.clone();
    let out = s.dir.join("out.log");
    let ro = RuntimeOptions {
        root: s.dir.join("root").to_string_lossy().into_owned(),
        ..Default::default()
    };
    let pid = c
        .create(
            &id,
            &bundle_dir.to_string_lossy(),
            &Stdio {
                stdout: format!("cri-log://{}", out.display()),
                stderr: format!("cri-log://{}", out.display()),
                ..Default::default()
            },
            Some(ro.to_any().expect("options")),
        )
        .await
        .expect("create");
    assert!(pid > 0);
    assert_eq!(
        c.state(&id, "").await.expect("state").status,
        ProcessState::Created
    );
    c.start(&id, "").await.expect("start");
    assert_eq!(
        c.state(&id, "").await.expect("state").status,
        ProcessState::Running
    );
    assert!(c.pids(&id).await.expect("pids").contains(&pid));

    // The log renamed away (kubelet's rotation): reopen makes a new file at the path before
    // it returns; an unknown task is NotFound.
    std::fs::rename(&out, s.dir.join("out.log.1")).expect("rename log");
    c.reopen_log(&id).await.expect("reopen log");
    assert!(out.is_file(), "no new log file after reopen_log");
    let e = c.reopen_log("ghost").await.expect_err("unknown task");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");

    // An exec whose output lands in the CRI log of its own.
    let exec_log = s.dir.join("exec.log");
    let process = serde_json::json!({"args": ["echo", "from-exec"], "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}});
    c.exec(
        &id,
        "e1",
        &process,
        &Stdio {
            stdout: format!("cri-log://{}", exec_log.display()),
            stderr: format!("cri-log://{}", exec_log.display()),
            ..Default::default()
        },
    )
    .await
    .expect("exec");
    c.start(&id, "e1").await.expect("exec start");
    let (code, _) = c.wait(&id, "e1").await.expect("exec wait");
    assert_eq!(code, 0);
    c.delete(&id, "e1").await.expect("exec delete");
    let log = std::fs::read_to_string(&exec_log).expect("exec log");
    assert!(log.contains(" stdout F from-exec"), "{log}");

    // Unknown exec ids map to NotFound.
    let e = c.state(&id, "nope").await.expect_err("unknown exec");
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");

    c.kill(&id, "", 9, false).await.expect("kill");
    let (code, at) = tokio::time::timeout(Duration::from_secs(20), c.wait(&id, ""))
        .await
        .expect("wait in time")
        .expect("wait");
    assert_eq!(code, 137);
    assert!(at > 0);
    c.delete(&id, "").await.expect("delete");
    c.shutdown(&id).await.expect("shutdown");
    // The shim is gone: a new connection fails as Unavailable.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let gone = kos_shim_client::ShimClient::connect(&shim.address).await;
    if let Ok(c2) = gone {
        let e = c2.state(&id, "").await.expect_err("shim gone");
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    }
    // The delete action on an id with nothing left succeeds (nothing to clean).
    opts.cleanup(&id, &bundle_dir).await.expect("delete action");
}

/// kosd's way with `to_kos_any(true)`: the program runs from Create, the task still reads
/// CREATED until Start, and the rest of the lifecycle is the usual one.
#[tokio::test(flavor = "current_thread")]
async fn start_at_create_through_kos_options() {
    let (id, s, bundle_dir, _opts, shim) = launch_for_test("kshimsac", "kos-shimsac").await;
    let c = shim.client.clone();
    let root = s.dir.join("root");
    let ro = RuntimeOptions {
        root: root.to_string_lossy().into_owned(),
        ..Default::default()
    };
    let pid = c
        .create(
            &id,
            &bundle_dir.to_string_lossy(),
            &Stdio::default(),
            Some(ro.to_kos_any(true).expect("options")),
        )
        .await
        .expect("create");
    // Already running (`sleep 60` in the container) before any Start.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the program");
    assert!(stat.contains("(sleep)"), "{stat}");
    assert_eq!(
        c.state(&id, "").await.expect("state").status,
        ProcessState::Created
    );
    assert_eq!(c.start(&id, "").await.expect("start"), pid);
    assert_eq!(
        c.state(&id, "").await.expect("state").status,
        ProcessState::Running
    );
    c.kill(&id, "", 9, false).await.expect("kill");
    let (code, _) = tokio::time::timeout(Duration::from_secs(20), c.wait(&id, ""))
        .await
        .expect("wait in time")
        .expect("wait");
    assert_eq!(code, 137);
    c.delete(&id, "").await.expect("delete");
    assert!(!root.join(&id).exists(), "the runtime's state is left");
    c.shutdown(&id).await.expect("shutdown");
}
