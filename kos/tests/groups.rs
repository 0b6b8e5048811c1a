//! docker's grouped commands (`container ...`, `image ...`) as aliases of the
//! top-level ones, the commands only they had (diff, export, history, prune),
//! and `--format` as docker 28 prints it: `{{.Label "key"}}` and the key
//! order of `--format json`, each compared with the docker CLI on one kosd.

mod common;

use common::*;

fn code(o: &std::process::Output) -> Option<i32> {
    o.status.code()
}

/// kos and docker give the same exit code, stdout and stderr.
fn same(d: &Daemon, args: &[&str]) {
    let k = d.kos(args);
    let dk = d.docker(args);
    assert_eq!(
        (code(&k), out(&k), err(&k)),
        (code(&dk), out(&dk), err(&dk)),
        "{args:?}"
    );
}

/// The keys of a JSON object line, in order.
fn keys(line: &str) -> Vec<String> {
    // serde_json sorts keys; the order is read from the text itself.
    let v: serde_json::Value = serde_json::from_str(line).expect("json line");
    let mut ks: Vec<(usize, String)> = v
        .as_object()
        .expect("object")
        .keys()
        .map(|k| {
            let pos = line.find(&format!("\"{k}\":")).expect("key in the line");
            (pos, k.clone())
        })
        .collect();
    ks.sort();
    ks.into_iter().map(|(_, k)| k).collect()
}

