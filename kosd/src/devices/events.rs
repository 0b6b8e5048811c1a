//! The kernel's device uevents (through kadcm's netlink listener) as engine events:
//! `{"Type":"device","Action":"add|remove|change|...","Actor":{"ID":DEVPATH,
//! "Attributes":{"subsystem":..,"devname":..}}}`, so `docker events --filter type=device`
//! shows them.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::engine::Engine;

/// How often the listener looks at its stop flag.
const TICK: Duration = Duration::from_millis(200);

/// Subsystems whose uevents are not devices: every network interface's rx/tx queue
/// kobjects come and go with it, and would crowd the event history (shared with
/// container events) on a host that makes many veths.
const NOT_DEVICES: &[&str] = &["queues"];

/// Whether a uevent becomes an engine event.
pub fn published(ev: &kadcm::events::DeviceEvent) -> bool {
    !NOT_DEVICES.contains(&ev.uevent.subsystem.as_str())
}

/// The engine event of one uevent: kind, action, actor id and attributes.
pub fn attributes(ev: &kadcm::events::DeviceEvent) -> BTreeMap<String, String> {
    let u = &ev.uevent;
    let mut a = BTreeMap::new();
    a.insert("subsystem".to_string(), u.subsystem.clone());
    if let Some(n) = &u.devname {
        a.insert("devname".to_string(), n.clone());
    }
    // Network interfaces have no node: their name is the interface.
    if let Some(i) = u.properties.get("INTERFACE") {
        a.insert("interface".to_string(), i.clone());
    }
    if let Some(t) = u.properties.get("DEVTYPE") {
        a.insert("devtype".to_string(), t.clone());
    }
    if let Some(s) = u.seqnum {
        a.insert("seqnum".to_string(), s.to_string());
    }
    if let Some(class) = ev.device.as_ref().map(|d| d.class) {
        a.insert("class".to_string(), class.as_str().to_string());
    }
    a
}

/// The listener thread and the container-removal follower; stopped on drop.
pub struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    follower: Option<tokio::task::JoinHandle<()>>,
}

/// Follows the engine's own events: a destroyed container's grant and device records go
/// (kosd's remove path knows nothing of devices). Must run inside the tokio runtime.
fn follow_removals(engine: &Arc<Engine>) -> tokio::task::JoinHandle<()> {
    let (_, mut rx) = engine.events.subscribe(None, None);
    let engine = engine.clone();
    tokio::spawn(async move {
        loop {
            match rx.recv().await {
                Ok(ev) if ev.kind == "container" && ev.action == "destroy" => {
                    let engine = engine.clone();
                    let id = ev.id.clone();
                    let _ =
                        tokio::task::spawn_blocking(move || engine.devices.forget_container(&id))
                            .await;
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    // Missed removals are collected at the next grant.
                    tracing::debug!(missed = n, "device follower lagged");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
            }
        }
    })
}

/// Starts publishing device uevents to the engine's event bus (a host without the uevent
/// socket logs why and publishes nothing; the engine runs on), and following container
/// removals. Must run inside the tokio runtime.
pub fn start(engine: &Arc<Engine>) -> Watcher {
    let follower = Some(follow_removals(engine));
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let engine = engine.clone();
    let thread = std::thread::Builder::new()
        .name("kosd-uevents".into())
        .spawn(move || {
            let sink = kadcm::events::Callback(|ev: &kadcm::events::DeviceEvent| {
                if !published(ev) {
                    return;
                }
                engine.events.publish(
                    "device",
                    &ev.uevent.action,
                    &ev.uevent.devpath,
                    attributes(ev),
                );
            });
            if let Err(e) = kadcm::events::watch(Path::new(super::SYS_ROOT), &sink, &flag, TICK) {
                tracing::warn!(error = %e, "device events are not published");
            }
        });
    let thread = match thread {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!(error = %e, "device events are not published: no thread");
            None
        }
    };
    Watcher {
        stop,
        thread,
        follower,
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(f) = self.follower.take() {
            f.abort();
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
