//! `docker ps` / `GET /containers/json` with many containers in every state: each entry
//! agrees with the container's inspect, every filter selects what inspect says it should,
//! and the list follows start, stop, kill, pause, rename and rm at once (nothing stale).

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::*;
use serde_json::Value;

fn setup(tag: &str) -> (Kosd, Registry, String) {
    let k = Kosd::start(&[]);
    let reg = Registry::start();
    let img = reg.image(&format!("{tag}:1"));
    push_busybox(&img, &ImageSpec::default());
    k.docker_ok(&["pull", "-q", &img]);
    (k, reg, img)
}

fn get_json(k: &Kosd, path: &str) -> Value {
    let (code, body) = k.http("GET", path, b"");
    assert_eq!(code, 200, "GET {path}: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// Unix nanoseconds of an RFC 3339 UTC time (`2026-11-30T14:59:22.123456789Z`).
fn unix_nanos(t: &str) -> i64 {
    let n = |r: std::ops::Range<usize>| -> i64 { t[r].parse().expect(t) };
    let (y, m, d) = (n(0..4), n(5..7), n(8..10));
    let (hh, mm, ss) = (n(11..13), n(14..16), n(17..19));
    // Days from the civil date (proleptic Gregorian), March-based year.
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let frac = t[19..].trim_end_matches('Z').trim_start_matches('.');
    let frac: i64 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}")[..9].parse().expect(t)
    };
    (days * 86400 + hh * 3600 + mm * 60 + ss) * 1_000_000_000 + frac
}

fn created_nanos(v: &Value) -> i64 {
    unix_nanos(v["Created"].as_str().expect("Created"))
}

