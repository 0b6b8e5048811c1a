//! Test bundles for the cgroup command tests: a busybox rootfs, a host directory shared at
//! /kos inside the container, a private --root, and guards that delete the container and
//! remove every file even when a test panics.

#![allow(dead_code, clippy::unwrap_used)]

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The kosrun under test: see `kos_testsupport::kosrun_or`.
pub fn kosrun() -> &'static str {
    kos_testsupport::kosrun_or(env!("CARGO_BIN_EXE_kosrun"))
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A unique, kos-named id for a test object.
pub fn unique_id() -> String {
    format!(
        "kostest-cg-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    )
}

/// One container's bundle, state root and shared directory; deleted (forced) on drop.
pub struct Fixture {
    pub id: String,
    pub base: PathBuf,
    pub root: PathBuf,
    pub bundle: PathBuf,
    /// Host side of /kos in the container.
    pub shared: PathBuf,
    pub config: Value,
}

impl Fixture {
    /// A bundle running `sh -c script`, cgroupsPath "/<id>", /kos bound to `shared`.
    pub fn new(script: &str) -> Fixture {
        let id = unique_id();
        let base = std::env::temp_dir().join(&id);
        let _ = fs::remove_dir_all(&base);
        let bundle = base.join("bundle");
        let rootfs = bundle.join("rootfs");
        let shared = base.join("shared");
        let root = base.join("state");
        fs::create_dir_all(&shared).unwrap();
        let mut config = crate::support::spec_config(&bundle, &["sh", "-c", script]);
        for d in ["kos", "kosdev"] {
            fs::create_dir_all(rootfs.join(d)).unwrap();
        }
        let mut fx = Fixture {
            id: id.clone(),
            base,
            root,
            bundle: bundle.clone(),
            shared: shared.clone(),
            config: Value::Null,
        };
        config["root"]["readonly"] = json!(false);
        config["linux"]["cgroupsPath"] = json!(format!("/{id}"));
        config["mounts"].as_array_mut().unwrap().push(json!({
            "destination": "/kos", "type": "bind",
            "source": shared.to_str().unwrap(), "options": ["rbind", "rw"]
        }));
        fx.config = config;
        fx
    }

    /// Binds a host device node at /kosdev/<name> in the container.
    pub fn bind_device(&mut self, host: &str, name: &str) {
        let target = self.bundle.join("rootfs/kosdev").join(name);
        fs::write(&target, "").unwrap();
        self.config["mounts"].as_array_mut().unwrap().push(json!({
            "destination": format!("/kosdev/{name}"), "type": "bind",
            "source": host, "options": ["bind", "rw"]
        }));
    }

    pub fn resources(&mut self) -> &mut Value {
        &mut self.config["linux"]["resources"]
    }

    /// kosrun with this fixture's --root, output captured: only for commands that start no
    /// container process (one would keep the pipes open; see `run_detached`).
    pub fn kosrun(&self, args: &[&str]) -> Output {
        Command::new(kosrun())
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// kosrun with `input` on stdin.
    pub fn kosrun_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut c = Command::new(kosrun())
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
        c.wait_with_output().unwrap()
    }

    /// kosrun that must succeed; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kosrun(args);
        assert!(
            out.status.success(),
            "kosrun {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// kosrun that must fail; its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.kosrun(args);
        assert!(
            !out.status.success(),
            "kosrun {args:?} succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Writes config.json and runs the container detached; its stdout and stderr go to
    /// files in the fixture (a pipe would never reach EOF while the container runs).
    pub fn run_detached(&self) {
        self.launch(&["run", "-d"]);
    }

    /// Like `run_detached`, but only `create`.
    pub fn create(&self) {
        self.launch(&["create"]);
    }

    fn launch(&self, cmd: &[&str]) {
        fs::write(
            self.bundle.join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
        let out = Command::new(kosrun())
            .arg("--root")
            .arg(&self.root)
            .args(cmd)
            .arg("--bundle")
            .arg(&self.bundle)
            .arg(&self.id)
            .stdin(Stdio::null())
            .stdout(fs::File::create(self.base.join("stdout")).unwrap())
            .stderr(fs::File::create(self.base.join("stderr")).unwrap())
            .status()
            .unwrap();
        assert!(
            out.success(),
            "kosrun {cmd:?} failed: {}",
            fs::read_to_string(self.base.join("stderr")).unwrap_or_default()
        );
    }

    pub fn state(&self) -> Value {
        serde_json::from_str(&self.ok(&["state", &self.id])).unwrap()
    }

    pub fn status(&self) -> String {
        self.state()["status"].as_str().unwrap_or("").to_string()
    }

    pub fn pid(&self) -> i32 {
        self.state()["pid"].as_i64().unwrap() as i32
    }

    /// The container's saved state.json (what a later update or kosd reads).
    pub fn saved(&self) -> Value {
        serde_json::from_slice(&fs::read(self.root.join(&self.id).join("state.json")).unwrap())
            .unwrap()
    }

    pub fn shared_file(&self, name: &str) -> String {
        fs::read_to_string(self.shared.join(name)).unwrap_or_default()
    }

    /// Waits until the container has written `name` in /kos (with a line "done" when
    /// `done` is set).
    pub fn wait_shared(&self, name: &str, done: bool) -> String {
        wait_for(Duration::from_secs(15), &format!("/kos/{name}"), || {
            let s = self.shared_file(name);
            let ready = if done {
                s.lines().any(|l| l == "done")
            } else {
                !s.is_empty()
            };
            ready.then_some(s)
        })
    }

    /// A file of the container's cgroup for `controller` on the host: the v1 hierarchy if
    /// the host mounts one for it, else the v2 one.
    pub fn cgroup_file(&self, controller: &str, file: &str) -> PathBuf {
        let v1 = Path::new("/sys/fs/cgroup").join(controller);
        if v1.join("cgroup.procs").exists() {
            return v1.join(&self.id).join(file);
        }
        Path::new("/sys/fs/cgroup").join(&self.id).join(file)
    }

    pub fn read_cgroup(&self, controller: &str, file: &str) -> String {
        let p = self.cgroup_file(controller, file);
        fs::read_to_string(&p)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
            .trim()
            .to_string()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = Command::new(kosrun())
            .arg("--root")
            .arg(&self.root)
            .args(["delete", "--force", &self.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        // Whatever kosrun could not remove (it failed half way): every hierarchy.
        if let Ok(rd) = fs::read_dir("/sys/fs/cgroup") {
            for e in rd.flatten() {
                let _ = fs::remove_dir(e.path().join(&self.id));
            }
        }
        let _ = fs::remove_dir(Path::new("/sys/fs/cgroup").join(&self.id));
        let _ = fs::remove_dir_all(&self.base);
    }
}

/// Polls `f` until it gives a value, or panics naming `what` after `limit`.
pub fn wait_for<T>(limit: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A long-running kosrun (`events`) whose stdout lines arrive on a channel; killed on drop.
pub struct Stream {
    child: Child,
    pub lines: mpsc::Receiver<String>,
}

impl Stream {
    pub fn start(fx: &Fixture, args: &[&str]) -> Stream {
        let mut child = Command::new(kosrun())
            .arg("--root")
            .arg(&fx.root)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines() {
                let Ok(l) = l else { break };
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Stream { child, lines }
    }

    /// The first line for which `f` holds, within `limit`.
    pub fn wait_line(&self, limit: Duration, what: &str, f: impl Fn(&Value) -> bool) -> Value {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    let v: Value = serde_json::from_str(&l)
                        .unwrap_or_else(|e| panic!("events printed non-JSON {l:?}: {e}"));
                    if f(&v) {
                        return v;
                    }
                }
                Err(e) => panic!("no {what} line from kosrun events within {limit:?}: {e}"),
            }
        }
    }

    /// Waits for the process to exit by itself; its exit status.
    pub fn wait_exit(&mut self, limit: Duration) -> std::process::ExitStatus {
        wait_for(limit, "kosrun events to exit", || {
            self.child.try_wait().ok().flatten()
        })
    }
}

impl Drop for Stream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
