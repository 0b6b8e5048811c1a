//! Networks carry their real creation time (RFC 3339 with nanoseconds, as dockerd
//! reports it) in inspect and list, kept across kosd restarts; `network prune` honours
//! `until` and `label` with it. `/info` names the CDI spec directories.

mod common;

use chrono::{DateTime, Utc};
use common::{unique, Kosd};

fn created(k: &Kosd, net: &str) -> String {
    k.docker_ok(&["network", "inspect", "-f", "{{json .Created}}", net])
        .trim()
        .trim_matches('"')
        .to_string()
}

fn parse(t: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(t)
        .unwrap_or_else(|e| panic!("Created {t:?} is not RFC 3339: {e}"))
        .with_timezone(&Utc)
}

fn listed(k: &Kosd) -> Vec<serde_json::Value> {
    let (code, body) = k.http("GET", "/v1.47/networks", b"");
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("network list JSON")
}

fn names(k: &Kosd) -> Vec<String> {
    k.docker_ok(&["network", "ls", "--format", "{{.Name}}"])
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn networks_report_and_keep_their_creation_time() {
    let mut k = Kosd::start(&[]);
    let net = unique("netc");
    let before = Utc::now();
    k.docker_ok(&["network", "create", &net]);
    let after = Utc::now();
    let t = created(&k, &net);
    let at = parse(&t);
    assert!(
        before <= at && at <= after,
        "{t} not between {before} and {after}"
    );
    // Nanoseconds, UTC, as dockerd's RFC3339Nano.
    assert!(t.ends_with('Z') && t.contains('.'), "{t}");

    // Every network in the list has a real time, the user network its own.
    let all = listed(&k);
    for n in &all {
        let c = n["Created"].as_str().expect("Created");
        assert_ne!(c, "0001-01-01T00:00:00Z", "{n}");
        parse(c);
    }
    let mine = all
        .iter()
        .find(|n| n["Name"] == net.as_str())
        .expect("listed");
    assert_eq!(mine["Created"], t.as_str());
    let bridge = created(&k, "bridge");

    // Kept across a restart of kosd.
    k.stop();
    k.spawn();
    assert_eq!(created(&k, &net), t);
    assert_eq!(created(&k, "bridge"), bridge);

    // A network made again under the same name is a new network.
    k.docker_ok(&["network", "rm", &net]);
    k.docker_ok(&["network", "create", &net]);
    assert!(parse(&created(&k, &net)) > at);
    k.docker_ok(&["network", "rm", &net]);
}

#[test]
fn network_prune_honours_until_and_labels() {
    let k = Kosd::start(&[]);
    let old = unique("netold");
    let new = unique("netnew");
    k.docker_ok(&["network", "create", "--label", "tier=a", &old]);
    std::thread::sleep(std::time::Duration::from_millis(50));
    let mid = Utc::now();
    std::thread::sleep(std::time::Duration::from_millis(50));
    k.docker_ok(&["network", "create", "--label", "tier=b", &new]);
    let until = format!("{}.{:09}", mid.timestamp(), mid.timestamp_subsec_nanos());

    // Labels that match neither: nothing goes.
    k.docker_ok(&["network", "prune", "-f", "--filter", "label=tier=c"]);
    let ls = names(&k);
    assert!(ls.contains(&old) && ls.contains(&new), "{ls:?}");
    // Created before `until`: only the old one goes.
    let out = k.docker_ok(&[
        "network",
        "prune",
        "-f",
        "--filter",
        &format!("until={until}"),
    ]);
    assert!(out.contains(&old) && !out.contains(&new), "{out}");
    let ls = names(&k);
    assert!(!ls.contains(&old) && ls.contains(&new), "{ls:?}");
    // label! spares what carries the label.
    k.docker_ok(&["network", "prune", "-f", "--filter", "label!=tier=b"]);
    assert!(names(&k).contains(&new));
    k.docker_ok(&["network", "prune", "-f", "--filter", "label=tier=b"]);
    assert!(!names(&k).contains(&new));
}

#[test]
fn info_names_the_cdi_spec_dirs() {
    let k = Kosd::start(&[]);
    let (code, body) = k.http("GET", "/v1.47/info", b"");
    assert_eq!(code, 200, "{body}");
    let info: serde_json::Value = serde_json::from_str(&body).expect("info JSON");
    assert_eq!(
        info["CDISpecDirs"],
        serde_json::json!(["/etc/cdi", "/var/run/cdi"]),
        "{body}"
    );
    let dir = k.dir.join("cdi");
    std::fs::create_dir_all(&dir).expect("cdi dir");
    let d = dir.to_str().expect("utf8");
    let k2 = Kosd::start(&["--cdi-spec-dir", d]);
    let out = k2.docker_ok(&["info", "--format", "{{json .CDISpecDirs}}"]);
    assert_eq!(out.trim(), format!("[\"{d}\"]"));
}
