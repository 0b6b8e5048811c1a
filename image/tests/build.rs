#![allow(clippy::unwrap_used)]
//! Dockerfile builds on the real kernel: overlay steps, RUN through the
//! release kosrun, configs and filesystems of the results, multi-stage
//! builds, the cache, and hostile contexts.

mod build_support;
mod common;

use build_support::{canonical, opts, stream, Env, BASE};
use common::tarw::Entry;
use kos_image::build::{BuildError, BuildEvent, BuildOptions};
use serde_json::json;

#[test]
fn config_history_and_filesystem() {
    let env = Env::new();
    let df = format!(
        r#"# syntax=docker/dockerfile:1
ARG BASE={BASE}
FROM $BASE
ARG GREETING=hello
ENV APP_HOME=/srv/app \
    MODE="two words"
LABEL org.kos.test="yes" other=${{GREETING:-none}}
EXPOSE 8080 53/udp
VOLUME ["/data"]
WORKDIR $APP_HOME
COPY --chown=app:app --chmod=640 conf.txt ./
COPY dir/ /opt/dir/
RUN echo "$GREETING from $(pwd) as $(id -u)" > /srv/app/ran.txt && \
    echo "${{MODE}}" >> /srv/app/ran.txt
RUN <<EOF
echo heredoc > /srv/app/heredoc.txt
EOF
USER app
STOPSIGNAL SIGINT
HEALTHCHECK --interval=5s --retries=2 CMD cat /srv/app/ran.txt
SHELL ["/bin/sh", "-c"]
ENTRYPOINT ["/bin/sh", "-c"]
CMD ["cat ran.txt conf.txt; echo user=$(id -u)"]
"#
    );
    let files = [
        Entry::file("conf.txt", b"conf\n"),
        Entry::dir("dir"),
        Entry::file("dir/a", b"A"),
        Entry::dir("dir/sub"),
        Entry::file("dir/sub/b", b"B").mode(0o755),
        Entry::symlink("dir/link", "a"),
    ];
    let mut o = opts("kbt/app:1");
    o.build_args.insert("GREETING".into(), "hi".into());
    o.build_args.insert("UNUSED".into(), "x".into());
    o.labels.insert("from.cli".into(), "1".into());
    o.network = kos_image::build::NetworkMode::None;
    let (r, events) = env.build(&df, &files, &o);
    let r = r.unwrap_or_else(|e| panic!("build failed: {e}\n{}", stream(&events)));
    let out = stream(&events);
    assert!(out.starts_with("Step 1/17 : FROM $BASE\n"), "{out}");
    assert!(out.contains("Step 10/17 : RUN echo"), "{out}");
    assert!(out.contains(" ---> Running in "), "{out}");
    assert!(out.contains("[Warning] One or more build-args [UNUSED] were not consumed"));
    assert!(out.contains(&format!("Successfully built {}\n", &r.image_id.hex()[..12])));
    assert!(out.ends_with("Successfully tagged kbt/app:1\n"), "{out}");
    assert!(events.contains(&BuildEvent::Aux {
        id: r.image_id.to_string()
    }));
    assert_eq!(r.tags, vec![canonical("kbt/app:1")]);

    let cfg = env.config("kbt/app:1");
    let c = &cfg["config"];
    assert_eq!(
        c["Env"],
        json!([
            "PATH=/bin",
            "BASE_ENV=yes",
            "APP_HOME=/srv/app",
            "MODE=two words"
        ])
    );
    assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c"]));
    assert_eq!(
        c["Cmd"],
        json!(["cat ran.txt conf.txt; echo user=$(id -u)"])
    );
    assert_eq!(c["WorkingDir"], json!("/srv/app"));
    assert_eq!(c["User"], json!("app"));
    assert_eq!(
        c["Labels"],
        json!({"org.kos.test": "yes", "other": "hi", "from.cli": "1"})
    );
    assert_eq!(c["ExposedPorts"], json!({"8080/tcp": {}, "53/udp": {}}));
    assert_eq!(c["Volumes"], json!({"/data": {}}));
    assert_eq!(c["StopSignal"], json!("SIGINT"));
    assert_eq!(
        c["Healthcheck"],
        json!({"Test": ["CMD-SHELL", "cat /srv/app/ran.txt"], "Interval": 5_000_000_000i64, "Retries": 2})
    );
    assert_eq!(c["Shell"], json!(["/bin/sh", "-c"]));
    // History: the base has none; one entry per instruction after FROM plus the CLI label.
    let hist = cfg["history"].as_array().unwrap();
    assert_eq!(hist.len(), 16 + 1, "{hist:#?}");
    let layered: Vec<&str> = hist
        .iter()
        .filter(|h| h.get("empty_layer").is_none())
        .map(|h| h["created_by"].as_str().unwrap())
        .collect();
    assert_eq!(layered.len(), 4, "{layered:?}");
    assert!(layered[0].contains("COPY --chown=app:app --chmod=640 file:"));
    assert!(
        layered[2].starts_with("|1 GREETING=hi /bin/sh -c echo"),
        "{}",
        layered[2]
    );
    assert!(hist[0]["created_by"]
        .as_str()
        .unwrap()
        .ends_with("ARG GREETING=hello"));
    let diff_ids = cfg["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(diff_ids.len(), 1 + 4);

    // The filesystem, read from a rootfs of the image.
    assert_eq!(
        env.read("kbt/app:1", "/srv/app/ran.txt").unwrap(),
        b"hi from /srv/app as 0\ntwo words\n"
    );
    assert_eq!(
        env.read("kbt/app:1", "/srv/app/heredoc.txt").unwrap(),
        b"heredoc\n"
    );
    assert_eq!(env.read("kbt/app:1", "/opt/dir/sub/b").unwrap(), b"B");
    assert!(
        env.read("kbt/app:1", "/dir").is_none(),
        "a directory's contents are copied, not the directory"
    );
    // The step's mount points are not part of its layer.
    assert!(env.read("kbt/app:1", "/proc").is_none());
    {
        let dir = env.dir.join("meta");
        let id = common::unique("meta");
        let rootfs = env
            .store
            .prepare_rootfs(
                &canonical("kbt/app:1"),
                &id,
                &dir,
                kos_image::RootfsStrategy::Overlay,
            )
            .unwrap();
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(rootfs.path.join("srv/app/conf.txt")).unwrap();
        assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (1000, 1000, 0o640));
        let m = std::fs::metadata(rootfs.path.join("opt/dir/sub/b")).unwrap();
        assert_eq!((m.uid(), m.mode() & 0o7777), (0, 0o755));
        assert_eq!(
            std::fs::read_link(rootfs.path.join("opt/dir/link")).unwrap(),
            std::path::Path::new("a")
        );
        assert!(!rootfs.path.join("proc").exists() && !rootfs.path.join("sys").exists());
        env.store.release_rootfs(&rootfs).unwrap();
    }
    // Runnable at once: entrypoint, cmd, cwd, user from the config.
    let (code, out) = env.run_image("kbt/app:1");
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "hi from /srv/app as 0\ntwo words\nconf\nuser=1000\n");
    env.assert_clean();
}