#[test]
fn container_and_image_groups_are_aliases() {
    let (d, _r, img) = setup("grp");
    let name = uniq("g");
    let id = d
        .kos_ok(&[
            "container",
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            &name,
            "-l",
            "lab=one",
            &img,
            "sh",
            "-c",
            "echo hi > /f; sleep 300",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64, "{id}");
    assert!(eventually(10, || d.kos_ok(&[
        "container",
        "exec",
        &name,
        "cat",
        "/f"
    ]) == "hi\n"));
    for alias in ["ls", "list", "ps"] {
        let o = d.kos_ok(&["container", alias, "--format", "{{.Names}}"]);
        assert_eq!(o, format!("{name}\n"), "container {alias}");
    }
    same(
        &d,
        &[
            "container",
            "ls",
            "-a",
            "--format",
            "{{.Names}} {{.Image}} {{.Command}}",
        ],
    );
    same(
        &d,
        &[
            "container",
            "inspect",
            "-f",
            "{{.Name}} {{.Config.Labels.lab}}",
            &name,
        ],
    );
    // --type is implied: an image name is not a container.
    same(&d, &["container", "inspect", &img]);
    same(&d, &["image", "inspect", "-f", "{{.Id}}", &img]);
    same(&d, &["image", "inspect", &name]);
    same(&d, &["image", "ls"]);
    same(&d, &["image", "list", "-q"]);
    same(&d, &["image", "history", &img]);
    same(
        &d,
        &["image", "history", "--no-trunc", "--human=false", &img],
    );
    same(&d, &["history", "-q", &img]);
    same(&d, &["container", "diff", &name]);
    same(&d, &["diff", &name]);
    same(&d, &["container", "port", &name]);
    same(&d, &["container", "top", &name]);

    // export: the container's files as a tar (and docker's refusal of a terminal is tty-only).
    let dir = TempDir::new("exp");
    let tarf = dir.path("c.tar");
    d.kos_ok(&[
        "container",
        "export",
        "-o",
        tarf.to_str().expect("path"),
        &name,
    ]);
    let mut ar = tar::Archive::new(std::fs::File::open(&tarf).expect("tar"));
    let names: Vec<String> = ar
        .entries()
        .expect("entries")
        .map(|e| {
            e.expect("entry")
                .path()
                .expect("path")
                .display()
                .to_string()
                .trim_start_matches("./")
                .to_string()
        })
        .collect();
    assert!(names.iter().any(|n| n == "bin/busybox"), "{names:?}");
    assert!(names.iter().any(|n| n == "f"), "{names:?}");
    let o = d.kos(&["export", &name]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(o.stdout.len() > 512);

    // Stopped containers go with container prune; the output as docker's.
    d.kos_ok(&["container", "stop", "-t", "0", &name]);
    let pruned = d.kos_ok(&["container", "prune", "-f"]);
    assert_eq!(
        pruned,
        format!("Deleted Containers:\n{id}\n\nTotal reclaimed space: 3B\n"),
        "the 3 bytes of /f"
    );
    same(&d, &["container", "prune", "-f"]);
    same(&d, &["container", "rm", &name]);

    // image rm / tag / prune through the group.
    let tagged = format!("{img}-copy");
    d.kos_ok(&["image", "tag", &img, &tagged]);
    assert_eq!(
        d.kos_ok(&["image", "rm", &tagged]),
        format!("Untagged: {tagged}\n")
    );
    same(&d, &["image", "prune", "-f"]);
    let o = d.kos(&["image", "remove", "nope:1"]);
    assert_eq!(code(&o), Some(1));
    // Flags of the grouped run are run's: a bad one exits 125 like docker.
    let k = d.kos(&["container", "run", "--bogus", &img]);
    assert_eq!(code(&k), Some(125));
}

#[test]
fn label_method_and_json_order_like_docker() {
    let (d, _r, img) = setup("fmt");
    let name = uniq("f");
    let vol = uniq("v");
    let net = uniq("n");
    d.kos_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        &name,
        "-l",
        "lab=one",
        "-l",
        "b=two",
        &img,
        "sleep",
        "300",
    ]);
    d.kos_ok(&["volume", "create", "--label", "vk=vv", &vol]);
    d.kos_ok(&["network", "create", "--label", "nk=nv", &net]);
    let filt_c = format!("name={name}");
    let filt_v = format!("name={vol}");
    let filt_n = format!("name={net}");
    for f in [
        "{{.Label \"lab\"}}|{{.Label \"nope\"}}|",
        "table {{.Names}}\t{{.Label \"lab\"}}",
        "{{\"b\" | .Label}}",
    ] {
        same(&d, &["ps", "--filter", &filt_c, "--format", f]);
    }
    // Wrong use of the method: the same message, Go's position included.
    for f in ["{{.Label}}", "x {{.Label \"a\" \"b\"}}"] {
        same(&d, &["ps", "--filter", &filt_c, "--format", f]);
    }
    for f in [
        "{{.Name}} {{.Label \"vk\"}}|",
        "table {{.Name}}\t{{.Label \"vk\"}}",
    ] {
        same(&d, &["volume", "ls", "--filter", &filt_v, "--format", f]);
    }
    for f in [
        "{{.Name}} {{.Label \"nk\"}}|",
        "table {{.Name}}\t{{.Label \"nk\"}}",
    ] {
        same(&d, &["network", "ls", "--filter", &filt_n, "--format", f]);
    }
    // A bad template fails as docker's: message, Go's position, the row type.
    for args in [
        vec!["ps", "--filter", &filt_c],
        vec!["ps", "-q", "--filter", "name=nothing-here"],
        vec!["images"],
        vec!["volume", "ls"],
        vec!["network", "ls"],
        vec!["image", "history", &img],
        vec!["system", "df"],
    ] {
        for f in ["x {{.Nope}}", "table x {{.Nope}}", "{{.Nope.X}}"] {
            let mut a = args.clone();
            a.extend(["--format", f]);
            same(&d, &a);
        }
    }
    // Nothing listed: nothing executes the template (a table shows its header).
    same(
        &d,
        &[
            "volume",
            "ls",
            "--filter",
            "name=nothing-here",
            "--format",
            "table x {{.Nope}}",
        ],
    );
    same(
        &d,
        &[
            "network",
            "ls",
            "--filter",
            "name=nothing-here",
            "--format",
            "{{.Nope}}",
        ],
    );
    // Images have no Label method in docker: both refuse it.
    let k = d.kos(&["images", "--format", "{{.Label \"x\"}}"]);
    let dk = d.docker(&["images", "--format", "{{.Label \"x\"}}"]);
    assert_eq!(code(&k), code(&dk));
    assert!(
        err(&k).contains("can't evaluate field Label"),
        "{}",
        err(&k)
    );

    // --format json: the same keys in the same order as docker's, and the
    // same values where they do not move with the clock.
    for args in [
        vec!["ps", "--filter", &filt_c],
        vec!["images"],
        vec!["volume", "ls", "--filter", &filt_v],
        vec!["network", "ls", "--filter", &filt_n],
        vec!["image", "history", &img],
        vec!["system", "df"],
    ] {
        let mut a = args.clone();
        a.extend(["--format", "json"]);
        let k = d.kos_ok(&a);
        let dk = d.docker_ok(&a);
        let (kl, dl): (Vec<&str>, Vec<&str>) = (k.lines().collect(), dk.lines().collect());
        assert_eq!(kl.len(), dl.len(), "{a:?}\n{k}\n{dk}");
        for (x, y) in kl.iter().zip(&dl) {
            assert_eq!(keys(x), keys(y), "{a:?}");
            let (xv, yv): (serde_json::Value, serde_json::Value) = (
                serde_json::from_str(x).expect("json"),
                serde_json::from_str(y).expect("json"),
            );
            for (key, v) in xv.as_object().expect("object") {
                if ["RunningFor", "Status", "CreatedSince"].contains(&key.as_str()) {
                    continue;
                }
                assert_eq!(Some(v), yv.get(key), "{a:?} {key}");
            }
        }
    }
    // version and info: docker's struct order for every key both print.
    for cmd in ["version", "info"] {
        let k = d.kos_ok(&[cmd, "--format", "json"]);
        let dk = d.docker_ok(&[cmd, "--format", "json"]);
        let (kk, dkk) = (keys(k.trim()), keys(dk.trim()));
        let common: Vec<&String> = kk.iter().filter(|x| dkk.contains(x)).collect();
        let theirs: Vec<&String> = dkk.iter().filter(|x| kk.contains(x)).collect();
        assert_eq!(common, theirs, "{cmd}");
        assert!(common.len() >= 2, "{cmd}: {kk:?}");
        if cmd == "info" {
            // Every field docker prints is there (zero when kosd has no value).
            assert_eq!(common.len(), dkk.len(), "{kk:?}\n{dkk:?}");
        }
    }
    // system df -v: docker's four tables (a clock tick may move "N seconds ago": retried).
    let df = ["system", "df", "-v"];
    assert!(
        eventually(5, || d.kos_ok(&df) == d.docker_ok(&df)),
        "{}\n{}",
        d.kos_ok(&df),
        d.docker_ok(&df)
    );
    // inspect's json: one line, the array of the daemon's objects.
    same(&d, &["inspect", "--format", "json", &name, &img]);
    same(&d, &["volume", "inspect", "--format", "json", &vol, &vol]);
    same(&d, &["network", "inspect", "--format", "json", &net]);
    same(&d, &["volume", "inspect", "--format", "json", "nope"]);
    // events' json: docker's Message field order.
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("time")
            .as_secs()
    };
    let since = (now() - 1).to_string();
    d.kos_ok(&["restart", "-t", "0", &name]);
    let until = (now() + 1).to_string();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    // Container events only: kosd also reports host device uevents (another test's
    // bridge coming and going), which are not what is compared here.
    let ev = [
        "events",
        "--format",
        "json",
        "--filter",
        "type=container",
        "--since",
        &since,
        "--until",
        &until,
    ];
    let k = d.kos_ok(&ev);
    assert!(k.lines().count() >= 3, "{k}");
    assert!(k.starts_with("{\"status\":"), "{k}");
    assert_eq!(k, d.docker_ok(&ev));
    let k = d.kos_ok(&["version", "--format", "json"]);
    let server = &k[k.find("\"Server\":").expect("server")..];
    assert!(server.starts_with("\"Server\":{\"Platform\":"), "{server}");
    d.kos_ok(&["rm", "-f", &name]);
    d.kos_ok(&["volume", "rm", &vol]);
    d.kos_ok(&["network", "rm", &net]);
}
