//! Busybox containers for the confinement tests: a bundle tweaked per test, a private
//! --root, runs bounded by a timeout, and guards that delete the container and its files
//! even when a test panics.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// The kosrun under test: see `kos_testsupport::kosrun_or`.
pub fn kosrun() -> &'static str {
    kos_testsupport::kosrun_or(env!("CARGO_BIN_EXE_kosrun"))
}

/// How long any container run may take before the test kills it and fails.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(30);

static SEQ: AtomicU32 = AtomicU32::new(0);

/// A kos-named id no other test (or test run) uses.
pub fn unique_id() -> String {
    format!(
        "kostest-sec-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::SeqCst)
    )
}

/// A finished kosrun invocation.
#[derive(Debug)]
pub struct Ran {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Ran {
    pub fn code(&self) -> i32 {
        self.status.code().unwrap_or(-1)
    }
}

/// One container: bundle, state root and id. Drop deletes the container (forced),
/// then every file.
pub struct Sandbox {
    pub id: String,
    pub base: PathBuf,
    pub root: PathBuf,
    pub bundle: PathBuf,
    pub config: Value,
}

impl Sandbox {
    /// A busybox bundle from `kosrun spec` running `args`, writable root, no terminal,
    /// cgroupsPath "/<id>" (so a leftover cgroup can be looked for by name).
    pub fn new(args: &[&str]) -> Sandbox {
        let id = unique_id();
        let base = std::env::temp_dir().join(&id);
        let _ = fs::remove_dir_all(&base);
        let bundle = base.join("bundle");
        let root = base.join("state");
        fs::create_dir_all(&root).unwrap();
        let mut sb = Sandbox {
            id: id.clone(),
            base,
            root,
            bundle: bundle.clone(),
            config: Value::Null,
        };
        let mut c = crate::support::spec_config(&bundle, args);
        add_kos_user(&bundle.join("rootfs"));
        c["root"]["readonly"] = json!(false);
        c["linux"]["cgroupsPath"] = json!(format!("/{id}"));
        sb.config = c;
        sb
    }

    /// A bundle running `sh -c script`.
    pub fn sh(script: &str) -> Sandbox {
        Sandbox::new(&["sh", "-c", script])
    }

    fn write_config(&self) {
        fs::write(
            self.bundle.join("config.json"),
            serde_json::to_vec_pretty(&self.config).unwrap(),
        )
        .unwrap();
    }

    /// `kosrun --root R <args>`, stdio in files (a container may hold pipes open), killed
    /// after `timeout`.
    pub fn kosrun(&self, args: &[&str], timeout: Duration) -> Ran {
        let out = self
            .base
            .join(format!("out-{}", SEQ.fetch_add(1, Ordering::SeqCst)));
        let err = out.with_extension("err");
        let mut child = Command::new(kosrun())
            .arg("--root")
            .arg(&self.root)
            .args(args)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&out).unwrap())
            .stderr(fs::File::create(&err).unwrap())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "kosrun {args:?} did not finish in {timeout:?}; stderr: {}",
                    fs::read_to_string(&err).unwrap_or_default()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let ran = Ran {
            status,
            stdout: fs::read_to_string(&out).unwrap_or_default(),
            stderr: fs::read_to_string(&err).unwrap_or_default(),
        };
        let _ = fs::remove_file(&out);
        let _ = fs::remove_file(&err);
        ran
    }

    /// `kosrun run` in the foreground: the container's output and exit status.
    pub fn run(&self) -> Ran {
        self.write_config();
        let bundle = self.bundle.to_string_lossy().into_owned();
        self.kosrun(&["run", "-b", &bundle, &self.id], RUN_TIMEOUT)
    }

    /// `kosrun create` only (for input that must be refused before the container exists).
    pub fn create(&self) -> Ran {
        self.write_config();
        let bundle = self.bundle.to_string_lossy().into_owned();
        self.kosrun(&["create", "-b", &bundle, &self.id], RUN_TIMEOUT)
    }

    /// Ids `kosrun list` shows under this sandbox's root.
    pub fn listed(&self) -> Vec<String> {
        let r = self.kosrun(&["list", "-q"], RUN_TIMEOUT);
        r.stdout
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Cgroup directories named after this container, on any v1 hierarchy or the v2 mount.
    pub fn leftover_cgroups(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        let Ok(entries) = fs::read_dir("/sys/fs/cgroup") else {
            return found;
        };
        for e in entries.flatten() {
            let p = e.path().join(&self.id);
            if p.exists() {
                found.push(p);
            }
        }
        if Path::new("/sys/fs/cgroup").join(&self.id).exists() {
            found.push(Path::new("/sys/fs/cgroup").join(&self.id));
        }
        found
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = Command::new(kosrun())
            .arg("--root")
            .arg(&self.root)
            .args(["delete", "--force", &self.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = fs::remove_dir_all(&self.base);
    }
}

/// The shared busybox rootfs plus an unprivileged user and a world-writable /tmp.
fn add_kos_user(dir: &Path) {
    fs::set_permissions(dir.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    fs::write(
        dir.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nkos:x:1000:1000:kos:/tmp:/bin/sh\n",
    )
    .unwrap();
    fs::write(dir.join("etc/group"), "root:x:0:\nkos:x:1000:\n").unwrap();
}

/// The same capability list for all five sets.
pub fn caps_all_sets(names: &[&str]) -> Value {
    json!({
        "bounding": names, "effective": names, "permitted": names,
        "inheritable": names, "ambient": names,
    })
}

/// The bit mask /proc/<pid>/status shows for these capability names.
pub fn cap_mask(names: &[&str]) -> u64 {
    names
        .iter()
        .map(|n| match *n {
            "CAP_CHOWN" => 0,
            "CAP_KILL" => 5,
            "CAP_NET_BIND_SERVICE" => 10,
            "CAP_NET_RAW" => 13,
            "CAP_SYS_ADMIN" => 21,
            other => panic!("cap_mask: add {other}"),
        })
        .fold(0u64, |m, b| m | (1 << b))
}

/// The value of `key:` in a /proc/<pid>/status text.
pub fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status.lines().find_map(|l| {
        l.strip_prefix(key)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}
