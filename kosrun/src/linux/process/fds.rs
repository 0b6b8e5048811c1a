//! Keeping host descriptors out of the container (CVE-2024-21626 class).

/// Mark every descriptor from `first` up close-on-exec, so only stdio and the
/// preserved ones survive into the user's program.
pub fn cloexec_from(first: u32) -> std::io::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range only changes descriptor flags.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    if rc == 0 {
        return Ok(());
    }
    // Older kernels: walk /proc/self/fd.
    for e in std::fs::read_dir("/proc/self/fd")? {
        let Ok(e) = e else { continue };
        if let Some(fd) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) {
            if fd as u32 >= first {
                // SAFETY: setting FD_CLOEXEC on a descriptor number is harmless even if stale.
                unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            }
        }
    }
    Ok(())
}
