//! Container commands end to end against a kosd, side by side with the
//! docker CLI on the same daemon where docker's output is the reference.

mod common;

use common::*;

fn code(o: &std::process::Output) -> Option<i32> {
    o.status.code()
}

#[test]
fn run_exit_codes_streams_and_stdin() {
    let (d, _r, img) = setup("run");
    let o = d.kos(&["run", "--rm", "--network", "none", &img, "echo", "hello"]);
    assert_eq!(
        (code(&o), out(&o).as_str()),
        (Some(0), "hello\n"),
        "{}",
        err(&o)
    );

    let o = d.kos(&[
        "run",
        "--rm",
        "--network",
        "none",
        &img,
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(code(&o), Some(3));
    assert_eq!((out(&o).as_str(), err(&o).as_str()), ("out\n", "err\n"));

    // Not found and not executable: docker's 127 and 126, the same as docker gets.
    for cmd in [&["no-such-command"][..], &["/etc"][..]] {
        let mut a = vec!["run", "--rm", "--network", "none", img.as_str()];
        a.extend_from_slice(cmd);
        let k = d.kos(&a);
        let dk = d.docker(&a);
        assert_eq!(code(&k), code(&dk), "kos: {} docker: {}", err(&k), err(&dk));
        assert!(
            matches!(code(&k), Some(126 | 127)),
            "{:?} {}",
            code(&k),
            err(&k)
        );
        assert!(
            err(&k).starts_with("kos: Error response from daemon: "),
            "{}",
            err(&k)
        );
    }

    // Stdin copied in and half-closed: cat ends.
    let o = d.kos_in(
        &["run", "--rm", "-i", "--network", "none", &img, "cat"],
        b"piped data\n",
    );
    assert_eq!(
        (code(&o), out(&o).as_str()),
        (Some(0), "piped data\n"),
        "{}",
        err(&o)
    );

    // Flag errors are docker's 125.
    assert_eq!(code(&d.kos(&["run", "--no-such-flag", &img])), Some(125));
    assert_eq!(code(&d.docker(&["run", "--no-such-flag", &img])), Some(125));
    // A bad value for a flag: 125 before anything is created.
    let o = d.kos(&["run", "--rm", "-p", "80/icmp", &img, "true"]);
    assert_eq!(code(&o), Some(125), "{}", err(&o));
    assert!(err(&o).contains("invalid proto"), "{}", err(&o));

    // A missing image is pulled first (missing repository: 125 and docker's note).
    let o = d.kos(&[
        "run",
        "--rm",
        "--network",
        "none",
        &_r.name("absent:1"),
        "true",
    ]);
    assert_eq!(code(&o), Some(125));
    assert!(err(&o).contains("Unable to find image"), "{}", err(&o));

    assert_eq!(d.kos_ok(&["ps", "-aq"]), "");
}

#[test]
fn ps_and_inspect_match_docker() {
    let (d, _r, img) = setup("ps");
    let id = d.kos_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "web",
        "-l",
        "tier=front",
        "-e",
        "A=1",
        &img,
        "sh",
        "-c",
        "while true; do sleep 1; done",
    ]);
    let id = id.trim().to_string();
    assert_eq!(id.len(), 64, "{id}");
    d.kos_ok(&[
        "create",
        "--network",
        "none",
        "--name",
        "idle",
        &img,
        "true",
    ]);

    for args in [
        &["ps"][..],
        &["ps", "-a"],
        &["ps", "-q"],
        &["ps", "-aq", "--no-trunc"],
        &["ps", "-n", "1", "-q"],
        &["ps", "-l", "--format", "{{.Names}}"],
        &["ps", "-a", "--filter", "label=tier=front", "--format", "{{.ID}} {{.Names}}"],
        &["ps", "-a", "--filter", "status=created", "-q"],
        &["ps", "-a", "--format", "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.Names}}\t{{.State}}\t{{.Labels}}\t{{.Networks}}"],
        &["ps", "--no-trunc", "--format", "{{.Command}}|{{.Ports}}|{{.Mounts}}|{{.LocalVolumes}}"],
    ] {
        let k = d.kos(args);
        let dk = d.docker(args);
        // Time columns can tick between the two calls: compare everything else.
        if args == ["ps"] || args == ["ps", "-a"] {
            let kl: Vec<String> = out(&k).lines().map(String::from).collect();
            let dl: Vec<String> = out(&dk).lines().map(String::from).collect();
            assert_eq!(kl.len(), dl.len(), "kos:\n{}\ndocker:\n{}", out(&k), out(&dk));
            // The header: the same columns, laid out as docker lays them out up to CREATED,
            // whose width follows the widest "N seconds ago" of that moment.
            let cols = |h: &str| -> Vec<String> {
                h.split("  ")
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(String::from)
                    .collect()
            };
            assert_eq!(cols(&kl[0]), cols(&dl[0]), "header columns");
            let before_created = |h: &str| h.find("CREATED").map(|i| h[..i].to_string());
            assert_eq!(before_created(&kl[0]), before_created(&dl[0]), "header layout");
            assert!(kl[0].starts_with("CONTAINER ID   IMAGE"), "{}", kl[0]);
            for (a, b) in kl.iter().zip(&dl).skip(1) {
                assert_eq!(a[..12], b[..12]);
                assert!(a.ends_with("web") || a.ends_with("idle"), "{a}");
                assert_eq!(a.split_whitespace().last(), b.split_whitespace().last());
            }
            continue;
        }
        assert_eq!((code(&k), out(&k)), (code(&dk), out(&dk)), "{args:?}\nkos stderr: {}\ndocker stderr: {}", err(&k), err(&dk));
    }

    // --format json: the same fields and values, times aside.
    let parse = |s: String| -> Vec<serde_json::Value> {
        s.lines()
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    };
    let kj = parse(d.kos_ok(&["ps", "-a", "--format", "json"]));
    let dj = parse(d.docker_ok(&["ps", "-a", "--format", "json"]));
    assert_eq!(kj.len(), 2);
    for (a, b) in kj.iter().zip(&dj) {
        let (a, b) = (a.as_object().expect("obj"), b.as_object().expect("obj"));
        let ka: Vec<&String> = a.keys().collect();
        let kb: Vec<&String> = b.keys().collect();
        assert_eq!(ka, kb);
        for k in a
            .keys()
            .filter(|k| !["RunningFor", "Status", "Size"].contains(&k.as_str()))
        {
            assert_eq!(a[k], b[k], "field {k}");
        }
    }

    // inspect: the same bytes as docker prints, for one and for two objects.
    for args in [&["inspect", "web"][..], &["inspect", "web", "idle"]] {
        let k = d.kos_ok(args);
        let dk = d.docker_ok(args);
        assert_eq!(k, dk, "{args:?}");
    }
    let t = "{{.State.Running}} {{.Name}} {{json .Config.Labels}} {{range .Config.Env}}[{{.}}]{{end}} {{index .Config.Labels \"tier\"}}";
    assert_eq!(
        d.kos_ok(&["inspect", "-f", t, "web"]),
        d.docker_ok(&["inspect", "-f", t, "web"])
    );
    assert_eq!(
        d.kos_ok(&["inspect", "--type", "container", "-f", "{{.Id}}", "web"])
            .trim(),
        id
    );
    // Missing objects: docker's messages, stdout and exit code.
    for args in [
        &["inspect", "nope"][..],
        &["inspect", "web", "nope"],
        &["inspect", "--type", "container", "nope"],
    ] {
        let k = d.kos(args);
        let dk = d.docker(args);
        assert_eq!(code(&k), code(&dk), "{args:?}");
        assert_eq!(out(&k), out(&dk), "{args:?}");
        assert_eq!(err(&k), err(&dk), "{args:?}");
    }
    d.kos_ok(&["rm", "-f", "web", "idle"]);
}

