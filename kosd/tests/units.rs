//! The unit manager inside a real kosd: notify units made from busybox and `kos-notify`
//! run as kosd containers, brought up by kos-system.target at kosd's start, supervised
//! (restart after SIGKILL, watchdog), driven over the `/kos/` API, reported in `/events`,
//! and adopted across a kosd restart with live-restore.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Kosd, Scratch};
use serde_json::Value;
use sha2::{Digest as _, Sha256};

const IMAGE: &str = "kos.local/unit-test:latest";

/// `kos-notify`, built for this test run.
fn kos_notify() -> PathBuf {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let st = kos_testsupport::cargo()
            .args(["build", "-q", "-p", "kos-units", "--bin", "kos-notify"])
            .status()
            .expect("cargo build");
        assert!(st.success(), "building kos-notify failed");
    });
    Path::new(env!("CARGO_BIN_EXE_kosd"))
        .parent()
        .expect("target dir")
        .join("kos-notify")
}

fn sha256_hex(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// An OCI archive `DIR/unit-test.oci.tar` holding kos.local/unit-test:latest: busybox,
/// `kos-notify` and the shared objects it links, as services/build-images.sh makes images.
fn build_image_archive(dir: &Path) {
    build_archive(dir, "unit-test", &[kos_notify()], &[]);
}

/// `DIR/NAME.oci.tar` holding kos.local/NAME:latest: busybox, `bins` in /usr/bin with the
/// shared objects they link, and an entrypoint.
fn build_archive(dir: &Path, name: &str, bins: &[PathBuf], entrypoint: &[&str]) {
    let work = Scratch::new("unit-img");
    let root = work.join("rootfs");
    for d in [
        "bin", "usr/bin", "etc", "tmp", "proc", "sys", "dev", "shared", "run/host", "run/kos",
    ] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox");
    let list = Command::new("/bin/busybox")
        .arg("--list")
        .output()
        .expect("busybox --list");
    for a in String::from_utf8_lossy(&list.stdout).lines() {
        if a != "busybox" && !a.is_empty() {
            let _ = std::os::unix::fs::symlink("busybox", root.join("bin").join(a));
        }
    }
    for bin in bins {
        let file = bin.file_name().expect("binary name");
        std::fs::copy(bin, root.join("usr/bin").join(file)).expect("copy binary");
        let ldd = Command::new("ldd").arg(bin).output().expect("ldd");
        for lib in String::from_utf8_lossy(&ldd.stdout)
            .split_whitespace()
            .filter(|w| w.starts_with('/'))
        {
            let dst = root.join(lib.trim_start_matches('/'));
            std::fs::create_dir_all(dst.parent().expect("parent")).expect("mkdir");
            std::fs::copy(lib, &dst).expect("copy lib");
        }
    }
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/:/bin/sh\n").expect("passwd");
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
    let layout = work.join("oci");
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("blobs");
    let put = |b: &[u8]| {
        let h = sha256_hex(b);
        std::fs::write(blobs.join(&h), b).expect("blob");
        h
    };
    let layer_bytes = std::fs::read(&layer).expect("layer");
    let layer_hex = put(&layer_bytes);
    let mut image_config = serde_json::json!({"Env": ["PATH=/usr/bin:/bin"], "Cmd": ["sh"]});
    if !entrypoint.is_empty() {
        image_config["Entrypoint"] = serde_json::json!(entrypoint);
        image_config["Cmd"] = serde_json::json!([]);
    }
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": image_config,
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{layer_hex}")]},
    })
    .to_string();
    let config_hex = put(config.as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": format!("sha256:{config_hex}"), "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": format!("sha256:{layer_hex}"), "size": layer_bytes.len()}],
    })
    .to_string();
    let manifest_hex = put(manifest.as_bytes());
    std::fs::write(
        layout.join("index.json"),
        serde_json::json!({"schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": format!("sha256:{manifest_hex}"), "size": manifest.len(),
            "annotations": {"org.opencontainers.image.ref.name": "latest", "io.containerd.image.name": format!("kos.local/{name}:latest")}}]})
        .to_string(),
    )
    .expect("index");
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("layout");
    std::fs::create_dir_all(dir).expect("image dir");
    let st = Command::new("tar")
        .arg("-C")
        .arg(&layout)
        .arg("-cf")
        .arg(dir.join(format!("{name}.oci.tar")))
        .arg(".")
        .status()
        .expect("tar");
    assert!(st.success());
}

