//! Stats from a v2 cgroup.

use std::path::Path;

use crate::error::Result;
use crate::fsutil::parse_flat_keyed;

use super::{page_sizes, parse_list, read_opt, read_u64_opt, BlkioEntry, Hugetlb, Stats};

pub(super) fn fill(d: &Path, s: &mut Stats) -> Result<()> {
    if let Some(st) = read_opt(&d.join("cpu.stat"))? {
        for (k, v) in parse_flat_keyed(&st) {
            match k {
                "usage_usec" => s.cpu.usage.total = v * 1000,
                "user_usec" => s.cpu.usage.user = v * 1000,
                "system_usec" => s.cpu.usage.kernel = v * 1000,
                "nr_periods" => s.cpu.throttling.periods = v,
                "nr_throttled" => s.cpu.throttling.throttled_periods = v,
                "throttled_usec" => s.cpu.throttling.throttled_time = v * 1000,
                _ => {}
            }
        }
    }
    if let Some(c) = read_opt(&d.join("cpuset.cpus.effective"))? {
        s.cpuset.cpus = parse_list(&c);
    }
    if let Some(c) = read_opt(&d.join("cpuset.mems.effective"))? {
        s.cpuset.mems = parse_list(&c);
    }
    s.memory.usage.usage = read_u64_opt(&d.join("memory.current"))?;
    s.memory.usage.max = read_u64_opt(&d.join("memory.peak"))?;
    s.memory.usage.limit = read_u64_opt(&d.join("memory.max"))?;
    s.memory.swap.usage = read_u64_opt(&d.join("memory.swap.current"))?;
    s.memory.swap.max = read_u64_opt(&d.join("memory.swap.peak"))?;
    s.memory.swap.limit = read_u64_opt(&d.join("memory.swap.max"))?;
    if let Some(st) = read_opt(&d.join("memory.stat"))? {
        for (k, v) in parse_flat_keyed(&st) {
            s.memory.raw.insert(k.to_string(), v);
        }
        s.memory.cache = s.memory.raw.get("file").copied().unwrap_or(0);
        s.memory.rss = s.memory.raw.get("anon").copied().unwrap_or(0);
        s.memory.kernel.usage = s.memory.raw.get("kernel").copied().unwrap_or(0);
        s.memory.kernel_tcp.usage = s.memory.raw.get("sock").copied().unwrap_or(0);
    }
    if let Some(ev) = read_opt(&d.join("memory.events"))? {
        for (k, v) in parse_flat_keyed(&ev) {
            match k {
                "oom" => s.memory.oom_events = v,
                "oom_kill" => s.memory.oom_kill = v,
                "max" => s.memory.usage.failcnt = v,
                _ => {}
            }
        }
    }
    s.pids.current = read_u64_opt(&d.join("pids.current"))?;
    let l = read_u64_opt(&d.join("pids.max"))?;
    s.pids.limit = if l == u64::MAX { 0 } else { l };
    if let Some(io) = read_opt(&d.join("io.stat"))? {
        parse_io_stat(&io, s);
    }
    hugetlb(d, s)
}

/// io.stat lines: "8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0".
pub(super) fn parse_io_stat(io: &str, s: &mut Stats) {
    for l in io.lines() {
        let mut it = l.split_whitespace();
        let Some((ma, mi)) = it.next().and_then(|d| d.split_once(':')) else {
            continue;
        };
        let (Ok(major), Ok(minor)) = (ma.parse::<u64>(), mi.parse::<u64>()) else {
            continue;
        };
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else {
                continue;
            };
            let Ok(value) = v.parse::<u64>() else {
                continue;
            };
            let (dst, op) = match k {
                "rbytes" => (&mut s.blkio.io_service_bytes_recursive, "Read"),
                "wbytes" => (&mut s.blkio.io_service_bytes_recursive, "Write"),
                "rios" => (&mut s.blkio.io_serviced_recursive, "Read"),
                "wios" => (&mut s.blkio.io_serviced_recursive, "Write"),
                _ => continue,
            };
            dst.push(BlkioEntry {
                major,
                minor,
                op: op.to_string(),
                value,
            });
        }
    }
}

pub(super) fn hugetlb(d: &Path, s: &mut Stats) -> Result<()> {
    for size in page_sizes() {
        let cur = d.join(format!("hugetlb.{size}.current"));
        if !cur.exists() {
            continue;
        }
        let failcnt = read_opt(&d.join(format!("hugetlb.{size}.events")))?
            .and_then(|e| {
                parse_flat_keyed(&e)
                    .into_iter()
                    .find(|(k, _)| *k == "max")
                    .map(|(_, v)| v)
            })
            .unwrap_or(0);
        s.hugetlb.insert(
            size,
            Hugetlb {
                usage: read_u64_opt(&cur)?,
                max: 0,
                failcnt,
            },
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn io_stat() {
        let mut s = super::Stats::default();
        super::parse_io_stat(
            "8:0 rbytes=10 wbytes=20 rios=1 wios=2 dbytes=0 dios=0\n",
            &mut s,
        );
        assert_eq!(s.blkio.io_service_bytes_recursive.len(), 2);
        assert_eq!(s.blkio.io_service_bytes_recursive[1].value, 20);
        assert_eq!(s.blkio.io_serviced_recursive[0].op, "Read");
    }
}
