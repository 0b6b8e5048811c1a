//! A container's cgroup figures in containerd's Metrics messages
//! (io.containerd.cgroups.v1.Metrics on v1/hybrid hosts, v2.Metrics on pure v2).

use containerd_shim_protos::cgroups::metrics as m1;
use containerd_shim_protos::cgroups_v2::metrics as m2;
use kos_cgroups::{Layout, Stats};
use protobuf::well_known_types::any::Any;
use protobuf::{Message, MessageField};

pub fn to_any(layout: Layout, s: &Stats) -> Result<Any, protobuf::Error> {
    let mut a = Any::new();
    if layout == Layout::V2 {
        a.type_url = "io.containerd.cgroups.v2.Metrics".into();
        a.value = v2(s).write_to_bytes()?;
    } else {
        a.type_url = "io.containerd.cgroups.v1.Metrics".into();
        a.value = v1(s).write_to_bytes()?;
    }
    Ok(a)
}

fn raw(s: &Stats, k: &str) -> u64 {
    s.memory.raw.get(k).copied().unwrap_or(0)
}

fn v1(s: &Stats) -> m1::Metrics {
    let mut m = m1::Metrics::new();
    let mut pids = m1::PidsStat::new();
    pids.current = s.pids.current;
    pids.limit = s.pids.limit;
    m.pids = MessageField::some(pids);

    let mut usage = m1::CPUUsage::new();
    usage.total = s.cpu.usage.total;
    usage.kernel = s.cpu.usage.kernel;
    usage.user = s.cpu.usage.user;
    usage.per_cpu = s.cpu.usage.percpu.clone();
    let mut thr = m1::Throttle::new();
    thr.periods = s.cpu.throttling.periods;
    thr.throttled_periods = s.cpu.throttling.throttled_periods;
    thr.throttled_time = s.cpu.throttling.throttled_time;
    let mut cpu = m1::CPUStat::new();
    cpu.usage = MessageField::some(usage);
    cpu.throttling = MessageField::some(thr);
    m.cpu = MessageField::some(cpu);

    let entry = |e: &kos_cgroups::stats::MemoryEntry| {
        let mut x = m1::MemoryEntry::new();
        x.limit = e.limit;
        x.usage = e.usage;
        x.max = e.max;
        x.failcnt = e.failcnt;
        x
    };
    let mut mem = m1::MemoryStat::new();
    mem.cache = s.memory.cache;
    mem.rss = s.memory.rss;
    mem.rss_huge = raw(s, "rss_huge");
    mem.mapped_file = raw(s, "mapped_file");
    mem.dirty = raw(s, "dirty");
    mem.writeback = raw(s, "writeback");
    mem.pg_pg_in = raw(s, "pgpgin");
    mem.pg_pg_out = raw(s, "pgpgout");
    mem.pg_fault = raw(s, "pgfault");
    mem.pg_maj_fault = raw(s, "pgmajfault");
    mem.inactive_anon = raw(s, "inactive_anon");
    mem.active_anon = raw(s, "active_anon");
    mem.inactive_file = raw(s, "inactive_file");
    mem.active_file = raw(s, "active_file");
    mem.unevictable = raw(s, "unevictable");
    mem.hierarchical_memory_limit = raw(s, "hierarchical_memory_limit");
    mem.hierarchical_swap_limit = raw(s, "hierarchical_memsw_limit");
    mem.total_cache = raw(s, "total_cache");
    mem.total_rss = raw(s, "total_rss");
    mem.total_rss_huge = raw(s, "total_rss_huge");
    mem.total_mapped_file = raw(s, "total_mapped_file");
    mem.total_dirty = raw(s, "total_dirty");
    mem.total_writeback = raw(s, "total_writeback");
    mem.total_pg_pg_in = raw(s, "total_pgpgin");
    mem.total_pg_pg_out = raw(s, "total_pgpgout");
    mem.total_pg_fault = raw(s, "total_pgfault");
    mem.total_pg_maj_fault = raw(s, "total_pgmajfault");
    mem.total_inactive_anon = raw(s, "total_inactive_anon");
    mem.total_active_anon = raw(s, "total_active_anon");
    mem.total_inactive_file = raw(s, "total_inactive_file");
    mem.total_active_file = raw(s, "total_active_file");
    mem.total_unevictable = raw(s, "total_unevictable");
    mem.usage = MessageField::some(entry(&s.memory.usage));
    mem.swap = MessageField::some(entry(&s.memory.swap));
    mem.kernel = MessageField::some(entry(&s.memory.kernel));
    mem.kernel_tcp = MessageField::some(entry(&s.memory.kernel_tcp));
    m.memory = MessageField::some(mem);

    let mut oom = m1::MemoryOomControl::new();
    oom.oom_kill = s.memory.oom_kill;
    oom.under_oom = raw(s, "under_oom");
    m.memory_oom_control = MessageField::some(oom);

    let blk = |v: &[kos_cgroups::stats::BlkioEntry]| -> Vec<m1::BlkIOEntry> {
        v.iter()
            .map(|e| {
                let mut x = m1::BlkIOEntry::new();
                x.major = e.major;
                x.minor = e.minor;
                x.op = e.op.clone();
                x.value = e.value;
                x
            })
            .collect()
    };
    let mut b = m1::BlkIOStat::new();
    b.io_service_bytes_recursive = blk(&s.blkio.io_service_bytes_recursive);
    b.io_serviced_recursive = blk(&s.blkio.io_serviced_recursive);
    m.blkio = MessageField::some(b);

    m.hugetlb = s
        .hugetlb
        .iter()
        .map(|(size, h)| {
            let mut x = m1::HugetlbStat::new();
            x.pagesize = size.clone();
            x.usage = h.usage;
            x.max = h.max;
            x.failcnt = h.failcnt;
            x
        })
        .collect();
    m
}

