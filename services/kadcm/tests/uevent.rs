//! Kernel uevents for devices the tests make: a dummy netdev and a loop device, seen by the
//! library socket and published by the `kadcm run` service on its JSON-lines socket.

mod support;

use std::io::{BufRead, BufReader};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kadcm::uevent::{Uevent, UeventSocket};
use support::*;

fn wait_event(s: &UeventSocket, what: &str, mut f: impl FnMut(&Uevent) -> bool) -> Uevent {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Some(ev) = s.recv().expect("recv") {
            if f(&ev) {
                return ev;
            }
        }
    }
    panic!("no uevent: {what}");
}

#[test]
fn dummy_netdev_add_and_remove() {
    let s = UeventSocket::open().expect("uevent socket");
    s.set_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let link = DummyLink::new();
    let name = link.0.clone();
    let is_ours = |e: &Uevent| e.subsystem == "net" && e.properties.get("INTERFACE") == Some(&name);
    let add = wait_event(&s, "add of the dummy link", |e| {
        is_ours(e) && e.action == "add"
    });
    assert!(add.devpath.ends_with(&format!("/net/{name}")), "{add:?}");
    assert!(add.seqnum.is_some());
    link.delete();
    wait_event(&s, "remove of the dummy link", |e| {
        is_ours(e) && e.action == "remove"
    });
}

#[test]
fn loop_device_attach_and_detach() {
    let s = UeventSocket::open().expect("uevent socket");
    s.set_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let lp = LoopDev::new();
    let name = lp.name();
    let ev = wait_event(&s, "loop device set up", |e| {
        e.subsystem == "block"
            && e.devname.as_deref() == Some(name.as_str())
            && matches!(e.action.as_str(), "add" | "change")
    });
    assert_eq!(ev.properties.get("MAJOR").map(String::as_str), Some("7"));
    lp.detach();
    wait_event(&s, "loop device detached", |e| {
        e.subsystem == "block"
            && e.devname.as_deref() == Some(name.as_str())
            && matches!(e.action.as_str(), "change" | "remove")
    });
}

#[test]
fn library_watch_calls_back() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let seen: Arc<Mutex<Vec<kadcm::events::DeviceEvent>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let (s2, stop2) = (seen.clone(), stop.clone());
    let watcher = std::thread::spawn(move || {
        let sink = kadcm::events::Callback(move |e: &kadcm::events::DeviceEvent| {
            s2.lock().expect("seen").push(e.clone());
        });
        kadcm::events::watch(
            std::path::Path::new("/sys"),
            &sink,
            &stop2,
            Duration::from_millis(100),
        )
    });
    // The watcher opens its socket on its own thread; give it a moment.
    std::thread::sleep(Duration::from_millis(300));
    let link = DummyLink::new();
    let name = link.0.clone();
    let has = |action: &str| {
        seen.lock().expect("seen").iter().any(|e| {
            e.uevent.action == action && e.uevent.properties.get("INTERFACE") == Some(&name)
        })
    };
    wait_until("add through the callback", Duration::from_secs(10), || {
        has("add")
    });
    let add = seen
        .lock()
        .expect("seen")
        .iter()
        .find(|e| e.uevent.action == "add" && e.uevent.properties.get("INTERFACE") == Some(&name))
        .cloned()
        .expect("add");
    assert_eq!(add.device.map(|d| d.class), Some(kadcm::DeviceClass::Net));
    link.delete();
    wait_until(
        "remove through the callback",
        Duration::from_secs(10),
        || has("remove"),
    );
    stop.store(true, Ordering::SeqCst);
    watcher.join().expect("watcher").expect("watch");
}

/// A running `kadcm run`, stopped with SIGTERM on drop.
struct Service(std::process::Child);

impl Drop for Service {
    fn drop(&mut self) {
        // SAFETY: kill(2) of our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn next_line_matching(
    r: &mut BufReader<UnixStream>,
    what: &str,
    f: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) => panic!("event socket closed"),
            Ok(_) => {
                let v: serde_json::Value = serde_json::from_str(&line).expect("json line");
                if f(&v) {
                    return v;
                }
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("reading events: {e}"),
        }
    }
    panic!("no event line: {what}");
}

#[test]
fn service_publishes_events_writes_specs_and_notifies() {
    let dir = TempDir::new("svc");
    let notify = dir.0.join("notify.sock");
    let rx = UnixDatagram::bind(&notify).expect("notify socket");
    rx.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let events = dir.0.join("events.sock");
    let cdi = dir.0.join("cdi");
    let policy = write_policy(&dir.0, "package kaim\ndefault allow := false\n");
    let child = Command::new(env!("CARGO_BIN_EXE_kadcm"))
        .arg("run")
        .arg("--cdi-dir")
        .arg(&cdi)
        .arg("--events-socket")
        .arg(&events)
        .arg("--policy")
        .arg(&policy)
        .env("NOTIFY_SOCKET", &notify)
        .env("WATCHDOG_USEC", "300000")
        .stdin(Stdio::null())
        .spawn()
        .expect("kadcm run");
    let mut svc = Service(child);
    let mut buf = [0u8; 256];
    let n = rx.recv(&mut buf).expect("READY datagram");
    let first = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(first.starts_with("READY=1"), "{first}");
    assert!(
        cdi.join("kos.dev-kvm.json").exists(),
        "specs written before READY"
    );
    let n = rx.recv(&mut buf).expect("WATCHDOG datagram");
    assert_eq!(&buf[..n], b"WATCHDOG=1");

    let stream = UnixStream::connect(&events).expect("connect events");
    stream
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let mut r = BufReader::new(stream);
    // The service registers the client on its own thread; give it a moment.
    std::thread::sleep(Duration::from_millis(200));
    let link = DummyLink::new();
    let name = link.0.clone();
    let add = next_line_matching(&mut r, "add", |v| {
        v["action"] == "add" && v["properties"]["INTERFACE"] == name.as_str()
    });
    assert_eq!(add["device"]["class"], "net");
    assert_eq!(add["subsystem"], "net");
    assert!(add["time"].as_str().is_some_and(|t| t.ends_with('Z')));
    link.delete();
    next_line_matching(&mut r, "remove", |v| {
        v["action"] == "remove" && v["properties"]["INTERFACE"] == name.as_str()
    });

    // SIGTERM: STOPPING=1, clean exit, socket removed.
    // SAFETY: kill(2) of our own child.
    unsafe { libc::kill(svc.0.id() as i32, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(st) = svc.0.try_wait().expect("wait") {
            break st;
        }
        assert!(Instant::now() < deadline, "kadcm run ignored SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status}");
    let mut saw_stopping = false;
    rx.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    while let Ok(n) = rx.recv(&mut buf) {
        saw_stopping |= &buf[..n] == b"STOPPING=1";
    }
    assert!(saw_stopping);
    assert!(!events.exists(), "event socket left behind");
}
