//! Container lifecycle through the docker CLI: run, logs, exec, stop, rm...

mod common;

use common::*;

fn setup(tag: &str) -> (Kosd, Registry, String) {
    let k = Kosd::start(&[]);
    let reg = Registry::start();
    let img = reg.image(&format!("{tag}:1"));
    push_busybox(&img, &ImageSpec::default());
    k.docker_ok(&["pull", "-q", &img]);
    (k, reg, img)
}

#[test]
fn run_rm_exit_codes_and_output() {
    let (k, _reg, img) = setup("run");
    let out = k.docker_ok(&["run", "--rm", "--network", "none", &img, "echo", "hello"]);
    assert_eq!(out, "hello\n");
    let o = k.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        &img,
        "sh",
        "-c",
        "echo err >&2; exit 3",
    ]);
    assert_eq!(o.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&o.stderr), "err\n");
    // A program that cannot be run: the docker CLI's exit codes, which it derives from
    // the runtime's words as runc says them (127 not found, 126 not executable).
    for (prog, code) in [("/no/such/prog", 127), ("no-such-prog", 127), ("/etc", 126)] {
        let o = k.docker(&["run", "--rm", "--network", "none", &img, prog]);
        assert_eq!(
            o.status.code(),
            Some(code),
            "{prog}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let cg = k.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        &img,
        "cat",
        "/proc/self/cgroup",
    ]);
    assert!(cg.contains(&format!("/{}/", k.cgroup_parent)), "{cg}");
    // Nothing is left: no container, no shim, no mount.
    assert!(k.docker_ok(&["ps", "-aq"]).trim().is_empty());
    assert!(
        k.leftover_processes().is_empty(),
        "{:?}",
        k.leftover_processes()
    );
    // The last rootfs is unmounted with its directory's deletion, right after the answer.
    waits_until("no mount left", || {
        !std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .contains(&k.dir.0.to_string_lossy().to_string())
    });
}

/// `run --rm` answers with the exit code the record held when it went, even when the exit
/// and the removal land together between two looks of the waiter (runs side by side make
/// that likely).
#[test]
fn run_rm_exit_codes_survive_the_removal() {
    let (k, _reg, img) = setup("rmcodes");
    let codes: Vec<i32> = (1..=12).collect();
    let got: Vec<Option<i32>> = std::thread::scope(|s| {
        let runs: Vec<_> = codes
            .iter()
            .map(|code| {
                let (k, img) = (&k, &img);
                s.spawn(move || {
                    let script = format!("exit {code}");
                    k.docker(&["run", "--rm", "--network", "none", img, "sh", "-c", &script])
                        .status
                        .code()
                })
            })
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("run thread"))
            .collect()
    });
    let want: Vec<Option<i32>> = codes.iter().map(|c| Some(*c)).collect();
    assert_eq!(got, want);
    assert!(k.docker_ok(&["ps", "-aq"]).trim().is_empty());
}