/// The service every test unit runs: announce, READY=1 with a STATUS=, then ping the
/// watchdog until `/shared/NAME.nowatchdog` exists; SIGTERM ends it cleanly.
const SERVICE: &str = r#"#!/bin/sh
name=$1
trap 'echo "$name stopping"; exit 0' TERM
echo "$name starting"
echo "$name" >> /shared/order
kos-notify READY=1 "STATUS=serving $name"
while :; do
    [ -f "/shared/$name.nowatchdog" ] || kos-notify WATCHDOG=1
    sleep 0.2 & wait $!
done
"#;

/// A unit of the test service.
fn service_unit(shared: &Path, name: &str, unit_extra: &str, service_extra: &str) -> String {
    format!(
        "[Unit]\nDescription=test unit {name}\n{unit_extra}\n[Container]\nImage={IMAGE}\nExec=/bin/sh /shared/service.sh {name}\nNetwork=none\nVolume={}:/shared\n\n[Service]\nType=notify\nRestart=always\nRestartSec=100ms\nTimeoutStopSec=5s\n{service_extra}\n[Install]\nWantedBy=kos-system.target\n",
        shared.display()
    )
}

/// A kosd with its own unit and image directories; on drop, every unit container is
/// removed through kosd (also after a failure, and also with live-restore) before the
/// daemon and its directories go.
struct UnitsKosd {
    k: Kosd,
    dir: Scratch,
}

impl UnitsKosd {
    fn etc(&self) -> PathBuf {
        self.dir.join("etc")
    }

    /// Unit dirs, the shipped targets, the service script and the image archive; kosd is
    /// not started yet.
    fn prepare(tag: &str) -> (Scratch, Vec<String>) {
        let dir = Scratch::new(tag);
        let lib = dir.join("lib");
        let etc = dir.join("etc");
        let shared = dir.join("shared");
        for d in [&lib, &etc, &shared] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../units/shipped");
        for t in ["kos-system.target", "kos-network.target"] {
            std::fs::copy(shipped.join(t), lib.join(t)).expect("shipped target");
        }
        std::fs::write(shared.join("service.sh"), SERVICE).expect("service.sh");
        build_image_archive(&dir.join("images"));
        let flags = vec![
            "--cri-socket=".to_string(),
            format!("--unit-dir={}", lib.display()),
            format!("--unit-dir={}", etc.display()),
            format!("--unit-image-dir={}", dir.join("images").display()),
        ];
        (dir, flags)
    }

    fn start(dir: Scratch, flags: Vec<String>, extra: &[&str]) -> UnitsKosd {
        let mut all: Vec<&str> = flags.iter().map(String::as_str).collect();
        all.extend_from_slice(extra);
        UnitsKosd {
            k: Kosd::start(&all),
            dir,
        }
    }

    fn json(&self, method: &str, path: &str) -> (u16, Value) {
        let (st, body) = self.k.http(method, path, b"");
        let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
        (st, v)
    }

    fn unit(&self, name: &str) -> Value {
        let (st, v) = self.json("GET", &format!("/kos/units/{name}"));
        assert_eq!(st, 200, "GET unit {name}: {v}");
        v
    }