/// Sets a stopped container's recorded state as a crash or a failed removal leaves it:
/// kosd has no API path to `dead`, and `removing` only lasts while a removal runs.
fn force_state(k: &Kosd, id: &str, status: &str) {
    let db = k.data_root().join("kosd.db");
    let script = format!(
        "import sqlite3, json\n\
         c = sqlite3.connect({db:?}, timeout=10)\n\
         r = json.loads(c.execute('SELECT record FROM containers WHERE id = ?', ({id:?},)).fetchone()[0])\n\
         r['state']['status'] = {status:?}\n\
         c.execute('UPDATE containers SET record = ? WHERE id = ?', (json.dumps(r), {id:?}))\n\
         c.commit()\n",
        db = db.to_string_lossy()
    );
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A string field, or a panic naming the field.
fn text(v: &Value) -> &str {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
}

fn int(v: &Value) -> i64 {
    v.as_i64()
        .unwrap_or_else(|| panic!("expected an integer, got {v}"))
}

fn array(v: &Value) -> &Vec<Value> {
    v.as_array()
        .unwrap_or_else(|| panic!("expected an array, got {v}"))
}

fn ids(s: &str) -> BTreeSet<String> {
    s.lines().map(str::to_string).collect()
}

/// `docker ps -a --no-trunc -q` with the given filters.
fn ps_ids(k: &Kosd, filters: &[&str]) -> BTreeSet<String> {
    let mut args = vec!["ps", "-a", "-q", "--no-trunc"];
    for f in filters {
        args.push("--filter");
        args.push(f);
    }
    ids(&k.docker_ok(&args))
}

/// Every container's inspect, by id.
fn inspect_all(k: &Kosd, ids: &BTreeSet<String>) -> BTreeMap<String, Value> {
    ids.iter()
        .map(|id| (id.clone(), get_json(k, &format!("/containers/{id}/json"))))
        .collect()
}

/// The ids whose inspect satisfies `pred`.
fn select(all: &BTreeMap<String, Value>, pred: impl Fn(&Value) -> bool) -> BTreeSet<String> {
    all.iter()
        .filter(|(_, v)| pred(v))
        .map(|(id, _)| id.clone())
        .collect()
}

const ENTRY_KEYS: &[&str] = &[
    "Id",
    "Names",
    "Image",
    "ImageID",
    "Command",
    "Created",
    "Ports",
    "Labels",
    "State",
    "Status",
    "HostConfig",
    "NetworkSettings",
    "Mounts",
];

/// The whole `all=1` list against inspect: the same containers, newest first, and each
/// entry's fields as inspect has them.
fn check_list_against_inspect(k: &Kosd, expected: &BTreeSet<String>) -> BTreeMap<String, Value> {
    let list = get_json(k, "/containers/json?all=1");
    let list = list.as_array().expect("an array");
    let listed: BTreeSet<String> = list
        .iter()
        .map(|e| e["Id"].as_str().expect("Id").to_string())
        .collect();
    assert_eq!(&listed, expected);
    let ins = inspect_all(k, expected);
    let created: Vec<i64> = list.iter().map(|e| int(&e["Created"])).collect();
    assert!(
        created.windows(2).all(|w| w[0] >= w[1]),
        "not newest first: {created:?}"
    );
    for e in list {
        let keys: BTreeSet<&str> = e
            .as_object()
            .expect("an object per entry")
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, ENTRY_KEYS.iter().copied().collect(), "{e}");
        let id = text(&e["Id"]);
        let i = &ins[id];
        let st = &i["State"];
        assert_eq!(e["Names"], serde_json::json!([i["Name"]]), "{id}");
        assert_eq!(e["Image"], i["Config"]["Image"], "{id}");
        assert_eq!(e["ImageID"], i["Image"], "{id}");
        assert_eq!(e["State"], st["Status"], "{id}");
        let mut cmd = vec![text(&i["Path"]).to_string()];
        cmd.extend(array(&i["Args"]).iter().map(|a| text(a).to_string()));
        assert_eq!(e["Command"], cmd.join(" "), "{id}");
        assert_eq!(e["Created"], created_nanos(i) / 1_000_000_000, "{id}");
        let labels = if i["Config"]["Labels"].is_null() {
            serde_json::json!({})
        } else {
            i["Config"]["Labels"].clone()
        };
        assert_eq!(e["Labels"], labels, "{id}");
        assert_eq!(
            e["HostConfig"]["NetworkMode"], i["HostConfig"]["NetworkMode"],
            "{id}"
        );
        assert_eq!(
            e["NetworkSettings"]["Networks"], i["NetworkSettings"]["Networks"],
            "{id}"
        );
        assert_eq!(e["Mounts"], i["Mounts"], "{id}");
        // Ports: one entry per published binding of inspect's NetworkSettings.Ports.
        let mut want = BTreeSet::new();
        if let Some(m) = i["NetworkSettings"]["Ports"].as_object() {
            for (port, binds) in m {
                let (p, proto) = port.split_once('/').expect("port/proto");
                for b in binds.as_array().into_iter().flatten() {
                    want.insert(format!(
                        "{}:{}->{p}/{proto}",
                        text(&b["HostIp"]),
                        text(&b["HostPort"])
                    ));
                }
            }
        }
        let got: BTreeSet<String> = array(&e["Ports"])
            .iter()
            .filter(|p| p.get("PublicPort").is_some_and(|x| !x.is_null()))
            .map(|p| {
                format!(
                    "{}:{}->{}/{}",
                    text(&p["IP"]),
                    p["PublicPort"],
                    p["PrivatePort"],
                    text(&p["Type"])
                )
            })
            .collect();
        assert_eq!(got, want, "{id}: {}", e["Ports"]);
        // Status as `docker ps` shows it, from inspect's state.
        let status = text(&e["Status"]);
        let code = int(&st["ExitCode"]);
        match text(&st["Status"]) {
            "created" => assert_eq!(status, "Created"),
            "running" => assert!(
                status.starts_with("Up ") && !status.contains("Paused"),
                "{status}"
            ),
            "paused" => assert!(
                status.starts_with("Up ") && status.ends_with(" (Paused)"),
                "{status}"
            ),
            "exited" => assert!(
                status.starts_with(&format!("Exited ({code}) ")) && status.ends_with(" ago"),
                "{status}"
            ),
            "dead" => assert_eq!(status, "Dead"),
            "removing" => assert_eq!(status, "Removal In Progress"),
            other => panic!("unexpected state {other}"),
        }
        assert_eq!(
            st["Running"],
            matches!(st["Status"].as_str(), Some("running" | "paused"))
        );
        assert_eq!(st["Paused"], st["Status"] == "paused");
        assert_eq!(st["Dead"], st["Status"] == "dead");
    }
    ins
}

