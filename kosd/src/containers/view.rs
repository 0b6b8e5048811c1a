//! Containers as Docker shows them: inspect, the `ps` list with filters, top.

use serde_json::{json, Value};

use super::netmode::NetMode;
use super::record::{Container, Status};
use crate::engine::Engine;
use crate::error::{ApiError, Result};
use crate::filters::Filters;
use crate::timefmt::{rfc3339_nanos, ZERO_TIME};

fn time_or_zero(n: i64) -> String {
    if n == 0 {
        ZERO_TIME.to_string()
    } else {
        rfc3339_nanos(n)
    }
}

fn networks(c: &Container) -> Value {
    let mode = NetMode::parse(&c.host_config);
    let mut m = c.networks.clone();
    if m.is_empty() {
        let name = match mode {
            NetMode::Container(_) => return json!({}),
            other => other.name(),
        };
        m.insert(
            name,
            json!({
                "IPAMConfig": null, "Links": null, "Aliases": null, "MacAddress": "",
                "NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "",
                "IPPrefixLen": 0, "IPv6Gateway": "", "GlobalIPv6Address": "",
                "GlobalIPv6PrefixLen": 0, "DriverOpts": null, "DNSNames": null,
            }),
        );
    }
    Value::Object(m)
}

pub fn inspect(e: &Engine, c: &Container, size: bool) -> Value {
    let s = &c.state;
    let health = s.health.as_ref().map(|h| json!({
        "Status": h.status,
        "FailingStreak": h.failing_streak,
        "Log": h.log.iter().map(|l| json!({"Start": rfc3339_nanos(l.start), "End": rfc3339_nanos(l.end), "ExitCode": l.exit_code, "Output": l.output})).collect::<Vec<_>>(),
    }));
    let mut state = json!({
        "Status": s.status.as_str(),
        "Running": matches!(s.status, Status::Running | Status::Paused),
        "Paused": s.status == Status::Paused,
        "Restarting": s.status == Status::Restarting,
        "OOMKilled": s.oom_killed,
        "Dead": s.status == Status::Dead,
        "Pid": s.pid,
        "ExitCode": s.exit_code,
        "Error": s.error,
        "StartedAt": time_or_zero(s.started_at),
        "FinishedAt": time_or_zero(s.finished_at),
    });
    if let Some(h) = health {
        state["Health"] = h;
    }
    let mut config = serde_json::to_value(&c.config).unwrap_or_else(|_| json!({}));
    config["Image"] = json!(c.image);
    for k in [
        "AttachStdin",
        "AttachStdout",
        "AttachStderr",
        "Tty",
        "OpenStdin",
        "StdinOnce",
    ] {
        if config.get(k).is_none() {
            config[k] = json!(false);
        }
    }
    let hc = serde_json::to_value(&c.host_config).unwrap_or_else(|_| json!({}));
    let ports = if c.ports.is_null() {
        json!({})
    } else {
        c.ports.clone()
    };
    let execs = e.execs.of_container(&c.id);
    let exec_ids = if execs.is_empty() {
        Value::Null
    } else {
        json!(execs)
    };
    let mut v = json!({
        "Id": c.id,
        "Created": rfc3339_nanos(c.created),
        "Path": c.path,
        "Args": c.args,
        "State": state,
        "Image": c.image_id,
        "ResolvConfPath": c.dir.join("resolv.conf"),
        "HostnamePath": c.dir.join("hostname"),
        "HostsPath": c.dir.join("hosts"),
        "LogPath": c.log_path,
        "Name": format!("/{}", c.name),
        "RestartCount": s.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": c.mount_label,
        "ProcessLabel": c.process_label,
        "AppArmorProfile": "",
        "ExecIDs": exec_ids,
        "HostConfig": hc,
        "GraphDriver": {"Name": "overlay2", "Data": {
            "MergedDir": c.dir.join("rootfs"), "UpperDir": c.dir.join("upper"), "WorkDir": c.dir.join("work")}},
        "Mounts": super::mounts::describe(e, c),
        "Config": config,
        "NetworkSettings": {
            "Bridge": "", "SandboxID": "", "SandboxKey": "", "HairpinMode": false,
            "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
            "Ports": ports, "SecondaryIPAddresses": null, "SecondaryIPv6Addresses": null,
            "EndpointID": "", "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
            "Networks": networks(c),
        },
    });
    if size {
        v["SizeRw"] = json!(c.size_rw());
        v["SizeRootFs"] = json!(0);
    }
    v
}

/// `Ports` of the ps list: one entry per published binding.
fn ps_ports(p: &Value) -> Value {
    let mut out = Vec::new();
    if let Some(m) = p.as_object() {
        for (k, v) in m {
            let (port, proto) = k.split_once('/').unwrap_or((k, "tcp"));
            let port: u16 = port.parse().unwrap_or(0);
            match v.as_array() {
                Some(binds) => {
                    for b in binds {
                        out.push(json!({"IP": b["HostIp"], "PrivatePort": port, "PublicPort": b["HostPort"].as_str().and_then(|s| s.parse::<u16>().ok()), "Type": proto}));
                    }
                }
                None => out.push(json!({"PrivatePort": port, "Type": proto})),
            }
        }
    }
    json!(out)
}

