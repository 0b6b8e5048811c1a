//! Everything else: completions and man pages, version/info/events/df,
//! volumes, the commands whose endpoints kosd lacks (compared with docker),
//! errors without a daemon, and flag errors.

mod common;

use common::*;

fn code(o: &std::process::Output) -> Option<i32> {
    o.status.code()
}

#[test]
fn completions_and_man_pages() {
    for sh in ["bash", "zsh", "fish"] {
        let o = std::process::Command::new(bin("kos"))
            .args(["completion", sh])
            .output()
            .expect("kos");
        assert!(o.status.success());
        let s = out(&o);
        for word in [
            "run", "ps", "images", "volume", "detach", "format", "publish",
        ] {
            assert!(s.contains(word), "{sh} completion lacks {word}");
        }
    }
    let o = std::process::Command::new(bin("kos"))
        .args(["completion", "tcsh"])
        .output()
        .expect("kos");
    assert_eq!(code(&o), Some(125));
    let dir = TempDir::new("man");
    let o = std::process::Command::new(bin("kos"))
        .arg("man")
        .arg(&dir.0)
        .output()
        .expect("kos");
    assert!(o.status.success(), "{}", err(&o));
    let top = std::fs::read_to_string(dir.path("kos.1")).expect("kos.1");
    assert!(
        top.contains(".TH") && top.contains("run") && top.contains("images"),
        "{top}"
    );
    for page in [
        "kos-run.1",
        "kos-ps.1",
        "kos-volume-ls.1",
        "kos-network-create.1",
        "kos-system-df.1",
    ] {
        let p = std::fs::read_to_string(dir.path(page)).unwrap_or_default();
        assert!(p.len() > 200 && p.contains(".TH"), "{page}: {p}");
    }
    assert!(std::fs::read_to_string(dir.path("kos-run.1"))
        .unwrap_or_default()
        .contains("publish"));
    // --help reads well and exits 0.
    let o = std::process::Command::new(bin("kos"))
        .args(["run", "--help"])
        .output()
        .expect("kos");
    assert!(
        o.status.success() && out(&o).contains("--publish"),
        "{}",
        out(&o)
    );
}

#[test]
fn daemon_address_and_errors() {
    let gone = "unix:///nonexistent/kos.sock";
    let o = std::process::Command::new(bin("kos"))
        .args(["-H", gone, "ps"])
        .output()
        .expect("kos");
    assert_eq!(code(&o), Some(1));
    assert!(
        err(&o).contains("Cannot connect to the kos daemon at unix:///nonexistent/kos.sock"),
        "{}",
        err(&o)
    );
    let o = std::process::Command::new(bin("kos"))
        .args(["-H", gone, "run", "x"])
        .output()
        .expect("kos");
    assert_eq!(code(&o), Some(125), "{}", err(&o));
    let o = std::process::Command::new(bin("kos"))
        .args(["-H", "ssh://x", "ps"])
        .output()
        .expect("kos");
    assert_eq!(code(&o), Some(125));
    // KOS_HOST, then DOCKER_HOST.
    let d = Daemon::start();
    let o = std::process::Command::new(bin("kos"))
        .arg("ps")
        .env("KOS_HOST", d.host())
        .env("DOCKER_HOST", gone)
        .output()
        .expect("kos");
    assert!(o.status.success(), "{}", err(&o));
    let o = std::process::Command::new(bin("kos"))
        .arg("ps")
        .env_remove("KOS_HOST")
        .env("DOCKER_HOST", d.host())
        .output()
        .expect("kos");
    assert!(o.status.success(), "{}", err(&o));
    // An old API version pinned by the user is what goes on the wire.
    let o = d
        .kos_command()
        .arg("version")
        .arg("--format")
        .arg("{{.Client.APIVersion}}")
        .env("DOCKER_API_VERSION", "1.41")
        .output()
        .expect("kos");
    assert_eq!(out(&o), "1.41\n");
    let o = d
        .kos_command()
        .arg("ps")
        .env("DOCKER_API_VERSION", "1.12")
        .output()
        .expect("kos");
    assert_eq!(code(&o), Some(1));
    assert!(
        err(&o).contains("Error response from daemon: client version 1.12 is too old"),
        "{}",
        err(&o)
    );
    // Unknown commands and flags: 125, like docker's flag errors.
    assert_eq!(code(&d.kos(&["frobnicate"])), Some(125));
    assert_eq!(code(&d.kos(&["ps", "--bogus"])), Some(125));
    assert_eq!(code(&d.docker(&["ps", "--bogus"])), Some(125));
    // A bad template: exit 1 with the template's error, as docker.
    let k = d.kos(&["ps", "--format", "{{.Nope}}"]);
    let dk = d.docker(&["ps", "--format", "{{.Nope}}"]);
    assert_eq!(code(&k), code(&dk));
    assert!(
        err(&k).starts_with("failed to execute template: ")
            && err(&k).contains("can't evaluate field Nope"),
        "{}",
        err(&k)
    );
}

