//! `docker commit` (POST /commit): an image from a container's layer, with the config its
//! `--change`s and the request set; the mount points kosd made are not in the layer; the
//! container is paused meanwhile and runs on after. Also the endpoints kosd answers as a
//! dockerd outside a swarm and without plugins.

mod common;

use common::*;

/// The entry names of the top layer of `image`, read from `docker save`.
fn top_layer_entries(k: &Kosd, dir: &Scratch, image: &str) -> Vec<String> {
    let out = dir.join("saved.tar");
    let out_s = out.to_string_lossy().to_string();
    k.docker_ok(&["save", "-o", &out_s, image]);
    let py = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            r#"
import json, sys, tarfile
t = tarfile.open(sys.argv[1])
m = json.load(t.extractfile("manifest.json"))
layer = tarfile.open(fileobj=t.extractfile(m[0]["Layers"][-1]))
for n in layer.getnames():
    print(n)
"#,
        )
        .arg(&out)
        .output()
        .expect("python3");
    assert!(
        py.status.success(),
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );
    String::from_utf8_lossy(&py.stdout)
        .lines()
        .map(|l| l.trim_start_matches("./").trim_end_matches('/').to_string())
        .collect()
}

#[test]
fn commit_running_container_with_changes() {
    let k = Kosd::start(&[]);
    let reg = Registry::start();
    let dir = Scratch::new("commit");
    let img = pulled_busybox(&k, &reg, "commit-base", &ImageSpec::default());
    let base_layers = k.docker_ok(&["inspect", "-f", "{{len .RootFS.Layers}}", &img]);
    k.docker_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "src",
        &img,
        "sh",
        "-c",
        "echo made > /made; mkdir -p /srv/d; rm /bin/true; sleep 60",
    ]);
    // The files exist before the commit is taken.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !k
        .docker(&["exec", "src", "test", "-d", "/srv/d"])
        .status
        .success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the container never wrote its files"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let id = k.docker_ok(&[
        "commit",
        "-c",
        "ENV COMMITTED=yes",
        "-c",
        r#"CMD ["cat", "/made"]"#,
        "-c",
        "LABEL from=commit",
        "-m",
        "a commit message",
        "-a",
        "The Author",
        "src",
        "committed:1",
    ]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    // The container was paused for the commit and runs on.
    assert_eq!(
        k.docker_ok(&[
            "inspect",
            "-f",
            "{{.State.Status}} {{.State.Paused}}",
            "src"
        ])
        .trim(),
        "running false"
    );
    // The new image: the container's files, its config with the changes, one layer more.
    assert_eq!(
        k.docker_ok(&["run", "--rm", "--network", "none", "committed:1"]),
        "made\n"
    );
    let o = k.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "committed:1",
        "sh",
        "-c",
        "echo $COMMITTED; test -d /srv/d && echo dir; test -e /bin/true || echo removed",
    ]);
    assert_eq!(o, "yes\ndir\nremoved\n");
    let meta = k.docker_ok(&[
        "inspect",
        "-f",
        "{{.Comment}}|{{.Author}}|{{index .Config.Labels \"from\"}}|{{len .RootFS.Layers}}",
        "committed:1",
    ]);
    let base_n: usize = base_layers.trim().parse().expect("layer count");
    assert_eq!(
        meta.trim(),
        format!("a commit message|The Author|commit|{}", base_n + 1)
    );
    let hist = k.docker_ok(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.CreatedBy}}|{{.Comment}}",
        "committed:1",
    ]);
    assert!(
        hist.lines()
            .next()
            .is_some_and(|l| l.starts_with("sh -c echo made") && l.ends_with("|a commit message")),
        "{hist}"
    );
    // The layer holds what the container wrote (the deletion as a whiteout), not the mount
    // points kosd made for /proc, /sys, /dev and the /etc files it binds.
    let names = top_layer_entries(&k, &dir, "committed:1");
    for want in ["made", "srv/d", "bin/.wh.true"] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    for stub in [
        "proc",
        "sys",
        "dev",
        "etc/hosts",
        "etc/hostname",
        "etc/resolv.conf",
    ] {
        assert!(
            !names.iter().any(|n| n == stub),
            "{stub} committed: {names:?}"
        );
    }
    // An exited container commits too, unnamed, and without pausing.
    k.docker_ok(&["rm", "-f", "src"]);
    k.docker_ok(&[
        "run",
        "--name",
        "done",
        "--network",
        "none",
        &img,
        "sh",
        "-c",
        "echo later > /later",
    ]);
    let unnamed = k.docker_ok(&["commit", "--pause=false", "done"]);
    let unnamed = unnamed.trim();
    assert!(unnamed.starts_with("sha256:"), "{unnamed}");
    assert_eq!(
        k.docker_ok(&["run", "--rm", "--network", "none", unnamed, "cat", "/later"]),
        "later\n"
    );
    k.docker_ok(&["rm", "done"]);
}

#[test]
fn commit_errors_and_sdk() {
    let k = Kosd::start(&[]);
    let reg = Registry::start();
    let img = pulled_busybox(&k, &reg, "commit-sdk", &ImageSpec::default());
    let o = k.docker(&["commit", "no-such-container", "x:1"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("No such container"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    k.docker_ok(&["create", "--name", "c1", "--network", "none", &img, "true"]);
    let o = k.docker(&["commit", "-c", "RUN true", "c1", "x:1"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not a valid change command"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let (st, body) = k.http("POST", "/commit?container=c1&repo=Bad%20Name", b"");
    assert_eq!(st, 400, "{body}");
    assert!(k.docker_ok(&["images", "-q", "x"]).trim().is_empty());
    // The docker SDK: Container.commit with a config in the body and changes.
    let py = k.python(&format!(
        r#"
import docker
c = docker.from_env()
ct = c.containers.run("{img}", ["sh", "-c", "echo sdk > /sdk; sleep 30"], detach=True, network_mode="none")
import time
for _ in range(100):
    if ct.exec_run(["test", "-e", "/sdk"]).exit_code == 0:
        break
    time.sleep(0.05)
im = ct.commit(repository="sdk-commit", tag="2", conf={{"Env": ["FROM_BODY=1"], "WorkingDir": "/tmp"}}, changes=["LABEL via=sdk"])
assert im.id.startswith("sha256:"), im.id
assert "sdk-commit:2" in im.tags, im.tags
cfg = im.attrs["Config"]
assert "FROM_BODY=1" in cfg["Env"], cfg
assert cfg["WorkingDir"] == "/tmp", cfg
assert cfg["Labels"]["via"] == "sdk", cfg
out = c.containers.run("sdk-commit:2", ["cat", "/sdk"], remove=True, network_mode="none")
assert out == b"sdk\n", out
ct.remove(force=True)
assert c.plugins.list() == []
try:
    c.services.list()
    raise SystemExit("services answered outside a swarm")
except docker.errors.APIError as e:
    assert e.response.status_code == 503, e
    assert "not a swarm manager" in str(e), e
print("ok")
"#
    ));
    assert!(
        py.status.success(),
        "{}{}",
        String::from_utf8_lossy(&py.stdout),
        String::from_utf8_lossy(&py.stderr)
    );
    let (st, body) = k.http("GET", "/v1.47/swarm", b"");
    assert_eq!(st, 503, "{body}");
    k.docker_ok(&["rm", "-f", "c1"]);
}
