//! `update`: change the resource limits of a live container and remember them in its state,
//! so a later `update`, `kosd` or anyone reading the state sees the limits in force.

use std::path::Path;

use oci_spec::runtime::{LinuxMemory, LinuxResources, LinuxThrottleDevice};

use crate::container::Container;
use crate::error::{Error, Result, Stage};
use crate::store::SavedConfig;

/// Applies `change` to the container's cgroup and merges it into the saved
/// `linux.resources`. Fields left out, or set to 0 (runc's "unchanged"), keep their value.
/// Device rules cannot be changed this way (as with runc): they are ignored with a warning.
/// Returns warnings.
pub fn update(root: &Path, id: &str, change: &LinuxResources) -> Result<Vec<String>> {
    let mut c = Container::load(root, id)?;
    c.require_not_stopped()?;
    let mut warnings = Vec::new();
    let mut change = change.clone();
    if change.devices().as_ref().is_some_and(|d| !d.is_empty()) {
        warnings.push("linux.resources.devices: update cannot change device rules; ignored".into());
    }
    change.set_devices(None);

    let old = c.saved.config.clone();
    let mut spec = c.saved.spec()?;
    let mut linux = spec.linux().clone().unwrap_or_default();
    let mut current = linux.resources().clone().unwrap_or_default();
    fix_unlimited_memory(&current, &mut change);
    check_memory(&current, &change)?;
    merge(&mut current, &change);
    linux.set_resources(Some(current));
    spec.set_linux(Some(linux));
    c.saved.config = SavedConfig::from_spec(&spec).map_err(|e| Error::BadState {
        id: id.to_string(),
        reason: format!("encoding the updated config: {e}"),
    })?;

    // Saved first: the kernel write is the step that can be refused, and then the old
    // state goes back; the directory lock keeps other kosrun commands out meanwhile.
    c.save()?;
    let cg = kos_cgroups::Manager::new(Some(&c.saved.cgroup_path), id)?;
    if let Err(e) = cg.update(&change) {
        c.saved.config = old;
        if let Err(se) = c.save() {
            return Err(Error::failed(
                Stage::Update,
                format!("{e}; and restoring the c.saved limits failed: {se}"),
            ));
        }
        return Err(e.into());
    }
    Ok(warnings)
}

fn set(v: Option<i64>) -> Option<i64> {
    v.filter(|v| *v != 0)
}

/// "memory -1" alone must lift a memory+swap limit too, or the kernel refuses the new
/// memory limit as above memory+swap.
fn fix_unlimited_memory(current: &LinuxResources, change: &mut LinuxResources) {
    let Some(mem) = change.memory().as_ref() else {
        return;
    };
    let old_swap = current.memory().as_ref().and_then(|m| set(m.swap()));
    if set(mem.limit()) == Some(-1) && set(mem.swap()).is_none() && old_swap.is_some_and(|s| s > 0)
    {
        let mut m = *mem;
        m.set_swap(Some(-1));
        change.set_memory(Some(m));
    }
}

/// A memory limit above the memory+swap limit in force is refused by the kernel with a bare
/// EINVAL; say what to do instead.
fn check_memory(current: &LinuxResources, change: &LinuxResources) -> Result<()> {
    let Some(new) = change.memory().as_ref() else {
        return Ok(());
    };
    let old = current.memory().as_ref();
    let limit = set(new.limit()).or_else(|| old.and_then(|m| set(m.limit())));
    let swap = set(new.swap()).or_else(|| old.and_then(|m| set(m.swap())));
    if let (Some(l), Some(s)) = (limit, swap) {
        if l > 0 && s > 0 && s < l {
            return Err(Error::failed(
                Stage::Update,
                format!(
                    "memory limit {l} is above the memory+swap limit {s}: set the swap limit \
                 (--memory-swap) at the same time"
                ),
            ));
        }
    }
    Ok(())
}

fn merge_memory(cur: &mut LinuxMemory, new: &LinuxMemory) {
    if let Some(v) = set(new.limit()) {
        cur.set_limit(Some(v));
    }
    if let Some(v) = set(new.reservation()) {
        cur.set_reservation(Some(v));
    }
    if let Some(v) = set(new.swap()) {
        cur.set_swap(Some(v));
    }
    if let Some(v) = set(new.kernel()) {
        cur.set_kernel(Some(v));
    }
    if let Some(v) = set(new.kernel_tcp()) {
        cur.set_kernel_tcp(Some(v));
    }
    if new.swappiness().is_some() {
        cur.set_swappiness(new.swappiness());
    }
    if new.disable_oom_killer().is_some() {
        cur.set_disable_oom_killer(new.disable_oom_killer());
    }
    if new.use_hierarchy().is_some() {
        cur.set_use_hierarchy(new.use_hierarchy());
    }
}

