//! `--registry-mirror`: Docker Hub pulls go through the daemon's mirrors in order, the
//! next one tried when a mirror fails, and the image is named as Docker Hub's.

mod common;

use common::*;

#[test]
fn docker_hub_pull_through_registry_mirrors() {
    // A mirror nobody listens on, a mirror without the image, and the one that has it.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let dead_addr = dead.local_addr().expect("addr");
    drop(dead);
    let empty = Registry::start();
    let full = Registry::start();
    let repo = unique("kmirror");
    push_busybox(
        &full.image(&format!("library/{repo}:1")),
        &ImageSpec {
            files: vec![("/etc/from-mirror".into(), "mirror-b\n".into())],
            ..Default::default()
        },
    );
    let k = Kosd::start(&[
        "--registry-mirror",
        &format!("http://{dead_addr}"),
        "--registry-mirror",
        &format!("http://{}", empty.addr),
        "--registry-mirror",
        &format!("http://{}", full.addr),
    ]);
    let out = k.docker_ok(&["pull", &format!("{repo}:1")]);
    assert!(
        out.contains(&format!("Downloaded newer image for {repo}:1")),
        "{out}"
    );
    // Named as Docker Hub's image; the mirror's own name is not left behind.
    let names = k.docker_ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(names.trim(), format!("{repo}:1"), "{names}");
    let full_name = k.docker_ok(&[
        "image",
        "inspect",
        "-f",
        "{{index .RepoTags 0}}",
        &format!("docker.io/library/{repo}:1"),
    ]);
    assert_eq!(full_name.trim(), format!("{repo}:1"));
    // The content is the mirror's.
    let inside = k.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        &format!("{repo}:1"),
        "cat",
        "/etc/from-mirror",
    ]);
    assert_eq!(inside, "mirror-b\n");
    let log = k.log_text();
    assert!(
        log.contains("pulled through a registry mirror"),
        "{}",
        tail(&log, 30)
    );
    // A non-Docker-Hub reference never goes to a mirror: missing upstream is an error.
    let o = k.docker(&["pull", &empty.image(&format!("{repo}:1"))]);
    assert!(!o.status.success());
    // A bad mirror URL stops the daemon at start with a clear message.
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_kosd"))
        .args(["--registry-mirror", "127.0.0.1:5000", "--data-root"])
        .arg(k.dir.join("bad-data"))
        .arg("--exec-root")
        .arg(k.dir.join("bad-exec"))
        .arg("-H")
        .arg(format!("unix://{}", k.dir.join("bad.sock").display()))
        .output()
        .expect("kosd");
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("registry-mirror"), "{err}");
}