#[test]
fn version_info_df_events() {
    let (d, _r, img) = setup("sys");
    for f in [
        "{{.Server.Version}} {{.Server.APIVersion}} {{.Server.MinAPIVersion}}",
        "{{.Server.Os}}/{{.Server.Arch}}",
    ] {
        assert_eq!(
            d.kos_ok(&["version", "--format", f]),
            d.docker_ok(&["version", "--format", f])
        );
    }
    let v = d.kos_ok(&["version"]);
    assert!(
        v.contains("Server: KOS Engine")
            && v.contains("API version:      1.47 (minimum version 1.24)"),
        "{v}"
    );
    for f in [
        "{{.ServerVersion}} {{.Driver}} {{.Images}} {{.NCPU}}",
        "{{json .RegistryConfig.InsecureRegistryCIDRs}}",
    ] {
        assert_eq!(
            d.kos_ok(&["info", "--format", f]),
            d.docker_ok(&["info", "--format", f])
        );
    }
    let i = d.kos_ok(&["info"]);
    assert!(
        i.contains(" Images: 1\n") && i.contains(" Storage Driver: overlay2\n"),
        "{i}"
    );
    assert_eq!(d.kos_ok(&["system", "df"]), d.docker_ok(&["system", "df"]));
    assert!(d.kos_ok(&["system", "df"]).starts_with(
        "TYPE            TOTAL     ACTIVE    SIZE      RECLAIMABLE\nImages          1 "
    ));
    // Events in a closed window: the same lines as docker prints.
    let since = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs()
        - 1)
    .to_string();
    d.kos_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--name",
        "ev",
        &img,
        "true",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let until = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("time")
        .as_secs()
        .to_string();
    for extra in [
        &[][..],
        &["--filter", "event=start"],
        &[
            "--format",
            "{{.Type}} {{.Action}} {{.Actor.Attributes.name}}",
        ],
        &["--format", "json"],
    ] {
        let mut a = vec![
            "events",
            "--since",
            since.as_str(),
            "--until",
            until.as_str(),
        ];
        a.extend_from_slice(extra);
        let k = d.kos_ok(&a);
        let dk = d.docker_ok(&a);
        if extra.contains(&"json") {
            // The same objects; docker prints its structs' field order, kos sorted keys.
            let parse = |s: &str| {
                s.lines()
                    .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
                    .collect::<Vec<_>>()
            };
            assert_eq!(parse(&k), parse(&dk));
        } else {
            assert_eq!(k, dk, "{extra:?}");
        }
        assert!(!k.is_empty());
    }
    // system prune -f: the stopped container goes, docker's summary line.
    d.kos_ok(&["create", "--network", "none", "--name", "old", &img, "true"]);
    let p = d.kos_ok(&["system", "prune", "-f"]);
    assert!(
        p.starts_with("Deleted Containers:\n") && p.ends_with("Total reclaimed space: 0B\n"),
        "{p}"
    );
    assert_eq!(d.kos_ok(&["ps", "-aq"]), "");
    // Without -f and a "no": nothing is removed.
    d.kos_ok(&[
        "create",
        "--network",
        "none",
        "--name",
        "keep",
        &img,
        "true",
    ]);
    let o = d.kos_in(&["system", "prune"], b"n\n");
    assert!(
        out(&o).contains("Are you sure you want to continue? [y/N]"),
        "{}",
        out(&o)
    );
    assert_eq!(d.kos_ok(&["ps", "-aq"]).lines().count(), 1);
}