#[test]
fn multi_stage_builds_only_what_the_target_needs() {
    let env = Env::new();
    let df = format!(
        r#"FROM {BASE} AS builder
RUN echo built > /artifact && mkdir -p /out && echo x > /out/x
FROM {BASE} AS broken
RUN echo "this stage must not run"; exit 7
FROM scratch AS final
COPY --from=builder /artifact /artifact
COPY --from=0 /out /out
COPY --from=builder /bin/busybox /bin/busybox
CMD ["/bin/busybox", "cat", "/artifact"]
"#
    );
    let (r, events) = env.build(&df, &[], &opts("kbt/multi:1"));
    let out = stream(&events);
    r.unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert!(!out.contains("must not run"), "{out}");
    assert!(out.contains("Step 1/7 : FROM"), "{out}");
    let cfg = env.config("kbt/multi:1");
    assert_eq!(cfg["rootfs"]["diff_ids"].as_array().unwrap().len(), 3);
    assert_eq!(env.read("kbt/multi:1", "/artifact").unwrap(), b"built\n");
    assert_eq!(env.read("kbt/multi:1", "/out/x").unwrap(), b"x\n");
    let (code, text) = env.run_image("kbt/multi:1");
    assert_eq!((code, text.as_str()), (0, "built\n"));

    // --target stops at the named stage.
    let mut o = opts("kbt/multi:builder");
    o.target = Some("builder".into());
    let (r, events) = env.build(&df, &[], &o);
    r.unwrap_or_else(|e| panic!("{e}\n{}", stream(&events)));
    assert!(stream(&events).contains("Step 2/2 : RUN"));
    assert_eq!(
        env.read("kbt/multi:builder", "/artifact").unwrap(),
        b"built\n"
    );
    assert!(env.read("kbt/multi:builder", "/bin/busybox").is_some());

    // The broken stage as target fails with its exit code and output.
    let mut o = opts("kbt/multi:broken");
    o.target = Some("broken".into());
    let (r, _) = env.build(&df, &[], &o);
    match r {
        Err(BuildError::RunFailed {
            line, code, output, ..
        }) => {
            assert_eq!((line, code), (4, 7));
            assert!(output.contains("this stage must not run"), "{output}");
        }
        other => panic!("expected a failed RUN, got {other:?}"),
    }
    assert!(env.store.image(&canonical("kbt/multi:broken")).is_err());
    let mut o = opts("kbt/multi:none");
    o.target = Some("nosuch".into());
    assert!(
        matches!(env.build(&df, &[], &o).0, Err(BuildError::Options(m)) if m.contains("nosuch"))
    );
    env.assert_clean();
}

