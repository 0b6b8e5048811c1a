//! The execution protocol seen from the plugin's side: /bin/sh plugins that record their
//! environment and stdin, and plugins that misbehave (crash, print too much, hang).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use kos_cni::config::NetworkConfigList;
use kos_cni::runner::{Cni, RuntimeConf};
use kos_cni::Error;
use serde_json::{json, Value};

use support::*;

/// A plugin that appends `NNN-<name>-<COMMAND>.env/.json` records to `rec` and answers.
fn recorder(bin: &Path, rec: &Path, name: &str) {
    let body = format!(
        r#"rec={rec}
n=$(cat "$rec/seq" 2>/dev/null || echo 0); n=$((n+1)); echo $n > "$rec/seq"
f="$rec/$(printf %03d $n)-{name}-$CNI_COMMAND"
env | grep '^CNI_' | sort > "$f.env"
cat > "$f.json"
case "$CNI_COMMAND" in
ADD) printf '{{"cniVersion":"1.1.0","interfaces":[{{"name":"%s","sandbox":"%s"}}],"ips":[{{"address":"10.9.9.%s/24","interface":0}}]}}' "$CNI_IFNAME" "$CNI_NETNS" "$n" ;;
VERSION) echo '{{"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]}}' ;;
STATUS) if [ -e "$rec/unavailable" ]; then echo '{{"cniVersion":"1.1.0","code":50,"msg":"plugin not available"}}'; exit 1; fi ;;
esac
exit 0"#,
        rec = rec.display()
    );
    fake_plugin(bin, name, &body);
}

struct Call {
    plugin: String,
    command: String,
    env: Vec<String>,
    stdin: Value,
}

fn calls(rec: &Path) -> Vec<Call> {
    let mut names: Vec<String> = std::fs::read_dir(rec)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".env"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|n| {
            let stem = n.trim_end_matches(".env");
            let mut parts = stem.splitn(3, '-');
            parts.next();
            let plugin = parts.next().unwrap().to_owned();
            let command = parts.next().unwrap().to_owned();
            let env = std::fs::read_to_string(rec.join(n))
                .unwrap()
                .lines()
                .map(str::to_owned)
                .collect();
            let stdin = std::fs::read(rec.join(format!("{stem}.json"))).unwrap();
            Call {
                plugin,
                command,
                env,
                stdin: serde_json::from_slice(&stdin).unwrap_or(Value::Null),
            }
        })
        .collect()
}

fn env_of<'a>(call: &'a Call, key: &str) -> Option<&'a str> {
    call.env
        .iter()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
}

struct Fixture {
    _tmp: TempDir,
    bin: PathBuf,
    rec: PathBuf,
    cni: Cni,
}

fn fixture() -> Fixture {
    let sfx = suffix();
    let tmp = TempDir::new(&sfx);
    let bin = tmp.0.join("bin");
    let rec = tmp.0.join("rec");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::create_dir_all(&rec).unwrap();
    recorder(&bin, &rec, "first");
    recorder(&bin, &rec, "second");
    let cni = Cni::new(vec![tmp.0.join("empty"), bin.clone()], tmp.0.join("cache"));
    Fixture {
        _tmp: tmp,
        bin,
        rec,
        cni,
    }
}

fn list(version: &str, extra: Value) -> NetworkConfigList {
    let mut v = json!({
        "cniVersion": version,
        "name": "recnet",
        "plugins": [
            {"type": "first", "first-setting": 1, "capabilities": {"bandwidth": false}},
            {"type": "second", "capabilities": {"portMappings": true}}
        ]
    });
    if let (Value::Object(o), Value::Object(e)) = (&mut v, extra) {
        o.extend(e);
    }
    NetworkConfigList::from_bytes(v.to_string().as_bytes(), Path::new("test")).unwrap()
}

fn runtime() -> RuntimeConf {
    let mut rt = RuntimeConf {
        container_id: "ctr1".into(),
        netns: "/run/netns/not-used-by-fakes".into(),
        ifname: "net1".into(),
        args: vec![
            ("IgnoreUnknown".into(), "1".into()),
            ("K8S_POD_NAME".into(), "web-0".into()),
        ],
        ..RuntimeConf::default()
    };
    rt.capability_args.insert(
        "portMappings".into(),
        json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]),
    );
    rt.capability_args
        .insert("bandwidth".into(), json!({"ingressRate": 1000}));
    rt
}

