//! Devices through kosd (kadcm underneath): CDI device names in `docker run --device` and
//! `kos run --device`, the kernel's device uevents in /events, and device nodes hot-plugged
//! into a running container and out again, judged by a kaim policy. Every check of a
//! device is made from inside the container.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn image(k: &Kosd, reg: &Registry, tag: &str) -> String {
    pulled_busybox(k, reg, tag, &ImageSpec::default())
}

/// A host device node made with mknod, removed on drop.
struct Node(PathBuf);

impl Node {
    fn char(path: PathBuf, major: u32, minor: u32) -> Node {
        let c = std::ffi::CString::new(path.to_string_lossy().as_bytes()).expect("path");
        // SAFETY: valid C string; makes a character device node.
        let r = unsafe {
            libc::mknod(
                c.as_ptr(),
                libc::S_IFCHR | 0o666,
                libc::makedev(major, minor),
            )
        };
        assert_eq!(
            r,
            0,
            "mknod {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
        Node(path)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The kos CLI, built once for this test binary (beside kosd).
fn kos_bin() -> PathBuf {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let st = kos_testsupport::cargo()
            .args(["build", "-q", "-p", "kos"])
            .status()
            .expect("cargo build");
        assert!(st.success(), "building kos failed");
    });
    Path::new(env!("CARGO_BIN_EXE_kosd"))
        .with_file_name("kos")
        .to_path_buf()
}

fn kos(k: &Kosd, args: &[&str]) -> std::process::Output {
    Command::new(kos_bin())
        .arg("-H")
        .arg(k.host())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run kos")
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The script run inside a container given the test's CDI devices: every line prints
/// what it found, so one failing check names itself.
const CDI_CHECKS: &str = "\
test -c /dev/kos-null && echo null-node; \
echo hello > /dev/kos-null && echo null-writable; \
exec 3<>/dev/kos-fuse && echo fuse-open; \
echo env=$KOS_CDI_TEST; \
cat /opt/kos-cdi/marker";

/// Writes a CDI spec naming two device nodes the test made (a copy of /dev/null's 1:3,
/// and of /dev/fuse's 10:229, which Docker's default device rules do not allow), a
/// spec-wide environment variable, a bind mount and a createRuntime hook.
fn write_spec(dir: &Path, kind: &str, nodes: &Path, hook_mark: &Path) {
    std::fs::create_dir_all(dir.join("share")).expect("share dir");
    std::fs::write(dir.join("share/marker"), "mounted-from-cdi\n").expect("marker");
    let spec = serde_json::json!({
        "cdiVersion": "0.6.0",
        "kind": kind,
        "containerEdits": {
            "env": ["KOS_CDI_TEST=yes"],
            "mounts": [{"hostPath": dir.join("share"), "containerPath": "/opt/kos-cdi",
                        "options": ["ro", "rbind"]}],
            "hooks": [{"hookName": "createRuntime", "path": "/bin/sh",
                       "args": ["sh", "-c", format!("echo ran >> {}", hook_mark.display())]}],
        },
        "devices": [
            {"name": "null", "containerEdits": {"deviceNodes": [
                {"path": "/dev/kos-null", "hostPath": nodes.join("null"), "permissions": "rw"}]}},
            {"name": "fuse", "containerEdits": {"deviceNodes": [
                {"path": "/dev/kos-fuse", "hostPath": nodes.join("fuse")}]}},
        ],
    });
    std::fs::write(dir.join("kos-test.json"), spec.to_string()).expect("spec");
}

#[test]
fn cdi_devices_in_docker_and_kos_run() {
    let work = Scratch::new("cdi");
    let cdi = work.join("cdi");
    let nodes = work.join("nodes");
    std::fs::create_dir_all(&cdi).expect("cdi dir");
    std::fs::create_dir_all(&nodes).expect("nodes dir");
    let _null = Node::char(nodes.join("null"), 1, 3);
    let _fuse = Node::char(nodes.join("fuse"), 10, 229);
    let hook_mark = work.join("hook-ran");
    // A vendor name unique to this test, so no host spec can answer for it.
    let vendor = format!("t{}.kos.dev", std::process::id());
    let kind = format!("{vendor}/test");
    write_spec(&cdi, &kind, &nodes, &hook_mark);
    let k = Kosd::start(&["--cdi-spec-dir", &cdi.to_string_lossy()]);
    let reg = Registry::start();
    let img = image(&k, &reg, "cdi");
    let null = format!("{kind}=null");
    let fuse = format!("{kind}=fuse");

    // The docker CLI sends CDI names as a "cdi" device request.
    let out = k.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--device",
        &null,
        "--device",
        &fuse,
        &img,
        "sh",
        "-c",
        CDI_CHECKS,
    ]);
    for want in [
        "null-node",
        "null-writable",
        "fuse-open",
        "env=yes",
        "mounted-from-cdi",
    ] {
        assert!(out.contains(want), "{want} missing from: {out}");
    }
    let ran = std::fs::read_to_string(&hook_mark).unwrap_or_default();
    assert_eq!(
        ran.lines().count(),
        1,
        "the CDI createRuntime hook ran once"
    );