#[test]
fn cache_hits_and_an_edited_file_invalidates() {
    let env = Env::new();
    let df = format!(
        "FROM {BASE}\nENV A=1\nCOPY a.txt /a.txt\nRUN cat /a.txt > /copy.txt\nCOPY b.txt /b.txt\nCMD [\"cat\", \"/copy.txt\"]\n"
    );
    let files = |a: &[u8]| vec![Entry::file("a.txt", a), Entry::file("b.txt", b"b")];
    let (r1, _) = env.build(&df, &files(b"one"), &opts("kbt/cache:1"));
    let r1 = r1.unwrap();
    assert_eq!((r1.steps, r1.cached_steps), (6, 0));

    let (r2, events) = env.build(&df, &files(b"one"), &opts("kbt/cache:2"));
    let r2 = r2.unwrap();
    assert_eq!(r2.cached_steps, 5, "{}", stream(&events));
    assert_eq!(stream(&events).matches(" ---> Using cache\n").count(), 5);
    assert!(!stream(&events).contains("Running in"));
    assert_eq!(
        r2.image_id, r1.image_id,
        "an unchanged rebuild is the same image"
    );

    // a.txt changed: ENV still hits, COPY a.txt and everything after runs again.
    let (r3, events) = env.build(&df, &files(b"two"), &opts("kbt/cache:3"));
    let r3 = r3.unwrap();
    assert_eq!(r3.cached_steps, 1, "{}", stream(&events));
    assert_ne!(r3.image_id, r1.image_id);
    assert_eq!(env.read("kbt/cache:3", "/copy.txt").unwrap(), b"two");
    assert_eq!(env.read("kbt/cache:1", "/copy.txt").unwrap(), b"one");

    // --no-cache runs every step; a different build arg misses the RUN.
    let mut o = opts("kbt/cache:4");
    o.no_cache = true;
    let (r4, _) = env.build(&df, &files(b"one"), &o);
    assert_eq!(r4.unwrap().cached_steps, 0);
    let df2 = format!("FROM {BASE}\nARG V=1\nRUN echo $V > /v\n");
    let (a, _) = env.build(&df2, &[], &opts("kbt/cache:5"));
    a.unwrap();
    let mut o = opts("kbt/cache:6");
    o.build_args.insert("V".into(), "2".into());
    let (b, _) = env.build(&df2, &[], &o);
    let b = b.unwrap();
    assert_eq!(b.cached_steps, 1, "ARG hits, RUN with another value misses");
    assert_eq!(env.read("kbt/cache:6", "/v").unwrap(), b"2\n");
    env.assert_clean();
}

