//! `kos system` for kosd's units, end to end: a busybox unit (Type=simple)
//! in the test's own unit directories, driven only through the kos CLI:
//! list, enable/disable, start/stop/restart, status, logs, cat, reload, the
//! job failure message and exit codes, unit events; docker's `system`
//! subcommands beside them.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn code(o: &std::process::Output) -> Option<i32> {
    o.status.code()
}

struct Units {
    lib: PathBuf,
    etc: PathBuf,
    _dir: TempDir,
}

impl Units {
    fn new() -> Units {
        let dir = TempDir::new("units");
        let (lib, etc) = (dir.path("lib"), dir.path("etc"));
        std::fs::create_dir_all(&lib).expect("lib");
        std::fs::create_dir_all(&etc).expect("etc");
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../units/shipped");
        for t in ["kos-system.target", "kos-network.target"] {
            std::fs::copy(shipped.join(t), lib.join(t)).expect("shipped target");
        }
        Units {
            lib,
            etc,
            _dir: dir,
        }
    }

    fn flags(&self) -> Vec<String> {
        vec![
            format!("--unit-dir={}", self.lib.display()),
            format!("--unit-dir={}", self.etc.display()),
        ]
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.lib.join(name), text).expect("unit file");
    }
}

/// Stops the test's units and removes their containers before kosd goes,
/// also when an assertion failed.
struct StopUnits<'a>(&'a Daemon, Vec<String>);

impl Drop for StopUnits<'_> {
    fn drop(&mut self) {
        for u in &self.1 {
            let _ = self.0.kos(&["system", "stop", u]);
        }
        let ids = out(&self.0.kos(&["ps", "-aq", "--filter", "label=kos.unit"]));
        for id in ids.lines() {
            let _ = self.0.kos(&["rm", "-f", id]);
        }
    }
}

fn service(img: &str, desc: &str, extra: &str) -> String {
    format!(
        "[Unit]\nDescription={desc}\n\n[Container]\nImage={img}\nExec=/bin/sh -c \"trap 'exit 0' TERM; echo started; while true; do echo tick; sleep 1; done\"\nNetwork=none\n\n[Service]\nType=simple\nRestart=no\nTimeoutStopSec=5s\n{extra}\n[Install]\nWantedBy=kos-system.target\n"
    )
}

