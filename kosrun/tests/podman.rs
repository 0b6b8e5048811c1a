//! kosrun as podman's runtime (`--runtime /path/to/kosrun`): run, exec, stop,
//! rm, terminal sessions and resource flags that reach the cgroups, on an image
//! loaded from a local archive (`--pull never`). The same scenario runs with
//! runc in kosrun's place, so a failure is kosrun's.
//!
//! This host's hard RLIMIT_NOFILE (20000) is below podman's default of 1048576
//! and CAP_SYS_RESOURCE is absent, so every container gets explicit --ulimit values.

mod dropin_support;
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use dropin_support::*;

const IMAGE: &str = "localhost/kos-busybox:test";
const LIMITS: &[&str] = &[
    "--pull",
    "never",
    "--network",
    "none",
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=1024:1024",
];

/// podman with its own storage, run root and temp dir; containers and
/// images removed on drop.
struct Podman {
    dir: TempDir,
    runtime: PathBuf,
}

/// Live `Podman`s of this test binary, and whether podman's default cgroup parent (with
/// cgroupfs, `libpod_parent`, which holds each conmon under `conmon`) existed before the first.
static LIVE: std::sync::Mutex<(usize, Option<bool>)> = std::sync::Mutex::new((0, None));

fn libpod_parents() -> Vec<PathBuf> {
    std::fs::read_dir("/sys/fs/cgroup")
        .map(|d| {
            d.flatten()
                .map(|e| e.path().join("libpod_parent"))
                .filter(|p| p.is_dir())
                .collect()
        })
        .unwrap_or_default()
}

impl Podman {
    fn new(runtime: &Path) -> Podman {
        let mut live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
        live.0 += 1;
        if live.1.is_none() {
            live.1 = Some(!libpod_parents().is_empty());
        }
        Podman {
            dir: TempDir::new("podman"),
            runtime: runtime.to_path_buf(),
        }
    }

    fn args(&self) -> Vec<String> {
        let d = &self.dir.0;
        vec![
            "--root".into(),
            d.join("root").to_string_lossy().into_owned(),
            "--runroot".into(),
            d.join("runroot").to_string_lossy().into_owned(),
            "--tmpdir".into(),
            d.join("tmp").to_string_lossy().into_owned(),
            "--cgroup-manager".into(),
            "cgroupfs".into(),
            "--events-backend".into(),
            "file".into(),
            "--runtime".into(),
            self.runtime.to_string_lossy().into_owned(),
        ]
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new("podman");
        c.args(self.args());
        c
    }

    /// The whole podman command line, for `script -c`.
    fn shell(&self, rest: &str) -> String {
        format!("podman {} {rest}", self.args().join(" "))
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = run(self.cmd().args(["rm", "-a", "-f", "-t", "0"]));
        let _ = run(self.cmd().args(["rmi", "-a", "-f"]));
        // The last one out removes the cgroup parent podman made for its conmons (empty
        // cgroups only: rmdir refuses one that still holds a process).
        let mut live = LIVE.lock().unwrap_or_else(|p| p.into_inner());
        live.0 -= 1;
        if live.0 == 0 && live.1 == Some(false) {
            for parent in libpod_parents() {
                let _ = std::fs::remove_dir(parent.join("conmon"));
                let _ = std::fs::remove_dir(&parent);
            }
            live.1 = None;
        }
    }
}