    // Without the CDI device the same node is refused by the device cgroup: the rule came
    // from the CDI spec, not from the defaults.
    let o = k.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        &img,
        "sh",
        "-c",
        "mknod /dev/kos-fuse c 10 229 && exec 3<>/dev/kos-fuse && echo fuse-open",
    ]);
    assert!(!text(&o).contains("fuse-open"), "{}", text(&o));
    assert!(text(&o).contains("Operation not permitted"), "{}", text(&o));

    // kos run sends the same request.
    let o = kos(
        &k,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            "--device",
            &fuse,
            "--device",
            &null,
            &img,
            "sh",
            "-c",
            CDI_CHECKS,
        ],
    );
    assert!(o.status.success(), "kos run: {}", text(&o));
    for want in ["null-node", "null-writable", "fuse-open", "env=yes"] {
        assert!(text(&o).contains(want), "{want} missing from: {}", text(&o));
    }

    // An unknown device is a 400 naming it, and no container is made.
    let before = k.docker_ok(&["ps", "-aq"]);
    let nope = format!("{kind}=nope");
    let o = k.docker(&["run", "--rm", "--device", &nope, &img, "true"]);
    assert!(!o.status.success());
    assert!(
        text(&o).contains(&nope) && text(&o).contains("CDI"),
        "{}",
        text(&o)
    );
    let body = serde_json::json!({
        "Image": img, "Cmd": ["true"],
        "HostConfig": {"DeviceRequests": [{"Driver": "cdi", "DeviceIDs": [nope]}]},
    });
    let (status, resp) = k.http(
        "POST",
        "/v1.47/containers/create",
        body.to_string().as_bytes(),
    );
    assert_eq!(status, 400, "{resp}");
    assert!(resp.contains(&nope), "{resp}");
    // A spec whose host node is gone fails the same way, before anything is made.
    std::fs::remove_file(nodes.join("fuse")).expect("remove node");
    let o = k.docker(&["create", "--device", &fuse, &img, "true"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("fuse"), "{}", text(&o));
    assert_eq!(k.docker_ok(&["ps", "-aq"]), before, "nothing was created");
}

/// A network interface the test makes (a bridge: this kernel has no dummy driver),
/// deleted on drop.
struct Link(String);

impl Link {
    fn add(name: &str) -> Link {
        let st = Command::new("ip")
            .args(["link", "add", name, "type", "bridge"])
            .status()
            .expect("ip link add");
        assert!(st.success(), "ip link add {name} type bridge");
        Link(name.to_string())
    }

