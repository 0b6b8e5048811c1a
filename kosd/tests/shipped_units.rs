//! The shipped system target under a real kosd: the shipped unit files
//! (services/units/*.container, units/shipped/*.target) run KOS's own components from the
//! images services/build-images.sh makes, come up in dependency order with each one ready
//! (READY=1 received), and a component whose container init is killed with SIGKILL is
//! restarted per its policy. Host-wide paths of the shipped units are pointed at this
//! test's own directories by drop-ins in the admin unit directory, as an admin would.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Kosd, Scratch};
use serde_json::Value;

const COMPONENTS: [&str; 3] = ["kos-dns", "kaim", "kadcm"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .canonicalize()
        .expect("repository root")
}

/// The cargo target directory this test binary was built into.
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_kosd"))
        .parent()
        .and_then(Path::parent)
        .expect("target dir")
        .to_path_buf()
}

/// The release binaries the images are made of, brought up to date (a no-op for cargo when
/// they are: a stale binary would test old code).
fn ensure_release_bins() {
    let mut c = kos_testsupport::cargo();
    c.args(["build", "--release", "-q"]);
    for b in COMPONENTS {
        c.args(["-p", b, "--bin", b]);
    }
    let st = c.status().expect("cargo build --release");
    assert!(
        st.success(),
        "building the release binaries {COMPONENTS:?} failed"
    );
}

/// services/build-images.sh into `out`, from the release binaries already built.
fn build_images(out: &Path) {
    let o = Command::new(repo_root().join("services/build-images.sh"))
        .arg(out)
        .env("NO_BUILD", "1")
        .env("CARGO_TARGET_DIR", target_dir())
        .output()
        .expect("run services/build-images.sh");
    assert!(
        o.status.success(),
        "build-images.sh failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    for c in COMPONENTS {
        assert!(
            out.join(format!("{c}.oci.tar")).is_file(),
            "build-images.sh made no {c}.oci.tar"
        );
    }
}

fn write(p: &Path, text: &str) {
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(p, text).unwrap_or_else(|e| panic!("writing {}: {e}", p.display()));
}

/// A kosd running the shipped units; on drop every unit is stopped and its container
/// removed through kosd (also after a failure) before [`Kosd`]'s own drop stops the daemon
/// and removes its cgroups, processes and directories.
struct ShippedKosd {
    k: Kosd,
}