#[test]
fn add_check_del_environment_stdin_and_chaining() {
    let f = fixture();
    let list = list("1.1.0", json!({}));
    let rt = runtime();
    let result = f.cni.add(&list, &rt).unwrap();
    assert_eq!(
        result.ips[0].address.to_string(),
        "10.9.9.2/24",
        "last plugin's result"
    );
    f.cni.check(&list, &rt).unwrap();
    f.cni.del(&list, &rt).unwrap();

    let calls = calls(&f.rec);
    let seq: Vec<String> = calls
        .iter()
        .map(|c| format!("{} {}", c.command, c.plugin))
        .collect();
    assert_eq!(
        seq,
        vec![
            "ADD first",
            "ADD second",
            "CHECK first",
            "CHECK second",
            "DEL second",
            "DEL first"
        ]
    );
    let path = std::env::join_paths([f._tmp.0.join("empty"), f.bin.clone()]).unwrap();
    for c in &calls {
        assert_eq!(env_of(c, "CNI_COMMAND"), Some(c.command.as_str()));
        assert_eq!(env_of(c, "CNI_CONTAINERID"), Some("ctr1"));
        assert_eq!(env_of(c, "CNI_NETNS"), Some("/run/netns/not-used-by-fakes"));
        assert_eq!(env_of(c, "CNI_IFNAME"), Some("net1"));
        assert_eq!(
            env_of(c, "CNI_ARGS"),
            Some("IgnoreUnknown=1;K8S_POD_NAME=web-0")
        );
        assert_eq!(env_of(c, "CNI_PATH"), path.to_str());
        assert_eq!(c.stdin["name"], "recnet");
        assert_eq!(c.stdin["cniVersion"], "1.1.0");
    }
    // The first ADD has no prevResult; the second gets the first's result.
    assert!(calls[0].stdin.get("prevResult").is_none());
    assert_eq!(calls[0].stdin["first-setting"], 1);
    assert_eq!(
        calls[1].stdin["prevResult"]["ips"][0]["address"],
        "10.9.9.1/24"
    );
    // runtimeConfig only where the capability is declared true.
    assert!(calls[0].stdin.get("runtimeConfig").is_none());
    assert_eq!(
        calls[1].stdin["runtimeConfig"]["portMappings"][0]["hostPort"],
        8080
    );
    assert!(calls[1].stdin["runtimeConfig"].get("bandwidth").is_none());
    // CHECK and DEL get the chain's final (cached) result.
    for c in &calls[2..] {
        assert_eq!(c.stdin["prevResult"]["ips"][0]["address"], "10.9.9.2/24");
    }
    assert!(f.cni.cache().list("recnet").unwrap().is_empty());
}

#[test]
fn gc_status_and_version() {
    let f = fixture();
    let list = list("1.1.0", json!({}));
    let rt = runtime();
    f.cni.add(&list, &rt).unwrap();
    let other = RuntimeConf {
        container_id: "gone".into(),
        ..runtime()
    };
    f.cni.add(&list, &other).unwrap();
    std::fs::remove_file(f.rec.join("seq")).unwrap();
    for e in std::fs::read_dir(&f.rec).unwrap() {
        std::fs::remove_file(e.unwrap().path()).unwrap();
    }

    f.cni
        .gc(&list, &[("ctr1".to_owned(), "net1".to_owned())])
        .unwrap();
    let calls = calls(&f.rec);
    let seq: Vec<String> = calls
        .iter()
        .map(|c| format!("{} {}", c.command, c.plugin))
        .collect();
    assert_eq!(
        seq,
        vec!["DEL second", "DEL first", "GC first", "GC second"],
        "stale attachment deleted, then GC on each plugin"
    );
    assert_eq!(env_of(&calls[0], "CNI_CONTAINERID"), Some("gone"));
    let gc = &calls[2];
    assert!(env_of(gc, "CNI_CONTAINERID").is_none() && env_of(gc, "CNI_NETNS").is_none());
    assert_eq!(
        gc.stdin["cni.dev/valid-attachments"],
        json!([{"containerID": "ctr1", "ifname": "net1"}])
    );
    let cached = f.cni.cache().list("recnet").unwrap();
    assert_eq!(cached.len(), 1);
    assert_eq!(cached[0].container_id, "ctr1");

    // disableGC: only the cache-driven DELs.
    let no_gc = self::list("1.1.0", json!({"disableGC": true}));
    let before = calls.len();
    f.cni.gc(&no_gc, &[("ctr1".into(), "net1".into())]).unwrap();
    assert_eq!(self::calls(&f.rec).len(), before);

    f.cni.status(&list).unwrap();
    std::fs::write(f.rec.join("unavailable"), "").unwrap();
    match f.cni.status(&list) {
        Err(Error::Plugin { error, plugin, .. }) => {
            assert_eq!((error.code, plugin.as_str()), (50, "first"));
        }
        other => panic!("expected code 50, got {other:?}"),
    }
    // Before 1.1 there is no STATUS: ready without asking.
    f.cni.status(&self::list("1.0.0", json!({}))).unwrap();

    let v = f.cni.version("second", list.version).unwrap();
    assert_eq!(v.supported_versions, vec!["1.0.0", "1.1.0"]);
}

