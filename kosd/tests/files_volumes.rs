//! docker cp both ways, export, diff, stats, volumes (named, anonymous with
//! copy-up, prune), logs -f while writing, and the Python SDK on containers.

mod common;

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn setup(tag: &str, spec: &ImageSpec) -> (Kosd, Registry, String) {
    let k = Kosd::start(&[]);
    let reg = Registry::start();
    let img = reg.image(&format!("{tag}:1"));
    push_busybox(&img, spec);
    k.docker_ok(&["pull", "-q", &img]);
    (k, reg, img)
}

#[test]
fn cp_export_diff_stats() {
    let (k, _reg, img) = setup("cp", &ImageSpec::default());
    k.docker_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "files",
        &img,
        "sh",
        "-c",
        "echo inside > /tmp/in; rm /etc/group; sleep 1000",
    ]);
    std::thread::sleep(Duration::from_millis(500));
    let out = k.dir.join("out");
    std::fs::create_dir_all(&out).expect("out");
    k.docker_ok(&["cp", "files:/tmp/in", out.to_str().expect("utf8")]);
    assert_eq!(
        std::fs::read_to_string(out.join("in")).expect("copied"),
        "inside\n"
    );
    let src = k.dir.join("up.txt");
    std::fs::write(&src, "uploaded").expect("src");
    k.docker_ok(&["cp", src.to_str().expect("utf8"), "files:/root/"]);
    assert_eq!(
        k.docker_ok(&["exec", "files", "cat", "/root/up.txt"]),
        "uploaded"
    );
    // A symlink pointing out of the root resolves inside it.
    k.docker_ok(&["exec", "files", "ln", "-s", "/", "/tmp/escape"]);
    k.docker_ok(&["cp", src.to_str().expect("utf8"), "files:/tmp/escape/tmp/"]);
    assert!(
        !std::path::Path::new("/tmp/up.txt").exists()
            || std::fs::read_to_string("/tmp/up.txt").unwrap_or_default() != "uploaded"
    );
    assert_eq!(
        k.docker_ok(&["exec", "files", "cat", "/tmp/up.txt"]),
        "uploaded"
    );
    let o = k.docker(&["cp", "files:/no/such", out.to_str().expect("utf8")]);
    assert!(!o.status.success());
    // diff: added, changed, deleted.
    let diff = k.docker_ok(&["diff", "files"]);
    assert!(diff.lines().any(|l| l == "A /tmp/in"), "{diff}");
    assert!(diff.lines().any(|l| l == "D /etc/group"), "{diff}");
    assert!(diff.lines().any(|l| l == "C /etc"), "{diff}");
    // Not the mount points kosd made (dockerd keeps them in its init layer).
    for stub in [
        "/proc",
        "/sys",
        "/dev",
        "/etc/hosts",
        "/etc/hostname",
        "/etc/resolv.conf",
        "/.dockerenv",
    ] {
        assert!(
            !diff.lines().any(|l| l.ends_with(&format!(" {stub}"))),
            "{stub}: {diff}"
        );
    }
    // export: the whole root as a tar.
    let tar = k.dir.join("export.tar");
    k.docker_ok(&["export", "-o", tar.to_str().expect("utf8"), "files"]);
    let list = Command::new("tar")
        .arg("-tf")
        .arg(&tar)
        .output()
        .expect("tar");
    let names = String::from_utf8_lossy(&list.stdout);
    assert!(
        names.lines().any(|l| l == "./bin/busybox"),
        "{}",
        &names[..names.len().min(500)]
    );
    assert!(names.lines().any(|l| l == "./tmp/in"));
    // Docker's marker file, empty and mode 0755 (as dockerd's init layer makes it), as
    // every Docker container has it.
    assert!(names.lines().any(|l| l == "./.dockerenv"), "no /.dockerenv");
    assert_eq!(
        k.docker_ok(&["exec", "files", "stat", "-c", "%s %F %a", "/.dockerenv"])
            .trim(),
        "0 regular empty file 755"
    );
    // stats: one shot with memory and pids.
    let s = k.docker_ok(&[
        "stats",
        "--no-stream",
        "--format",
        "{{.Name}} {{.PIDs}} {{.MemUsage}}",
        "files",
    ]);
    assert!(s.starts_with("files "), "{s}");
    let pids: i64 = s
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // busybox sh execs its last command: the sleep is the one process.
    assert!(pids >= 1, "{s}");
    assert!(!s.contains("EiB"), "{s}");
    // cp works on a stopped container too.
    k.docker_ok(&["stop", "-t", "0", "files"]);
    k.docker_ok(&[
        "cp",
        "files:/root/up.txt",
        out.join("again.txt").to_str().expect("utf8"),
    ]);
    assert_eq!(
        std::fs::read_to_string(out.join("again.txt")).expect("again"),
        "uploaded"
    );
    k.docker_ok(&["rm", "files"]);
}