impl ShippedKosd {
    /// Lays out the shipped units, the admin drop-ins and the images inside a new kosd's
    /// directory, then starts kosd on them.
    fn start() -> ShippedKosd {
        common::ensure_helpers();
        ensure_release_bins();
        let dir = Scratch::new("shipped");
        let bridge = format!("kossu{}", std::process::id() % 100_000);
        let mut k = Kosd {
            cgroup_parent: format!("kos-test-{bridge}"),
            bridge,
            child: None,
            log: dir.join("kosd.log"),
            sock: dir.join("exec/kos.sock"),
            extra: Vec::new(),
            dir,
        };
        let lib = k.dir.join("units-shipped");
        let etc = k.dir.join("units-admin");
        let images = k.dir.join("images");
        let exec = k.exec_root();
        let root = repo_root();
        for d in [&lib, &etc, &images, &exec] {
            std::fs::create_dir_all(d).expect("mkdir");
        }
        for (src, name) in [
            ("units/shipped", "kos-system.target"),
            ("units/shipped", "kos-network.target"),
            ("services/units", "kos-dns.container"),
            ("services/units", "kaim.container"),
            ("services/units", "kadcm.container"),
        ] {
            std::fs::copy(root.join(src).join(name), lib.join(name))
                .unwrap_or_else(|e| panic!("copying {src}/{name}: {e}"));
        }
        // Enabled as `kos system enable` does it: the [Install] links in the admin directory.
        for (target, unit) in [
            ("kos-network.target", "kos-dns.container"),
            ("kos-system.target", "kaim.container"),
            ("kos-system.target", "kadcm.container"),
        ] {
            let wants = etc.join(format!("{target}.wants"));
            std::fs::create_dir_all(&wants).expect("wants dir");
            std::os::unix::fs::symlink(lib.join(unit), wants.join(unit)).expect("enable link");
        }

        // The shipped units assume kosd's default exec root /run/kos and host-wide /etc/kos,
        // /var/log/kos and /var/run/cdi: drop-ins rebind them to this daemon's directories
        // (an empty Volume= resets the shipped list).
        let private = |p: &str| {
            let d = k.dir.join(p);
            std::fs::create_dir_all(&d).expect("mkdir");
            d.display().to_string()
        };
        let exec_s = exec.display().to_string();
        write(
            &etc.join("kos-dns.container.d/paths.conf"),
            &format!(
                "[Container]\nVolume=\nVolume={exec_s}/dns:/run/kos/dns\nVolume=/etc/resolv.conf:/run/host/resolv.conf:ro\n"
            ),
        );
        let kaim_etc = private("etc-kaim");
        let kaim_log = private("log");
        write(
            &Path::new(&kaim_etc).join("config.json"),
            r#"{"upstream":"unix:///run/kos/kos.sock","audit":"/var/log/kos/kaim-audit.log","control_socket":"/run/kos/kaim-control.sock"}"#,
        );
        write(
            &etc.join("kaim.container.d/paths.conf"),
            &format!(
                "[Container]\nVolume=\nVolume={exec_s}:/run/kos\nVolume={kaim_log}:/var/log/kos\nVolume={kaim_etc}:/etc/kos/kaim:ro\n"
            ),
        );
        let kadcm_etc = private("etc-kadcm");
        let cdi = private("cdi");
        std::fs::copy(
            root.join("services/kadcm/policies/default.rego"),
            Path::new(&kadcm_etc).join("policy.rego"),
        )
        .expect("kadcm policy");
        // kosd's own runtime (the one its containers run under), for kadcm's `state` calls.
        let kosrun = Path::new(env!("CARGO_BIN_EXE_kosd"))
            .with_file_name("kosrun")
            .display()
            .to_string();
        write(
            &etc.join("kadcm.container.d/paths.conf"),
            &format!(
                "[Container]\nVolume=\nVolume=/sys:/sys\nVolume=/dev:/dev\nVolume={exec_s}:/run/kos\nVolume={cdi}:/var/run/cdi\nVolume={kadcm_etc}:/etc/kos/kadcm:ro\nVolume={kosrun}:/usr/bin/kosrun:ro\n"
            ),
        );

        build_images(&images);
        k.extra = vec![
            "--cri-socket=".to_string(),
            format!("--unit-dir={}", lib.display()),
            format!("--unit-dir={}", etc.display()),
            format!("--unit-image-dir={}", images.display()),
        ];
        let mut s = ShippedKosd { k };
        s.k.spawn();
        s
    }

    fn json(&self, method: &str, path: &str) -> (u16, Value) {
        let (st, body) = self.k.http(method, path, b"");
        let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
        (st, v)
    }

