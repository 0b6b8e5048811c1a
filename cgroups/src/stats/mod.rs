//! Usage figures in the JSON shape of runc's `events --stats` data.

mod v1;
mod v2;

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use serde::Serialize;

use crate::dirs::Dirs;
use crate::error::{Error, Result};
use crate::layout::Layout;

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// CPU time in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CpuUsage {
    pub kernel: u64,
    pub user: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub total: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_kernel: Vec<u64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub percpu_user: Vec<u64>,
}

/// CFS bandwidth throttling.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Throttling {
    #[serde(skip_serializing_if = "is_zero")]
    pub periods: u64,
    #[serde(rename = "throttledPeriods", skip_serializing_if = "is_zero")]
    pub throttled_periods: u64,
    /// Nanoseconds.
    #[serde(rename = "throttledTime", skip_serializing_if = "is_zero")]
    pub throttled_time: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Cpu {
    pub usage: CpuUsage,
    pub throttling: Throttling,
}

/// The cpuset in force. The flags are v1-only and stay 0 on v2.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CpuSet {
    pub cpus: Vec<u32>,
    pub cpu_exclusive: u64,
    pub mems: Vec<u32>,
    pub mem_hardwall: u64,
    pub mem_exclusive: u64,
    pub memory_migrate: u64,
    pub memory_spread_page: u64,
    pub memory_spread_slab: u64,
    pub memory_pressure: u64,
    pub sched_load_balance: u64,
    pub sched_relax_domain_level: i64,
}

/// Expands a kernel list such as "0-2,5" into its members; malformed parts are skipped.
pub(crate) fn parse_list(s: &str) -> Vec<u32> {
    let mut out = Vec::new();
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<u32>(), b.parse::<u32>()) {
                    if b >= a && b - a < 65536 {
                        out.extend(a..=b);
                    }
                }
            }
            None => out.extend(part.parse::<u32>().ok()),
        }
    }
    out
}

/// One memory counter; limits read "max" as u64::MAX.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct MemoryEntry {
    pub limit: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Memory {
    #[serde(skip_serializing_if = "is_zero")]
    pub cache: u64,
    /// Anonymous memory (v1 "rss", v2 "anon").
    #[serde(skip_serializing_if = "is_zero")]
    pub rss: u64,
    pub usage: MemoryEntry,
    pub swap: MemoryEntry,
    pub kernel: MemoryEntry,
    #[serde(rename = "kernelTCP")]
    pub kernel_tcp: MemoryEntry,
    /// Times the cgroup hit its limit and the OOM killer ran (v2 "oom"; v1 under_oom count
    /// is not kept by the kernel, so v1 reports oom kills here too).
    #[serde(rename = "oomEvents")]
    pub oom_events: u64,
    /// Processes the OOM killer killed in this cgroup.
    #[serde(rename = "oomKill")]
    pub oom_kill: u64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub raw: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Pids {
    #[serde(skip_serializing_if = "is_zero")]
    pub current: u64,
    /// 0 when unlimited.
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct BlkioEntry {
    #[serde(skip_serializing_if = "is_zero")]
    pub major: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub minor: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub op: String,
    #[serde(skip_serializing_if = "is_zero")]
    pub value: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Blkio {
    #[serde(
        rename = "ioServiceBytesRecursive",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub io_service_bytes_recursive: Vec<BlkioEntry>,
    #[serde(rename = "ioServicedRecursive", skip_serializing_if = "Vec::is_empty")]
    pub io_serviced_recursive: Vec<BlkioEntry>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Hugetlb {
    #[serde(skip_serializing_if = "is_zero")]
    pub usage: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub max: u64,
    pub failcnt: u64,
}

/// The `data` of a runc `events --stats` record.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Stats {
    pub cpu: Cpu,
    pub cpuset: CpuSet,
    pub memory: Memory,
    pub pids: Pids,
    pub blkio: Blkio,
    /// Keyed by page size as the kernel names it ("2MB").
    pub hugetlb: BTreeMap<String, Hugetlb>,
}

/// One line of `events --stats` output: `{"type":"stats","id":"<container>","data":{...}}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StatsEvent<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub id: &'a str,
    pub data: &'a Stats,
}

impl<'a> StatsEvent<'a> {
    pub fn new(id: &'a str, data: &'a Stats) -> Self {
        StatsEvent {
            kind: "stats",
            id,
            data,
        }
    }
}

/// Reads a file, treating "absent" (controller not mounted or not enabled) as None.
pub(crate) fn read_opt(p: &Path) -> Result<Option<String>> {
    match crate::fsutil::read_small(p) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Read {
            path: p.to_path_buf(),
            source,
        }),
    }
}