#[test]
fn volumes_named_anonymous_copy_up_prune() {
    let spec = ImageSpec {
        volumes: vec!["/data".into()],
        files: vec![("/data/seed".into(), "from image\n".into())],
        ..Default::default()
    };
    let (k, _reg, img) = setup("vol", &spec);
    k.docker_ok(&["volume", "create", "--label", "team=a", "named"]);
    let insp: serde_json::Value =
        serde_json::from_str(&k.docker_ok(&["volume", "inspect", "named"])).expect("json");
    assert_eq!(insp[0]["Driver"], "local");
    assert_eq!(insp[0]["Labels"]["team"], "a");
    // A new named volume gets the image's content at its mount point.
    assert_eq!(
        k.docker_ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            "named:/data",
            &img,
            "cat",
            "/data/seed"
        ]),
        "from image\n"
    );
    // An anonymous volume for the image's VOLUME, with the content copied in.
    k.docker_ok(&[
        "run",
        "--network",
        "none",
        "--name",
        "anon",
        &img,
        "sh",
        "-c",
        "cat /data/seed && echo more > /data/more",
    ]);
    let mounts = k.docker_ok(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{.Type}} {{.Destination}} {{.Name}}{{end}}",
        "anon",
    ]);
    assert!(mounts.starts_with("volume /data "), "{mounts}");
    let anon_name = mounts.split_whitespace().nth(2).expect("name").to_string();
    assert_eq!(
        k.docker_ok(&["volume", "ls", "-q", "--filter", "label=team=a"])
            .trim(),
        "named"
    );
    // In use: rm is refused.
    let o = k.docker(&["volume", "rm", &anon_name]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("volume is in use"));
    // rm -v removes the anonymous volume with the container.
    k.docker_ok(&["rm", "-v", "anon"]);
    assert!(!k.docker_ok(&["volume", "ls", "-q"]).contains(&anon_name));
    // `-v /path` (a bind entry with no source) is an anonymous volume too, read-only with
    // `:ro`, seeded from the image, and gone with `rm -v`.
    let before = k.docker_ok(&["volume", "ls", "-q"]);
    let o = k.docker_ok(&[
        "run",
        "--network",
        "none",
        "--name",
        "anon2",
        "-v",
        "/data:ro",
        &img,
        "sh",
        "-c",
        "cat /data/seed; touch /data/x 2>/dev/null || echo read-only",
    ]);
    assert_eq!(o, "from image\nread-only\n");
    let m = k.docker_ok(&[
        "inspect",
        "-f",
        "{{range .Mounts}}{{.Type}} {{.Destination}} {{.RW}} {{.Name}}{{end}}",
        "anon2",
    ]);
    assert!(m.starts_with("volume /data false "), "{m}");
    let name2 = m.split_whitespace().nth(3).expect("name").to_string();
    assert!(!before.contains(&name2));
    k.docker_ok(&["rm", "-v", "anon2"]);
    assert!(!k.docker_ok(&["volume", "ls", "-q"]).contains(&name2));
    // --mount with a tmpfs-backed local volume.
    k.docker_ok(&[
        "volume",
        "create",
        "-o",
        "type=tmpfs",
        "-o",
        "o=size=1m",
        "tmpvol",
    ]);
    let df = k.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--mount",
        "source=tmpvol,target=/t",
        &img,
        "df",
        "-k",
        "/t",
    ]);
    assert!(df.contains(" 1024 "), "{df}");
    let out = k.docker_ok(&["volume", "prune", "-a", "-f"]);
    assert!(out.contains("named") && out.contains("tmpvol"), "{out}");
    assert!(k.docker_ok(&["volume", "ls", "-q"]).trim().is_empty());
    let o = k.docker(&["volume", "inspect", "named"]);
    assert!(!o.status.success());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    assert!(
        !mounts.contains(&k.dir.0.to_string_lossy().to_string()),
        "mount left behind"
    );
}

