//! `docker stats`: the container's cgroup figures in Docker's JSON shape.

use serde_json::{json, Value};

use super::record::Container;

fn system_cpu_nanos() -> u64 {
    let s = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = s
        .lines()
        .next()
        .map(|l| {
            l.split_whitespace()
                .skip(1)
                .take(8)
                .filter_map(|x| x.parse::<u64>().ok())
                .sum()
        })
        .unwrap_or(0);
    // USER_HZ is 100 on every Linux this runs on.
    ticks * 10_000_000
}

/// One sample; `None` when the cgroup is gone.
pub fn sample(c: &Container, cgroups_path: &str, ncpu: usize, mem_total: u64) -> Option<Value> {
    let m = kos_cgroups::Manager::new(Some(cgroups_path), &c.id).ok()?;
    if !m.exists() {
        return None;
    }
    let s = m.stats().ok()?;
    let blk = |v: &[kos_cgroups::stats::BlkioEntry]| -> Vec<Value> {
        v.iter()
            .map(|b| json!({"major": b.major, "minor": b.minor, "op": b.op, "value": b.value}))
            .collect()
    };
    let cache = s
        .memory
        .raw
        .get("total_inactive_file")
        .or(s.memory.raw.get("inactive_file"))
        .copied()
        .unwrap_or(0);
    // Docker's `limit` is omitempty: an unlimited cgroup has none.
    let pids = if s.pids.limit == 0 {
        json!({"current": s.pids.current})
    } else {
        json!({"current": s.pids.current, "limit": s.pids.limit})
    };
    Some(json!({
        "read": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "pids_stats": pids,
        "blkio_stats": {
            "io_service_bytes_recursive": blk(&s.blkio.io_service_bytes_recursive),
            "io_serviced_recursive": blk(&s.blkio.io_serviced_recursive),
            "io_queue_recursive": null, "io_service_time_recursive": null, "io_wait_time_recursive": null,
            "io_merged_recursive": null, "io_time_recursive": null, "sectors_recursive": null,
        },
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": {
            "cpu_usage": {
                "total_usage": s.cpu.usage.total,
                "percpu_usage": s.cpu.usage.percpu,
                "usage_in_kernelmode": s.cpu.usage.kernel,
                "usage_in_usermode": s.cpu.usage.user,
            },
            "system_cpu_usage": system_cpu_nanos(),
            "online_cpus": ncpu,
            "throttling_data": {"periods": s.cpu.throttling.periods, "throttled_periods": s.cpu.throttling.throttled_periods, "throttled_time": s.cpu.throttling.throttled_time},
        },
        "memory_stats": {
            "usage": s.memory.usage.usage,
            "max_usage": s.memory.usage.max,
            // An unlimited cgroup reports a huge number; Docker shows the host's memory then.
            "limit": if s.memory.usage.limit == 0 || s.memory.usage.limit > mem_total { mem_total } else { s.memory.usage.limit },
            "failcnt": s.memory.usage.failcnt,
            "stats": s.memory.raw,
            "cache": cache,
        },
        "name": format!("/{}", c.name),
        "id": c.id,
    }))
    .map(|mut v| {
        if let Some(n) = networks(c) {
            v["networks"] = n;
        }
        v
    })
}

/// The container's interfaces' counters (Docker's `networks`), read from its netns through
/// its init's /proc/PID/net/dev; none for a container without its own network (host, none).
fn networks(c: &Container) -> Option<Value> {
    if !matches!(
        super::netmode::NetMode::parse(&c.host_config),
        super::netmode::NetMode::Network(_)
    ) || c.state.pid <= 0
    {
        return None;
    }
    let text = std::fs::read_to_string(format!("/proc/{}/net/dev", c.state.pid)).ok()?;
    Some(parse_net_dev(&text))
}

/// `/proc/net/dev` as Docker's per-interface map, without loopback.
fn parse_net_dev(text: &str) -> Value {
    let mut out = serde_json::Map::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name == "lo" {
            continue;
        }
        let f: Vec<u64> = rest
            .split_whitespace()
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        if f.len() < 12 {
            continue;
        }
        out.insert(
            name.to_string(),
            json!({
                "rx_bytes": f[0], "rx_packets": f[1], "rx_errors": f[2], "rx_dropped": f[3],
                "tx_bytes": f[8], "tx_packets": f[9], "tx_errors": f[10], "tx_dropped": f[11],
            }),
        );
    }
    Value::Object(out)
}

/// What Docker sends for a container that is not running.
pub fn empty(c: &Container) -> Value {
    json!({
        "read": "0001-01-01T00:00:00Z", "preread": "0001-01-01T00:00:00Z",
        "pids_stats": {}, "blkio_stats": {}, "num_procs": 0, "storage_stats": {},
        "cpu_stats": {"cpu_usage": {"total_usage": 0}, "throttling_data": {}},
        "precpu_stats": {"cpu_usage": {"total_usage": 0}, "throttling_data": {}},
        "memory_stats": {}, "name": format!("/{}", c.name), "id": c.id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_dev_counters_without_loopback() {
        let t = "Inter-|   Receive                                                |  Transmit\n \
                 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n    \
                 lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0\n  \
                 eth0:    5000      40    1    2    0     0          0         0     3000      30    3    4    0     0       0          0\n";
        let v = parse_net_dev(t);
        assert!(v.get("lo").is_none());
        assert_eq!(
            v["eth0"],
            json!({"rx_bytes": 5000, "rx_packets": 40, "rx_errors": 1, "rx_dropped": 2,
                   "tx_bytes": 3000, "tx_packets": 30, "tx_errors": 3, "tx_dropped": 4})
        );
    }
}