#[test]
fn lifecycle_commands() {
    let (d, _r, img) = setup("life");
    d.kos_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "svc",
        "--stop-timeout",
        "1",
        &img,
        "sh",
        "-c",
        "trap 'exit 0' TERM; while true; do sleep 0.1; done",
    ]);
    assert_eq!(d.kos_ok(&["pause", "svc"]), "svc\n");
    assert_eq!(
        d.kos_ok(&["inspect", "-f", "{{.State.Status}}", "svc"]),
        "paused\n"
    );
    assert_eq!(d.kos_ok(&["unpause", "svc"]), "svc\n");
    assert_eq!(
        d.kos_ok(&["inspect", "-f", "{{.State.Status}}", "svc"]),
        "running\n"
    );
    let top_k = d.kos_ok(&["top", "svc"]);
    let top_d = d.docker_ok(&["top", "svc"]);
    assert_eq!(top_k.lines().next(), top_d.lines().next(), "top header");
    assert!(top_k.contains("sh -c"), "{top_k}");
    assert_eq!(d.kos_ok(&["stop", "svc"]), "svc\n");
    assert_eq!(d.kos_ok(&["wait", "svc"]), "0\n");
    assert_eq!(d.kos_ok(&["start", "svc"]), "svc\n");
    assert_eq!(d.kos_ok(&["restart", "-t", "1", "svc"]), "svc\n");
    d.kos_ok(&["rename", "svc", "svc2"]);
    assert_eq!(d.kos_ok(&["inspect", "-f", "{{.Name}}", "svc2"]), "/svc2\n");
    assert_eq!(d.kos_ok(&["kill", "-s", "KILL", "svc2"]), "svc2\n");
    assert_eq!(d.kos_ok(&["wait", "svc2"]), "137\n");
    // port on a container publishing nothing: both print nothing; a named port is an error.
    for args in [&["port", "svc2"][..], &["port", "svc2", "80"]] {
        let k = d.kos(args);
        let dk = d.docker(args);
        assert_eq!(
            (code(&k), out(&k), err(&k)),
            (code(&dk), out(&dk), err(&dk)),
            "{args:?}"
        );
    }
    assert_eq!(d.kos_ok(&["rm", "svc2"]), "svc2\n");
    // Errors per name, the others still done, exit 1: as docker.
    d.kos_ok(&["create", "--network", "none", "--name", "a1", &img, "true"]);
    let k = d.kos(&["rm", "nope", "a1"]);
    assert_eq!(code(&k), Some(1));
    assert_eq!(out(&k), "a1\n");
    let dk = d.docker(&["rm", "nope"]);
    assert_eq!(err(&k), err(&dk));
    for args in [
        &["stop", "nope"][..],
        &["kill", "nope"],
        &["pause", "nope"],
        &["wait", "nope"],
        &["start", "nope"],
        &["logs", "nope"],
        &["top", "nope"],
    ] {
        let k = d.kos(args);
        let dk = d.docker(args);
        assert_eq!(code(&k), code(&dk), "{args:?}: {} / {}", err(&k), err(&dk));
        assert!(
            err(&k).contains("No such container: nope"),
            "{args:?}: {}",
            err(&k)
        );
    }
    // create + start -a: the container's own exit code.
    d.kos_ok(&[
        "create",
        "--network",
        "none",
        "--name",
        "c4",
        &img,
        "sh",
        "-c",
        "echo from-c4; exit 4",
    ]);
    let o = d.kos(&["start", "-a", "c4"]);
    assert_eq!(
        (code(&o), out(&o).as_str()),
        (Some(4), "from-c4\n"),
        "{}",
        err(&o)
    );
    d.kos_ok(&["rm", "c4"]);
    assert_eq!(d.kos_ok(&["ps", "-aq"]), "");
}

