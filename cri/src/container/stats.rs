//! Container stats from the shim's cgroup metrics (containerd's v1 or v2 Metrics message).

use containerd_shim_protos::cgroups::metrics as m1;
use containerd_shim_protos::cgroups_v2::metrics as m2;
use containerd_shim_protos::protobuf::Message;
use k8s_cri::v1 as cri;

use crate::core::now_nanos;
use crate::error::{Error, Result};

/// CPU nanoseconds used, memory usage, working set, rss, page faults, major page faults.
#[derive(Debug, Default, Clone, Copy)]
pub struct Figures {
    pub cpu_ns: u64,
    pub usage: u64,
    pub working_set: u64,
    pub rss: u64,
    pub faults: u64,
    pub major_faults: u64,
}

pub fn decode(m: &kos_shim_client::Metrics) -> Result<Figures> {
    let bad = |e: containerd_shim_protos::protobuf::Error| Error::Internal {
        step: "decoding the shim's metrics",
        message: e.to_string(),
    };
    if m.type_url.ends_with("cgroups.v2.Metrics") {
        let x = m2::Metrics::parse_from_bytes(&m.value).map_err(bad)?;
        let mem = x.memory.clone().unwrap_or_default();
        Ok(Figures {
            cpu_ns: x.cpu.as_ref().map(|c| c.usage_usec * 1000).unwrap_or(0),
            usage: mem.usage,
            working_set: mem.usage.saturating_sub(mem.inactive_file),
            rss: mem.anon,
            faults: mem.pgfault,
            major_faults: mem.pgmajfault,
        })
    } else {
        let x = m1::Metrics::parse_from_bytes(&m.value).map_err(bad)?;
        let mem = x.memory.clone().unwrap_or_default();
        let usage = mem.usage.as_ref().map(|u| u.usage).unwrap_or(0);
        Ok(Figures {
            cpu_ns: x
                .cpu
                .as_ref()
                .and_then(|c| c.usage.as_ref())
                .map(|u| u.total)
                .unwrap_or(0),
            usage,
            working_set: usage.saturating_sub(mem.total_inactive_file),
            rss: mem.total_rss,
            faults: mem.total_pg_fault,
            major_faults: mem.total_pg_maj_fault,
        })
    }
}

fn v(value: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value })
}

pub fn cpu(f: &Figures) -> cri::CpuUsage {
    cri::CpuUsage {
        timestamp: now_nanos(),
        usage_core_nano_seconds: v(f.cpu_ns),
        usage_nano_cores: None,
    }
}

pub fn memory(f: &Figures) -> cri::MemoryUsage {
    cri::MemoryUsage {
        timestamp: now_nanos(),
        working_set_bytes: v(f.working_set),
        available_bytes: None,
        usage_bytes: v(f.usage),
        rss_bytes: v(f.rss),
        page_faults: v(f.faults),
        major_page_faults: v(f.major_faults),
    }
}
