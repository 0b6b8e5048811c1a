//! The few sysctls KOS needs, each changed only when it is not already right, and logged.

use std::fs;
use std::io;

use crate::error::{Error, Result};

fn path_of(key: &str) -> String {
    format!("/proc/sys/{}", key.replace('.', "/"))
}

/// Reads a sysctl such as `net.ipv4.ip_forward`.
pub fn read(key: &str) -> Result<String> {
    let path = path_of(key);
    fs::read_to_string(&path)
        .map(|v| v.trim().to_string())
        .map_err(|source| Error::Sysctl { path, source })
}

/// Sets `key` to `value` unless it already has that value; returns whether it changed.
pub fn ensure(key: &str, value: &str, why: &str) -> Result<bool> {
    let current = read(key)?;
    if current == value {
        return Ok(false);
    }
    let path = path_of(key);
    fs::write(&path, value).map_err(|source| Error::Sysctl { path, source })?;
    tracing::info!(
        sysctl = key,
        from = current,
        to = value,
        why,
        "changed sysctl"
    );
    Ok(true)
}

/// Per-interface IPv4 sysctl key, e.g. `net.ipv4.conf.kos0.route_localnet`. Interface names
/// containing '.' are written with '/' in /proc, which `path_of` would mangle, so such names
/// are refused by the name checks before they get here.
pub fn ipv4_conf(ifname: &str, leaf: &str) -> String {
    format!("net.ipv4.conf.{ifname}.{leaf}")
}

/// Whether the running kernel has IPv6 (the sysctl tree is absent when it is disabled).
pub fn has_ipv6() -> bool {
    match fs::metadata("/proc/sys/net/ipv6") {
        Ok(_) => true,
        Err(e) => e.kind() != io::ErrorKind::NotFound,
    }
}