#[test]
fn dockerignore_add_and_globs() {
    let env = Env::new();
    let df = format!(
        "FROM {BASE}\nCOPY . /ctx/\nCOPY *.md /docs/\nADD layer.tar /unpacked/\nADD notes.txt /notes/\nARG V=x\nCOPY <<EOF /inline.txt\nvalue=\"$V\" '${{V}}' \\$V\nEOF\n"
    );
    let inner = common::tarw::build(&[Entry::dir("pkg"), Entry::file("pkg/file", b"from tar")]);
    let files = [
        Entry::file(".dockerignore", b"*.log\nsecret/\n!keep.log\n"),
        Entry::file("a.log", b"x"),
        Entry::file("keep.log", b"kept"),
        Entry::dir("secret"),
        Entry::file("secret/key", b"k"),
        Entry::file("one.md", b"1"),
        Entry::file("two.md", b"2"),
        Entry::file("layer.tar", &common::tarw::gzip(&inner)),
        Entry::file("notes.txt", b"plain"),
    ];
    let (r, events) = env.build(&df, &files, &opts("kbt/ignore:1"));
    r.unwrap_or_else(|e| panic!("{e}\n{}", stream(&events)));
    let t = "kbt/ignore:1";
    assert!(env.read(t, "/ctx/a.log").is_none());
    assert!(env.read(t, "/ctx/secret/key").is_none());
    assert_eq!(env.read(t, "/ctx/keep.log").unwrap(), b"kept");
    assert_eq!(env.read(t, "/docs/one.md").unwrap(), b"1");
    assert_eq!(env.read(t, "/docs/two.md").unwrap(), b"2");
    assert_eq!(env.read(t, "/unpacked/pkg/file").unwrap(), b"from tar");
    assert_eq!(env.read(t, "/notes/notes.txt").unwrap(), b"plain");
    assert_eq!(env.read(t, "/inline.txt").unwrap(), b"value=\"x\" 'x' $V\n");
    env.assert_clean();
}

/// Runs a hostile build and checks it failed cleanly with the given line.
fn refused(env: &Env, df: &str, files: &[Entry], line: usize, needle: &str) {
    let tag = common::unique("kbt/hostile").replace("kos-image-", "");
    let tag = format!("kbt/{}:1", tag.rsplit('/').next().unwrap());
    let (r, events) = env.build(df, files, &opts(&tag));
    let e = r.expect_err("hostile build must fail");
    let msg = e.to_string();
    assert_eq!(e.line(), Some(line), "{msg}\n{}", stream(&events));
    assert!(msg.contains(needle), "{msg:?} does not say {needle:?}");
    assert!(!msg.contains('\n'), "one-line error: {msg:?}");
    assert!(
        env.store.image(&canonical(&tag)).is_err(),
        "half image tagged"
    );
    env.assert_clean();
}