#[test]
fn system_units_like_systemctl() {
    let u = Units::new();
    let d = Daemon::start_with(&u.flags());
    let reg = Registry::start();
    let img = reg.name("unitimg:1");
    push_busybox(&img, &[], serde_json::json!({}));
    d.kos_ok(&["pull", "-q", &img]);
    let stem = uniq("u");
    let name = format!("{stem}.container");
    let bad = format!("{stem}-bad.container");
    u.write(&name, &service(&img, "kos CLI test unit", ""));
    u.write(
        &bad,
        &service(&img, "always fails", "ExecStartPre=host:/bin/false\n"),
    );
    d.kos_ok(&["system", "reload"]);
    let _guard = StopUnits(&d, vec![name.clone(), bad.clone()]);

    // Only the active units by default; --all adds the idle one.
    let list = d.kos_ok(&["system", "list"]);
    assert!(list.starts_with("  UNIT "), "{list}");
    assert!(list.contains("kos-system.target"), "{list}");
    assert!(!list.contains(&name), "{list}");
    assert!(
        list.ends_with("loaded units listed. Pass --all to see loaded but inactive units, too.\n"),
        "{list}"
    );
    let all = d.kos_ok(&["system", "list", "--all"]);
    let row = all
        .lines()
        .find(|l| l.contains(&name))
        .unwrap_or_else(|| panic!("{name} in {all}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells,
        [
            name.as_str(),
            "loaded",
            "inactive",
            "dead",
            "kos",
            "CLI",
            "test",
            "unit"
        ]
    );

    // enable: systemctl's line for the link, which is really there.
    let o = d.kos(&["system", "enable", &stem]);
    assert_eq!(code(&o), Some(0), "{}", err(&o));
    let link = u.etc.join("kos-system.target.wants").join(&name);
    assert_eq!(
        err(&o),
        format!(
            "Created symlink {} → {}.\n",
            link.display(),
            u.lib.join(&name).display()
        )
    );
    assert_eq!(std::fs::read_link(&link).expect("link"), u.lib.join(&name));

    // start: exit 0, then active (running) in list, status and JSON.
    let o = d.kos(&["system", "start", &stem]);
    assert_eq!((code(&o), err(&o)), (Some(0), String::new()));
    let list = d.kos_ok(&["system", "list", &format!("{stem}*")]);
    let row = list.lines().nth(1).expect("a row");
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        [
            name.as_str(),
            "loaded",
            "active",
            "running",
            "kos",
            "CLI",
            "test",
            "unit"
        ],
        "{list}"
    );
    assert!(list.contains("\n1 loaded units listed."), "{list}");
    let js = d.kos_ok(&["system", "list", "--format", "json", &name]);
    assert!(
        js.starts_with(&format!("{{\"Name\":\"{name}\",\"Description\":")),
        "{js}"
    );
    let v: serde_json::Value = serde_json::from_str(js.trim()).expect("json line");
    assert_eq!(v["Name"], name.as_str());
    assert_eq!(v["SubState"], "running");
    assert!(v["MainPID"].as_u64().unwrap_or(0) > 0, "{v}");
    let cid = v["ContainerID"].as_str().expect("container id").to_string();
    assert!(!cid.is_empty());
    assert_eq!(
        d.kos_ok(&[
            "system",
            "list",
            "--format",
            "{{.Name}} {{.ActiveState}}",
            &name
        ]),
        format!("{name} active\n")
    );
    let t = d.kos_ok(&[
        "system",
        "list",
        "--format",
        "table {{.Name}}\t{{.SubState}}",
        &name,
    ]);
    assert!(t.starts_with("UNIT"), "{t}");
    assert!(t.lines().nth(1).expect("row").ends_with("running"), "{t}");
    // The unit's container is an ordinary container to the CLI.
    assert_eq!(
        d.kos_ok(&["inspect", "-f", "{{.State.Running}}", &cid]),
        "true\n"
    );

    // status: the server's systemctl text, exit 0 while active, with the log.
    assert!(eventually(15, || d
        .kos_ok(&["system", "status", &stem])
        .contains("tick")));
    let o = d.kos(&["system", "status", "-n", "3", &stem]);
    assert_eq!(code(&o), Some(0), "{}", err(&o));
    let st = out(&o);
    assert!(
        st.starts_with(&format!("● {name} - kos CLI test unit\n")),
        "{st}"
    );
    assert!(
        st.contains(&format!(
            "     Loaded: loaded ({}; enabled; preset: ",
            u.lib.join(&name).display()
        )),
        "{st}"
    );
    assert!(st.contains("     Active: active (running) since "), "{st}");
    assert!(st.contains("   Main PID: "), "{st}");
    let log_lines = st.split("\n\n").nth(1).unwrap_or("").lines().count();
    assert!((1..=3).contains(&log_lines), "{st}");

    // logs: the container's output, docker's flags.
    let o = d.kos(&["system", "logs", &stem]);
    assert_eq!(code(&o), Some(0), "{}", err(&o));
    assert!(out(&o).starts_with("started\ntick\n"), "{}", out(&o));
    assert_eq!(
        d.kos_ok(&["system", "logs", "--tail", "1", &stem]),
        "tick\n"
    );
    let ts = d.kos_ok(&["system", "logs", "-t", "--tail", "1", &stem]);
    let (stamp, line) = ts.trim_end().split_once(' ').expect("timestamped");
    assert!(
        chrono::DateTime::parse_from_rfc3339(stamp).is_ok() && line == "tick",
        "{ts}"
    );

    // cat: the file under its path header.
    let cat = d.kos_ok(&["system", "cat", &stem]);
    assert!(
        cat.starts_with(&format!("# {}\n", u.lib.join(&name).display())),
        "{cat}"
    );
    assert!(cat.contains("Exec=/bin/sh -c"), "{cat}");

    // restart: a new main process.
    let pid = |d: &Daemon| {
        let s = d.kos_ok(&["system", "list", "--format", "{{.MainPID}}", &name]);
        s.trim().parse::<u64>().expect("pid")
    };
    let before = pid(&d);
    let o = d.kos(&["system", "restart", &name]);
    assert_eq!((code(&o), err(&o)), (Some(0), String::new()));
    assert!(eventually(10, || pid(&d) != before && pid(&d) != 0));

    // logs -f follows until the unit stops.
    let mut follow = d
        .kos_command()
        .args(["system", "logs", "-f", &stem])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("logs -f");
    std::thread::sleep(Duration::from_millis(1500));
    let o = d.kos(&["system", "stop", &stem]);
    assert_eq!((code(&o), err(&o)), (Some(0), String::new()));
    let until = Instant::now() + Duration::from_secs(15);
    while follow.try_wait().expect("wait").is_none() {
        if Instant::now() > until {
            let _ = follow.kill();
            panic!("logs -f did not end when the unit stopped");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let fo = follow.wait_with_output().expect("logs -f output");
    assert!(String::from_utf8_lossy(&fo.stdout).contains("tick\n"));

    // Stopped: status exits 3 as systemctl's.
    let o = d.kos(&["system", "status", &name]);
    assert_eq!(code(&o), Some(3), "{}", out(&o));
    assert!(out(&o).contains("Active: inactive (dead)"), "{}", out(&o));

    // A start whose job fails: exit 1 and the contract's message.
    let o = d.kos(&["system", "start", &bad]);
    assert_eq!(code(&o), Some(1), "{}", out(&o));
    assert_eq!(
        err(&o),
        format!("Job for {bad} failed. See \"kos system status {bad}\" and \"kos system logs {bad}\" for details.\n")
    );
    let o = d.kos(&["system", "status", &bad]);
    assert_eq!(code(&o), Some(3));
    assert!(
        out(&o).starts_with(&format!("× {bad} - always fails\n")),
        "{}",
        out(&o)
    );

    // Unknown units.
    let o = d.kos(&["system", "status", "nope-unit"]);
    assert_eq!(
        (code(&o), err(&o)),
        (Some(4), "Unit nope-unit could not be found.\n".to_string())
    );
    let o = d.kos(&["system", "start", "nope-unit"]);
    assert_eq!(code(&o), Some(1));
    assert!(
        err(&o).starts_with("Failed to start nope-unit: ") && err(&o).contains("not found"),
        "{}",
        err(&o)
    );
    let o = d.kos(&["system", "cat", "nope-unit"]);
    assert_eq!(
        (code(&o), err(&o)),
        (Some(1), "No files found for nope-unit.\n".to_string())
    );

    // disable removes the link and says so.
    let o = d.kos(&["system", "disable", &name]);
    assert_eq!(code(&o), Some(0), "{}", err(&o));
    assert_eq!(err(&o), format!("Removed \"{}\".\n", link.display()));
    assert!(std::fs::symlink_metadata(&link).is_err());

    // reload picks up a new file.
    let late = format!("{stem}-late.container");
    u.write(&late, &service(&img, "added later", ""));
    assert!(!d.kos_ok(&["system", "list", "--all"]).contains(&late));
    d.kos_ok(&["system", "reload"]);
    assert!(d.kos_ok(&["system", "list", "--all"]).contains(&late));
    // Never started: no container, so no logs (the daemon's 404, docker's wording).
    let o = d.kos(&["system", "logs", &late]);
    assert_eq!(code(&o), Some(1));
    assert!(
        err(&o).starts_with("Error response from daemon: "),
        "{}",
        err(&o)
    );

    // Unit state changes in the event stream, printed like docker's events.
    let ev = d.kos_ok(&[
        "events",
        "--since",
        "5m",
        "--until",
        "0s",
        "--filter",
        "type=unit",
    ]);
    assert!(
        ev.lines()
            .any(|l| l.contains(&format!(" unit active {name} (")) && l.contains("sub=running")),
        "{ev}"
    );

    // docker's system subcommands still answer.
    assert!(d.kos_ok(&["system", "df"]).starts_with("TYPE "));
    assert!(!d
        .kos_ok(&["system", "info", "--format", "{{.ID}}"])
        .trim()
        .is_empty());
    let _ = Command::new("true").status();
}