/// Writes every field `new` sets into `cur`. Zero numbers and empty strings mean "unchanged";
/// lists (throttles, hugepage limits) replace entries with the same key and keep the others.
pub fn merge(cur: &mut LinuxResources, new: &LinuxResources) {
    if let Some(m) = new.memory() {
        let mut c = cur.memory().unwrap_or_default();
        merge_memory(&mut c, m);
        cur.set_memory(Some(c));
    }
    if let Some(n) = new.cpu() {
        let mut c = cur.cpu().clone().unwrap_or_default();
        if let Some(v) = n.shares().filter(|v| *v != 0) {
            c.set_shares(Some(v));
        }
        if let Some(v) = set(n.quota()) {
            c.set_quota(Some(v));
        }
        if let Some(v) = n.period().filter(|v| *v != 0) {
            c.set_period(Some(v));
        }
        if let Some(v) = set(n.realtime_runtime()) {
            c.set_realtime_runtime(Some(v));
        }
        if let Some(v) = n.realtime_period().filter(|v| *v != 0) {
            c.set_realtime_period(Some(v));
        }
        if let Some(v) = n.cpus().as_ref().filter(|v| !v.is_empty()) {
            c.set_cpus(Some(v.clone()));
        }
        if let Some(v) = n.mems().as_ref().filter(|v| !v.is_empty()) {
            c.set_mems(Some(v.clone()));
        }
        if n.idle().is_some() {
            c.set_idle(n.idle());
        }
        if n.burst().is_some() {
            c.set_burst(n.burst());
        }
        cur.set_cpu(Some(c));
    }
    if let Some(p) = new.pids().filter(|p| p.limit() != 0) {
        cur.set_pids(Some(p));
    }
    if let Some(n) = new.block_io() {
        let mut c = cur.block_io().clone().unwrap_or_default();
        if let Some(v) = n.weight().filter(|v| *v != 0) {
            c.set_weight(Some(v));
        }
        if let Some(v) = n.leaf_weight().filter(|v| *v != 0) {
            c.set_leaf_weight(Some(v));
        }
        if let Some(v) = n.weight_device() {
            let all = by_device(c.weight_device(), v, |d| (d.major(), d.minor()));
            c.set_weight_device(Some(all));
        }
        let key = |d: &LinuxThrottleDevice| (d.major(), d.minor());
        if let Some(v) = n.throttle_read_bps_device() {
            let all = by_device(c.throttle_read_bps_device(), v, key);
            c.set_throttle_read_bps_device(Some(all));
        }
        if let Some(v) = n.throttle_write_bps_device() {
            let all = by_device(c.throttle_write_bps_device(), v, key);
            c.set_throttle_write_bps_device(Some(all));
        }
        if let Some(v) = n.throttle_read_iops_device() {
            let all = by_device(c.throttle_read_iops_device(), v, key);
            c.set_throttle_read_iops_device(Some(all));
        }
        if let Some(v) = n.throttle_write_iops_device() {
            let all = by_device(c.throttle_write_iops_device(), v, key);
            c.set_throttle_write_iops_device(Some(all));
        }
        cur.set_block_io(Some(c));
    }
    if let Some(v) = new.hugepage_limits() {
        let mut all = cur.hugepage_limits().clone().unwrap_or_default();
        for h in v {
            all.retain(|o| o.page_size() != h.page_size());
            all.push(h.clone());
        }
        cur.set_hugepage_limits(Some(all));
    }
    if let Some(n) = new.network() {
        cur.set_network(Some(n.clone()));
    }
    if let Some(v) = new.rdma() {
        let mut all = cur.rdma().clone().unwrap_or_default();
        all.extend(v.iter().map(|(k, r)| (k.clone(), *r)));
        cur.set_rdma(Some(all));
    }
    if let Some(v) = new.unified() {
        let mut all = cur.unified().clone().unwrap_or_default();
        all.extend(v.iter().map(|(k, s)| (k.clone(), s.clone())));
        cur.set_unified(Some(all));
    }
}

/// `cur` with each entry of `new` replacing the one for the same device.
fn by_device<T: Copy>(cur: &Option<Vec<T>>, new: &[T], key: impl Fn(&T) -> (i64, i64)) -> Vec<T> {
    let mut all = cur.clone().unwrap_or_default();
    for d in new {
        all.retain(|o| key(o) != key(d));
        all.push(*d);
    }
    all
}