    /// Waits until `f` holds for the unit, or fails with its state and kosd's log.
    fn wait_unit(&self, name: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(40);
        loop {
            let (st, v) = self.json("GET", &format!("/kos/units/{name}"));
            if st == 200 && f(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{name} never became {what}: {v}\n--- kosd log ---\n{}",
                common::tail(&self.k.log_text(), 60)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_running(&self, name: &str) -> Value {
        self.wait_unit(name, "active (running)", |v| {
            v["ActiveState"] == "active" && v["SubState"] == "running"
        })
    }

    fn unit_containers(&self) -> Vec<String> {
        let mut ids = Vec::new();
        for label in ["label=kos.unit", "label=kos.unit.pre"] {
            let o = self
                .k
                .docker(&["ps", "-aq", "--no-trunc", "--filter", label]);
            ids.extend(
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .map(str::to_string),
            );
        }
        ids
    }
}

impl Drop for UnitsKosd {
    fn drop(&mut self) {
        if self.k.child.is_none() {
            // Stopped mid-test: back up, so it removes what it runs.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.k.spawn()));
        }
        if self.k.child.is_some() {
            // Every unit stopped first, so none is restarted by its policy once removed.
            let (_, list) = self.json("GET", "/kos/units");
            for u in list.as_array().into_iter().flatten() {
                if let Some(n) = u["Name"].as_str() {
                    let _ = self.k.http("POST", &format!("/kos/units/{n}/stop"), b"");
                }
            }
            for id in self.unit_containers() {
                let _ = self.k.docker(&["rm", "-f", &id]);
            }
        }
    }
}

fn kill9(pid: u64) {
    // SAFETY: the main process of a unit this test's kosd started.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

fn events_since(k: &UnitsKosd, since: i64, filter: &str) -> Vec<Value> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs()
        + 1;
    let (st, body) = k.k.http(
        "GET",
        &format!(
            "/events?since={since}&until={now}&filters={}",
            urlencode(filter)
        ),
        b"",
    );
    assert_eq!(st, 200, "{body}");
    body.lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64
}

#[test]
fn system_target_supervision_and_api() {
    let (dir, flags) = UnitsKosd::prepare("units");
    let shared = dir.join("shared");
    let lib = dir.join("lib");
    // a <- b (Requires, After) <- c (After): started strictly in that order, each only once
    // the one before is ready.
    std::fs::write(lib.join("a.container"), service_unit(&shared, "a", "", "")).expect("a");
    std::fs::write(
        lib.join("b.container"),
        service_unit(
            &shared,
            "b",
            "Requires=a.container\nAfter=a.container",
            "WatchdogSec=1s\nTimeoutAbortSec=2s",
        ),
    )
    .expect("b");
    std::fs::write(
        lib.join("c.container"),
        service_unit(&shared, "c", "After=b.container", ""),
    )
    .expect("c");
    // Enabled as `enable` does it: links in the last (admin) directory.
    let wants = dir.join("etc/kos-system.target.wants");
    std::fs::create_dir_all(&wants).expect("wants");
    for u in ["a", "b", "c"] {
        std::os::unix::fs::symlink(
            lib.join(format!("{u}.container")),
            wants.join(format!("{u}.container")),
        )
        .expect("link");
    }
    // Start commands: one before the start in a one-off container of the unit's image, one
    // on the host, one after READY=1 inside the running container.
    std::fs::write(
        lib.join("p.container"),
        service_unit(
            &shared,
            "p",
            "",
            &format!(
                "ExecStartPre=/bin/sh -c \"echo pre $(hostname) >> /shared/p-log\"\nExecStartPre=host:/bin/sh -c \"echo host-pre >> {}/p-log\"\nExecStartPost=/bin/sh -c \"echo post $(hostname) >> /shared/p-log\"",
                shared.display()
            ),
        ),
    )
    .expect("p");
    // A broken unit and a cycle: loaded, never started by the target.
    std::fs::write(
        lib.join("bad.container"),
        format!("[Container]\nImage={IMAGE}\n[Service]\nRestart=sometimes\n"),
    )
    .expect("bad");
    std::fs::write(
        lib.join("x.container"),
        format!("[Unit]\nRequires=y.container\nAfter=y.container\n[Container]\nImage={IMAGE}\n"),
    )
    .expect("x");
    std::fs::write(
        lib.join("y.container"),
        format!("[Unit]\nAfter=x.container\n[Container]\nImage={IMAGE}\n"),
    )
    .expect("y");
    let since = now_secs() - 1;
    let k = UnitsKosd::start(dir, flags, &[]);

    // The target comes up with every unit ready, in dependency order.
    k.wait_unit("kos-system.target", "active", |v| {
        v["ActiveState"] == "active"
    });
    for u in ["a", "b", "c"] {
        let v = k.unit(u);
        assert_eq!(v["ActiveState"], "active", "{v}");
        assert_eq!(v["SubState"], "running", "{v}");
    }
    let order = std::fs::read_to_string(shared.join("order")).expect("order");
    assert_eq!(order, "a\nb\nc\n");

    // The contract's UnitSummary and the details.
    let a = k.unit("a");
    assert_eq!(a["Name"], "a.container");
    assert_eq!(a["Description"], "test unit a");
    assert_eq!(a["LoadState"], "loaded");
    assert_eq!(a["Result"], "success");
    assert_eq!(a["Status"], "serving a");
    assert_eq!(a["UnitFileState"], "enabled");
    assert_eq!(a["Preset"], "enabled");
    assert!(a["MainPID"].as_u64().unwrap_or(0) > 0, "{a}");
    assert!(
        a["ActiveEnterTimestamp"]
            .as_str()
            .unwrap_or("")
            .contains('T'),
        "{a}"
    );
    assert!(
        a["FragmentPath"]
            .as_str()
            .unwrap_or("")
            .ends_with("/lib/a.container"),
        "{a}"
    );
    assert_eq!(a["DropInPaths"], serde_json::json!([]));
    let b = k.unit("b.container");
    assert_eq!(b["Requires"], serde_json::json!(["a.container"]));
    assert_eq!(b["After"], serde_json::json!(["a.container"]));
    assert_eq!(b["WantedBy"], serde_json::json!(["kos-system.target"]));
    for key in ["Wants", "BindsTo", "Before", "Conflicts", "RequiredBy"] {
        assert!(b[key].is_array(), "{key}: {b}");
    }
    // Visible to the docker CLI as containers labelled with their unit.
    let cid = a["ContainerID"].as_str().expect("container id").to_string();
    let ps = k.k.docker_ok(&[
        "ps",
        "--no-trunc",
        "--filter",
        "label=kos.unit=a.container",
        "--format",
        "{{.ID}} {{.Names}}",
    ]);
    assert_eq!(ps.trim(), format!("{cid} kos-a"));
    // The unit's main pid is the container's init, and it runs in the container's cgroup.
    let inspect = k.k.docker_ok(&["inspect", "-f", "{{.State.Pid}}", &cid]);
    assert_eq!(inspect.trim(), a["MainPID"].to_string());

    // List: sorted, the idle units only with all=1.
    let (st, list) = k.json("GET", "/kos/units");
    assert_eq!(st, 200);
    let names: Vec<&str> = list
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|u| u["Name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "a.container",
            "b.container",
            "c.container",
            "kos-network.target",
            "kos-system.target"
        ]
    );
    let (_, all) = k.json("GET", "/v1.47/kos/units?all=1");
    let all: Vec<&str> = all
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|u| u["Name"].as_str())
        .collect();
    for n in ["bad.container", "x.container", "y.container"] {
        assert!(all.contains(&n), "{all:?}");
    }

    // status, cat, logs.
    let (st, status) = k.k.http("GET", "/kos/units/a/status?lines=5", b"");
    assert_eq!(st, 200, "{status}");
    assert!(
        status.starts_with("● a.container - test unit a"),
        "{status}"
    );
    assert!(
        status.contains("Active: active (running) since"),
        "{status}"
    );
    assert!(
        status.contains(&format!("Main PID: {}", a["MainPID"])),
        "{status}"
    );
    assert!(status.contains("Status: \"serving a\""), "{status}");
    assert!(status.contains("a.container: a starting"), "{status}");
    let (st, file) = k.k.http("GET", "/kos/units/a/file", b"");
    assert_eq!(st, 200);
    assert!(
        file.contains("/lib/a.container") && file.contains("Exec=/bin/sh /shared/service.sh a"),
        "{file}"
    );
    let (st, logs) = k.k.http("GET", "/kos/units/a/logs?stdout=1&stderr=1", b"");
    assert_eq!(st, 200, "{logs}");
    // Docker's multiplexed frame: stream 1, then the big-endian length.
    assert!(logs.starts_with("\u{1}\0\0\0"), "{logs:?}");
    assert!(logs.contains("a starting\n"), "{logs:?}");

    // A unit's container killed with SIGKILL is restarted (Restart=always).
    let old = a["MainPID"].as_u64().expect("pid");
    kill9(old);
    let a2 = k.wait_unit("a", "restarted", |v| {
        v["SubState"] == "running" && v["MainPID"].as_u64().is_some_and(|p| p != old && p > 0)
    });
    assert_eq!(
        a2["ContainerID"], a["ContainerID"],
        "the same container runs again"
    );

    // b stops pinging its watchdog: it is aborted (result watchdog) and restarted.
    let b_pid = b["MainPID"].as_u64().expect("pid");
    std::fs::write(shared.join("b.nowatchdog"), "").expect("nowatchdog");
    k.wait_unit("b", "killed by its watchdog", |v| {
        v["MainPID"].as_u64() != Some(b_pid)
    });
    std::fs::remove_file(shared.join("b.nowatchdog")).expect("watchdog back");
    k.wait_running("b");
    let ev = events_since(&k, since, r#"{"type":["unit"]}"#);
    assert!(
        ev.iter().any(|e| e["Actor"]["ID"] == "b.container"
            && e["Actor"]["Attributes"]["result"] == "watchdog"),
        "no watchdog result in {ev:?}"
    );

    // Unit events in the contract's shape, and only units with type=unit.
    let up = ev
        .iter()
        .find(|e| e["Actor"]["ID"] == "c.container" && e["Action"] == "active")
        .unwrap_or_else(|| panic!("no active event for c in {ev:?}"));
    assert_eq!(up["Type"], "unit");
    assert_eq!(up["scope"], "local");
    assert_eq!(up["Actor"]["Attributes"]["sub"], "running");
    assert_eq!(up["Actor"]["Attributes"]["result"], "success");
    assert!(
        up["Actor"]["Attributes"]["mainPid"].as_str().unwrap_or("0") != "0",
        "{up}"
    );
    assert!(up["time"].is_i64() && up["timeNano"].is_i64(), "{up}");
    assert!(ev.iter().all(|e| e["Type"] == "unit"));
    assert!(ev.iter().any(|e| e["Action"] == "job-start-done"), "{ev:?}");

    // stop, start, restart: answered when the job is done.
    let (st, v) = k.json("POST", "/kos/units/c/stop");
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["Unit"], "c.container");
    assert_eq!(v["Type"], "stop");
    assert_eq!(v["Result"], "done");
    assert!(v["Job"].as_u64().is_some(), "{v}");
    let c = k.unit("c");
    assert_eq!(c["ActiveState"], "inactive", "{c}");
    assert_eq!(c["MainPID"], 0);
    let (st, v) = k.json("POST", "/kos/units/c.container/start");
    assert_eq!(
        (st, v["Type"].clone(), v["Result"].clone()),
        (200, "start".into(), "done".into()),
        "{v}"
    );
    let c1 = k.wait_running("c");
    let (st, v) = k.json("POST", "/kos/units/c/restart");
    assert_eq!(
        (st, v["Type"].clone(), v["Result"].clone()),
        (200, "restart".into(), "done".into()),
        "{v}"
    );
    let c2 = k.unit("c");
    assert_eq!(c2["SubState"], "running");
    assert_ne!(c2["MainPID"], c1["MainPID"]);

    // enable/disable: systemd's links in the last unit directory.
    let link = k.etc().join("kos-system.target.wants/c.container");
    let (st, v) = k.json("POST", "/kos/units/c/disable");
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["Changes"],
        serde_json::json!([{"Type": "unlink", "Path": link.display().to_string(), "Source": ""}])
    );
    assert!(std::fs::symlink_metadata(&link).is_err());
    let (st, v) = k.json("POST", "/kos/units/c/enable");
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["Changes"],
        serde_json::json!([{"Type": "symlink", "Path": link.display().to_string(), "Source": lib.join("c.container").display().to_string()}])
    );
    assert!(std::fs::symlink_metadata(&link).is_ok());

    // reload picks up a new unit.
    assert_eq!(k.json("GET", "/kos/units/d").0, 404);
    std::fs::write(
        k.etc().join("d.container"),
        service_unit(&shared, "d", "", ""),
    )
    .expect("d");
    let (st, body) = k.k.http("POST", "/kos/units/reload", b"");
    assert_eq!((st, body.as_str()), (204, ""));
    assert_eq!(k.unit("d")["LoadState"], "loaded");

    // ExecStartPre= / ExecStartPost=: in order, where they belong.
    let (st, v) = k.json("POST", "/kos/units/p/start");
    assert_eq!((st, v["Result"].clone()), (200, "done".into()), "{v}");
    let p = k.unit("p");
    assert_eq!(p["SubState"], "running", "{p}");
    let short = &p["ContainerID"].as_str().expect("id")[..12];
    let plog = std::fs::read_to_string(shared.join("p-log")).expect("p-log");
    let lines: Vec<&str> = plog.lines().collect();
    assert_eq!(lines.len(), 3, "{plog}");
    assert!(
        lines[0].starts_with("pre ") && !lines[0].ends_with(short),
        "{plog}"
    );
    assert_eq!(lines[1], "host-pre");
    assert_eq!(lines[2], format!("post {short}"));
    let pre =
        k.k.docker_ok(&["ps", "-aq", "--filter", "label=kos.unit.pre"]);
    assert_eq!(pre.trim(), "", "the pre-command container is removed");

    // Errors: a bad unit names the key (400), an unknown one is 404, a cycle 409.
    let (st, v) = k.json("POST", "/kos/units/bad/start");
    assert_eq!(st, 400, "{v}");
    assert!(
        v["message"].as_str().unwrap_or("").contains("Restart"),
        "{v}"
    );
    assert_eq!(k.unit("bad")["LoadState"], "bad-setting");
    let (st, v) = k.json("POST", "/kos/units/nosuch/start");
    assert_eq!(st, 404, "{v}");
    assert_eq!(v["message"], "unit nosuch not found");
    let (st, v) = k.json("GET", "/kos/units/nosuch.container");
    assert_eq!(
        (st, v["message"].clone()),
        (404, "unit nosuch.container not found".into())
    );
    let (st, v) = k.json("POST", "/kos/units/x/start");
    assert_eq!(st, 409, "{v}");
    let msg = v["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("ordering cycle")
            && msg.contains("x.container")
            && msg.contains("y.container"),
        "{v}"
    );
    assert_eq!(
        k.json("GET", "/kos/units/x/logs").0,
        404,
        "a never-started unit has no container"
    );

    // At kosd's shutdown the units stop (no live-restore): no unit container keeps running.
    let pids: Vec<u64> = ["a", "b", "c"]
        .iter()
        .filter_map(|u| k.unit(u)["MainPID"].as_u64())
        .collect();
    let mut k = k;
    k.k.stop();
    for p in pids {
        assert!(
            !Path::new(&format!("/proc/{p}")).exists(),
            "unit process {p} outlived kosd"
        );
    }
    let log = k.k.log_text();
    assert!(log.contains("units stopped"), "{}", common::tail(&log, 30));
}

