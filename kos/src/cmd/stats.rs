//! `stats`: docker's computation of CPU %, memory, network and block I/O
//! from the stats endpoint, as a live table redrawn every second or once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use serde_json::{json, Value};

use super::seg;
use crate::cli::StatsCmd;
use crate::client::{self, query, Client};
use crate::format::units::{bytes_size, human_size};
use crate::format::{short_id, Ctx, Format};
use crate::status;

const HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Container", "CONTAINER"),
    ("Name", "NAME"),
    ("CPUPerc", "CPU %"),
    ("MemUsage", "MEM USAGE / LIMIT"),
    ("MemPerc", "MEM %"),
    ("NetIO", "NET I/O"),
    ("BlockIO", "BLOCK I/O"),
    ("PIDs", "PIDS"),
];

const DEFAULT: &str = "table {{.ID}}\t{{.Name}}\t{{.CPUPerc}}\t{{.MemUsage}}\t{{.MemPerc}}\t{{.NetIO}}\t{{.BlockIO}}\t{{.PIDs}}";

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// One stats sample as docker's `StatsEntry` fields.
pub fn row(container: &str, s: &Value, trunc: bool) -> Value {
    let cpu_delta = f(&s["cpu_stats"]["cpu_usage"]["total_usage"])
        - f(&s["precpu_stats"]["cpu_usage"]["total_usage"]);
    let sys_delta =
        f(&s["cpu_stats"]["system_cpu_usage"]) - f(&s["precpu_stats"]["system_cpu_usage"]);
    let mut online = f(&s["cpu_stats"]["online_cpus"]);
    if online == 0.0 {
        online = s["cpu_stats"]["cpu_usage"]["percpu_usage"]
            .as_array()
            .map(|a| a.len() as f64)
            .unwrap_or(0.0);
    }
    let cpu = if sys_delta > 0.0 && cpu_delta > 0.0 {
        cpu_delta / sys_delta * online * 100.0
    } else {
        0.0
    };
    let ms = &s["memory_stats"];
    let usage = f(&ms["usage"]);
    // Page cache is not the container's working set: v1 total_inactive_file, v2 inactive_file.
    let cache = [
        &ms["stats"]["total_inactive_file"],
        &ms["stats"]["inactive_file"],
    ]
    .iter()
    .filter_map(|v| v.as_f64())
    .find(|c| *c < usage)
    .unwrap_or(0.0);
    let mem = usage - cache;
    let limit = f(&ms["limit"]);
    let mem_perc = if limit != 0.0 {
        mem / limit * 100.0
    } else {
        0.0
    };
    let (mut rx, mut tx) = (0.0, 0.0);
    for n in s["networks"]
        .as_object()
        .into_iter()
        .flat_map(|m| m.values())
    {
        rx += f(&n["rx_bytes"]);
        tx += f(&n["tx_bytes"]);
    }
    let (mut rd, mut wr) = (0.0, 0.0);
    for e in s["blkio_stats"]["io_service_bytes_recursive"]
        .as_array()
        .into_iter()
        .flatten()
    {
        match e["op"].as_str().map(str::to_ascii_lowercase).as_deref() {
            Some("read") => rd += f(&e["value"]),
            Some("write") => wr += f(&e["value"]),
            _ => {}
        }
    }
    let id = s["id"].as_str().unwrap_or(container);
    json!({
        "BlockIO": format!("{} / {}", human_size(rd), human_size(wr)),
        "CPUPerc": format!("{cpu:.2}%"),
        "Container": container,
        "ID": if trunc { short_id(id) } else { id.to_string() },
        "MemPerc": format!("{mem_perc:.2}%"),
        "MemUsage": format!("{} / {}", bytes_size(mem), bytes_size(limit)),
        "Name": s["name"].as_str().unwrap_or("").trim_start_matches('/'),
        "NetIO": format!("{} / {}", human_size(rx), human_size(tx)),
        "PIDs": s["pids_stats"]["current"].as_u64().unwrap_or(0).to_string(),
    })
}