#[test]
fn volumes_like_docker() {
    let (d, _r, img) = setup("vol");
    assert_eq!(d.kos_ok(&["volume", "create", "data1"]), "data1\n");
    assert_eq!(
        d.kos_ok(&["volume", "create", "--label", "k=v", "data2"]),
        "data2\n"
    );
    for args in [
        &["volume", "ls"][..],
        &["volume", "ls", "-q"],
        &[
            "volume",
            "ls",
            "--format",
            "{{.Name}} {{.Driver}} {{.Labels}}",
        ],
        &["volume", "ls", "--filter", "label=k=v", "-q"],
        &["volume", "inspect", "data1"],
        &[
            "volume",
            "inspect",
            "-f",
            "{{.Name}} {{.Driver}}",
            "data1",
            "data2",
        ],
        &["volume", "inspect", "nope"],
    ] {
        let k = d.kos(args);
        let dk = d.docker(args);
        assert_eq!(
            (code(&k), out(&k), err(&k)),
            (code(&dk), out(&dk), err(&dk)),
            "{args:?}"
        );
    }
    assert!(d
        .kos_ok(&["volume", "ls"])
        .starts_with("DRIVER    VOLUME NAME\nlocal     data1\n"));
    // A volume in use cannot go; -v with a run, then rm.
    d.kos_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "data1:/data",
        &img,
        "sh",
        "-c",
        "echo kept > /data/f",
    ]);
    let o = d.kos(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--mount",
        "type=volume,source=data1,target=/d,readonly",
        &img,
        "cat",
        "/d/f",
    ]);
    assert_eq!(out(&o), "kept\n", "{}", err(&o));
    assert_eq!(
        d.kos_ok(&["volume", "rm", "data1", "data2"]),
        "data1\ndata2\n"
    );
    let k = d.kos(&["volume", "rm", "nope"]);
    let dk = d.docker(&["volume", "rm", "nope"]);
    assert_eq!((code(&k), err(&k)), (code(&dk), err(&dk)));
    d.kos_ok(&["volume", "create", "tmpvol"]);
    let p = d.kos_ok(&["volume", "prune", "-a", "-f"]);
    assert_eq!(p, "Deleted Volumes:\ntmpvol\n\nTotal reclaimed space: 0B\n");
}

#[test]
fn networks_like_docker() {
    let d = Daemon::start();
    let (kn, dn) = (uniq("kn"), uniq("dn"));
    assert!(!d.kos_ok(&["network", "create", &kn]).trim().is_empty());
    d.docker_ok(&["network", "create", &dn]);
    let sorted = |s: String| {
        let mut l: Vec<String> = s.lines().map(String::from).collect();
        let skip = usize::from(l.first().is_some_and(|h| h.starts_with("NETWORK ID")));
        l[skip..].sort();
        l
    };
    for args in [
        &["network", "ls"][..],
        &["network", "ls", "-q"],
        &["network", "ls", "--no-trunc", "--format", "{{.Name}} {{.Driver}} {{.Scope}} {{.IPv6}} {{.Internal}}"],
        &["network", "inspect", &kn],
        &["network", "inspect", "-f", "{{.Name}} {{.Driver}} {{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}} {{json .Labels}}", &kn, &dn],
        &["network", "inspect", "nope"],
        &["network", "rm", "nope"],
    ] {
        let k = d.kos(args);
        let dk = d.docker(args);
        assert_eq!((code(&k), sorted(out(&k)), err(&k)), (code(&dk), sorted(out(&dk)), err(&dk)), "{args:?}");
    }
    let header = d.kos_ok(&["network", "ls"]);
    assert!(
        header.starts_with("NETWORK ID")
            && header
                .lines()
                .next()
                .is_some_and(|h| h.contains("   NAME ")),
        "{header}"
    );
    assert_eq!(
        d.kos_ok(&["network", "rm", &kn, &dn]),
        format!("{kn}\n{dn}\n")
    );
    // rm -f of a missing network is not an error.
    assert_eq!(code(&d.kos(&["network", "rm", "-f", "nope"])), Some(0));
}