fn v2(s: &Stats) -> m2::Metrics {
    let mut m = m2::Metrics::new();
    let mut pids = m2::PidsStat::new();
    pids.current = s.pids.current;
    pids.limit = s.pids.limit;
    m.pids = MessageField::some(pids);

    let mut cpu = m2::CPUStat::new();
    cpu.usage_usec = s.cpu.usage.total / 1000;
    cpu.user_usec = s.cpu.usage.user / 1000;
    cpu.system_usec = s.cpu.usage.kernel / 1000;
    cpu.nr_periods = s.cpu.throttling.periods;
    cpu.nr_throttled = s.cpu.throttling.throttled_periods;
    cpu.throttled_usec = s.cpu.throttling.throttled_time / 1000;
    m.cpu = MessageField::some(cpu);

    let mut mem = m2::MemoryStat::new();
    mem.anon = raw(s, "anon");
    mem.file = raw(s, "file");
    mem.kernel_stack = raw(s, "kernel_stack");
    mem.slab = raw(s, "slab");
    mem.sock = raw(s, "sock");
    mem.shmem = raw(s, "shmem");
    mem.file_mapped = raw(s, "file_mapped");
    mem.file_dirty = raw(s, "file_dirty");
    mem.file_writeback = raw(s, "file_writeback");
    mem.anon_thp = raw(s, "anon_thp");
    mem.inactive_anon = raw(s, "inactive_anon");
    mem.active_anon = raw(s, "active_anon");
    mem.inactive_file = raw(s, "inactive_file");
    mem.active_file = raw(s, "active_file");
    mem.unevictable = raw(s, "unevictable");
    mem.slab_reclaimable = raw(s, "slab_reclaimable");
    mem.slab_unreclaimable = raw(s, "slab_unreclaimable");
    mem.pgfault = raw(s, "pgfault");
    mem.pgmajfault = raw(s, "pgmajfault");
    mem.usage = s.memory.usage.usage;
    mem.usage_limit = s.memory.usage.limit;
    mem.max_usage = s.memory.usage.max;
    mem.swap_usage = s.memory.swap.usage;
    mem.swap_limit = s.memory.swap.limit;
    m.memory = MessageField::some(mem);

    let mut ev = m2::MemoryEvents::new();
    ev.oom = s.memory.oom_events;
    ev.oom_kill = s.memory.oom_kill;
    m.memory_events = MessageField::some(ev);

    m.hugetlb = s
        .hugetlb
        .iter()
        .map(|(size, h)| {
            let mut x = m2::HugeTlbStat::new();
            x.pagesize = size.clone();
            x.current = h.usage;
            x.max = h.max;
            x
        })
        .collect();
    m
}
