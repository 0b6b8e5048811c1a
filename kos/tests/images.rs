//! Image commands end to end: pull, images, tag, rmi, save, load, push and
//! inspect, compared with the docker CLI against the same kind of kosd.

mod common;

use common::*;

fn code(o: &std::process::Output) -> Option<i32> {
    o.status.code()
}

/// The lines sorted, a table's header kept first.
fn rows(s: &str) -> Vec<String> {
    let mut l: Vec<String> = s.lines().map(String::from).collect();
    let skip = usize::from(l.first().is_some_and(|h| h.starts_with("REPOSITORY")));
    l[skip..].sort();
    l
}

#[test]
fn pull_output_like_docker() {
    let reg = Registry::start();
    let img = reg.name("pulled:1");
    push_busybox(&img, &[], serde_json::json!({}));
    // Two fresh daemons, one pulled by kos and one by docker: the same lines.
    let a = Daemon::start();
    let b = Daemon::start();
    let k = a.kos(&["pull", &img]);
    let dk = b.docker(&["pull", &img]);
    assert_eq!(code(&k), Some(0), "{}", err(&k));
    assert_eq!(out(&k), out(&dk));
    assert!(out(&k).contains("Pull complete\n"), "{}", out(&k));
    assert!(out(&k).ends_with(&format!("{img}\n")), "{}", out(&k));
    // Again: up to date, the same on both.
    assert_eq!(a.kos_ok(&["pull", &img]), b.docker_ok(&["pull", &img]));
    assert_eq!(a.kos_ok(&["pull", "-q", &img]), format!("{img}\n"));
    assert_eq!(
        a.kos_ok(&["pull", "-q", &img]),
        b.docker_ok(&["pull", "-q", &img])
    );
    // A missing tag and a bad reference: docker's exit code and message.
    for args in [
        &["pull", &reg.name("pulled:nope")][..],
        &["pull", "UPPER/Case"],
    ] {
        let k = a.kos(args);
        let dk = b.docker(args);
        assert_eq!(code(&k), code(&dk), "{args:?}: {} / {}", err(&k), err(&dk));
        assert!(!err(&k).is_empty());
    }
    // The image is the same on both daemons, and inspect prints it the same way.
    let ki = a.kos_ok(&["inspect", &img]);
    let di = b.docker_ok(&["inspect", &img]);
    // Less the tag time and the layer directories, which are under each daemon's own
    // data root.
    let strip = |s: &str| {
        s.lines()
            .filter(|l| {
                !l.contains("\"Metadata\"")
                    && !l.contains("LastTagTime")
                    && !l.contains("Dir\": \"")
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&ki), strip(&di));
    assert_eq!(
        a.kos_ok(&["inspect", "-f", "{{.Id}}", &img]),
        b.docker_ok(&["inspect", "-f", "{{.Id}}", &img])
    );
}

#[test]
fn images_tag_rmi_save_load_push() {
    let (d, reg, img) = setup("imgs");
    d.kos_ok(&["tag", &img, "local/alias:v2"]);
    d.kos_ok(&["tag", &img, "local/plain"]);
    for args in [
        &["images"][..],
        &["images", "-q"],
        &["images", "-a"],
        &["images", "--digests"],
        &["images", "--no-trunc"],
        &["images", "local/alias"],
        &[
            "images",
            "--format",
            "{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}",
        ],
        &[
            "images",
            "--format",
            "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}",
        ],
        &["images", "--filter", "reference=local/*"],
    ] {
        let k = d.kos(args);
        let dk = d.docker(args);
        // docker orders the tags of one image as Go's map iteration does (at
        // random): the header first, then the same rows in any order.
        assert_eq!(
            (code(&k), rows(&out(&k))),
            (code(&dk), rows(&out(&dk))),
            "{args:?}\nkos err: {}\ndocker err: {}",
            err(&k),
            err(&dk)
        );
    }
    let table = d.kos_ok(&["images"]);
    assert!(table.starts_with("REPOSITORY"), "{table}");
    assert!(
        table.lines().next().is_some_and(|h| h
            .split("   ")
            .filter(|x| !x.is_empty())
            .map(str::trim)
            .eq(["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"])),
        "{table}"
    );
    let kj = rows(&d.kos_ok(&["images", "--format", "json"]));
    let dj = rows(&d.docker_ok(&["images", "--format", "json"]));
    assert_eq!(kj, dj);
    assert!(
        kj.len() == 3
            && kj
                .iter()
                .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "{kj:?}"
    );

    // rmi prints what it untagged/deleted as docker does.
    let k = d.kos_ok(&["rmi", "local/plain"]);
    assert_eq!(k, "Untagged: local/plain:latest\n");
    let k = d.kos(&["rmi", "nope:1"]);
    let dk = d.docker(&["rmi", "nope:1"]);
    assert_eq!((code(&k), err(&k)), (code(&dk), err(&dk)));

    // save / load round trip, file and streams.
    let dir = TempDir::new("save");
    let tarp = dir.path("img.tar");
    d.kos_ok(&["save", "-o", tarp.to_str().expect("utf8"), "local/alias:v2"]);
    assert!(std::fs::metadata(&tarp).expect("tar").len() > 100_000);
    d.kos_ok(&["rmi", "local/alias:v2"]);
    let k = d.kos_ok(&["load", "-i", tarp.to_str().expect("utf8")]);
    assert_eq!(k, "Loaded image: local/alias:v2\n");
    let data = std::fs::read(&tarp).expect("read");
    let k = d.kos_in(&["load"], &data);
    let dk = d.docker_in(&["load"], &data);
    assert_eq!((code(&k), out(&k)), (code(&dk), out(&dk)));
    let o = d.kos(&["save", "local/alias:v2"]);
    assert!(o.status.success() && o.stdout.len() > 100_000);
    let k = d.kos_in(&["load"], b"not a tar");
    let dk = d.docker_in(&["load"], b"not a tar");
    assert_eq!(code(&k), code(&dk), "{} / {}", err(&k), err(&dk));

    // push: the same lines docker prints for the same image.
    let target = reg.name("pushed:7");
    d.kos_ok(&["tag", &img, &target]);
    let k = d.kos(&["push", &target]);
    assert_eq!(code(&k), Some(0), "{}", err(&k));
    assert!(
        out(&k).contains(": Pushed\n") || out(&k).contains(": Layer already exists\n"),
        "{}",
        out(&k)
    );
    assert!(out(&k).contains("7: digest: sha256:"), "{}", out(&k));
    let dk = d.docker(&["push", &target]);
    assert_eq!(out(&k).lines().next(), out(&dk).lines().next());
    assert_eq!(out(&k).lines().last(), out(&dk).lines().last());
    assert_eq!(d.kos_ok(&["push", "-q", &target]), format!("{target}\n"));
    let k = d.kos(&["push", &reg.name("never-tagged:1")]);
    let dk = d.docker(&["push", &reg.name("never-tagged:1")]);
    assert_eq!((code(&k), err(&k)), (code(&dk), err(&dk)));
    // A run of the pushed image after removing it locally pulls it back.
    d.kos_ok(&["rmi", &target]);
    let o = d.kos(&["run", "--rm", "--network", "none", &target, "echo", "back"]);
    assert_eq!(out(&o), "back\n", "{}", err(&o));
    assert!(
        err(&o).contains(&format!("Unable to find image '{target}' locally")),
        "{}",
        err(&o)
    );
}