    fn delete(&mut self) {
        if !self.0.is_empty() {
            let _ = Command::new("ip")
                .args(["link", "del", &self.0])
                .stderr(Stdio::null())
                .status();
            self.0.clear();
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.delete();
    }
}

/// `docker events` running in the background; its JSON lines collected by a thread.
struct EventStream {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl EventStream {
    fn start(k: &Kosd, filters: &[&str]) -> EventStream {
        let mut cmd = Command::new(DOCKER);
        cmd.arg("-H").arg(k.host()).arg("events");
        for f in filters {
            cmd.arg("--filter").arg(f);
        }
        let mut child = cmd
            .args(["--format", "{{json .}}"])
            .env("DOCKER_CONFIG", k.dir.join("docker-config"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("docker events");
        let out = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for l in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        EventStream { child, lines }
    }

    /// The first event `want` accepts, within 20 s.
    fn wait(&self, what: &str, want: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    if let Ok(v) = serde_json::from_str::<serde_json::Value>(&l) {
                        if want(&v) {
                            return v;
                        }
                    }
                }
                Err(_) => panic!("no event: {what}"),
            }
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn device_uevents_in_the_event_stream() {
    let k = Kosd::start(&[]);
    let events = EventStream::start(&k, &["type=device"]);
    // Let the stream subscribe before the device appears.
    std::thread::sleep(Duration::from_millis(500));
    let name = format!("kosev{}", std::process::id() % 1_000_000);
    let devpath = format!("/devices/virtual/net/{name}");
    let mut link = Link::add(&name);
    let added = events.wait("add of the interface", |v| {
        v["Actor"]["ID"] == devpath.as_str() && v["Action"] == "add"
    });
    assert_eq!(added["Type"], "device", "{added}");
    assert_eq!(added["Actor"]["Attributes"]["subsystem"], "net", "{added}");
    assert_eq!(
        added["Actor"]["Attributes"]["interface"],
        name.as_str(),
        "{added}"
    );
    link.delete();
    let removed = events.wait("remove of the interface", |v| {
        v["Actor"]["ID"] == devpath.as_str() && v["Action"] == "remove"
    });
    assert_eq!(removed["Type"], "device", "{removed}");
    // Only device events pass the type filter; the raw API gives the same shape.
    let (status, body) = k.http(
        "GET",
        &format!(
            "/v1.47/events?since=0&until={}&filters=%7B%22type%22%3A%5B%22device%22%5D%7D",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_secs()
                + 1
        ),
        b"",
    );
    assert_eq!(status, 200, "{body}");
    let ours: Vec<serde_json::Value> = body
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["Actor"]["ID"] == devpath.as_str())
        .collect();
    assert!(
        ours.iter().any(|v| v["Action"] == "add") && ours.iter().any(|v| v["Action"] == "remove"),
        "{body}"
    );
    assert!(ours.iter().all(|v| v["Type"] == "device"), "{body}");
    // The interface's rx/tx queue objects are not devices and are not published.
    assert!(!body.contains(&format!("{devpath}/queues")), "{body}");
}

/// The hot-plug policy of the test: FUSE may go to containers, the loop control device
/// may not (with the reason named).
const HOTPLUG_POLICY: &str = r#"package kaim

default allow := false

allow if {
	input.Kind == "device"
	input.Device.class == "fuse"
}

deny contains "loop control stays on the host" if input.Device.devnode == "/dev/loop-control"

reason := sprintf("%s %s", [input.Action, input.Device.class]) if allow
"#;

fn exec(k: &Kosd, c: &str, script: &str) -> String {
    text(&k.docker(&["exec", c, "sh", "-c", script]))
}

#[test]
fn hot_plug_into_a_running_container() {
    let work = Scratch::new("hotplug");
    let policy = work.join("devices.rego");
    std::fs::write(&policy, HOTPLUG_POLICY).expect("policy");
    let k = Kosd::start(&["--device-policy", &policy.to_string_lossy()]);
    let reg = Registry::start();
    let img = image(&k, &reg, "hotplug");
    let name = unique("hp");
    k.docker_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        &name,
        &img,
        "sleep",
        "300",
    ]);
    // `<>` would make a regular file where no node is: open only a node that is there.
    // The host's devices as kadcm sees them.
    let (status, body) = k.http("GET", "/v1.47/kos/devices", b"");
    assert_eq!(status, 200, "{body}");
    let host: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert!(
        host.as_array().is_some_and(|a| a
            .iter()
            .any(|d| d["devnode"] == "/dev/fuse" && d["class"] == "fuse")),
        "{body}"
    );
    let open_fuse = "test -c /dev/fuse && echo node-present && exec 3<>/dev/fuse && echo fuse-open";
    let before = exec(&k, &name, open_fuse);
    assert!(
        !before.contains("node-present") && !before.contains("fuse-open"),
        "{before}"
    );