#[test]
fn logs_and_exec() {
    let (d, _r, img) = setup("exec");
    d.kos_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "box",
        &img,
        "sh",
        "-c",
        "echo one; echo two >&2; echo three; sleep 600",
    ]);
    assert!(eventually(10, || out(&d.kos(&["logs", "box"])).contains("three")));
    for args in [
        &["logs", "box"][..],
        &["logs", "--tail", "1", "box"],
        &["logs", "-n", "0", "box"],
    ] {
        let k = d.kos(args);
        let dk = d.docker(args);
        assert_eq!(
            (code(&k), out(&k), err(&k)),
            (code(&dk), out(&dk), err(&dk)),
            "{args:?}"
        );
    }
    let k = d.kos_ok(&["logs", "-t", "box"]);
    assert!(
        k.lines()
            .all(|l| l.len() > 31 && l.as_bytes()[4] == b'-' && l.contains("Z ")),
        "{k}"
    );
    let o = d.kos(&["logs", "--since", "1h", "box"]);
    assert_eq!(out(&o), "one\nthree\n");

    assert_eq!(d.kos_ok(&["exec", "box", "echo", "hi"]), "hi\n");
    let o = d.kos(&["exec", "box", "sh", "-c", "echo e >&2; exit 7"]);
    assert_eq!((code(&o), err(&o).as_str()), (Some(7), "e\n"));
    assert!(d
        .kos_ok(&["exec", "-e", "GREETING=hey", "box", "env"])
        .contains("GREETING=hey\n"));
    assert_eq!(d.kos_ok(&["exec", "-w", "/tmp", "box", "pwd"]), "/tmp\n");
    assert_eq!(
        d.kos_ok(&["exec", "-u", "65534", "box", "id", "-u"]),
        "65534\n"
    );
    let o = d.kos_in(&["exec", "-i", "box", "sh", "-c", "cat; echo end"], b"in\n");
    assert_eq!(out(&o), "in\nend\n");
    assert_eq!(
        d.kos_ok(&["exec", "-d", "box", "sh", "-c", "echo x > /tmp/detached"]),
        ""
    );
    assert!(eventually(10, || d
        .kos(&["exec", "box", "cat", "/tmp/detached"])
        .status
        .success()));
    // A command that cannot run: docker's 127 and the daemon's reason, which dockerd (and
    // so kosd) sends inside the stream, where the CLI prints it on stdout.
    let k = d.kos(&["exec", "box", "no-such-binary"]);
    let said = format!("{}{}", out(&k), err(&k));
    assert_eq!(code(&k), Some(127), "{said}");
    assert!(said.contains("executable file not found"), "{said}");
    d.kos_ok(&["rm", "-f", "box"]);
}