#[test]
fn check_rules_follow_the_spec() {
    let f = fixture();
    let rt = runtime();
    let disabled = list("1.0.0", json!({"disableCheck": true}));
    f.cni.check(&disabled, &rt).unwrap();
    assert!(calls(&f.rec).is_empty(), "disableCheck runs no plugin");
    let old = list("0.3.1", json!({}));
    assert!(matches!(
        f.cni.check(&old, &rt),
        Err(Error::Unsupported {
            command: "CHECK",
            ..
        })
    ));
    let current = list("1.0.0", json!({}));
    assert!(matches!(
        f.cni.check(&current, &rt),
        Err(Error::NotCached { .. })
    ));
}

#[test]
fn misbehaving_plugins_give_one_clear_error() {
    let f = fixture();
    fake_plugin(
        &f.bin,
        "crash",
        "cat >/dev/null; echo 'goroutine 1 [running]:' >&2; echo 'panic: boom' >&2; exit 2",
    );
    fake_plugin(
        &f.bin,
        "chatty",
        "cat >/dev/null; [ \"$CNI_COMMAND\" = DEL ] && exit 0\nyes '{\"cniVersion\":\"1.0.0\"}' | head -c 3000000",
    );
    fake_plugin(&f.bin, "hang", "exec sleep 30");
    fake_plugin(&f.bin, "empty", "cat >/dev/null; exit 0");
    fake_plugin(
        &f.bin,
        "wrongif",
        r#"cat >/dev/null; [ "$CNI_COMMAND" = DEL ] && exit 0
echo '{"cniVersion":"1.0.0","interfaces":[],"ips":[{"address":"10.0.0.2/8","interface":4}]}'"#,
    );
    std::fs::write(f.bin.join("notexec"), "#!/bin/sh\nexit 0\n").unwrap();

    let one = |t: &str| {
        NetworkConfigList::from_bytes(
            json!({"cniVersion": "1.0.0", "name": "bad", "type": t})
                .to_string()
                .as_bytes(),
            Path::new("t"),
        )
        .unwrap()
    };
    let rt = runtime();
    let err = f.cni.add(&one("crash"), &rt).unwrap_err();
    // The DEL of the rollback fails too (same plugin): both are said.
    let msg = err.to_string();
    assert!(
        msg.contains("panic: boom") && msg.contains("exit status: 2"),
        "{msg}"
    );
    assert!(matches!(err, Error::AddRollback { .. }), "{err:?}");

    let err = f.cni.add(&one("chatty"), &rt).unwrap_err();
    assert!(
        matches!(&err, Error::BadOutput { why, .. } if why.contains("more than")),
        "{err:?}"
    );
    let err = f.cni.add(&one("empty"), &rt).unwrap_err();
    assert!(matches!(err, Error::BadOutput { .. }), "{err:?}");
    let err = f.cni.add(&one("wrongif"), &rt).unwrap_err();
    assert!(err.to_string().contains("names interface 4"), "{err}");

    let mut quick = f.cni.clone();
    quick.timeout = Duration::from_secs(1);
    let start = Instant::now();
    let err = quick.add(&one("hang"), &rt).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(10));
    let msg = err.to_string();
    assert!(msg.contains("did not finish within 1s"), "{msg}");
    // A hanging plugin that never reads a config larger than a pipe holds.
    let big = NetworkConfigList::from_bytes(
        json!({"cniVersion": "1.0.0", "name": "bad", "type": "hang", "pad": "x".repeat(300_000)})
            .to_string()
            .as_bytes(),
        Path::new("t"),
    )
    .unwrap();
    let start = Instant::now();
    assert!(quick.add(&big, &rt).is_err());
    assert!(start.elapsed() < Duration::from_secs(10));

    for missing in ["notexec", "nosuch"] {
        let err = f.cni.add(&one(missing), &rt).unwrap_err();
        assert!(
            matches!(&err, Error::AddRollback { add, .. } if matches!(**add, Error::PluginNotFound { .. })),
            "{err:?}"
        );
        assert!(err.to_string().contains(&format!("{missing:?} not found")));
    }
    assert!(f.cni.cache().list("bad").unwrap().is_empty());
}
