//! The runtime's operations, one module each, in the runtime spec's terms.

pub mod create;
pub mod delete;
pub mod events;
pub mod exec;
pub mod kill;
pub mod pause;
pub mod ps;
pub mod run;
pub mod start;
pub mod state;
pub mod update;

use std::collections::HashMap;

use serde::Serialize;

use crate::store::{Saved, Status};

/// The runtime spec's state document (plus runc's extra fields), as `state` prints
/// it and hooks read it on stdin.
#[derive(Debug, Serialize)]
pub struct StateDoc {
    #[serde(rename = "ociVersion")]
    pub oci_version: String,
    pub id: String,
    pub pid: i32,
    pub status: Status,
    pub bundle: String,
    pub rootfs: String,
    pub created: String,
    pub owner: String,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
}

impl StateDoc {
    pub fn new(saved: &Saved, status: Status) -> StateDoc {
        StateDoc {
            oci_version: saved.oci_version(),
            id: saved.id.clone(),
            pid: if status == Status::Stopped {
                0
            } else {
                saved.pid
            },
            status,
            bundle: saved.bundle.display().to_string(),
            rootfs: saved.rootfs.display().to_string(),
            created: saved.created.clone(),
            owner: saved.owner.clone(),
            annotations: saved.annotations.clone(),
        }
    }

    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}