#[test]
fn logs_follow_while_writing() {
    let (k, _reg, img) = setup("follow", &ImageSpec::default());
    k.docker_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "writer",
        &img,
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6; do echo n$i; sleep 0.3; done",
    ]);
    let mut child = Command::new(DOCKER)
        .args(["-H", &k.host(), "logs", "-f", "writer"])
        .env("DOCKER_CONFIG", k.dir.join("docker-config"))
        .stdout(Stdio::piped())
        .spawn()
        .expect("docker logs -f");
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("read");
    // logs -f ends by itself when the container exits, having seen every line.
    let st = child.wait().expect("wait");
    assert!(st.success());
    assert_eq!(out, "n1\nn2\nn3\nn4\nn5\nn6\n");
    k.docker_ok(&["rm", "writer"]);
}

#[test]
fn python_sdk_containers() {
    let (k, _reg, img) = setup("sdkc", &ImageSpec::default());
    let py = k.python(&format!(
        r#"
import docker
c = docker.from_env()
out = c.containers.run("{img}", ["echo", "sdk says hi"], network_mode="none", remove=True)
assert out == b"sdk says hi\n", out
ct = c.containers.run("{img}", ["sleep", "1000"], network_mode="none", detach=True, name="sdkbox", labels={{"a": "b"}})
ct.reload()
assert ct.status == "running", ct.status
assert c.containers.list(filters={{"label": "a=b"}})[0].id == ct.id
r = ct.exec_run(["sh", "-c", "echo out; echo err >&2; exit 3"], demux=True)
assert r.exit_code == 3, r
assert r.output == (b"out\n", b"err\n"), r.output
ct.stop(timeout=1)
ct.reload()
assert ct.attrs["State"]["ExitCode"] == 137, ct.attrs["State"]
assert ct.wait()["StatusCode"] == 137
ct.remove()
try:
    c.containers.get("sdkbox")
    raise SystemExit("expected NotFound")
except docker.errors.NotFound:
    pass
# stats: the interfaces' counters for a container on a network, none without one.
b = c.containers.run("{img}", ["sleep", "30"], detach=True)
st = b.stats(stream=False)
assert "eth0" in st["networks"] and "lo" not in st["networks"], st.get("networks")
assert st["networks"]["eth0"]["rx_packets"] >= 0, st["networks"]
# pids_stats.limit is omitempty in dockerd: absent when unlimited, the limit when set.
assert st["pids_stats"]["current"] >= 1 and "limit" not in st["pids_stats"], st["pids_stats"]
# inspect in dockerd's full shape although the SDK sent few fields.
hc = c.api.inspect_container(b.id)["HostConfig"]
for k in ("Privileged", "CapAdd", "Dns", "PidsLimit", "Ulimits", "SecurityOpt", "Memory"):
    assert k in hc, k
assert hc["ShmSize"] == 67108864 and hc["IpcMode"] == "private", hc
assert "/proc/kcore" in hc["MaskedPaths"] and hc["Runtime"], hc
cfg = c.api.inspect_container(b.id)["Config"]
assert cfg["User"] == "" and cfg["Entrypoint"] is None and cfg["WorkingDir"] == "", cfg
b.remove(force=True)
import os
old = docker.APIClient(base_url=os.environ["DOCKER_HOST"], version="1.41")
assert old.inspect_image("{img}")["VirtualSize"] > 0
assert "ContainerConfig" in old.inspect_image("{img}")
assert "VirtualSize" not in c.api.inspect_image("{img}")
n = c.containers.run("{img}", ["sleep", "30"], detach=True, network_mode="none", pids_limit=40)
st = n.stats(stream=False)
assert "networks" not in st
assert st["pids_stats"]["limit"] == 40, st["pids_stats"]
n.remove(force=True)
# attach(logs=True) right after start: the output already written, then the rest, none lost
# to the client's buffered read of the 101 answer.
for _ in range(3):
    a = c.containers.run("{img}", ["sh", "-c", "echo first; sleep 0.5; echo second"], network_mode="none", detach=True)
    got = b"".join(a.attach(stream=True, logs=True))
    assert got == b"first\nsecond\n", got
    a.remove(force=True)
print("ok")
"#
    ));
    assert!(
        py.status.success(),
        "{}{}\n{}",
        String::from_utf8_lossy(&py.stdout),
        String::from_utf8_lossy(&py.stderr),
        tail(&k.log_text(), 30)
    );
}
