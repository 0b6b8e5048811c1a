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
    let img = reg.image(&format!("{tag}:1"));
    push_busybox(&img, &ImageSpec::default());
    k.docker_ok(&["pull", "-q", &img]);
    img
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
        let st = Command::new(env!("CARGO"))
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
