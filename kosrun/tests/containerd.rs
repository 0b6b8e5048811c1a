//! kosrun under containerd's own runc shim (io.containerd.runc.v2) with the
//! shim's BinaryName pointed at it (`ctr run --runc-binary`): run, exec, kill,
//! pause/resume and a non-zero exit status, on an image imported from a local
//! archive. The same scenario runs with runc, so a failure is kosrun's.

mod dropin_support;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use dropin_support::*;

/// A private containerd: its own root, state, socket and namespace; stopped,
/// with whatever tasks are left, on drop.
struct Containerd {
    child: Child,
    dir: TempDir,
    sock: PathBuf,
    ns: String,
}

impl Containerd {
    fn start() -> Containerd {
        let dir = TempDir::new("containerd");
        let sock = dir.0.join("containerd.sock");
        let cfg = format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
"#,
            root = dir.0.join("root").display(),
            state = dir.0.join("state").display(),
            sock = sock.display(),
        );
        let cfg_path = dir.0.join("config.toml");
        std::fs::write(&cfg_path, cfg).expect("config.toml");
        let log = std::fs::File::create(dir.0.join("containerd.log")).expect("log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let me = Containerd {
            child,
            dir,
            sock,
            ns: unique("ns"),
        };
        wait_until("containerd's socket", Duration::from_secs(20), || {
            run(me.ctr().arg("version")).status.success()
        });
        me
    }

    fn ctr(&self) -> Command {
        let mut c = Command::new("ctr");
        c.arg("-a").arg(&self.sock).arg("-n").arg(&self.ns);
        c
    }

    fn task_status(&self, id: &str) -> String {
        let out = text(&run(self.ctr().args(["task", "ls"])).stdout);
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(id))
            .and_then(|l| l.split_whitespace().nth(2))
            .unwrap_or("")
            .to_string()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.0.join("containerd.log")).unwrap_or_default()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let list = text(&run(self.ctr().args(["task", "ls", "-q"])).stdout);
        for id in list.lines().filter(|l| !l.is_empty()) {
            let _ = run(self.ctr().args(["task", "kill", "-s", "KILL", id]));
            let _ = run(self.ctr().args(["task", "delete", "-f", id]));
        }
        let list = text(&run(self.ctr().args(["containers", "ls", "-q"])).stdout);
        for id in list.lines().filter(|l| !l.is_empty()) {
            let _ = run(self.ctr().args(["containers", "delete", id]));
        }
        let _ = run(self.ctr().args(["images", "rm", IMAGE]));
        let _ = run(self.ctr().args(["namespaces", "rm", &self.ns]));
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Containers got cgroupsPath /<namespace>/<id>: the runtime removes the
        // leaf, the namespace's directory is ours to remove.
        for h in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(h.path().join(&self.ns));
        }
        // The runc shim keeps its runtime's state under /run/containerd/runc/<namespace>;
        // emptied by the deletes above, the directory itself stays unless removed.
        let _ = std::fs::remove_dir(std::path::Path::new("/run/containerd/runc").join(&self.ns));
    }
}

const IMAGE: &str = "localhost/kos-busybox:test";

fn scenario(runtime: &Path) {
    require_tool("ctr", "containerd");
    require_tool("containerd", "containerd");
    let work = TempDir::new("ctr-image");
    let archive = busybox_archive(&work.0, IMAGE);
    let cd = Containerd::start();
    ok(cd.ctr().args(["images", "import"]).arg(&archive));
    let rt = runtime.to_string_lossy().into_owned();

    // A non-zero exit status comes back through the shim.
    let id = unique("ctr");
    let out = run(cd.ctr().args([
        "run",
        "--rm",
        "--runc-binary",
        &rt,
        IMAGE,
        &id,
        "sh",
        "-c",
        "echo kos-hello; exit 3",
    ]));
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}{}\n{}",
        text(&out.stdout),
        text(&out.stderr),
        cd.log()
    );
    assert!(text(&out.stdout).contains("kos-hello"));

    // A terminal, through the shim's console socket.
    require_tool("script", "bsdutils");
    let id = unique("ctr");
    let line = format!(
        "ctr -a {} -n {} run --rm -t --runc-binary {rt} {IMAGE} {id} sh -c 'tty; exit 6'",
        cd.sock.display(),
        cd.ns
    );
    let out = run(Command::new("script").args(["-qec", &line, "/dev/null"]));
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(6), "{s}");
    assert!(s.contains("/dev/pts/"), "{s}");

    // A long-running task: exec, pause/resume, kill.
    let id = unique("ctr");
    ok(cd.ctr().args([
        "run",
        "-d",
        "--runc-binary",
        &rt,
        IMAGE,
        &id,
        "sleep",
        "100000",
    ]));
    wait_until("task running", Duration::from_secs(10), || {
        cd.task_status(&id) == "RUNNING"
    });
    // The shim's runtime root holds the runtime's own state: kosrun's names the
    // init's start time, runc's does not.
    let state = std::fs::read_to_string(format!("/run/containerd/runc/{}/{id}/state.json", cd.ns))
        .unwrap_or_default();
    assert_eq!(
        state.contains("\"pid_start\""),
        runtime == Path::new(kosrun()),
        "the shim did not drive {}",
        runtime.display()
    );
    let out = run(cd.ctr().args([
        "task",
        "exec",
        "--exec-id",
        "kos-e1",
        &id,
        "sh",
        "-c",
        "echo in=$$; cat /proc/1/cmdline; exit 5",
    ]));
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(5), "{s}{}", text(&out.stderr));
    assert!(
        s.contains("sleep"),
        "exec did not see the task's pid 1: {s}"
    );
    let line = format!(
        // ctr resizes the pty after the start and fails on a process already gone.
        "ctr -a {} -n {} task exec -t --exec-id kos-t1 {id} sh -c 'tty; sleep 0.3; exit 2'",
        cd.sock.display(),
        cd.ns
    );
    let out = run(Command::new("script").args(["-qec", &line, "/dev/null"]));
    let s = text(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{s}");
    assert!(s.contains("/dev/pts/"), "{s}");
    ok(cd.ctr().args(["task", "pause", &id]));
    assert_eq!(cd.task_status(&id), "PAUSED");
    ok(cd.ctr().args(["task", "resume", &id]));
    assert_eq!(cd.task_status(&id), "RUNNING");
    let s = ok(cd.ctr().args([
        "task",
        "exec",
        "--exec-id",
        "kos-e2",
        &id,
        "echo",
        "kos-after-resume",
    ]));
    assert!(s.contains("kos-after-resume"), "{s}");
    // sleep as pid 1 of its namespace ignores TERM (no handler): KILL it.
    ok(cd.ctr().args(["task", "kill", "-s", "KILL", &id]));
    wait_until("task stopped", Duration::from_secs(10), || {
        cd.task_status(&id) == "STOPPED"
    });
    ok(cd.ctr().args(["task", "delete", &id]));
    ok(cd.ctr().args(["containers", "delete", &id]));
}

#[test]
fn containerd_runc_shim_drives_kosrun() {
    scenario(Path::new(kosrun()));
}

#[test]
fn containerd_runc_shim_drives_runc() {
    scenario(&require_tool("runc", "runc"));
}
