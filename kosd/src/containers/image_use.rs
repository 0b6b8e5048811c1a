//! Which containers use an image, on both API sides: kosd's own containers and the CRI's
//! (kos-cri keeps one record per container under `DATA_ROOT/cri`, written atomically on
//! every change, so reading them needs no call into the CRI server). rmi and image prune
//! ask here, so an image a pod's container runs is protected as dockerd protects the
//! image of one of its own containers.

use std::collections::HashMap;
use std::sync::Arc;

use kos_cri::state::{ContainerState, StateDir};

use crate::engine::Engine;

/// One container using an image: its id and whether it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: String,
    pub image_id: String,
    pub running: bool,
}

/// The CRI side's containers (none when the CRI never ran with this data root).
pub fn cri_containers(e: &Engine) -> Vec<User> {
    let dir = e.config.data_root.join("cri");
    if !dir.join("containers").is_dir() {
        return Vec::new();
    }
    let records = StateDir::open(&dir).and_then(|s| s.containers());
    match records {
        Ok(v) => v
            .into_iter()
            .map(|c| User {
                running: c.state == ContainerState::Running,
                id: c.id,
                image_id: c.image_id,
            })
            .collect(),
        Err(err) => {
            tracing::error!(error = %err, "reading the CRI's container records");
            Vec::new()
        }
    }
}

/// Every container of either side: kosd's first, then the CRI's.
pub fn all_users(e: &Engine) -> Vec<User> {
    let mut v: Vec<User> = super::all(e)
        .into_iter()
        .map(|c| User {
            running: c.state.status.is_live(),
            id: c.id,
            image_id: c.image_id,
        })
        .collect();
    v.extend(cri_containers(e));
    v
}

/// Image id -> number of containers of either side using it.
pub fn counts(e: &Engine) -> HashMap<String, i64> {
    let mut m = HashMap::new();
    for u in all_users(e) {
        *m.entry(u.image_id).or_insert(0) += 1;
    }
    m
}

/// (container id, running) of every container of either side using image `id`.
pub fn users_of(e: &Engine, id: &str) -> Vec<(String, bool)> {
    all_users(e)
        .into_iter()
        .filter(|u| u.image_id == id)
        .map(|u| (u.id, u.running))
        .collect()
}

/// What the CRI's RemoveImage asks: whether a container of kosd's own uses an image
/// (the CRI's own containers keep their snapshots, as containerd's do). Holds the
/// engine weakly: the CRI server must not keep it alive.
pub fn docker_uses(e: &Arc<Engine>) -> kos_cri::config::ImageInUse {
    let weak = Arc::downgrade(e);
    Arc::new(move |id: &str| {
        weak.upgrade()
            .is_some_and(|e| super::all(&e).iter().any(|c| c.image_id == id))
    })
}

/// The store name to read a container's image through: the name it was made from while
/// that still names its image, else another name of the image's id (a forced rmi or the
/// CRI's RemoveImage may have left the image unnamed, or a pull moved the tag to another
/// image). Falls back to the recorded name, whose lookup then reports the missing image.
pub fn store_name(store: &kos_image::Store, c: &super::Container) -> String {
    match store.image_record(&c.image_store_name) {
        Ok(r) if r.config.to_string() == c.image_id => return c.image_store_name.clone(),
        _ => {}
    }
    let all = store.images().unwrap_or_default();
    let mut same = all.iter().filter(|r| r.config.to_string() == c.image_id);
    same.next()
        .map(|r| r.name.clone())
        .unwrap_or_else(|| c.image_store_name.clone())
}
