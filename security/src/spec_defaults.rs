//! Defaults `kosrun spec` writes into a new config.json: the masked and read-only paths of
//! runc's `spec` command, plus the powercap interface (energy counters leak secrets across
//! containers, CVE-2020-8694), and no_new_privs on.

/// Paths masked in the container (bind of /dev/null over files, empty read-only tmpfs over
/// directories).
pub fn masked_paths() -> Vec<String> {
    [
        "/proc/acpi",
        "/proc/asound",
        "/proc/kcore",
        "/proc/keys",
        "/proc/latency_stats",
        "/proc/timer_list",
        "/proc/timer_stats",
        "/proc/sched_debug",
        "/sys/firmware",
        "/proc/scsi",
        "/sys/devices/virtual/powercap",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// Paths remounted read-only in the container.
pub fn readonly_paths() -> Vec<String> {
    [
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// `process.noNewPrivileges` in a generated spec.
pub const NO_NEW_PRIVILEGES: bool = true;

/// Set no_new_privs on the calling thread (inherited by children and kept across `execve`).
/// kosrun's init calls this before the capability drop when the spec asks for it, which also
/// lets Landlock and seccomp be applied after the drop.
pub fn set_no_new_privileges() -> std::io::Result<()> {
    // SAFETY: plain prctl with integer arguments.
    let r = unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether no_new_privs is set on the calling thread.
pub fn no_new_privileges() -> bool {
    // SAFETY: plain prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) == 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn include_the_runtime_spec_defaults() {
        let m = masked_paths();
        for p in [
            "/proc/kcore",
            "/proc/keys",
            "/sys/firmware",
            "/proc/timer_list",
        ] {
            assert!(m.contains(&p.to_string()), "{p}");
        }
        assert!(readonly_paths().contains(&"/proc/sys".to_string()));
        assert!(readonly_paths().contains(&"/proc/sysrq-trigger".to_string()));
        for p in m.iter().chain(readonly_paths().iter()) {
            assert!(p.starts_with('/'), "{p}");
        }
    }
}