/// Parses a byte count as runc's update flags take it: "-1" for unlimited, or a number
/// (decimals allowed) with an optional binary unit k/m/g/t/p, optionally followed by "i"
/// and/or "b", case-insensitive, with at most one space before the unit: "512m", "1.5G",
/// "64 MiB", "4096".
pub fn parse_bytes(s: &str) -> Result<i64> {
    let bad = |why: &str| Error::failed(Stage::Update, format!("invalid size {s:?}: {why}"));
    if s == "-1" {
        return Ok(-1);
    }
    let num_end = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, rest) = s.split_at(num_end);
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') || num.contains("..") {
        return Err(bad("expected a number with an optional unit like 512m"));
    }
    let rest = rest.strip_prefix(' ').unwrap_or(rest);
    let mut chars = rest.chars().peekable();
    let shift = match chars.peek().map(|c| c.to_ascii_lowercase()) {
        Some('k') => 10,
        Some('m') => 20,
        Some('g') => 30,
        Some('t') => 40,
        Some('p') => 50,
        _ => 0,
    };
    if shift != 0 {
        chars.next();
    }
    if chars.peek().is_some_and(|c| c.eq_ignore_ascii_case(&'i')) {
        chars.next();
    }
    if chars.peek().is_some_and(|c| c.eq_ignore_ascii_case(&'b')) {
        chars.next();
    }
    if chars.next().is_some() {
        return Err(bad("unknown unit (use k, m, g, t or p)"));
    }
    if num.contains('.') {
        let f: f64 = num.parse().map_err(|_| bad("not a number"))?;
        let value = f * (1u64 << shift) as f64;
        if !value.is_finite() || value >= i64::MAX as f64 {
            return Err(bad("too large"));
        }
        return Ok(value as i64);
    }
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1u64 << shift))
        .and_then(|v| i64::try_from(v).ok())
        .ok_or_else(|| bad("too large"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxCpu, LinuxHugepageLimit, LinuxPids};

    #[test]
    fn sizes_like_runc() {
        assert_eq!(parse_bytes("4096").unwrap(), 4096);
        assert_eq!(parse_bytes("512m").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("512M").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("512MB").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("64 MiB").unwrap(), 64 << 20);
        assert_eq!(parse_bytes("1.5g").unwrap(), 3 << 29);
        assert_eq!(parse_bytes("2k").unwrap(), 2048);
        assert_eq!(parse_bytes("10b").unwrap(), 10);
        assert_eq!(parse_bytes("1t").unwrap(), 1 << 40);
        assert_eq!(parse_bytes("-1").unwrap(), -1);
        assert_eq!(parse_bytes("0").unwrap(), 0);
        for bad in [
            "",
            "m",
            "12x",
            "1.2.3g",
            "-5",
            "1  m",
            ".5g",
            "5.g",
            "9999999999p",
        ] {
            assert!(parse_bytes(bad).is_err(), "{bad:?} accepted");
        }
        let e = parse_bytes("12x").unwrap_err().to_string();
        assert!(e.contains("\"12x\""), "{e}");
    }

    fn mem(limit: i64, swap: i64) -> LinuxResources {
        let mut m = LinuxMemory::default();
        m.set_limit(Some(limit)).set_swap(Some(swap));
        let mut r = LinuxResources::default();
        r.set_memory(Some(m));
        r
    }

    #[test]
    fn merge_keeps_what_is_not_changed() {
        let mut cur = mem(64 << 20, 0);
        let mut cpu = LinuxCpu::default();
        cpu.set_shares(Some(512)).set_cpus(Some("0".into()));
        cur.set_cpu(Some(cpu));
        let mut h = LinuxHugepageLimit::default();
        h.set_page_size("2MB".into()).set_limit(1);
        cur.set_hugepage_limits(Some(vec![h.clone()]));

        let mut change = mem(128 << 20, 0);
        let mut pids = LinuxPids::default();
        pids.set_limit(42);
        change.set_pids(Some(pids));
        let mut cpu = LinuxCpu::default();
        cpu.set_quota(Some(50000)).set_cpus(Some(String::new()));
        change.set_cpu(Some(cpu));
        h.set_limit(4 << 20);
        change.set_hugepage_limits(Some(vec![h]));
        merge(&mut cur, &change);

        let m = cur.memory().unwrap();
        assert_eq!(m.limit(), Some(128 << 20));
        assert_eq!(m.swap(), Some(0));
        let c = cur.cpu().clone().unwrap();
        assert_eq!(c.shares(), Some(512));
        assert_eq!(c.quota(), Some(50000));
        assert_eq!(c.cpus().as_deref(), Some("0"));
        assert_eq!(cur.pids().unwrap().limit(), 42);
        let hl = cur.hugepage_limits().clone().unwrap();
        assert_eq!(hl.len(), 1);
        assert_eq!(hl[0].limit(), 4 << 20);
    }

    #[test]
    fn zero_pids_is_unchanged() {
        let mut cur = LinuxResources::default();
        let mut p = LinuxPids::default();
        p.set_limit(10);
        cur.set_pids(Some(p));
        let mut change = LinuxResources::default();
        change.set_pids(Some(LinuxPids::default()));
        merge(&mut cur, &change);
        assert_eq!(cur.pids().unwrap().limit(), 10);
    }

    #[test]
    fn memory_above_swap_is_refused_early() {
        let cur = mem(32 << 20, 32 << 20);
        assert!(check_memory(&cur, &mem(64 << 20, 0)).is_err());
        assert!(check_memory(&cur, &mem(64 << 20, 64 << 20)).is_ok());
        assert!(check_memory(&cur, &mem(16 << 20, 0)).is_ok());
    }

    #[test]
    fn unlimited_memory_lifts_swap() {
        let cur = mem(32 << 20, 32 << 20);
        let mut change = mem(-1, 0);
        fix_unlimited_memory(&cur, &mut change);
        assert_eq!(change.memory().unwrap().swap(), Some(-1));
        let mut change = mem(64 << 20, 0);
        fix_unlimited_memory(&cur, &mut change);
        assert_eq!(change.memory().unwrap().swap(), Some(0));
    }
}
