//! The host as KOS sees it: cgroup layout and controllers, LSMs, seccomp,
//! Landlock, NUMA, KVM, swap, memory and CPUs. Gathered once at start.

use std::path::Path;

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostInfo {
    /// v1, hybrid or v2
    pub cgroup_layout: String,
    /// "1" or "2", as Docker reports it (hybrid counts as 1: the controllers are v1).
    pub cgroup_version: String,
    pub cgroup_controllers: Vec<String>,
    pub lsms: Vec<String>,
    pub selinux: bool,
    pub apparmor: bool,
    pub seccomp: bool,
    pub landlock_abi: u32,
    pub numa_nodes: u32,
    pub kvm: bool,
    pub swap_total: u64,
    pub mem_total: u64,
    pub ncpu: usize,
    pub kernel_version: String,
    pub operating_system: String,
    pub hostname: String,
    pub architecture: String,
}

fn read(p: &str) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

fn meminfo(key: &str) -> u64 {
    read("/proc/meminfo")
        .lines()
        .find_map(|l| {
            let rest = l.strip_prefix(key)?.strip_prefix(':')?;
            rest.split_whitespace().next()?.parse::<u64>().ok()
        })
        .unwrap_or(0)
        * 1024
}

fn controllers(layout: kos_cgroups::Layout) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    if layout != kos_cgroups::Layout::V2 {
        // /proc/cgroups: name hierarchy num_cgroups enabled; hierarchy 0 means not on v1.
        for l in read("/proc/cgroups").lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() >= 4 && f[1] != "0" && f[3] == "1" {
                out.push(f[0].to_string());
            }
        }
    }
    let v2 = match layout {
        kos_cgroups::Layout::V2 => Some("/sys/fs/cgroup/cgroup.controllers"),
        kos_cgroups::Layout::Hybrid => Some("/sys/fs/cgroup/unified/cgroup.controllers"),
        kos_cgroups::Layout::V1 => None,
    };
    if let Some(p) = v2 {
        for c in read(p).split_whitespace() {
            if !out.iter().any(|x| x == c) {
                out.push(c.to_string());
            }
        }
    }
    out.sort();
    out
}

fn os_name() -> String {
    read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|s| s.trim_matches('"').to_string())
        .unwrap_or_else(|| "Linux".into())
}

impl HostInfo {
    pub fn gather() -> HostInfo {
        let layout = kos_cgroups::detect_layout().unwrap_or(kos_cgroups::Layout::V1);
        let lsms: Vec<String> = read("/sys/kernel/security/lsm")
            .trim()
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let seccomp = read("/proc/self/status")
            .lines()
            .any(|l| l.starts_with("Seccomp:"));
        let numa_nodes = std::fs::read_dir("/sys/devices/system/node")
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| {
                        let n = e.file_name();
                        let n = n.to_string_lossy();
                        n.strip_prefix("node")
                            .is_some_and(|r| !r.is_empty() && r.chars().all(|c| c.is_ascii_digit()))
                    })
                    .count() as u32
            })
            .unwrap_or(0);
        let mut uts: libc::utsname =
            // SAFETY: utsname is plain old data; uname fills it.
            unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer to a utsname.
        unsafe { libc::uname(&mut uts) };
        let cstr = |b: &[libc::c_char]| {
            // SAFETY: uname NUL-terminates every field.
            unsafe { std::ffi::CStr::from_ptr(b.as_ptr()) }
                .to_string_lossy()
                .into_owned()
        };
        HostInfo {
            cgroup_layout: format!("{layout:?}").to_lowercase(),
            cgroup_version: if layout == kos_cgroups::Layout::V2 {
                "2"
            } else {
                "1"
            }
            .into(),
            cgroup_controllers: controllers(layout),
            selinux: kos_security::label::selinux::is_enabled(),
            apparmor: kos_security::label::apparmor::is_enabled(),
            lsms,
            seccomp,
            landlock_abi: kos_security::landlock::kernel_abi(),
            numa_nodes,
            kvm: Path::new("/dev/kvm").exists(),
            swap_total: meminfo("SwapTotal"),
            mem_total: meminfo("MemTotal"),
            ncpu: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            kernel_version: cstr(&uts.release),
            operating_system: os_name(),
            hostname: cstr(&uts.nodename),
            architecture: cstr(&uts.machine),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn gathers_this_host() {
        let h = HostInfo::gather();
        assert!(h.ncpu >= 1 && h.mem_total > 0);
        assert!(["v1", "hybrid", "v2"].contains(&h.cgroup_layout.as_str()));
        assert!(!h.cgroup_controllers.is_empty());
        assert!(!h.kernel_version.is_empty());
        // Every Linux this runs on has seccomp in /proc/self/status.
        assert!(h.seccomp);
    }
}
