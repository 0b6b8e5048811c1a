//! systemd's notify protocol (sd_notify): READY=1, STATUS=, WATCHDOG=1, STOPPING=1 sent as
//! datagrams to $NOTIFY_SOCKET, so kos-dns can run as a `Type=notify` unit with `WatchdogSec=`
//! under systemd or KOS's unit manager.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// A connection to the service manager, when one asked for notifications.
pub struct Notifier {
    socket: UnixDatagram,
    addr: SocketAddr,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From NOTIFY_SOCKET (a path, or `@name` for an abstract socket) and WATCHDOG_USEC (honoured
    /// only when WATCHDOG_PID is unset or is this process). None without NOTIFY_SOCKET.
    pub fn from_env() -> std::io::Result<Option<Notifier>> {
        let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
            return Ok(None);
        };
        let path = path.into_encoded_bytes();
        let addr = if let Some(name) = path.strip_prefix(b"@") {
            use std::os::linux::net::SocketAddrExt;
            SocketAddr::from_abstract_name(name)?
        } else {
            use std::os::unix::ffi::OsStrExt;
            SocketAddr::from_pathname(std::ffi::OsStr::from_bytes(&path))?
        };
        let ours = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|pid| pid == std::process::id());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|&u| u > 0 && ours)
            .map(Duration::from_micros);
        Ok(Some(Notifier {
            socket: UnixDatagram::unbound()?,
            addr,
            watchdog,
        }))
    }

    /// How often to send WATCHDOG=1: half the manager's timeout, as sd_watchdog_enabled advises.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.watchdog.map(|w| w / 2)
    }

    pub fn send(&self, state: &str) -> std::io::Result<()> {
        self.socket
            .send_to_addr(state.as_bytes(), &self.addr)
            .map(|_| ())
    }
}