#[test]
fn cp_both_ways_and_tar_streams() {
    let (d, _r, img) = setup("cp");
    d.kos_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "files",
        &img,
        "sleep",
        "600",
    ]);
    let local = TempDir::new("cp");
    std::fs::write(local.path("note.txt"), "hello cp\n").expect("write");
    std::fs::create_dir_all(local.path("tree/sub")).expect("mkdir");
    std::fs::write(local.path("tree/sub/f"), "deep\n").expect("write");

    let src = local.path("note.txt");
    d.kos_ok(&["cp", src.to_str().expect("utf8"), "files:/tmp/"]);
    assert_eq!(
        d.kos_ok(&["exec", "files", "cat", "/tmp/note.txt"]),
        "hello cp\n"
    );
    d.kos_ok(&["cp", src.to_str().expect("utf8"), "files:/tmp/renamed"]);
    assert_eq!(
        d.kos_ok(&["exec", "files", "cat", "/tmp/renamed"]),
        "hello cp\n"
    );
    d.kos_ok(&[
        "cp",
        local.path("tree").to_str().expect("utf8"),
        "files:/tmp/",
    ]);
    assert_eq!(
        d.kos_ok(&["exec", "files", "cat", "/tmp/tree/sub/f"]),
        "deep\n"
    );

    // Out of the container: into a directory, under a new name, a directory.
    let back = TempDir::new("cpback");
    d.kos_ok(&["cp", "files:/etc/passwd", back.0.to_str().expect("utf8")]);
    assert!(std::fs::read_to_string(back.path("passwd"))
        .expect("passwd")
        .starts_with("root:x:0:0"));
    d.kos_ok(&[
        "cp",
        "files:/tmp/note.txt",
        back.path("n2").to_str().expect("utf8"),
    ]);
    assert_eq!(
        std::fs::read_to_string(back.path("n2")).expect("n2"),
        "hello cp\n"
    );
    d.kos_ok(&[
        "cp",
        "files:/tmp/tree",
        back.path("t2").to_str().expect("utf8"),
    ]);
    assert_eq!(
        std::fs::read_to_string(back.path("t2/sub/f")).expect("t2"),
        "deep\n"
    );
    assert!(!back.0.read_dir().expect("ls").any(|e| e
        .expect("e")
        .file_name()
        .to_string_lossy()
        .starts_with(".kos-cp")));

    // `-`: a tar stream on stdout, and one on stdin.
    let o = d.kos(&["cp", "files:/etc/group", "-"]);
    assert!(o.status.success());
    let mut ar = tar::Archive::new(&o.stdout[..]);
    let names: Vec<String> = ar
        .entries()
        .expect("tar")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(names, ["group"]);
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(4);
    h.set_mode(0o644);
    b.append_data(&mut h, "fromstdin", &b"tar\n"[..])
        .expect("append");
    let o = d.kos_in(&["cp", "-", "files:/tmp"], &b.into_inner().expect("tar"));
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(
        d.kos_ok(&["exec", "files", "cat", "/tmp/fromstdin"]),
        "tar\n"
    );

    // Errors as docker's: missing path in the container, missing container.
    for args in [
        &["cp", "files:/nope", "/tmp"][..],
        &["cp", "ghost:/etc", "/tmp"],
    ] {
        let k = d.kos(args);
        let dk = d.docker(args);
        assert_eq!((code(&k), err(&k)), (code(&dk), err(&dk)), "{args:?}");
    }
    d.kos_ok(&["rm", "-f", "files"]);
}