    let devices = format!("/v1.47/kos/containers/{name}/devices");
    let (status, body) = k.http(
        "POST",
        &devices,
        br#"{"Path":"/dev/fuse","Permissions":"rw"}"#,
    );
    assert_eq!(status, 201, "{body}\n{}", tail(&k.log_text(), 30));
    let attached: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(attached["PathInContainer"], "/dev/fuse", "{body}");
    assert_eq!(
        (attached["Major"].as_u64(), attached["Minor"].as_u64()),
        (Some(10), Some(229)),
        "{body}"
    );
    let inside = exec(&k, &name, open_fuse);
    assert!(
        inside.contains("node-present") && inside.contains("fuse-open"),
        "{inside}"
    );
    let (status, body) = k.http("GET", &devices, b"");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("/dev/fuse"), "{body}");
    // The same path twice is a conflict.
    let (status, _) = k.http("POST", &devices, br#"{"Path":"/dev/fuse"}"#);
    assert_eq!(status, 409);

    // The policy refuses the loop control device: 403 with its reason, nothing made.
    let (status, body) = k.http("POST", &devices, br#"{"Path":"/dev/loop-control"}"#);
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("loop control stays on the host"), "{body}");
    let lc = exec(
        &k,
        &name,
        "test -e /dev/loop-control && echo present; echo done",
    );
    assert!(!lc.contains("present"), "{lc}");
    // Bad input: a path that is not a device, a node outside /dev, an unknown field.
    let (status, body) = k.http(
        "POST",
        &devices,
        br#"{"Path":"/dev/fuse","PathInContainer":"/dev/../etc/fuse"}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("below /dev"), "{body}");
    let (status, body) = k.http("POST", &devices, br#"{"Path":"/etc/passwd"}"#);
    assert_eq!(status, 400, "{body}");
    let (status, body) = k.http("POST", &devices, br#"{"Path":"/dev/fuse","Bogus":1}"#);
    assert_eq!(status, 400, "{body}");

    // Detach: the node is gone and the cgroup refuses the device again.
    let (status, body) = k.http("DELETE", &format!("{devices}?path=/dev/fuse"), b"");
    assert_eq!(status, 204, "{body}");
    let after = exec(
        &k,
        &name,
        "test -e /dev/fuse && echo node-present; mknod /tmp/f c 10 229 && exec 3<>/tmp/f && echo fuse-open",
    );
    assert!(
        !after.contains("node-present") && !after.contains("fuse-open"),
        "{after}"
    );
    assert!(after.contains("Operation not permitted"), "{after}");
    let (status, _) = k.http("DELETE", &format!("{devices}?path=/dev/fuse"), b"");
    assert_eq!(status, 404);

    // A stopped container cannot take devices.
    k.docker_ok(&["stop", "-t", "0", &name]);
    let (status, body) = k.http("POST", &devices, br#"{"Path":"/dev/fuse"}"#);
    assert_eq!(status, 409, "{body}");
    k.docker_ok(&["rm", "-f", &name]);

    // This kosd has no kaim: a grant label is refused at create, and nothing is made.
    let o = k.docker(&["create", "--label", "kos.kaim.policy=any", &img, "true"]);
    assert!(!o.status.success());
    assert!(text(&o).contains("--kaim-control"), "{}", text(&o));
    assert_eq!(
        k.docker_ok(&["ps", "-aq"]).trim(),
        "",
        "nothing was created"
    );
}

/// A tiny static HTTP client over a unix socket (busybox has none): `kaimc SOCKET METHOD
/// PATH [BODY]` prints the whole response.
const CLIENT_C: &str = r#"
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
int main(int argc, char **argv) {
    if (argc < 4) return 2;
    int s = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a;
    memset(&a, 0, sizeof a);
    a.sun_family = AF_UNIX;
    strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
    if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) { perror("connect"); return 1; }
    const char *body = argc > 4 ? argv[4] : "";
    char head[4096];
    int n = snprintf(head, sizeof head,
        "%s %s HTTP/1.0\r\nHost: kaim\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
        argv[2], argv[3], strlen(body));
    /* The server may answer and close before an empty body is "sent": no SIGPIPE. */
    if (send(s, head, n, MSG_NOSIGNAL) != n) { perror("send"); return 1; }
    size_t blen = strlen(body);
    if (blen && send(s, body, blen, MSG_NOSIGNAL) != (ssize_t)blen) { perror("send"); return 1; }
    char buf[4096];
    ssize_t r;
    while ((r = read(s, buf, sizeof buf)) > 0) fwrite(buf, 1, r, stdout);
    if (r < 0) { perror("read"); return 1; }
    return 0;
}
"#;

fn build_client(dir: &Path) -> PathBuf {
    let src = dir.join("kaimc.c");
    let bin = dir.join("kaimc");
    std::fs::write(&src, CLIENT_C).expect("client source");
    let o = Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("gcc");
    assert!(
        o.status.success(),
        "gcc: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    bin
}

/// kaim as a host process (the units engineer's unit form is not needed here), killed on
/// drop.
struct KaimProcess {
    child: std::process::Child,
    control: PathBuf,
}

impl KaimProcess {
    fn start(k: &Kosd, work: &Path, policies: &Path) -> KaimProcess {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let st = kos_testsupport::cargo()
                .args(["build", "-q", "-p", "kaim"])
                .status()
                .expect("cargo build");
            assert!(st.success(), "building kaim failed");
        });
        let bin = Path::new(env!("CARGO_BIN_EXE_kosd")).with_file_name("kaim");
        let control = work.join("kaim-control.sock");
        let child = Command::new(bin)
            .arg("--upstream")
            .arg(k.host())
            .arg("--audit")
            .arg(work.join("audit.log"))
            .arg("--control-socket")
            .arg(&control)
            .arg("--policy-dir")
            .arg(policies)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(work.join("kaim.log")).expect("kaim log"))
            .spawn()
            .expect("start kaim");
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&control).is_err() {
            assert!(Instant::now() < deadline, "kaim did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        KaimProcess { child, control }
    }
}

impl Drop for KaimProcess {
    fn drop(&mut self) {
        // SAFETY: signalling our own child; SIGTERM lets kaim remove its sockets.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The container's log once it holds `marker` (within 30 s).
fn logs_until(k: &Kosd, container: &str, marker: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let o = k.docker(&["logs", container]);
        let log = text(&o);
        if log.contains(marker) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "no {marker} in the log of {container}: {log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

const LIST_ONLY: &str = r#"package kaim

default allow := false

allow if {
	input.RequestMethod == "GET"
	input.RequestPath in {"/_ping", "/containers/json"}
}

reason := "listing only" if allow

deny contains "this client may only list containers" if not allow
"#;

#[test]
fn kaim_grant_from_a_run_label() {
    let work = Scratch::new("kaim");
    let policies = work.join("policies");
    std::fs::create_dir_all(&policies).expect("policies");
    std::fs::write(policies.join("list-only.rego"), LIST_ONLY).expect("policy");
    let client = build_client(&work.0);
    let control = work.join("kaim-control.sock");
    let k = Kosd::start(&["--kaim-control", &control.to_string_lossy()]);
    let kaim = KaimProcess::start(&k, &work.0, &policies);
    let reg = Registry::start();
    let img = image(&k, &reg, "kaim");
    let client_mount = format!("{}:/kaimc:ro", client.display());
    let name = unique("granted");
    // The client's calls run as the container's own process and their answers are read
    // from its log, each section ended by a marker (quoted in the script so that the
    // command line, which the container list shows, does not hold the marker itself).
    let script = format!(
        "c() {{ /kaimc /run/kos/kaim.sock \"$@\"; echo \"<<END\" \"$2>>\"; }}; \
         c GET /_ping; \
         c GET /v1.47/containers/json?all=1; \
         c POST /v1.47/containers/create '{{\"Image\":\"{img}\",\"Cmd\":[\"true\"]}}'; \
         c GET /v1.47/images/json; \
         touch /run/kos/x 2>/dev/null || echo read-only; \
         echo '<<DO''NE>>'; sleep 300"
    );
    let id = k
        .docker_ok(&[
            "run",
            "-d",
            "--network",
            "none",
            "--label",
            "kos.kaim.policy=list-only",
            "-v",
            &client_mount,
            "--name",
            &name,
            &img,
            "sh",
            "-c",
            &script,
        ])
        .trim()
        .to_string();
    let log = logs_until(&k, &name, "<<DONE>>");
    // The answers in the order asked: each piece after the first starts with the path
    // that the previous marker named.
    let pieces: Vec<&str> = log.split("<<END ").collect();
    let section = |n: usize| -> String {
        let p = pieces.get(n).copied().unwrap_or("");
        if n == 0 {
            p.to_string()
        } else {
            p.split_once(">>").map(|x| x.1).unwrap_or("").to_string()
        }
    };
    let ping = section(0);
    assert!(
        ping.contains("HTTP/1.") && ping.contains(" 200 ") && ping.contains("\r\n\r\nOK"),
        "{log}"
    );
    let list = section(1);
    assert!(list.contains(" 200 ") && list.contains(&id), "{log}");
    let create = section(2);
    assert!(create.contains(" 403 "), "{log}");
    assert!(
        create.contains("this client may only list containers"),
        "{log}"
    );
    let images = section(3);
    assert!(images.contains(" 403 "), "{log}");
    // The grant's directory is read-only in the container.
    assert!(log.contains("read-only"), "{log}");
    // Nothing was created through the denied request.
    assert_eq!(
        k.docker_ok(&["ps", "-aq", "--no-trunc"]).trim(),
        id,
        "only the client exists"
    );
    // kaim audited its decisions.
    let audit = std::fs::read_to_string(work.join("audit.log")).unwrap_or_default();
    assert!(
        audit
            .lines()
            .any(|l| l.contains("deny") && l.contains("/containers/create")),
        "{audit}"
    );

    // A container without the label has no socket.
    let other = k
        .docker_ok(&[
            "run",
            "-d",
            "--network",
            "none",
            &img,
            "sh",
            "-c",
            "test -e /run/kos/kaim.sock && echo has-socket; echo '<<DONE>>'",
        ])
        .trim()
        .to_string();
    let other_log = logs_until(&k, &other, "<<DONE>>");
    assert!(!other_log.contains("has-socket"), "{other_log}");
    k.docker_ok(&["rm", "-f", &other]);
    // An unknown policy fails the start with kaim's reason.
    let o = k.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--label",
        "kos.kaim.policy=no-such-policy",
        &img,
        "true",
    ]);
    assert!(!o.status.success());
    assert!(text(&o).contains("no-such-policy"), "{}", text(&o));

    let list_grants = || {
        text(
            &Command::new(&client)
                .arg(&kaim.control)
                .args(["GET", "/grants"])
                .output()
                .expect("kaimc"),
        )
    };
    assert!(list_grants().contains(&id), "{}", list_grants());
    // Removing the container removes its grant and the socket's directory.
    let grant_dirs = k.exec_root().join("kaim");
    assert_eq!(
        std::fs::read_dir(&grant_dirs).expect("grant dirs").count(),
        1
    );
    k.docker_ok(&["rm", "-f", &name]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while list_grants().contains(&id) {
        assert!(Instant::now() < deadline, "grant kept: {}", list_grants());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        std::fs::read_dir(&grant_dirs).expect("grant dirs").count(),
        0
    );
    let name2 = unique("granted");
    let id2 = k
        .docker_ok(&[
            "run",
            "-d",
            "--network",
            "none",
            "--label",
            "kos.kaim.policy=list-only",
            "--name",
            &name2,
            &img,
            "sleep",
            "300",
        ])
        .trim()
        .to_string();
    let grants = list_grants();
    assert!(grants.contains(&id2) && !grants.contains(&id), "{grants}");
    k.docker_ok(&["rm", "-f", &name2]);
}

#[test]
fn bad_device_settings_stop_kosd_with_one_line() {
    let work = Scratch::new("badflags");
    let broken = work.join("broken.rego");
    std::fs::write(&broken, "package kaim\nallow := {\n").expect("policy");
    let cases: [(&[&str], &str); 3] = [
        (
            &["--device-policy", &broken.to_string_lossy()],
            "device policy",
        ),
        (
            &["--device-policy", "/nonexistent/p.rego"],
            "/nonexistent/p.rego",
        ),
        (&["--cdi-spec-dir", "relative/cdi"], "--cdi-spec-dir"),
    ];
    for (i, (flags, want)) in cases.iter().enumerate() {
        let root = work.join(&format!("r{i}"));
        let o = Command::new(env!("CARGO_BIN_EXE_kosd"))
            .arg("-H")
            .arg(format!("unix://{}", root.join("kos.sock").display()))
            .arg("--data-root")
            .arg(root.join("data"))
            .arg("--exec-root")
            .arg(root.join("exec"))
            .arg("--config-file")
            .arg("/dev/null")
            .arg("--cri-socket")
            .arg("")
            .args(*flags)
            .stdin(Stdio::null())
            .output()
            .expect("kosd");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{flags:?} started");
        assert!(err.contains(want), "{flags:?}: {err}");
        assert!(
            !root.join("kos.sock").exists(),
            "{flags:?}: the API socket was made"
        );
    }
}