pub const LIST_FILTERS: &[&str] = &[
    "id", "name", "label", "status", "exited", "ancestor", "before", "since", "volume", "network",
    "health", "is-task", "publish", "expose",
];

fn health_status(c: &Container) -> &str {
    c.state
        .health
        .as_ref()
        .map(|h| h.status.as_str())
        .unwrap_or("none")
}

/// `GET /containers/json`.
pub fn list(
    e: &Engine,
    all: bool,
    limit: Option<i64>,
    size: bool,
    f: &Filters,
) -> Result<Vec<Value>> {
    let mut cs = super::all(e);
    cs.sort_by_key(|c| std::cmp::Reverse(c.created));
    for s in f.get("status") {
        if ![
            "created",
            "restarting",
            "running",
            "removing",
            "paused",
            "exited",
            "dead",
        ]
        .contains(&s.as_str())
        {
            return Err(ApiError::bad(format!("invalid filter 'status={s}'")));
        }
    }
    let bound = |k: &str| -> Result<Option<i64>> {
        match f.get(k).first() {
            None => Ok(None),
            Some(x) => Ok(Some(super::runtime::find(e, x)?.created)),
        }
    };
    let before = bound("before")?;
    let since = bound("since")?;
    let ancestors: Vec<String> = f
        .get("ancestor")
        .iter()
        .filter_map(|a| crate::images::resolve(&e.store, a).ok().map(|r| r.id()))
        .collect();
    let mut out = Vec::new();
    for c in cs {
        let running = c.state.status.is_live();
        let show_all = all
            || f.has("status")
            || f.has("exited")
            || limit.is_some_and(|l| l > 0)
            || before.is_some()
            || since.is_some();
        if !show_all && !running {
            continue;
        }
        let labels = c.config.labels.clone().unwrap_or_default();
        let ok = f.any_or_unset("id", |x| c.id.starts_with(x))
            && f.any_or_unset("name", |x| {
                let x = x.strip_prefix('/').unwrap_or(x);
                c.name.contains(x)
            })
            && f.labels_match("label", |k| labels.get(k).map(String::as_str))
            && f.any_or_unset("status", |s| s == c.state.status.as_str())
            && f.any_or_unset("exited", |x| {
                c.state.status == Status::Exited && x.parse::<i64>().ok() == Some(c.state.exit_code)
            })
            && (!f.has("ancestor")
                || ancestors.contains(&c.image_id)
                || f.get("ancestor").contains(&c.image))
            && before.is_none_or(|b| c.created < b)
            && since.is_none_or(|s| c.created > s)
            && f.any_or_unset("volume", |v| {
                c.volumes.iter().any(|(n, d)| n == v || d == v)
            })
            && f.any_or_unset("network", |n| {
                NetMode::parse(&c.host_config).name() == n || c.networks.contains_key(n)
            })
            && f.any_or_unset("health", |h| h == health_status(&c));
        if !ok {
            continue;
        }
        let mut s = json!({
            "Id": c.id,
            "Names": [format!("/{}", c.name)],
            "Image": c.image,
            "ImageID": c.image_id,
            "Command": c.command_line(),
            "Created": c.created / 1_000_000_000,
            "Ports": ps_ports(&c.ports),
            "Labels": labels,
            "State": c.state.status.as_str(),
            "Status": c.status_text(),
            "HostConfig": {"NetworkMode": c.host_config.network_mode.clone().unwrap_or_default()},
            "NetworkSettings": {"Networks": networks(&c)},
            "Mounts": super::mounts::describe(e, &c),
        });
        if size {
            s["SizeRw"] = json!(c.size_rw());
            s["SizeRootFs"] = json!(0);
        }
        out.push(s);
        if limit.is_some_and(|l| l > 0 && out.len() as i64 >= l) {
            break;
        }
    }
    Ok(out)
}

/// `GET /containers/{id}/top`: ps-style rows from /proc for the container's pids.
pub fn top(pids: &[u32]) -> Value {
    let ticks = 100u64;
    let mut rows = Vec::new();
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let after = stat.rsplit_once(") ").map(|x| x.1).unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        let ppid = f.get(1).copied().unwrap_or("0");
        let cpu_ticks: u64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0)
            + f.get(12).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
        let secs = cpu_ticks / ticks;
        let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix("Uid:")
                    .map(|r| r.split_whitespace().next().unwrap_or("0").to_string())
            })
            .unwrap_or_else(|| "0".into());
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .replace('\0', " ")
                    .trim()
                    .to_string()
            })
            .unwrap_or_default();
        rows.push(json!([
            uid,
            pid.to_string(),
            ppid,
            "0",
            "",
            "?",
            format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60),
            cmd
        ]));
    }
    json!({"Titles": ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"], "Processes": rows})
}
