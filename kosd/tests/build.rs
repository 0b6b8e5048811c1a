//! `docker build` with the legacy builder (`DOCKER_BUILDKIT=0`) against kosd's
//! `POST /build`: a context with a custom Dockerfile path and build args, the
//! built image run; a failing RUN tags nothing.

mod common;

use common::*;

const LEGACY: &[(&str, &str)] = &[("DOCKER_BUILDKIT", "0")];

fn setup() -> (Kosd, Registry, String) {
    let k = Kosd::start(&[]);
    let reg = Registry::start();
    let base = reg.image("buildbase:1");
    push_busybox(&base, &ImageSpec::default());
    k.docker_ok(&["pull", "-q", &base]);
    (k, reg, base)
}

#[test]
fn legacy_build_then_run() {
    let (k, _reg, base) = setup();
    let ctx = Scratch::new("ctx");
    std::fs::create_dir_all(ctx.join("docker")).expect("mkdir");
    std::fs::write(ctx.join("hello.txt"), "hi from the context\n").expect("file");
    std::fs::write(
        ctx.join("docker/Build.df"),
        "ARG BASE\nFROM $BASE\nARG GREETING=none\nLABEL stage=one\nCOPY hello.txt /hello.txt\n\
         RUN echo \"$GREETING\" > /greeting && cat /hello.txt\n\
         CMD [\"sh\", \"-c\", \"cat /hello.txt /greeting\"]\n",
    )
    .expect("dockerfile");
    let name = unique("built").replace('-', "");
    let base_arg = format!("BASE={base}");
    let o = k.docker_in(
        &ctx.0,
        LEGACY,
        &[
            "build",
            "-t",
            &name,
            "-f",
            "docker/Build.df",
            "--build-arg",
            &base_arg,
            "--build-arg",
            "GREETING=howdy",
            "--label",
            "extra=yes",
            ".",
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success(),
        "build failed: {out}{err}\n{}",
        tail(&k.log_text(), 40)
    );
    // dockerd's legacy progress, as the CLI prints it.
    assert!(out.contains("Step 1/"), "{out}");
    assert!(out.contains("hi from the context"), "RUN output: {out}");
    assert!(out.contains("Successfully built"), "{out}");
    assert!(
        out.contains(&format!("Successfully tagged {name}:latest")),
        "{out}"
    );
    assert_eq!(
        k.docker_ok(&["run", "--rm", &name]),
        "hi from the context\nhowdy\n"
    );
    let labels = k.docker_ok(&["image", "inspect", "-f", "{{json .Config.Labels}}", &name]);
    let labels: serde_json::Value = serde_json::from_str(&labels).expect("labels");
    assert_eq!(labels["stage"], "one");
    assert_eq!(labels["extra"], "yes");

    // -q prints only the image id. Without DOCKER_BUILDKIT (and no buildx plugin) the
    // CLI sees Builder-Version 1 and takes the legacy path on its own.
    let o = k.docker_in(
        &ctx.0,
        &[],
        &[
            "build",
            "-q",
            "-f",
            "docker/Build.df",
            "--build-arg",
            &base_arg,
            ".",
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert!(id.starts_with("sha256:") && id.len() == 71, "{id:?}");
    // The untagged result is kept, dangling, as dockerd keeps it: listed as
    // <none>:<none>, runnable by id, and what `image prune` removes.
    let dangling = k.docker_ok(&["images", "-q", "--no-trunc", "--filter", "dangling=true"]);
    assert!(dangling.lines().any(|l| l == id), "{dangling}");
    let shown = k.docker_ok(&[
        "images",
        "--format",
        "{{.ID}} {{.Repository}}:{{.Tag}}",
        "--no-trunc",
    ]);
    assert!(shown.contains(&format!("{id} <none>:<none>")), "{shown}");
    let tagged = k.docker_ok(&["images", "-q", "--no-trunc", "--filter", "dangling=false"]);
    assert!(!tagged.lines().any(|l| l == id), "{tagged}");
    assert_eq!(
        k.docker_ok(&["run", "--rm", &id]),
        "hi from the context\nnone\n"
    );
    let pruned = k.docker_ok(&["image", "prune", "-f"]);
    assert!(pruned.contains(&id), "{pruned}");
    assert!(!k.docker(&["image", "inspect", &id]).status.success());
    // The tagged image is not dangling and stays.
    k.docker_ok(&["image", "inspect", &name]);

    // `docker builder prune -a` empties the build cache: the same build runs
    // its steps again.
    k.docker_ok(&["builder", "prune", "-a", "-f"]);
    let o = k.docker_in(
        &ctx.0,
        LEGACY,
        &[
            "build",
            "-f",
            "docker/Build.df",
            "--build-arg",
            &base_arg,
            ".",
        ],
    );
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(!out.contains("Using cache"), "{out}");
    assert!(out.contains("hi from the context"), "the RUN ran: {out}");
    k.docker_ok(&["rmi", &name]);
}

#[test]
fn failing_run_exits_non_zero_and_tags_nothing() {
    let (k, _reg, base) = setup();
    let ctx = Scratch::new("ctx");
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {base}\nRUN echo about to fail && exit 3\n"),
    )
    .expect("dockerfile");
    let name = unique("broken").replace('-', "");
    let o = k.docker_in(&ctx.0, LEGACY, &["build", "-t", &name, "."]);
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{out}{err}");
    assert!(
        err.contains("returned a non-zero code: 3"),
        "stdout: {out}\nstderr: {err}"
    );
    assert!(!k.docker(&["image", "inspect", &name]).status.success());

    // Build containers are confined as `docker run`'s are: a user namespace
    // (unshare needs CAP_SYS_ADMIN under the default seccomp profile) is
    // refused alike in a RUN step and in a container.
    std::fs::write(
        ctx.join("Dockerfile"),
        format!("FROM {base}\nRUN busybox unshare -U true\n"),
    )
    .expect("dockerfile");
    let o = k.docker_in(&ctx.0, LEGACY, &["build", "."]);
    let out = String::from_utf8_lossy(&o.stdout);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{out}{err}");
    assert!(out.contains("Operation not permitted"), "{out}{err}");
    let o = k.docker(&["run", "--rm", &base, "busybox", "unshare", "-U", "true"]);
    assert!(!o.status.success());
    let run_err = String::from_utf8_lossy(&o.stderr);
    assert!(run_err.contains("Operation not permitted"), "{run_err}");
    // A bad parameter is a 400 before anything streams.
    let (status, body) = k.http("POST", "/build?buildargs=%5B1%5D", b"");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("buildargs"), "{body}");
    // Nothing of the build is left: no namespace pins, no scratch context.
    let pins = std::fs::read_dir(k.exec_root().join("netns"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(pins, 0);
    let tmp = std::fs::read_dir(k.data_root().join("tmp"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(tmp, 0);
}