#[test]
fn hostile_inputs_fail_cleanly() {
    let env = Env::new();
    let base = format!("FROM {BASE}\n");
    refused(
        &env,
        &format!("{base}RUN true\nFROOM x\n"),
        &[],
        3,
        "unknown instruction: FROOM",
    );
    refused(
        &env,
        &format!("{base}COPY ../etc/passwd /x\n"),
        &[],
        2,
        "outside the build context",
    );
    refused(
        &env,
        &format!("{base}COPY link /x\n"),
        &[Entry::symlink("link", "/etc/passwd")],
        2,
        "symlink leads outside the build context",
    );
    refused(
        &env,
        &format!("{base}COPY dir/up /x\n"),
        &[
            Entry::dir("dir"),
            Entry::symlink("dir/up", "../../../../etc"),
        ],
        2,
        "outside the build context",
    );
    refused(
        &env,
        &format!("{base}COPY /etc/shadow /x\n"),
        &[],
        2,
        "not found in build context",
    );
    refused(
        &env,
        &format!("{base}COPY --from=nosuch /a /b\n"),
        &[],
        2,
        "nosuch",
    );
    refused(
        &env,
        "FROM kbt/not-there:1\nRUN true\n",
        &[],
        1,
        "not-there",
    );
    refused(
        &env,
        &format!("{base}ADD https://example.com/x /x\n"),
        &[],
        2,
        "remote URL",
    );
    refused(
        &env,
        &format!("{base}RUN echo first\nRUN echo boom >&2; exit 3\n"),
        &[],
        3,
        "returned a non-zero code: 3; output: boom",
    );
    refused(
        &env,
        &format!("{base}COPY a b /x\n"),
        &[Entry::file("a", b""), Entry::file("b", b"")],
        2,
        "must be a directory",
    );
    refused(
        &env,
        &format!("{base}ENV X=${{Y:?must_be_set}}\n"),
        &[],
        2,
        "Y: must_be_set",
    );
    // A symlink in the image pointing out of the root keeps COPY inside it.
    let df = format!(
        "{base}RUN mkdir /tmp/kbt-escape && ln -s /../../../../tmp/kbt-escape /esc\nCOPY a /esc/\n"
    );
    let (r, events) = env.build(&df, &[Entry::file("a", b"inside")], &opts("kbt/esc:1"));
    r.unwrap_or_else(|e| panic!("{e}\n{}", stream(&events)));
    assert!(!std::path::Path::new("/tmp/kbt-escape/a").exists());
    assert_eq!(
        env.read("kbt/esc:1", "/tmp/kbt-escape/a").unwrap(),
        b"inside"
    );
    // Context tars that try to write outside the context directory.
    let pwned = format!("/tmp/kbt-pwned-{}", std::process::id());
    for (what, entries) in [
        (
            "dotdot",
            vec![Entry::file("../../../../../tmp/kbt-dotdot", b"x")],
        ),
        (
            "through a symlink",
            vec![
                Entry::symlink("sl", "/tmp"),
                Entry::file(&format!("sl/{}", pwned.trim_start_matches("/tmp/")), b"x"),
            ],
        ),
        (
            "hard link out",
            vec![Entry::hardlink("hl", "../../../../etc/passwd")],
        ),
    ] {
        let (r, _) = env.build(&format!("{base}RUN true\n"), &entries, &opts("kbt/ctx:1"));
        assert!(
            matches!(&r, Err(BuildError::Context(m)) if !m.contains('\n')),
            "{what}: {r:?}"
        );
    }
    assert!(!std::path::Path::new(&pwned).exists());
    assert!(!std::path::Path::new("/tmp/kbt-dotdot").exists());
    assert!(env.store.image(&canonical("kbt/ctx:1")).is_err());
    // A context over its bound.
    let mut o = opts("kbt/big:1");
    o.max_context_bytes = 4096;
    let big = vec![b'x'; 64 * 1024];
    let (r, _) = env.build(
        &format!("{base}COPY big /big\n"),
        &[Entry::file("big", &big)],
        &o,
    );
    assert!(matches!(r, Err(BuildError::Context(_))), "{r:?}");
    assert!(env.store.image(&canonical("kbt/big:1")).is_err());
    // A context that is not a tar.
    let mut ev = Vec::new();
    let r = env.builder.build(
        &b"not a tar at all, just text"[..],
        &BuildOptions::default(),
        &mut |e| ev.push(e),
    );
    assert!(matches!(r, Err(BuildError::Context(_))), "{r:?}");
    env.assert_clean();
}