#[test]
fn detached_lifecycle_inspect_ps_logs_exec() {
    let (k, _reg, img) = setup("life");
    let id = k
        .docker_ok(&[
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            "web",
            "--label",
            "tier=front",
            "-e",
            "GREETING=hi",
            "--hostname",
            "box",
            &img,
            "sh",
            "-c",
            "echo started; echo warn >&2; while true; do echo tick; sleep 0.2; done",
        ])
        .trim()
        .to_string();
    assert_eq!(id.len(), 64);
    let ps = k.docker_ok(&["ps", "--format", "{{.Names}} {{.Status}}"]);
    assert!(ps.starts_with("web Up"), "{ps}");
    let insp: serde_json::Value =
        serde_json::from_str(&k.docker_ok(&["inspect", "web"])).expect("inspect json");
    let c = &insp[0];
    assert_eq!(c["Id"], id.as_str());
    assert_eq!(c["Name"], "/web");
    assert_eq!(c["State"]["Status"], "running");
    assert_eq!(c["State"]["Running"], true);
    assert!(c["State"]["Pid"].as_i64().unwrap_or(0) > 0);
    assert_eq!(c["Config"]["Hostname"], "box");
    assert_eq!(c["Config"]["Labels"]["tier"], "front");
    assert_eq!(c["HostConfig"]["NetworkMode"], "none");
    // The rootfs's overlay directories: the image's layers below the container's own.
    let gd = &c["GraphDriver"]["Data"];
    let lowers: Vec<&str> = gd["LowerDir"]
        .as_str()
        .expect("LowerDir")
        .split(':')
        .collect();
    assert!(
        lowers
            .iter()
            .any(|l| std::path::Path::new(l).join("bin/busybox").is_file()),
        "{gd}"
    );
    assert!(std::path::Path::new(gd["UpperDir"].as_str().expect("UpperDir")).is_dir());
    assert!(c["Config"]["Env"]
        .as_array()
        .expect("env")
        .iter()
        .any(|v| v == "GREETING=hi"));
    // Filters.
    let f = k.docker_ok(&["ps", "-q", "--no-trunc", "--filter", "label=tier=front"]);
    assert_eq!(f.trim(), id);
    assert!(k
        .docker_ok(&["ps", "-q", "--filter", "label=tier=back"])
        .trim()
        .is_empty());
    assert_eq!(
        k.docker_ok(&["ps", "-q", "--no-trunc", "--filter", "name=we"])
            .trim(),
        id
    );
    assert_eq!(
        k.docker_ok(&["ps", "-q", "--no-trunc", "--filter", "status=running"])
            .trim(),
        id
    );
    // Logs: both streams, tail, timestamps.
    std::thread::sleep(std::time::Duration::from_millis(700));
    let o = k.docker(&["logs", "web"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.starts_with("started\ntick\n"), "{out}");
    assert_eq!(String::from_utf8_lossy(&o.stderr), "warn\n");
    let t = k.docker_ok(&["logs", "--tail", "1", "-t", "web"]);
    assert_eq!(t.lines().count(), 1);
    assert!(t.contains("Z tick"), "{t}");
    // Exec: output, exit code, environment, stdin.
    assert_eq!(
        k.docker_ok(&["exec", "web", "sh", "-c", "echo $GREETING $(hostname)"]),
        "hi box\n"
    );
    let o = k.docker(&["exec", "web", "sh", "-c", "exit 7"]);
    assert_eq!(o.status.code(), Some(7));
    let o = k.docker_stdin(&["exec", "-i", "web", "cat"], b"through stdin\n");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "through stdin\n");
    assert_eq!(
        k.docker_ok(&["exec", "-u", "app", "web", "id", "-u"]),
        "1000\n"
    );
    // top lists the container's processes.
    let top = k.docker_ok(&["top", "web"]);
    assert!(top.contains("while true"), "{top}");
    // The host's ps, as dockerd: its start time column is filled, and ps arguments pass on.
    let first = top
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .count();
    assert!(first >= 8, "{top}");
    let custom = k.docker_ok(&["top", "web", "-o", "pid,comm"]);
    let mut lines = custom.lines();
    assert_eq!(
        lines
            .next()
            .map(|h| h.split_whitespace().collect::<Vec<_>>()),
        Some(vec!["PID", "COMMAND"]),
        "{custom}"
    );
    assert!(lines.all(|l| l.split_whitespace().count() == 2), "{custom}");
    let o = k.docker(&["top", "web", "-o", "comm"]);
    assert!(!o.status.success(), "a ps without a PID column is refused");
    // Pause / unpause.
    k.docker_ok(&["pause", "web"]);
    assert_eq!(
        k.docker_ok(&["inspect", "-f", "{{.State.Status}}", "web"])
            .trim(),
        "paused"
    );
    k.docker_ok(&["unpause", "web"]);
    // Rename, then stop with a timeout: sh ignores TERM as pid 1, so SIGKILL ends it.
    k.docker_ok(&["rename", "web", "web2"]);
    let t0 = std::time::Instant::now();
    k.docker_ok(&["stop", "-t", "1", "web2"]);
    assert!(t0.elapsed() < std::time::Duration::from_secs(10));
    let st = k.docker_ok(&[
        "inspect",
        "-f",
        "{{.State.Status}} {{.State.ExitCode}}",
        "web2",
    ]);
    assert_eq!(st.trim(), "exited 137");
    let ps = k.docker_ok(&[
        "ps",
        "-a",
        "--filter",
        "exited=137",
        "--format",
        "{{.Names}}",
    ]);
    assert_eq!(ps.trim(), "web2");
    // Start again, restart, then rm -f.
    k.docker_ok(&["start", "web2"]);
    k.docker_ok(&["restart", "-t", "0", "web2"]);
    assert_eq!(
        k.docker_ok(&["inspect", "-f", "{{.State.Running}}", "web2"])
            .trim(),
        "true"
    );
    let o = k.docker(&["rm", "web2"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("cannot remove a running container"));
    k.docker_ok(&["rm", "-f", "web2"]);
    assert!(k.docker_ok(&["ps", "-aq"]).trim().is_empty());
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(
        k.leftover_processes().is_empty(),
        "{:?}",
        k.leftover_processes()
    );
}

#[test]
fn bad_requests_leave_nothing() {
    let (k, _reg, img) = setup("bad");
    let o = k.docker(&[
        "run",
        "--network",
        "none",
        "--mount",
        "type=bind,source=/nonexistent-kos-dir,target=/x",
        &img,
        "true",
    ]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("bind source path does not exist"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = k.docker(&[
        "run",
        "--network",
        "none",
        "--cap-add",
        "BOGUS",
        &img,
        "true",
    ]);
    assert!(!o.status.success());
    let o = k.docker(&["create", "--name", "bad name", &img]);
    assert!(!o.status.success());
    k.docker_ok(&["create", "--network", "none", "--name", "dup", &img]);
    let o = k.docker(&["create", "--network", "none", "--name", "dup", &img]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("is already in use"));
    let o = k.docker(&["inspect", "nope"]);
    assert!(!o.status.success());
    let (code, body) = k.http("POST", "/v1.47/containers/create", b"{\"Image\": 12}");
    assert_eq!(code, 400, "{body}");
    let (code, _) = k.http("POST", "/v1.47/containers/create", &vec![b' '; 5 << 20]);
    assert_eq!(code, 400);
    let (code, body) = k.http("POST", "/v1.47/containers/nope/start", b"");
    assert_eq!(code, 404, "{body}");
    let (code, _) = k.http("POST", "/v1.47/containers/dup/kill", b"");
    assert_eq!(code, 409);
    // Refused after the container's directory was made: it goes again.
    for (body, want) in [
        (
            format!(
                r#"{{"Image": "{img}", "HostConfig": {{"NetworkMode": "none", "VolumesFrom": ["nope"]}}}}"#
            ),
            404,
        ),
        (
            format!(
                r#"{{"Image": "{img}", "StopSignal": "SIGBOGUS", "HostConfig": {{"NetworkMode": "none"}}}}"#
            ),
            400,
        ),
        (
            format!(r#"{{"Image": "{img}", "HostConfig": {{"NetworkMode": "kos-no-such-net"}}}}"#),
            404,
        ),
    ] {
        let (code, answer) = k.http("POST", "/v1.47/containers/create", body.as_bytes());
        assert_eq!(code, want, "{body}: {answer}");
    }
    // Only the one good container exists; no stray directories.
    assert_eq!(k.docker_ok(&["ps", "-aq"]).lines().count(), 1);
    let dirs = std::fs::read_dir(k.data_root().join("containers"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(dirs, 1);
    k.docker_ok(&["rm", "dup"]);
}

/// Containers are found by full id, name (with or without its slash) and unique id prefix,
/// as dockerd finds them; an ambiguous prefix and a taken name are refused.
#[test]
fn lookups_by_id_name_and_prefix() {
    let (k, _reg, img) = setup("lookup");
    let id = k
        .docker_ok(&["create", "--network", "none", "--name", "lk1", &img])
        .trim()
        .to_string();
    let found = |key: &str| {
        let (code, body) = k.http("GET", &format!("/v1.47/containers/{key}/json"), b"");
        assert_eq!(code, 200, "{key}: {body}");
        let v: serde_json::Value = serde_json::from_str(&body).expect("inspect json");
        v["Id"].as_str().unwrap_or_default().to_string()
    };
    assert_eq!(found(&id), id);
    assert_eq!(found("lk1"), id);
    assert_eq!(found("%2Flk1"), id);
    assert_eq!(found(&id[..12]), id);
    let (code, _) = k.http("GET", "/v1.47/containers/lk2/json", b"");
    assert_eq!(code, 404);
    // Two ids share a first hex digit after at most 17 containers.
    let mut ids = vec![id.clone()];
    let shared = loop {
        let next = k
            .docker_ok(&["create", "--network", "none", &img])
            .trim()
            .to_string();
        let first = next[..1].to_string();
        ids.push(next);
        if ids.iter().filter(|i| i.starts_with(&first)).count() > 1 {
            break first;
        }
        assert!(ids.len() <= 17, "17 ids with distinct first digits");
    };
    let (code, body) = k.http("GET", &format!("/v1.47/containers/{shared}/json"), b"");
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("multiple IDs found with provided prefix"),
        "{body}"
    );
    let (code, body) = k.http(
        "POST",
        &format!("/v1.47/containers/{}/rename?name=lk1", ids[1]),
        b"",
    );
    assert_eq!(code, 409, "{body}");
    assert!(body.contains(&id), "{body}");
    let mut rm = vec!["rm"];
    rm.extend(ids.iter().map(String::as_str));
    k.docker_ok(&rm);
}

#[test]
fn host_config_reaches_the_container() {
    let (k, _reg, img) = setup("hc");
    let out = k.docker_ok(&[
        "run", "--rm", "--network", "none", "--read-only", "--tmpfs", "/scratch:size=1m",
        "--cap-drop", "ALL", "--cap-add", "CHOWN", "--pids-limit", "64", "-m", "64m",
        "--ulimit", "nofile=123:456", "--shm-size", "2m", "-w", "/tmp", "-u", "1000:1000",
        &img, "sh", "-c",
        "grep CapBnd /proc/self/status; ulimit -n; ulimit -Hn; pwd; id -u; touch /x 2>&1 || echo ro; touch /scratch/y && echo tmpfs; df -k /dev/shm | tail -1",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].ends_with("0000000000000001"), "{out}");
    assert_eq!(&lines[1..5], ["123", "456", "/tmp", "1000"], "{out}");
    assert!(out.contains("ro\n") && out.contains("tmpfs\n"), "{out}");
    assert!(lines.last().unwrap_or(&"").contains(" 2048 "), "{out}");
    let mem = k.docker_ok(&["run", "--rm", "--network", "none", "-m", "64m", &img, "sh", "-c",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"]);
    assert_eq!(mem.trim(), "67108864");
    // Masked and read-only /proc paths by default; none with systempaths=unconfined (the
    // CLI sends empty MaskedPaths and ReadonlyPaths).
    let probe = "wc -c < /proc/timer_list; mount | grep -c ' /proc/sys ' || true";
    let confined = k.docker_ok(&["run", "--rm", "--network", "none", &img, "sh", "-c", probe]);
    assert_eq!(confined, "0\n1\n");
    let open = k.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--security-opt",
        "systempaths=unconfined",
        &img,
        "sh",
        "-c",
        probe,
    ]);
    let lines: Vec<&str> = open.lines().collect();
    assert!(lines[0] != "0" && lines[1] == "0", "{open}");
    // Binds, read-only binds and a named volume shared between containers.
    let host = k.dir.join("hostdir");
    std::fs::create_dir_all(&host).expect("hostdir");
    std::fs::write(host.join("f"), "from host\n").expect("write");
    let b = format!("{}:/data:ro", host.display());
    assert_eq!(
        k.docker_ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            &b,
            &img,
            "cat",
            "/data/f"
        ]),
        "from host\n"
    );
    let o = k.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &b,
        &img,
        "touch",
        "/data/g",
    ]);
    assert!(!o.status.success());
    k.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        "vol1:/v",
        &img,
        "sh",
        "-c",
        "echo persisted > /v/f",
    ]);
    assert_eq!(
        k.docker_ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            "vol1:/v",
            &img,
            "cat",
            "/v/f"
        ]),
        "persisted\n"
    );
    let vols = k.docker_ok(&["volume", "ls", "-q"]);
    assert!(vols.lines().any(|l| l == "vol1"), "{vols}");
    // Host network mode sees the host's interfaces; none sees only loopback.
    let n = k.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        &img,
        "ls",
        "/sys/class/net",
    ]);
    assert_eq!(n.trim(), "lo");
    let h = k.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "host",
        &img,
        "ls",
        "/sys/class/net",
    ]);
    assert!(h.lines().count() > 1, "{h}");
    // --volumes-from shares another container's volumes (read-only here).
    k.docker_ok(&[
        "create",
        "--network",
        "none",
        "--name",
        "holder",
        "-v",
        "vol1:/v",
        &img,
        "true",
    ]);
    assert_eq!(
        k.docker_ok(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--volumes-from",
            "holder:ro",
            &img,
            "cat",
            "/v/f"
        ]),
        "persisted\n"
    );
    let o = k.docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--volumes-from",
        "holder:ro",
        &img,
        "touch",
        "/v/g",
    ]);
    assert!(!o.status.success());
    let df = k.docker_ok(&["system", "df", "-v"]);
    assert!(df.contains("vol1"), "{df}");
    k.docker_ok(&["rm", "holder"]);
    k.docker_ok(&["volume", "rm", "vol1"]);
}