pub(crate) fn read_u64_opt(p: &Path) -> Result<u64> {
    Ok(read_opt(p)?
        .and_then(|s| crate::fsutil::parse_u64(s.trim()))
        .unwrap_or(0))
}

/// Huge page sizes the host offers, in the kernel's cgroup naming ("2MB", "1GB").
pub(crate) fn page_sizes() -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/sys/kernel/mm/hugepages") {
        for e in rd.flatten() {
            let n = e.file_name();
            if let Some(kb) = n
                .to_str()
                .and_then(|s| s.strip_prefix("hugepages-"))
                .and_then(|s| s.strip_suffix("kB"))
                .and_then(|s| s.parse::<u64>().ok())
            {
                out.push(page_size_name(kb));
            }
        }
    }
    out.sort();
    out
}

pub(crate) fn page_size_name(kb: u64) -> String {
    if kb >= 1 << 20 && kb.is_multiple_of(1 << 20) {
        format!("{}GB", kb >> 20)
    } else if kb >= 1 << 10 && kb.is_multiple_of(1 << 10) {
        format!("{}MB", kb >> 10)
    } else {
        format!("{kb}KB")
    }
}

/// Parses blkio/io stat lines "maj:min Op value" (v1) into entries.
pub(crate) fn parse_blkio_v1(s: &str) -> Vec<BlkioEntry> {
    let mut out = Vec::new();
    for l in s.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.len() != 3 {
            continue;
        }
        let Some((ma, mi)) = f[0].split_once(':') else {
            continue;
        };
        let (Ok(major), Ok(minor), Ok(value)) = (ma.parse(), mi.parse(), f[2].parse()) else {
            continue;
        };
        out.push(BlkioEntry {
            major,
            minor,
            op: f[1].to_string(),
            value,
        });
    }
    out
}

pub(crate) fn collect(m: &Dirs) -> Result<Stats> {
    let mut s = Stats::default();
    match m.layout {
        Layout::V2 => {
            if let Some(d) = m.v2() {
                v2::fill(d, &mut s)?;
            }
        }
        Layout::V1 | Layout::Hybrid => {
            let readers: [(&str, V1Reader); 7] = [
                ("cpuacct", v1::cpuacct),
                ("cpu", v1::cpu),
                ("cpuset", v1::cpuset),
                ("memory", v1::memory),
                ("pids", v1::pids),
                ("blkio", v1::blkio),
                ("hugetlb", v1::hugetlb),
            ];
            for (controller, read) in readers {
                if let Some(d) = m.v1(controller) {
                    read(d, &mut s)?;
                }
            }
            if m.v1("hugetlb").is_none() {
                if let Some(d) = m.v2() {
                    v2::hugetlb(d, &mut s)?;
                }
            }
        }
    }
    Ok(s)
}

/// Fills the figures of one v1 controller from its directory.
type V1Reader = fn(&Path, &mut Stats) -> Result<()>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists() {
        assert_eq!(parse_list("0-2,5\n"), vec![0, 1, 2, 5]);
        assert_eq!(parse_list(""), Vec::<u32>::new());
        assert_eq!(parse_list("3"), vec![3]);
        assert_eq!(parse_list("x,2-1,4"), vec![4]);
    }

    #[test]
    fn page_size_names() {
        assert_eq!(page_size_name(2048), "2MB");
        assert_eq!(page_size_name(1048576), "1GB");
        assert_eq!(page_size_name(64), "64KB");
    }

    #[test]
    fn blkio_v1_lines() {
        let e = parse_blkio_v1("8:0 Read 4096\n8:0 Write 0\nTotal 4096\n");
        assert_eq!(e.len(), 2);
        assert_eq!(
            e[0],
            BlkioEntry {
                major: 8,
                minor: 0,
                op: "Read".into(),
                value: 4096
            }
        );
    }

    #[test]
    fn json_shape_matches_runc_names() {
        let mut s = Stats::default();
        s.memory.usage.limit = 5;
        s.cpu.throttling.throttled_periods = 2;
        s.hugetlb.insert("2MB".into(), Hugetlb::default());
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["memory"]["usage"]["limit"], 5);
        assert_eq!(v["cpu"]["throttling"]["throttledPeriods"], 2);
        assert_eq!(v["hugetlb"]["2MB"]["failcnt"], 0);
        assert!(v["memory"].get("kernelTCP").is_some());
        let e = serde_json::to_value(StatsEvent::new("c1", &s)).unwrap();
        assert_eq!(e["type"], "stats");
        assert_eq!(e["id"], "c1");
        assert_eq!(e["data"]["pids"], serde_json::json!({}));
    }
}