#[test]
fn deletions_become_whiteouts_and_the_image_pushes() {
    let env = Env::new();
    let df = format!(
        "FROM {BASE}\nRUN rm /bin/echo && rm -rf /home && mkdir /home && echo new > /home/only && ln /home/only /home/hard\n"
    );
    let (r, events) = env.build(&df, &[], &opts("kbt/wh:1"));
    let r = r.unwrap_or_else(|e| panic!("{e}\n{}", stream(&events)));
    let t = "kbt/wh:1";
    assert!(env.read(t, "/bin/echo").is_none());
    assert!(env.read(t, "/bin/cat").is_some());
    assert!(
        env.read(t, "/home/app").is_none(),
        "the removed directory stays hidden"
    );
    assert_eq!(env.read(t, "/home/only").unwrap(), b"new\n");
    // The layer blob carries OCI whiteouts, an opaque marker and a hard link.
    let img = env.store.image(&canonical(t)).unwrap();
    let top = img.manifest.layers.last().unwrap();
    let blob = env.store.read_blob(&top.digest).unwrap();
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(&blob[..]));
    let mut names = Vec::new();
    for e in a.entries().unwrap() {
        let e = e.unwrap();
        names.push((
            e.path().unwrap().display().to_string(),
            e.header().entry_type(),
        ));
    }
    let has = |n: &str| names.iter().any(|(p, _)| p == n);
    assert!(has("bin/.wh.echo"), "{names:?}");
    assert!(has("home/.wh..wh..opq"), "{names:?}");
    assert!(
        names
            .iter()
            .any(|(p, k)| (p == "home/hard" || p == "home/only") && *k == tar::EntryType::Link),
        "{names:?}"
    );
    assert_eq!(
        kos_image::Digest::of(&{
            let mut v = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&blob[..]), &mut v)
                .unwrap();
            v
        }),
        img.config.rootfs.diff_ids.last().unwrap().clone(),
        "diff id is the uncompressed layer's digest"
    );

    // Push to a loopback registry and pull into a fresh store: same tree.
    let reg = common::TestRegistry::start();
    let dest = reg.reference("kbt/wh:1");
    let rt = common::rt();
    let registry = kos_image::Registry::default();
    rt.block_on(registry.push(
        env.store.clone(),
        &canonical(t),
        &dest,
        &kos_image::registry::push::PushOptions::default(),
    ))
    .unwrap();
    let other = std::sync::Arc::new(kos_image::Store::open(env.dir.join("other")).unwrap());
    let opts = kos_image::PullOptions {
        unpack: true,
        ..Default::default()
    };
    let rec = rt
        .block_on(registry.pull(other.clone(), &dest, &opts))
        .unwrap();
    assert_eq!(rec.config, r.image_id);
    let pulled = other.image(&dest).unwrap();
    assert_eq!(pulled.config.rootfs.diff_ids, img.config.rootfs.diff_ids);
    env.assert_clean();
}

/// A bridge stand-in: a network namespace the test makes, with a dummy link
/// RUN can see; removed on detach.
struct TestNet {
    names: std::sync::Mutex<Vec<String>>,
}

impl kos_image::build::BuildNetwork for TestNet {
    fn attach(&self, id: &str) -> Result<kos_image::build::NetworkAttachment, String> {
        let ns = format!("kbt{}", &id[id.len() - 8..]);
        let ip = |args: &[&str]| {
            let st = std::process::Command::new("ip")
                .args(args)
                .status()
                .map_err(|e| e.to_string())?;
            if st.success() {
                Ok(())
            } else {
                Err(format!("ip {args:?} failed"))
            }
        };
        ip(&["netns", "add", &ns])?;
        // A veth pair inside the namespace: a link only this namespace has.
        if let Err(e) = ip(&[
            "-n",
            &ns,
            "link",
            "add",
            "kbtdummy0",
            "type",
            "veth",
            "peer",
            "name",
            "kbtdummy1",
        ]) {
            let _ = ip(&["netns", "delete", &ns]);
            return Err(e);
        }
        self.names.lock().unwrap().push(ns.clone());
        Ok(kos_image::build::NetworkAttachment {
            netns: std::path::PathBuf::from(format!("/run/netns/{ns}")),
            resolv_conf: None,
            hosts: None,
        })
    }

    fn detach(&self, id: &str) {
        let ns = format!("kbt{}", &id[id.len() - 8..]);
        let _ = std::process::Command::new("ip")
            .args(["netns", "delete", &ns])
            .status();
        self.names.lock().unwrap().retain(|n| *n != ns);
    }
}

