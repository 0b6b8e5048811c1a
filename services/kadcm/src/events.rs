//! Publishing device events: to a callback in the library, or as JSON lines to every client
//! of a unix socket (the form kosd reads into its /events stream).

use std::io::Write;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::sysfs;
use crate::uevent::{Uevent, UeventSocket};

#[derive(Debug, Clone, Serialize)]
pub struct DeviceEvent {
    /// RFC 3339 UTC.
    pub time: String,
    #[serde(flatten)]
    pub uevent: Uevent,
    /// The device as kadcm describes it (add/change/bind; gone on remove).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<Device>,
}

impl DeviceEvent {
    /// The event with the device described from sysfs (while it is still there).
    pub fn from_uevent(sys_root: &Path, ev: Uevent) -> DeviceEvent {
        let device = if ev.action == "remove" {
            None
        } else {
            sysfs::describe(sys_root, &sys_root.join(ev.devpath.trim_start_matches('/'))).ok()
        };
        DeviceEvent {
            time: kaim::audit::now_rfc3339(),
            uevent: ev,
            device,
        }
    }
}

/// Publishes every kernel uevent to `sink` until `stop` is set (checked at least every
/// `tick`): the library form of kadcm's event stream, for a caller running it on a thread.
pub fn watch(
    sys_root: &Path,
    sink: &dyn EventSink,
    stop: &AtomicBool,
    tick: Duration,
) -> Result<()> {
    let socket = UeventSocket::open()?;
    socket.set_timeout(Some(tick))?;
    while !stop.load(Ordering::SeqCst) {
        if let Some(ev) = socket.recv()? {
            sink.publish(&DeviceEvent::from_uevent(sys_root, ev));
        }
    }
    Ok(())
}

pub trait EventSink: Send + Sync {
    fn publish(&self, ev: &DeviceEvent);
}

/// A closure as the sink.
pub struct Callback<F: Fn(&DeviceEvent) + Send + Sync>(pub F);

impl<F: Fn(&DeviceEvent) + Send + Sync> EventSink for Callback<F> {
    fn publish(&self, ev: &DeviceEvent) {
        (self.0)(ev)
    }
}

/// JSON lines to every connected client; a client that cannot keep up (a write blocks for
/// more than a second) or has gone is dropped.
pub struct JsonLinesSocket {
    path: PathBuf,
    clients: Arc<Mutex<Vec<UnixStream>>>,
}

impl JsonLinesSocket {
    pub fn bind(path: &Path) -> Result<JsonLinesSocket> {
        use std::os::unix::fs::FileTypeExt;
        if let Ok(m) = std::fs::symlink_metadata(path) {
            if m.file_type().is_socket() {
                let _ = std::fs::remove_file(path);
            }
        }
        let l = UnixListener::bind(path).map_err(|source| Error::Write {
            path: path.to_path_buf(),
            source,
        })?;
        // Root's group may read device events; others may not.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660)).map_err(
                |source| Error::Write {
                    path: path.to_path_buf(),
                    source,
                },
            )?;
        }
        let clients = Arc::new(Mutex::new(Vec::new()));
        let c2 = clients.clone();
        std::thread::Builder::new()
            .name("kadcm-events".into())
            .spawn(move || {
                for s in l.incoming().flatten() {
                    if s.set_write_timeout(Some(Duration::from_secs(1))).is_ok() {
                        if let Ok(mut g) = c2.lock() {
                            g.push(s);
                        }
                    }
                }
            })
            .map_err(|source| Error::Write {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(JsonLinesSocket {
            path: path.to_path_buf(),
            clients,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl EventSink for JsonLinesSocket {
    fn publish(&self, ev: &DeviceEvent) {
        let Ok(mut line) = serde_json::to_vec(ev) else {
            return;
        };
        line.push(b'\n');
        if let Ok(mut g) = self.clients.lock() {
            g.retain_mut(|c| c.write_all(&line).is_ok());
        }
    }
}

impl Drop for JsonLinesSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
