//! Named pipes for task stdio (the shim opens its end read-write).

use std::path::Path;

use crate::error::{ApiError, Result};

pub fn make(p: &Path) -> Result<()> {
    let _ = std::fs::remove_file(p);
    let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| ApiError::Internal(format!("fifo path {} has a NUL byte", p.display())))?;
    // SAFETY: valid C string.
    if unsafe { libc::mkfifo(c.as_ptr(), 0o600) } < 0 {
        return Err(ApiError::internal(
            &format!("mkfifo {}", p.display()),
            std::io::Error::last_os_error(),
        ));
    }
    Ok(())
}

/// Waits (bounded) until the shim has read everything written into a fifo,
/// so closing the task's stdin never drops input still in the pipe.
pub async fn drain(fd: std::os::fd::RawFd) {
    for _ in 0..200 {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int; fd is an open pipe end owned by the caller.
        let r = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) };
        if r < 0 || n == 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // The shim forwards what it read on its next poll turn.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
}