#[test]
fn run_steps_get_the_network_asked_for() {
    let mut env = Env::new();
    let net = std::sync::Arc::new(TestNet {
        names: std::sync::Mutex::new(Vec::new()),
    });
    env.builder = kos_image::build::Builder::new(env.store.clone())
        .with_kosrun(build_support::kosrun())
        .with_cgroup_parent(build_support::cgroup_parent())
        .with_network(net.clone());
    let df = format!("FROM {BASE}\nRUN cat /proc/net/dev > /dev.txt\nRUN --network=none cat /proc/net/dev > /none.txt\n");
    let (r, events) = env.build(&df, &[], &opts("kbt/net:1"));
    r.unwrap_or_else(|e| panic!("{e}\n{}", stream(&events)));
    let bridge = String::from_utf8(env.read("kbt/net:1", "/dev.txt").unwrap()).unwrap();
    assert!(bridge.contains("kbtdummy0"), "{bridge}");
    let none = String::from_utf8(env.read("kbt/net:1", "/none.txt").unwrap()).unwrap();
    assert!(
        none.contains("lo:") && !none.contains("kbtdummy0"),
        "{none}"
    );
    assert!(
        net.names.lock().unwrap().is_empty(),
        "namespaces left attached"
    );

    // host: the host's own links.
    let mut o = opts("kbt/net:2");
    o.network = kos_image::build::NetworkMode::Host;
    let (r, events) = env.build(
        &format!("FROM {BASE}\nRUN cat /proc/net/dev > /host.txt\n"),
        &[],
        &o,
    );
    r.unwrap_or_else(|e| panic!("{e}\n{}", stream(&events)));
    let host = String::from_utf8(env.read("kbt/net:2", "/host.txt").unwrap()).unwrap();
    let ours = std::fs::read_to_string("/proc/net/dev").unwrap();
    let first_link = |t: &str| {
        t.lines()
            .nth(2)
            .and_then(|l| l.split(':').next())
            .map(str::trim)
            .map(str::to_string)
    };
    assert_eq!(first_link(&host), first_link(&ours));
    env.assert_clean();
}

#[test]
fn missing_base_images_are_pulled() {
    let env = Env::new();
    let reg = common::TestRegistry::start();
    let remote = reg.reference("kbt/busybox:1");
    let rt = common::rt();
    rt.block_on(kos_image::Registry::default().push(
        env.store.clone(),
        &canonical(BASE),
        &remote,
        &kos_image::registry::push::PushOptions::default(),
    ))
    .unwrap();
    drop(rt);
    // A fresh store that has never seen the base.
    let store = std::sync::Arc::new(kos_image::Store::open(env.dir.join("fresh")).unwrap());
    let puller = std::sync::Arc::new(kos_image::build::RegistryPuller {
        registry: kos_image::Registry::default(),
        options: kos_image::PullOptions::default(),
    });
    let builder = kos_image::build::Builder::new(store.clone())
        .with_kosrun(build_support::kosrun())
        .with_cgroup_parent(build_support::cgroup_parent())
        .with_puller(puller);
    let tar = common::tarw::build(&[Entry::file(
        "Dockerfile",
        format!("FROM {remote}\nRUN echo pulled > /p\n").as_bytes(),
    )]);
    let mut events = Vec::new();
    let mut o = opts("kbt/pulled:1");
    o.network = kos_image::build::NetworkMode::None;
    let r = builder.build(&tar[..], &o, &mut |e| events.push(e));
    r.unwrap_or_else(|e| panic!("{e}\n{}", stream(&events)));
    assert!(stream(&events).contains(&format!("Pulling {remote}")));
    assert!(store.image(&remote).is_ok(), "the base is in the store now");
    // Without a puller, a missing base is a clear error naming it.
    let other = std::sync::Arc::new(kos_image::Store::open(env.dir.join("nopull")).unwrap());
    let b = kos_image::build::Builder::new(other)
        .with_kosrun(build_support::kosrun())
        .with_cgroup_parent(build_support::cgroup_parent());
    let e = b
        .build(&tar[..], &o, &mut |_| {})
        .expect_err("no puller, no base");
    assert_eq!(e.line(), Some(1), "{e}");
    assert!(e.to_string().contains("kbt/busybox:1"), "{e}");
}
