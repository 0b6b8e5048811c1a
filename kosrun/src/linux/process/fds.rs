//! Keeping host descriptors out of the container (CVE-2024-21626 class).

/// Mark every descriptor from `first` up close-on-exec, so only stdio and the
/// preserved ones survive into the user's program. Needs no /proc: close_range, or
/// else every number up to the descriptor limit.
pub fn cloexec_from(first: u32) -> std::io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes descriptor flags.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if rc == 0 {
        return Ok(());
    }
    // Kernels before 5.11: /proc/self/fd when the root has it, else every number below
    // the hard limit (a descriptor cannot be numbered above the table, which the limit
    // bounds unless it was lowered after opening; the larger of soft and hard covers that).
    if let Ok(rd) = std::fs::read_dir("/proc/self/fd") {
        let fds: Vec<i32> = rd
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
            .collect();
        for fd in fds.into_iter().filter(|fd| *fd as u32 >= first) {
            // SAFETY: setting FD_CLOEXEC on a descriptor number is harmless even if stale.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
        }
        return Ok(());
    }
    let (soft, hard) = nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .map_err(std::io::Error::from)?;
    let top = soft.max(hard).min(1 << 20) as u32;
    for fd in first..top {
        // SAFETY: as above; EBADF for numbers not in use.
        unsafe { libc::fcntl(fd as i32, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    Ok(())
}

/// Which of the descriptors `first..first+count` are open now. Called before kosrun
/// opens anything of its own, it names the caller's descriptors that --preserve-fds and
/// LISTEN_FDS may pass on; a number kosrun later takes for itself is never among them.
pub fn open_among(first: i32, count: u32) -> Vec<i32> {
    (first..first.saturating_add(count.min(1 << 20) as i32))
        // SAFETY: F_GETFD only reads descriptor flags.
        .filter(|fd| unsafe { libc::fcntl(*fd, libc::F_GETFD) } >= 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::open_among;
    use std::os::fd::AsRawFd;

    #[test]
    fn open_among_names_only_open_descriptors() {
        let f = std::fs::File::open("/dev/null").expect("open");
        // A high number of our own: other tests' descriptors take the lowest free ones.
        // SAFETY: duplicating a descriptor we own.
        let fd = unsafe { libc::fcntl(f.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 900) };
        assert!(fd >= 900);
        assert_eq!(open_among(fd - 1, 3), vec![fd]);
        // SAFETY: closing the duplicate we made.
        unsafe { libc::close(fd) };
        assert!(open_among(fd, 1).is_empty());
    }
}