/// Every filter docker ps has that applies here, against inspect.
fn check_filters(k: &Kosd, ins: &BTreeMap<String, Value>, img: &str) {
    let state = |s: &'static str| move |v: &Value| v["State"]["Status"] == s;
    for s in ["created", "running", "paused", "exited", "dead", "removing"] {
        assert_eq!(
            ps_ids(k, &[&format!("status={s}")]),
            select(ins, state(s)),
            "status={s}"
        );
    }
    // Several values of one filter: any of them.
    assert_eq!(
        ps_ids(k, &["status=created", "status=dead"]),
        select(ins, |v| v["State"]["Status"] == "created"
            || v["State"]["Status"] == "dead")
    );
    // Without -a: running, paused (and restarting) only.
    assert_eq!(
        ids(&k.docker_ok(&["ps", "-q", "--no-trunc"])),
        select(ins, |v| v["State"]["Running"] == true)
    );
    assert_eq!(
        ps_ids(k, &["exited=3"]),
        select(ins, |v| v["State"]["Status"] == "exited"
            && v["State"]["ExitCode"] == 3)
    );
    assert!(!ps_ids(k, &["exited=3"]).is_empty());
    assert_eq!(
        ps_ids(k, &["label=kind=running"]),
        select(ins, |v| v["Config"]["Labels"]["kind"] == "running")
    );
    assert_eq!(
        ps_ids(k, &["label=extra"]),
        select(ins, |v| !v["Config"]["Labels"]["extra"].is_null())
    );
    // Two different filters: both must hold.
    assert_eq!(
        ps_ids(k, &["label=kind=exited", "exited=0"]),
        select(ins, |v| {
            v["Config"]["Labels"]["kind"] == "exited"
                && v["State"]["ExitCode"] == 0
                && v["State"]["Status"] == "exited"
        })
    );
    assert_eq!(
        ps_ids(k, &["name=ls-paused"]),
        select(ins, |v| text(&v["Name"]).contains("ls-paused"))
    );
    let some = ins.keys().next().expect("containers");
    assert_eq!(
        ps_ids(k, &[&format!("id={}", &some[..12])]),
        BTreeSet::from([some.clone()])
    );
    assert_eq!(
        ps_ids(k, &[&format!("ancestor={img}")]),
        ins.keys().cloned().collect()
    );
    assert_eq!(
        ps_ids(k, &["volume=lsvol"]),
        select(ins, |v| array(&v["Mounts"])
            .iter()
            .any(|m| m["Name"] == "lsvol"))
    );
    assert_eq!(
        ps_ids(k, &["network=none"]),
        select(ins, |v| v["HostConfig"]["NetworkMode"] == "none")
    );
    assert_eq!(
        ps_ids(k, &["network=bridge"]),
        select(ins, |v| v["HostConfig"]["NetworkMode"] == "bridge"
            || v["HostConfig"]["NetworkMode"] == "default")
    );
    assert_eq!(ps_ids(k, &["health=none"]), ins.keys().cloned().collect());
    // before/since by name: by creation time.
    let pivot = ins
        .values()
        .find(|v| v["Name"] == "/ls-running-4")
        .map(created_nanos)
        .expect("ls-running-4 listed");
    assert_eq!(
        ps_ids(k, &["before=ls-running-4"]),
        select(ins, |v| created_nanos(v) < pivot)
    );
    assert_eq!(
        ps_ids(k, &["since=ls-running-4"]),
        select(ins, |v| created_nanos(v) > pivot)
    );
    let pivot_id = ins
        .iter()
        .find(|(_, v)| v["Name"] == "/ls-running-4")
        .map(|(id, _)| id.clone())
        .expect("ls-running-4 listed");
    assert_eq!(
        ps_ids(k, &[&format!("before={}", &pivot_id[..12])]),
        ps_ids(k, &["before=ls-running-4"])
    );
    let o = k.docker(&["ps", "--filter", "since=ls-nosuch"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("No such container: ls-nosuch"));
    assert!(!ps_ids(k, &["before=ls-running-4"]).is_empty());
    assert!(!ps_ids(k, &["since=ls-running-4"]).is_empty());
    // -n: the newest, whatever their state.
    let mut newest: Vec<(&String, &Value)> = ins.iter().collect();
    newest.sort_by_key(|(_, v)| std::cmp::Reverse(created_nanos(v)));
    let want: BTreeSet<String> = newest.iter().take(3).map(|(id, _)| (*id).clone()).collect();
    assert_eq!(
        ids(&k.docker_ok(&["ps", "-q", "--no-trunc", "-n", "3"])),
        want
    );
    // Bad filters: Docker's 400s.
    let o = k.docker(&["ps", "--filter", "status=sleeping"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid filter 'status=sleeping'"));
    let o = k.docker(&["ps", "--filter", "colour=red"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("invalid filter 'colour'"));
}

#[test]
fn many_containers_in_every_state_list_as_inspect_says() {
    let (k, _reg, img) = setup("list");
    let bind = Scratch::new("lsbind");
    let bind_arg = format!("{}:/h:ro", bind.0.display());
    let run = |args: &[&str]| -> String {
        let mut a = vec!["run", "-d"];
        a.extend_from_slice(args);
        k.docker_ok(&a).trim().to_string()
    };
    let mut all = BTreeSet::new();
    for n in 0..5 {
        let name = format!("ls-created-{n}");
        let id = k.docker_ok(&[
            "create",
            "--network",
            "none",
            "--name",
            &name,
            "--label",
            "kind=created",
            &img,
            "sleep",
            "1000",
        ]);
        all.insert(id.trim().to_string());
    }
    for n in 0..10 {
        let name = format!("ls-running-{n}");
        let mut a = vec![
            "--network",
            "none",
            "--name",
            &name,
            "--label",
            "kind=running",
        ];
        match n {
            1 => a.extend(["-v", "lsvol:/data"]),
            2 => a.extend(["--mount", "type=tmpfs,destination=/t"]),
            3 => a.extend(["-v", &bind_arg, "--label", "extra=yes"]),
            _ => {}
        }
        a.extend([img.as_str(), "sleep", "1000"]);
        all.insert(run(&a));
    }
    // One on the default bridge with a published port, for Ports and the bridge network.
    all.insert(run(&[
        "--name",
        "ls-bridge",
        "--label",
        "kind=running",
        "-p",
        "127.0.0.1::80",
        &img,
        "sleep",
        "1000",
    ]));
    let mut paused = Vec::new();
    for n in 0..3 {
        let id = run(&[
            "--network",
            "none",
            "--name",
            &format!("ls-paused-{n}"),
            "--label",
            "kind=paused",
            &img,
            "sleep",
            "1000",
        ]);
        k.docker_ok(&["pause", &id]);
        paused.push(id.clone());
        all.insert(id);
    }
    let mut exited = Vec::new();
    for n in 0..6 {
        let code = if n % 2 == 0 { "0" } else { "3" };
        let id = run(&[
            "--network",
            "none",
            "--name",
            &format!("ls-exited-{n}"),
            "--label",
            "kind=exited",
            &img,
            "sh",
            "-c",
            &format!("exit {code}"),
        ]);
        assert_eq!(k.docker_ok(&["wait", &id]).trim(), code);
        exited.push(id.clone());
        all.insert(id);
    }
    force_state(&k, &exited[4], "dead");
    force_state(&k, &exited[5], "removing");

    let ins = check_list_against_inspect(&k, &all);
    for s in ["created", "running", "paused", "exited", "dead", "removing"] {
        assert!(
            ins.values().any(|v| v["State"]["Status"] == s),
            "no {s} container"
        );
    }
    check_filters(&k, &ins, &img);
    // The CLI's own rendering of the list.
    let table = k.docker_ok(&[
        "ps",
        "-a",
        "--no-trunc",
        "--format",
        "{{.ID}} {{.Names}} {{.State}}",
    ]);
    let rows: BTreeSet<String> = table.lines().map(str::to_string).collect();
    let want: BTreeSet<String> = ins
        .iter()
        .map(|(id, v)| {
            format!(
                "{id} {} {}",
                &text(&v["Name"])[1..],
                text(&v["State"]["Status"])
            )
        })
        .collect();
    assert_eq!(rows, want);
    // With sizes: SizeRw and SizeRootFs on every entry.
    let sized = get_json(&k, "/containers/json?all=1&size=1");
    for e in array(&sized) {
        assert!(e["SizeRw"].is_i64() && e["SizeRootFs"].is_i64(), "{e}");
    }

    // Transitions show at once.
    let id_of = |name: &str| {
        k.docker_ok(&["inspect", "-f", "{{.Id}}", name])
            .trim()
            .to_string()
    };
    k.docker_ok(&["start", "ls-created-0"]);
    k.docker_ok(&["stop", "-t", "1", "ls-running-5"]);
    k.docker_ok(&["kill", "ls-running-6"]);
    assert_eq!(k.docker_ok(&["wait", "ls-running-6"]).trim(), "137");
    k.docker_ok(&["unpause", &paused[0]]);
    k.docker_ok(&["pause", "ls-running-7"]);
    k.docker_ok(&["rename", "ls-running-8", "ls-renamed-8"]);
    let rm_id = id_of("ls-running-9");
    k.docker_ok(&["rm", "-f", "ls-running-9"]);
    assert_eq!(
        k.http("GET", &format!("/containers/{rm_id}/json"), b"").0,
        404
    );
    all.remove(&rm_id);
    let ins = check_list_against_inspect(&k, &all);
    let name_state = |name: &str| -> String {
        let v = ins
            .values()
            .find(|v| v["Name"] == format!("/{name}"))
            .unwrap_or_else(|| panic!("{name} not listed"));
        text(&v["State"]["Status"]).to_string()
    };
    assert_eq!(name_state("ls-created-0"), "running");
    assert_eq!(name_state("ls-running-5"), "exited");
    assert_eq!(name_state("ls-running-6"), "exited");
    assert_eq!(name_state("ls-paused-0"), "running");
    assert_eq!(name_state("ls-running-7"), "paused");
    assert_eq!(name_state("ls-renamed-8"), "running");
    assert!(ps_ids(&k, &["name=ls-running-8"]).is_empty());
    assert_eq!(ps_ids(&k, &["name=ls-renamed-8"]).len(), 1);
    assert!(ps_ids(&k, &["exited=137"]).contains(&id_of("ls-running-6")));
    check_filters(&k, &ins, &img);
}
