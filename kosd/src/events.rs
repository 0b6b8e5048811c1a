//! The event stream: a bounded history for `since` plus a broadcast for live readers.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde_json::json;
use tokio::sync::broadcast;

use crate::filters::Filters;

/// Events kept for `docker events --since`.
const HISTORY: usize = 1024;

/// One engine event.
#[derive(Debug, Clone)]
pub struct Event {
    /// container, image, volume, network, daemon
    pub kind: &'static str,
    pub action: String,
    pub id: String,
    pub attributes: BTreeMap<String, String>,
    pub time_nano: i64,
}

impl Event {
    /// Docker's JSON shape, with the pre-1.22 fields the CLI still reads.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = json!({
            "Type": self.kind,
            "Action": self.action,
            "Actor": {"ID": self.id, "Attributes": self.attributes},
            "scope": "local",
            "time": self.time_nano / 1_000_000_000,
            "timeNano": self.time_nano,
        });
        if matches!(self.kind, "container" | "image") {
            v["status"] = json!(self.action);
            v["id"] = json!(self.id);
            if let Some(img) = self.attributes.get("image") {
                v["from"] = json!(img);
            }
        }
        v
    }

    /// Whether the event passes `docker events --filter`.
    pub fn matches(&self, f: &Filters) -> bool {
        let attr = |k: &str| self.attributes.get(k).map(String::as_str);
        let base_action = self.action.split(':').next().unwrap_or(&self.action);
        // Device uevents are KOS's own kind: only a stream that asks for them by type gets
        // them, so a docker client's unfiltered stream has only dockerd's kinds.
        let typed = |t: &str| t == self.kind;
        (if self.kind == "device" {
            f.get("type").iter().any(|t| typed(t))
        } else {
            f.any_or_unset("type", typed)
        }) && f.any_or_unset("event", |e| e == self.action || e == base_action)
            && f.any_or_unset("container", |c| {
                self.kind == "container" && (self.id.starts_with(c) || attr("name") == Some(c))
            })
            && f.any_or_unset("image", |i| {
                (self.kind == "image" && (self.id == i || attr("name") == Some(i)))
                    || attr("image") == Some(i)
            })
            && f.any_or_unset("volume", |v| self.kind == "volume" && self.id == v)
            && f.any_or_unset("network", |n| {
                self.kind == "network" && (self.id.starts_with(n) || attr("name") == Some(n))
            })
            && f.any_or_unset("daemon", |_| self.kind == "daemon")
            && f.labels_match("label", attr)
    }
}

pub const EVENT_FILTERS: &[&str] = &[
    "type",
    "event",
    "container",
    "image",
    "volume",
    "network",
    "daemon",
    "label",
    "scope",
];

/// Publishes events to history and live subscribers.
pub struct EventBus {
    history: Mutex<VecDeque<Event>>,
    tx: broadcast::Sender<Event>,
}

impl Default for EventBus {
    fn default() -> Self {
        let (tx, _) = broadcast::channel(256);
        EventBus {
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
            tx,
        }
    }
}

impl EventBus {
    pub fn publish(
        &self,
        kind: &'static str,
        action: &str,
        id: &str,
        attributes: BTreeMap<String, String>,
    ) {
        let ev = Event {
            kind,
            action: action.to_string(),
            id: id.to_string(),
            attributes,
            time_nano: crate::timefmt::now_nanos(),
        };
        let mut h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        if h.len() == HISTORY {
            h.pop_front();
        }
        h.push_back(ev.clone());
        // Subscribe happens under the same lock, so no event is both missed and unrecorded.
        let _ = self.tx.send(ev);
    }

    /// History in [since, until] plus a live receiver from this moment on.
    pub fn subscribe(
        &self,
        since: Option<i64>,
        until: Option<i64>,
    ) -> (Vec<Event>, broadcast::Receiver<Event>) {
        let h = self.history.lock().unwrap_or_else(|p| p.into_inner());
        let past = match since {
            Some(s) => h
                .iter()
                .filter(|e| e.time_nano >= s && until.is_none_or(|u| e.time_nano <= u))
                .cloned()
                .collect(),
            None => Vec::new(),
        };
        (past, self.tx.subscribe())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_history() {
        let bus = EventBus::default();
        let mut a = BTreeMap::new();
        a.insert("name".to_string(), "web".to_string());
        a.insert("image".to_string(), "busybox".to_string());
        bus.publish("container", "start", "abc123", a);
        bus.publish("image", "pull", "busybox:latest", BTreeMap::new());
        let (past, _rx) = bus.subscribe(Some(0), None);
        assert_eq!(past.len(), 2);
        let f = Filters::parse(Some(r#"{"container":["web"]}"#), EVENT_FILTERS).unwrap();
        assert!(past[0].matches(&f) && !past[1].matches(&f));
        let f = Filters::parse(
            Some(r#"{"type":["image"],"event":["pull"]}"#),
            EVENT_FILTERS,
        )
        .unwrap();
        assert!(!past[0].matches(&f) && past[1].matches(&f));
        let j = past[0].to_json();
        assert_eq!(j["status"], "start");
        assert_eq!(j["from"], "busybox");
        assert_eq!(j["Actor"]["Attributes"]["name"], "web");
        let (none, _rx) = bus.subscribe(None, None);
        assert!(none.is_empty());
    }

    #[test]
    fn device_events_only_when_asked_by_type() {
        let bus = EventBus::default();
        bus.publish("device", "add", "/devices/virtual/net/x", BTreeMap::new());
        let (past, _rx) = bus.subscribe(Some(0), None);
        assert!(!past[0].matches(&Filters::default()));
        let f = Filters::parse(Some(r#"{"event":["add"]}"#), EVENT_FILTERS).unwrap();
        assert!(!past[0].matches(&f));
        let f = Filters::parse(Some(r#"{"type":["device"]}"#), EVENT_FILTERS).unwrap();
        assert!(past[0].matches(&f));
    }
}