fn targets(c: &Client, st: &StatsCmd) -> Result<Vec<String>> {
    if !st.containers.is_empty() {
        return Ok(st.containers.clone());
    }
    let q = if st.all { "?all=1" } else { "" };
    let list: Vec<Value> = c.get_json(&format!("/containers/json{q}"))?;
    Ok(list
        .iter()
        .filter_map(|x| x["Id"].as_str().map(short_id))
        .collect())
}

pub fn stats(c: &Client, st: StatsCmd) -> Result<i32> {
    let fmt = Format::new(st.format.as_deref(), DEFAULT)
        .map_err(|e| status(1, e))?
        .in_context(Ctx("*container.statsContext"));
    let names = targets(c, &st)?;
    let trunc = !st.no_trunc;
    let latest: Arc<Mutex<HashMap<String, Value>>> = Arc::new(Mutex::new(HashMap::new()));
    let errors: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    for n in &names {
        let (c2, n2, latest, errors) = (c.pinned(), n.clone(), latest.clone(), errors.clone());
        let stream = !st.no_stream;
        handles.push(std::thread::spawn(move || {
            let q = query(&[("stream", if stream { "1".into() } else { "0".into() })]);
            let r = match c2.get(&format!("/containers/{}/stats{q}", seg(&n2))) {
                Ok(r) => r,
                Err(e) => {
                    errors
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(e.to_string());
                    return;
                }
            };
            let _ = client::json_lines(r, |v| {
                latest
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(n2.clone(), v);
                Ok(())
            });
        }));
    }
    let render = |names: &[String]| -> Result<String> {
        let l = latest.lock().unwrap_or_else(|p| p.into_inner());
        let rows: Vec<Value> = names
            .iter()
            .map(|n| {
                l.get(n)
                    .map(|s| row(n, s, trunc))
                    .unwrap_or_else(|| row(n, &json!({}), trunc))
            })
            .collect();
        fmt.render(&rows, HEADERS).map_err(|e| status(1, e))
    };
    if st.no_stream {
        for h in handles {
            let _ = h.join();
        }
        let errs = errors.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if !errs.is_empty() {
            return Err(status(1, errs.join("\n")));
        }
        print!("{}", render(&names)?);
        return Ok(0);
    }
    let terminal = crate::tty::is_tty(1);
    loop {
        std::thread::sleep(Duration::from_millis(
            if latest.lock().map(|l| l.is_empty()).unwrap_or(true) {
                200
            } else {
                1000
            },
        ));
        let errs = errors.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if !errs.is_empty() && errs.len() == names.len() {
            return Err(status(1, errs.join("\n")));
        }
        let text = render(&names)?;
        if terminal {
            // Clear the screen and redraw from the top, as docker does.
            print!("\x1b[2J\x1b[H{text}");
        } else {
            print!("{text}");
        }
        use std::io::Write;
        if std::io::stdout().flush().is_err() {
            return Ok(0);
        }
        if handles.iter().all(|h| h.is_finished()) {
            return Ok(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_computation() {
        let s = json!({
            "id": "0123456789abcdef", "name": "/web",
            "cpu_stats": {"cpu_usage": {"total_usage": 300}, "system_cpu_usage": 2000, "online_cpus": 2},
            "precpu_stats": {"cpu_usage": {"total_usage": 100}, "system_cpu_usage": 1000},
            "memory_stats": {"usage": 3 * 1048576, "limit": 100 * 1048576, "stats": {"total_inactive_file": 1048576}},
            "networks": {"eth0": {"rx_bytes": 1500, "tx_bytes": 500}},
            "blkio_stats": {"io_service_bytes_recursive": [{"op": "Read", "value": 4096}, {"op": "Write", "value": 8192}]},
            "pids_stats": {"current": 3}
        });
        let r = row("web", &s, true);
        assert_eq!(r["CPUPerc"], "40.00%");
        assert_eq!(r["MemUsage"], "2MiB / 100MiB");
        assert_eq!(r["MemPerc"], "2.00%");
        assert_eq!(r["NetIO"], "1.5kB / 500B");
        assert_eq!(r["BlockIO"], "4.1kB / 8.19kB");
        assert_eq!(r["PIDs"], "3");
        assert_eq!(r["Name"], "web");
        assert_eq!(r["ID"], "0123456789ab");
    }
}