fn cgroup_file(pid: &str, controller: &str, file: &str) -> String {
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let path = cg
        .lines()
        .find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, c, p) = (f.next()?, f.next()?, f.next()?);
            c.split(',').any(|x| x == controller).then(|| p.to_string())
        })
        .unwrap_or_default();
    let dir = std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().split(',').any(|x| x == controller))
        })
        .unwrap_or_default();
    std::fs::read_to_string(dir.join(path.trim_start_matches('/')).join(file))
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn scenario(runtime: &Path) {
    require_tool("podman", "podman");
    require_tool("conmon", "conmon");
    let is_kosrun = runtime == Path::new(kosrun());
    let work = TempDir::new("podman-image");
    let archive = busybox_archive(&work.0, IMAGE);
    let pm = Podman::new(runtime);
    ok(pm.cmd().arg("load").arg("-i").arg(&archive));

    // Run to completion with a non-zero status.
    let out = run(pm.cmd().args(["run", "--rm"]).args(LIMITS).args([
        IMAGE,
        "sh",
        "-c",
        "echo kos-hello; exit 3",
    ]));
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(text(&out.stdout).contains("kos-hello"));

    // podman's default RLIMIT_NOFILE is above this host's hard limit.
    let out = run(pm.cmd().args([
        "run",
        "--rm",
        "--pull",
        "never",
        "--network",
        "none",
        IMAGE,
        "true",
    ]));
    assert!(
        !out.status.success(),
        "a hard rlimit above the host's was raised"
    );
    if is_kosrun {
        let mut cur = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: valid out-parameter.
        unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut cur) };
        let e = text(&out.stderr);
        assert!(
            e.contains("RLIMIT_NOFILE") && e.contains(&cur.rlim_max.to_string()),
            "{e}"
        );
    }

    // Detached, with resource flags that must reach the cgroups.
    let name = unique("pm");
    ok(pm
        .cmd()
        .args(["run", "-d", "--name", &name])
        .args(LIMITS)
        .args([
            "--memory",
            "64m",
            "--pids-limit",
            "50",
            "--cpu-shares",
            "512",
            IMAGE,
            "sleep",
            "100000",
        ]));
    let rt_name = ok(pm.cmd().args(["inspect", "-f", "{{.OCIRuntime}}", &name]));
    assert!(
        rt_name
            .trim()
            .ends_with(&*runtime.file_name().expect("name").to_string_lossy()),
        "podman used {rt_name}"
    );
    let pid = ok(pm.cmd().args(["inspect", "-f", "{{.State.Pid}}", &name]));
    let pid = pid.trim();
    assert_eq!(
        cgroup_file(pid, "memory", "memory.limit_in_bytes"),
        "67108864"
    );
    assert_eq!(cgroup_file(pid, "pids", "pids.max"), "50");
    assert_eq!(cgroup_file(pid, "cpu", "cpu.shares"), "512");

    // exec forwards the status and runs beside the container's pid 1.
    let out = run(pm
        .cmd()
        .args(["exec", &name, "sh", "-c", "cat /proc/1/cmdline; exit 4"]));
    assert_eq!(out.status.code(), Some(4), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("sleep"));

    // Terminal sessions, through conmon's console socket.
    require_tool("script", "bsdutils");
    let out = run(Command::new("script").args([
        "-qec",
        &pm.shell(&format!("exec -it {name} sh -c 'tty; exit 2'")),
        "/dev/null",
    ]));
    assert_eq!(
        out.status.code(),
        Some(2),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert!(
        text(&out.stdout).contains("/dev/pts/"),
        "{}",
        text(&out.stdout)
    );
    let out = run(Command::new("script").args([
        "-qec",
        &pm.shell(&format!(
            // podman's attach races a program that exits at once (runc too):
            // give it time to attach before the exit status is due.
            "run -it --rm {} {IMAGE} sh -c 'tty; sleep 0.5; exit 6'",
            LIMITS.join(" ")
        )),
        "/dev/null",
    ]));
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stdout));
    assert!(
        text(&out.stdout).contains("/dev/pts/"),
        "{}",
        text(&out.stdout)
    );

    // stop (TERM, then KILL after the timeout: sleep as pid 1 ignores TERM) and rm.
    ok(pm.cmd().args(["stop", "-t", "1", &name]));
    let st = ok(pm.cmd().args(["inspect", "-f", "{{.State.Status}}", &name]));
    assert_eq!(st.trim(), "exited");
    ok(pm.cmd().args(["rm", &name]));
    let left = ok(pm.cmd().args(["ps", "-a", "-q"]));
    assert!(left.trim().is_empty(), "containers left: {left}");
}

#[test]
fn podman_runs_kosrun() {
    scenario(Path::new(kosrun()));
}

#[test]
fn podman_runs_runc() {
    scenario(&require_tool("runc", "runc"));
}