#[test]
fn live_restore_adopts_running_units() {
    let (dir, flags) = UnitsKosd::prepare("units-lr");
    let shared = dir.join("shared");
    let lib = dir.join("lib");
    std::fs::write(
        lib.join("w.container"),
        service_unit(&shared, "w", "", "WatchdogSec=1s"),
    )
    .expect("w");
    let wants = dir.join("etc/kos-system.target.wants");
    std::fs::create_dir_all(&wants).expect("wants");
    std::os::unix::fs::symlink(lib.join("w.container"), wants.join("w.container")).expect("link");
    let mut k = UnitsKosd::start(dir, flags, &["--live-restore"]);
    let w = k.wait_running("w");
    let pid = w["MainPID"].as_u64().expect("pid");

    // kosd goes away; the unit's container keeps running.
    k.k.stop();
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "the unit died with kosd"
    );
    std::thread::sleep(Duration::from_millis(500));
    k.k.spawn();
    let w2 = k.wait_running("w");
    assert_eq!(
        w2["MainPID"].as_u64(),
        Some(pid),
        "adopted, not restarted: {w2}"
    );
    assert_eq!(w2["ContainerID"], w["ContainerID"]);
    assert!(k.k.log_text().contains("unit adopted"));
    // The watchdog is supervised again (pings keep it running past 3 periods)...
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(k.unit("w")["MainPID"].as_u64(), Some(pid));
    // ...and so is its exit.
    kill9(pid);
    let w3 = k.wait_unit("w", "restarted after adoption", |v| {
        v["SubState"] == "running" && v["MainPID"].as_u64().is_some_and(|p| p != pid && p > 0)
    });
    assert_eq!(w3["ContainerID"], w["ContainerID"]);
    // Nothing of the units is left once removed (Drop stops them through kosd).
    let ids = k.unit_containers();
    assert_eq!(ids.len(), 1, "{ids:?}");
}