#[test]
fn stats_once_and_formats() {
    let (d, _r, img) = setup("stats");
    d.kos_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "busy",
        "-m",
        "64m",
        &img,
        "sleep",
        "600",
    ]);
    let k = d.kos_ok(&["stats", "--no-stream", "busy"]);
    let dk = d.docker_ok(&["stats", "--no-stream", "busy"]);
    let kl: Vec<&str> = k.lines().collect();
    let dl: Vec<&str> = dk.lines().collect();
    assert_eq!(kl[0], dl[0], "header");
    assert_eq!(
        kl[0]
            .split("   ")
            .filter(|s| !s.is_empty())
            .map(str::trim)
            .collect::<Vec<_>>(),
        [
            "CONTAINER ID",
            "NAME",
            "CPU %",
            "MEM USAGE / LIMIT",
            "MEM %",
            "NET I/O",
            "BLOCK I/O",
            "PIDS"
        ]
    );
    assert_eq!(kl.len(), 2);
    assert!(
        kl[1].contains("busy") && kl[1].contains("/ 64MiB"),
        "{}",
        kl[1]
    );
    let f = "{{.Name}} {{.PIDs}} {{.Container}}";
    assert_eq!(
        d.kos_ok(&["stats", "--no-stream", "--format", f, "busy"]),
        d.docker_ok(&["stats", "--no-stream", "--format", f, "busy"])
    );
    let j: serde_json::Value = serde_json::from_str(
        d.kos_ok(&["stats", "--no-stream", "--format", "json", "busy"])
            .trim(),
    )
    .expect("json");
    let dj: serde_json::Value = serde_json::from_str(
        d.docker_ok(&["stats", "--no-stream", "--format", "json", "busy"])
            .trim(),
    )
    .expect("json");
    let keys = |v: &serde_json::Value| {
        v.as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>())
            .unwrap_or_default()
    };
    assert_eq!(keys(&j), keys(&dj));
    let o = d.kos(&["stats", "--no-stream", "ghost"]);
    assert_eq!(code(&o), Some(1));
    d.kos_ok(&["rm", "-f", "busy"]);
}