/// The super options of the container's `/` from its own mountinfo.
fn root_super_options(k: &Kosd, args: &[&str]) -> String {
    let out = k.docker_ok(args);
    out.lines()
        .find_map(|l| {
            let (pre, post) = l.split_once(" - ")?;
            (pre.split(' ').nth(4)? == "/")
                .then(|| post.split(' ').nth(2).unwrap_or("").to_string())
        })
        .unwrap_or_else(|| panic!("no / in mountinfo: {out}"))
}

fn waits_until(what: &str, cond: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !cond() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

#[test]
fn auto_remove_rootfs_is_volatile_and_removed_files_go() {
    let (mut k, _reg, img) = setup("vol");
    let volatile = |o: &str| {
        o.split(',')
            .any(|x| x == "volatile" || x == "fsync=volatile")
    };
    let rm = root_super_options(
        &k,
        &[
            "run",
            "--rm",
            "--network",
            "none",
            &img,
            "cat",
            "/proc/self/mountinfo",
        ],
    );
    assert!(volatile(&rm), "{rm}");
    let kept = root_super_options(
        &k,
        &[
            "run",
            "--name",
            "kept",
            "--network",
            "none",
            &img,
            "cat",
            "/proc/self/mountinfo",
        ],
    );
    assert!(!volatile(&kept), "{kept}");
    // A second start mounts the kept (not volatile) upper layer again.
    k.docker_ok(&["start", "-a", "kept"]);
    let id = k.docker_ok(&["inspect", "-f", "{{.Id}}", "kept"]);
    let id = id.trim();
    k.docker_ok(&["rm", "kept"]);
    let containers = k.data_root().join("containers");
    assert!(!containers.join(id).exists());
    // Its bundle on the exec root goes with it.
    assert!(!k.exec_root().join("bundles").join(id).exists());
    let trash = k.data_root().join("trash");
    waits_until("removed files deleted", || !trash.join(id).exists());
    assert_eq!(
        std::fs::read_dir(&containers)
            .expect("containers dir")
            .count(),
        0
    );
    // What a stopped kosd left in the trash is deleted at the next start, a rootfs still
    // mounted there unmounted first (never deleted through).
    k.stop();
    std::fs::create_dir_all(trash.join("left/upper/d")).expect("trash entry");
    std::fs::write(trash.join("left/upper/d/f"), b"x").expect("trash file");
    let lower = k.dir.0.join("lower-kept");
    std::fs::create_dir_all(&lower).expect("lower dir");
    std::fs::write(lower.join("keep"), b"x").expect("lower file");
    std::fs::create_dir_all(trash.join("left/rootfs")).expect("rootfs dir");
    let st = std::process::Command::new("mount")
        .args(["--bind"])
        .arg(&lower)
        .arg(trash.join("left/rootfs"))
        .status()
        .expect("mount");
    assert!(st.success());
    k.spawn();
    waits_until("trash emptied at start", || !trash.join("left").exists());
    assert!(lower.join("keep").exists(), "deleted through a mount");
}

#[test]
fn a_start_that_fails_leaves_no_shim() {
    let (k, _reg, img) = setup("sfail");
    // Accepted at create, refused at start (the /etc files are written then), after the
    // shim was launched beside the start's other work.
    let body = format!(
        r#"{{"Image":"{img}","Cmd":["true"],"HostConfig":{{"NetworkMode":"none","Dns":["not-an-ip"]}}}}"#
    );
    let (code, out) = k.http(
        "POST",
        "/v1.47/containers/create?name=sfail",
        body.as_bytes(),
    );
    assert_eq!(code, 201, "{out}");
    let (code, out) = k.http("POST", "/v1.47/containers/sfail/start", b"");
    assert_eq!(code, 400, "{out}");
    assert!(out.contains("invalid DNS server"), "{out}");
    waits_until("the launched shim to go", || {
        k.leftover_processes().is_empty()
    });
    let state = k.docker_ok(&["inspect", "-f", "{{.State.Status}}", "sfail"]);
    assert_eq!(state.trim(), "created");
    k.docker_ok(&["rm", "sfail"]);
    assert!(k.leftover_processes().is_empty());
}

/// A created container's rootfs is mounted ahead of its start (in the background, after
/// the create answer); one never started is removed with its mount, bundle and directory,
/// and `docker cp` works on it meanwhile.
#[test]
fn rootfs_prepared_at_create_goes_with_an_unstarted_container() {
    let (k, _reg, img) = setup("ahead");
    let id = k.docker_ok(&[
        "create",
        "--name",
        "ahead",
        "--network",
        "none",
        &img,
        "true",
    ]);
    let id = id.trim().to_string();
    let rootfs = k.data_root().join("containers").join(&id).join("rootfs");
    let mounted = |p: &std::path::Path| {
        std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .any(|l| l.split(' ').nth(4) == Some(&*p.to_string_lossy()))
    };
    waits_until("the rootfs mounted ahead of the start", || mounted(&rootfs));
    // The image's own files through the ahead mount, and a file copied in lands in it.
    let src = k.dir.join("ahead-file");
    std::fs::write(&src, b"ahead\n").expect("write");
    k.docker_ok(&["cp", &src.to_string_lossy(), "ahead:/ahead-file"]);
    assert_eq!(
        std::fs::read_to_string(rootfs.join("ahead-file")).unwrap_or_default(),
        "ahead\n"
    );
    k.docker_ok(&["rm", "ahead"]);
    waits_until("the rootfs unmounted", || !mounted(&rootfs));
    assert!(!k.data_root().join("containers").join(&id).exists());
    assert!(!k.exec_root().join("bundles").join(&id).exists());
    // A container created and started at once still runs as usual.
    let out = k.docker_ok(&[
        "run",
        "--rm",
        "--network",
        "none",
        &img,
        "cat",
        "/etc/hostname",
    ]);
    assert!(!out.trim().is_empty());
}
