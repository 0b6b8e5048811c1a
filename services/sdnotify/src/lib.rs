//! The service manager's notify protocol (sd_notify(3)): READY=1, WATCHDOG=1, STOPPING=1 and
//! STATUS= as datagrams to $NOTIFY_SOCKET, so kos-dns, kaim and kadcm run as `Type=notify`
//! units with `WatchdogSec=` under systemd or KOS's unit manager.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// A connection to the service manager, when one asked for notifications.
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From NOTIFY_SOCKET (a path, or `@name` for an abstract socket) and WATCHDOG_USEC.
    /// None when no manager asked for notifications (NOTIFY_SOCKET unset).
    pub fn from_env() -> std::io::Result<Option<Notifier>> {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return Ok(None);
        };
        let bytes = path.into_encoded_bytes();
        let addr = match bytes.strip_prefix(b"@") {
            Some(name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(name)?
            }
            None => {
                use std::os::unix::ffi::OsStrExt;
                SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(&bytes))?
            }
        };
        // WATCHDOG_PID names the process the manager watches; another process ignores it.
        let for_us = match std::env::var("WATCHDOG_PID") {
            Ok(p) => p.trim().parse::<u32>().ok() == Some(std::process::id()),
            Err(_) => true,
        };
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|&u| u > 0 && for_us)
            .map(Duration::from_micros);
        Ok(Some(Notifier {
            socket: UnixDatagram::unbound()?,
            addr,
            watchdog,
        }))
    }

    /// Half the manager's timeout, as sd_watchdog_enabled(3) advises.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }

    pub fn notify(&self, state: &str) -> std::io::Result<()> {
        self.socket
            .send_to_addr(state.as_bytes(), &self.addr)
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_datagrams_to_the_socket() {
        let dir = std::env::temp_dir().join(format!("kaim-notify-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("n.sock");
        let _ = std::fs::remove_file(&path);
        let rx = UnixDatagram::bind(&path).expect("bind");
        let n = Notifier {
            socket: UnixDatagram::unbound().expect("unbound"),
            addr: SocketAddr::from_pathname(&path).expect("addr"),
            watchdog: Some(Duration::from_secs(4)),
        };
        n.notify("READY=1").expect("notify");
        let mut buf = [0u8; 64];
        let len = rx.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..len], b"READY=1");
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(2)));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