#[test]
fn units_disabled_and_empty_dirs() {
    // No unit directory at all: kosd serves, with no units.
    let dir = Scratch::new("units-none");
    let k = Kosd::start(&[
        "--cri-socket=",
        &format!("--unit-dir={}", dir.join("missing").display()),
    ]);
    let (st, body) = k.http("GET", "/kos/units?all=1", b"");
    assert_eq!((st, body.trim()), (200, "[]"));
    drop(k);
    let k = Kosd::start(&["--cri-socket=", "--units=false"]);
    let (st, body) = k.http("GET", "/kos/units", b"");
    assert_eq!(st, 404, "{body}");
    assert!(body.contains("unit manager is not running"), "{body}");
}

#[test]
fn kos_dns_runs_as_a_unit() {
    let (dir, flags) = UnitsKosd::prepare("units-dns");
    common::ensure_helpers();
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_kosd"))
        .parent()
        .expect("target dir");
    build_archive(
        &dir.join("images"),
        "kos-dns",
        &[bin_dir.join("kos-dns")],
        &["/usr/bin/kos-dns"],
    );
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../services/units/kos-dns.container");
    std::fs::copy(&shipped, dir.join("lib/kos-dns.container")).expect("kos-dns unit");
    let mut k = UnitsKosd::start(dir, flags, &[]);
    // A kosd with its own exec root: the paths go into a drop-in, as the unit file says.
    let exec = k.k.exec_root();
    let dropin = k.etc().join("kos-dns.container.d");
    std::fs::create_dir_all(&dropin).expect("drop-in dir");
    std::fs::write(
        dropin.join("paths.conf"),
        format!(
            "[Container]\nExec=--table {0}/dns/table.json --pid-file {0}/dns/kos-dns.pid --resolv-conf /run/host/resolv.conf\nVolume=\nVolume={0}/dns:{0}/dns\nVolume=/etc/resolv.conf:/run/host/resolv.conf:ro\n",
            exec.display()
        ),
    )
    .expect("drop-in");
    let (st, v) = k.json("POST", "/kos/units/kos-dns/enable");
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["Changes"][0]["Path"],
        k.etc()
            .join("kos-network.target.wants/kos-dns.container")
            .display()
            .to_string()
    );
    // Enabled: the next kosd leaves kos-dns to the unit manager.
    k.k.stop();
    k.k.spawn();
    let dns = k.wait_running("kos-dns");
    assert!(k
        .k
        .log_text()
        .contains("kos-dns runs as the unit kos-dns.container"));
    assert!(
        dns["Status"].as_str().unwrap_or("").starts_with("serving"),
        "{dns}"
    );
    assert_eq!(
        dns["DropInPaths"].as_array().map(Vec::len),
        Some(1),
        "{dns}"
    );
    let pid = dns["MainPID"].as_u64().expect("pid");
    let kosd = k.k.pid();
    let children =
        std::fs::read_to_string(format!("/proc/{kosd}/task/{kosd}/children")).unwrap_or_default();
    for c in children.split_whitespace() {
        let cmd = std::fs::read(format!("/proc/{c}/cmdline")).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&cmd).contains("kos-dns"),
            "kosd still runs its own kos-dns ({c})"
        );
    }
    // The pid file names the unit's process as the host sees it (Pid=host), so table
    // writers can signal it.
    let pid_file = std::fs::read_to_string(exec.join("dns/kos-dns.pid")).expect("pid file");
    assert_eq!(pid_file.trim(), pid.to_string());

    // Names on a user network resolve through the unit's kos-dns.
    let net = common::unique("un").replace('-', "");
    k.k.docker_ok(&["network", "create", &net]);
    let web = k.k.docker_ok(&[
        "run",
        "-d",
        "--name",
        &format!("{net}web"),
        "--network",
        &net,
        IMAGE,
        "sleep",
        "60",
    ]);
    let ip = k.k.docker_ok(&[
        "inspect",
        "-f",
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}",
        web.trim(),
    ]);
    let ip = ip.trim();
    assert!(!ip.is_empty());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let o = k.k.docker(&[
            "run",
            "--rm",
            "--network",
            &net,
            IMAGE,
            "nslookup",
            &format!("{net}web"),
        ]);
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        if o.status.success() && out.contains(ip) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{net}web did not resolve to {ip}: {out}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    k.k.docker_ok(&["rm", "-f", web.trim()]);
    k.k.docker_ok(&["network", "rm", &net]);
}