    /// Waits until `f` holds for the unit, or fails with its state and kosd's log.
    fn wait_unit(&self, name: &str, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (st, v) = self.json("GET", &format!("/kos/units/{name}"));
            if st == 200 && f(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "{name} never became {what}: {v}\n--- unit log ---\n{}\n--- kosd log ---\n{}",
                self.k
                    .http(
                        "GET",
                        &format!("/kos/units/{name}/logs?stdout=1&stderr=1"),
                        b""
                    )
                    .1,
                self.log_tail()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The end of kosd's log without the request lines of the polling.
    fn log_tail(&self) -> String {
        let log: Vec<String> = self
            .k
            .log_text()
            .lines()
            .filter(|l| !l.contains("kosd::api: request"))
            .map(str::to_string)
            .collect();
        common::tail(&log.join("\n"), 80)
    }

    /// Every unit event from `since` (seconds) until now.
    fn unit_events(&self, since: i64) -> Vec<Value> {
        let until = now_secs() + 1;
        let (st, body) = self.k.http(
            "GET",
            &format!(
                "/events?since={since}&until={until}&filters=%7B%22type%22%3A%5B%22unit%22%5D%7D"
            ),
            b"",
        );
        assert_eq!(st, 200, "{body}");
        body.lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for ShippedKosd {
    fn drop(&mut self) {
        if self.k.child.is_none() {
            return;
        }
        // Stopped first, so no unit is restarted by its policy once its container is gone.
        let _ = self
            .k
            .http("POST", "/kos/units/kos-system.target/stop", b"");
        let (_, list) = self.json("GET", "/kos/units?all=1");
        for u in list.as_array().into_iter().flatten() {
            if let Some(n) = u["Name"].as_str() {
                let _ = self.k.http("POST", &format!("/kos/units/{n}/stop"), b"");
            }
        }
        for label in ["label=kos.unit", "label=kos.unit.pre"] {
            let o = self
                .k
                .docker(&["ps", "-aq", "--no-trunc", "--filter", label]);
            for id in String::from_utf8_lossy(&o.stdout).lines() {
                let _ = self.k.docker(&["rm", "-f", id]);
            }
        }
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs() as i64
}

/// The time (ns) of the first event of `unit` with `action` (and sub-state `sub` if given).
fn first_event(ev: &[Value], unit: &str, action: &str, sub: Option<&str>) -> i64 {
    ev.iter()
        .find(|e| {
            e["Actor"]["ID"] == unit
                && e["Action"] == action
                && sub.is_none_or(|s| e["Actor"]["Attributes"]["sub"] == s)
        })
        .and_then(|e| e["timeNano"].as_i64())
        .unwrap_or_else(|| panic!("no {action} event for {unit} in {ev:#?}"))
}

/// `GET /grants` on kaim's control socket (retried while the restarted kaim binds it);
/// returns the HTTP status.
fn control_get(sock: &Path) -> u16 {
    use std::io::{Read as _, Write as _};
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Ok(mut s) = std::os::unix::net::UnixStream::connect(sock) {
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let _ = s.write_all(b"GET /grants HTTP/1.0\r\nHost: kaim\r\n\r\n");
            let mut r = String::new();
            let _ = s.read_to_string(&mut r);
            if let Some(code) = r.split(' ').nth(1).and_then(|c| c.parse().ok()) {
                return code;
            }
        }
        assert!(
            Instant::now() < deadline,
            "kaim's control socket {} does not answer",
            sock.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until kos-dns's pid file names `pid` (kos-dns writes it once serving).
fn wait_pid_file(pid_file: &Path, pid: u64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(pid_file).unwrap_or_default();
        if text.trim().parse::<u64>().ok() == Some(pid) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "kos-dns's pid file {} does not name the unit's main pid {pid}: {text:?}",
            pid_file.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn shipped_target_comes_up_in_order_and_restarts_a_killed_component() {
    let since = now_secs() - 1;
    let k = ShippedKosd::start();

    // The whole target up, each component ready: Type=notify, so `running` means READY=1
    // came from inside its container.
    k.wait_unit("kos-system.target", "active", |v| {
        v["ActiveState"] == "active"
    });
    let mut units = Vec::new();
    for c in COMPONENTS {
        let v = k.wait_unit(c, "active (running)", |v| {
            v["ActiveState"] == "active" && v["SubState"] == "running"
        });
        assert_eq!(v["LoadState"], "loaded", "{v}");
        assert_eq!(v["Result"], "success", "{v}");
        assert_eq!(v["UnitFileState"], "enabled", "{v}");
        assert!(v["MainPID"].as_u64().unwrap_or(0) > 0, "{v}");
        let cid = v["ContainerID"].as_str().unwrap_or("").to_string();
        assert!(!cid.is_empty(), "{v}");
        // The container runs the image build-images.sh made.
        let image =
            k.k.docker_ok(&["inspect", "-f", "{{.Config.Image}} {{.State.Pid}}", &cid]);
        assert_eq!(
            image.trim(),
            format!("kos.local/{c}:latest {}", v["MainPID"]),
            "{c}"
        );
        units.push(v);
    }
    // The drop-ins were applied, and kosd left kos-dns to the unit.
    let dns = &units[0];
    assert!(
        dns["DropInPaths"].as_array().is_some_and(|d| d
            .iter()
            .any(|p| p.as_str().unwrap_or("").ends_with("paths.conf"))),
        "{dns}"
    );
    let pid_file = k.k.exec_root().join("dns/kos-dns.pid");
    wait_pid_file(&pid_file, dns["MainPID"].as_u64().expect("kos-dns pid"));
    // kaim made its control socket in the daemon's exec root, kadcm its events socket.
    for sock in ["kaim-control.sock", "kadcm-events.sock"] {
        assert!(k.k.exec_root().join(sock).exists(), "no {sock}");
    }

    // Dependency order: kos-dns ready before kos-network.target is active, which is active
    // before kaim and kadcm are started (After=kos-network.target); kos-system.target last.
    let ev = k.unit_events(since);
    let dns_up = first_event(&ev, "kos-dns.container", "active", Some("running"));
    let net_up = first_event(&ev, "kos-network.target", "active", None);
    let sys_up = first_event(&ev, "kos-system.target", "active", None);
    assert!(dns_up <= net_up, "kos-dns ready after kos-network.target");
    for c in ["kaim.container", "kadcm.container"] {
        let starting = first_event(&ev, c, "activating", None);
        let up = first_event(&ev, c, "active", Some("running"));
        assert!(
            net_up <= starting,
            "{c} started before kos-network.target was up"
        );
        assert!(
            up <= sys_up,
            "kos-system.target active before {c} was ready"
        );
    }

    // SIGKILL to a component's container init from the host: kaim has Restart=on-failure,
    // so it runs again (same container, new init) after RestartSec, result `signal` seen.
    let kaim = &units[1];
    let old = kaim["MainPID"].as_u64().expect("kaim pid");
    let killed_at = now_secs() - 1;
    // SAFETY: the init of the kaim container this test's kosd runs.
    unsafe { libc::kill(old as i32, libc::SIGKILL) };
    let again = k.wait_unit("kaim", "restarted", |v| {
        v["ActiveState"] == "active"
            && v["SubState"] == "running"
            && v["MainPID"].as_u64().is_some_and(|p| p > 0 && p != old)
    });
    assert_eq!(again["ContainerID"], kaim["ContainerID"], "{again}");
    let ev = k.unit_events(killed_at);
    let kaim_ev = |sub: &str, after: i64| {
        ev.iter().find(|e| {
            e["Actor"]["ID"] == "kaim.container"
                && e["Actor"]["Attributes"]["sub"] == sub
                && e["timeNano"].as_i64().is_some_and(|t| t >= after)
        })
    };
    let waiting =
        kaim_ev("auto-restart", 0).unwrap_or_else(|| panic!("no auto-restart for kaim in {ev:#?}"));
    assert_eq!(
        waiting["Actor"]["Attributes"]["result"], "signal",
        "{waiting}"
    );
    // Started again only after RestartSec=200ms.
    let waited_at = waiting["timeNano"].as_i64().expect("time");
    let restarted =
        kaim_ev("start", waited_at).unwrap_or_else(|| panic!("kaim not started again in {ev:#?}"));
    let delay = restarted["timeNano"].as_i64().expect("time") - waited_at;
    assert!(delay >= 200_000_000, "restarted after {delay} ns");
    // The new kaim serves: its control socket answers root on the host.
    assert_eq!(control_get(&k.k.exec_root().join("kaim-control.sock")), 200);
    // The others were not disturbed.
    for (c, before) in [("kos-dns", &units[0]), ("kadcm", &units[2])] {
        let (_, v) = k.json("GET", &format!("/kos/units/{c}"));
        assert_eq!(v["MainPID"], before["MainPID"], "{c}: {v}");
        assert_eq!(v["SubState"], "running", "{c}: {v}");
    }

    // kos-dns (Restart=always) likewise.
    let old_dns = dns["MainPID"].as_u64().expect("kos-dns pid");
    // SAFETY: the init of the kos-dns container this test's kosd runs.
    unsafe { libc::kill(old_dns as i32, libc::SIGKILL) };
    let dns2 = k.wait_unit("kos-dns", "restarted", |v| {
        v["SubState"] == "running" && v["MainPID"].as_u64().is_some_and(|p| p > 0 && p != old_dns)
    });
    // kosd's table writer signals kos-dns through this file: it names the new one.
    wait_pid_file(&pid_file, dns2["MainPID"].as_u64().expect("kos-dns pid"));
}