/// Commands whose endpoints kosd does not serve yet (or serves differently):
/// kos sends what docker sends, so both get the same answer from the daemon.
#[test]
fn same_answer_as_docker_for_update_build_login() {
    let (d, _r, img) = setup("lack");
    d.kos_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "--name",
        "u1",
        &img,
        "sleep",
        "600",
    ]);
    let ctx = TempDir::new("ctx");
    std::fs::write(ctx.path("Dockerfile"), format!("FROM {img}\nRUN echo hi\n"))
        .expect("dockerfile");
    let cdir = ctx.0.to_str().expect("utf8").to_string();
    for args in [
        &["update", "--memory", "64m", "u1"][..],
        &["update", "--cpus", "0.5", "u1"],
    ] {
        let k = d.kos(args);
        let dk = d.docker(args);
        assert_eq!(
            (code(&k), out(&k), err(&k)),
            (code(&dk), out(&dk), err(&dk)),
            "{args:?}"
        );
    }
    std::fs::write(ctx.path(".dockerignore"), "*.log\n").expect("dockerignore");
    std::fs::write(ctx.path("big.log"), vec![b'x'; 100_000]).expect("log");
    // Without -q: docker's "Sending build context" line, the ignored file left out.
    let k = d.kos(&["build", "-t", "built:0", &cdir]);
    let dk = d.docker_env(
        &["build", "-t", "built:0", &cdir],
        &[("DOCKER_BUILDKIT", "0")],
    );
    assert_eq!(
        code(&k),
        code(&dk),
        "build: kos {} / docker {}",
        err(&k),
        err(&dk)
    );
    // (docker's own line races with a daemon that refuses the upload early,
    // so only kos's is checked: the context with big.log left out.)
    assert!(
        out(&k).starts_with("Sending build context to Docker daemon  3.072kB\r\r\n"),
        "{:?}",
        out(&k)
    );
    let k = d.kos(&["build", "-q", "-t", "built:1", &cdir]);
    let dk = d.docker_env(
        &["build", "-q", "-t", "built:1", &cdir],
        &[("DOCKER_BUILDKIT", "0")],
    );
    assert_eq!(
        code(&k),
        code(&dk),
        "build: kos {} / docker {}",
        err(&k),
        err(&dk)
    );
    if k.status.success() {
        let id = out(&k).trim().to_string();
        assert!(id.starts_with("sha256:"), "{id}");
        assert_eq!(
            d.kos_ok(&["run", "--rm", "--network", "none", "built:1", "echo", "ok"]),
            "ok\n"
        );
    }
    // `-`: a Dockerfile alone, or a context tar, on stdin.
    let df = format!("FROM {img}\n");
    let k = d.kos_in(&["build", "-q", "-"], df.as_bytes());
    let dk = d.docker_in(&["build", "-q", "-"], df.as_bytes());
    assert_eq!(
        code(&k),
        code(&dk),
        "build -: kos {} / docker {}",
        err(&k),
        err(&dk)
    );
    let mut tb = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(df.len() as u64);
    h.set_mode(0o644);
    tb.append_data(&mut h, "Dockerfile", df.as_bytes())
        .expect("tar");
    let ctx_tar = tb.into_inner().expect("tar");
    let k = d.kos_in(&["build", "-q", "-"], &ctx_tar);
    assert_eq!(code(&k), code(&dk), "build - (tar): {}", err(&k));
    let home = TempDir::new("home");
    let k = piped(
        d.kos_command()
            .env("HOME", &home.0)
            .env("DOCKER_CONFIG", home.path(".docker"))
            .args(["login", "-u", "user", "--password-stdin", &_r.addr]),
        b"secret\n",
    );
    // docker falls back to logging in from the client and writing the
    // password into its config.json; kos only asks kosd (/auth), which has
    // no such endpoint yet: the daemon's answer, and nothing stored.
    if !k.status.success() {
        assert_eq!(code(&k), Some(1));
        assert!(
            err(&k).starts_with("Error response from daemon: "),
            "{}",
            err(&k)
        );
    }
    // kos never writes credentials on this side, whatever the daemon answered.
    assert_eq!(std::fs::read_dir(&home.0).expect("home").count(), 0);
    assert_eq!(
        d.kos_ok(&["logout", &_r.addr]),
        format!("Not logged in to {}\n", _r.addr)
    );
    d.kos_ok(&["rm", "-f", "u1"]);
}
