//! Containers: the record kept in the state database and the queries other
//! parts of the engine make about them.

pub mod exec;
pub mod fifo;
pub mod files;
pub mod health;
pub mod image_use;
pub mod inspect_shape;
pub mod logs;
pub mod mcs;
pub mod mounts;
pub mod netmode;
pub mod record;
pub mod runtime;
pub mod spec;
pub mod stats;
pub mod trash;
pub mod view;

pub use record::{Container, Status};

use crate::engine::Engine;
use crate::state::Table;

/// Where a container's bundle lives while kosd runs it: config.json, the shim's files
/// (address, options, pid) and hostname/hosts/resolv.conf, rewritten at every start. On the
/// exec root (a tmpfs on a standard host), as containerd keeps its bundles under /run: a new
/// inode on the data root's filesystem can cost a tenth of a millisecond or more, and a
/// start made about a dozen. The rootfs, its upper directory and the log stay in the
/// container's directory under the data root.
pub fn bundle_dir(e: &Engine, id: &str) -> std::path::PathBuf {
    e.config.exec_root.join("bundles").join(id)
}

/// Every container record.
pub fn all(e: &Engine) -> Vec<Container> {
    match e.db().all::<Container>(Table::Containers) {
        Ok(v) => v,
        Err(err) => {
            tracing::error!(error = %err, "reading containers");
            Vec::new()
        }
    }
}

/// Container totals for /info.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    pub total: usize,
    pub running: usize,
    pub paused: usize,
    pub stopped: usize,
}

pub fn counts(e: &Engine) -> Counts {
    let mut c = Counts::default();
    for k in all(e) {
        c.total += 1;
        match k.state.status {
            Status::Running | Status::Restarting => c.running += 1,
            Status::Paused => c.paused += 1,
            _ => c.stopped += 1,
        }
    }
    c
}

/// The containers part of /system/df.
pub fn df(e: &Engine) -> serde_json::Value {
    let v: Vec<serde_json::Value> = all(e)
        .iter()
        .map(|c| {
            serde_json::json!({
                "Id": c.id,
                "Names": [format!("/{}", c.name)],
                "Image": c.image,
                "ImageID": c.image_id,
                "Command": c.command_line(),
                "Created": c.created / 1_000_000_000,
                "State": c.state.status.as_str(),
                "Status": c.status_text(),
                "SizeRw": c.size_rw(),
                "SizeRootFs": 0,
                "Labels": c.config.labels.clone().unwrap_or_default(),
                "Mounts": [],
            })
        })
        .collect();
    serde_json::Value::Array(v)
}

/// The container's `cgroupsPath`: its own `HostConfig.CgroupParent`, else the daemon's
/// `--cgroup-parent`, with the id as the leaf (dockerd's cgroupfs layout).
pub fn cgroups_path(e: &Engine, c: &Container) -> String {
    let parent = c
        .host_config
        .cgroup_parent
        .as_deref()
        .and_then(|p| crate::config::normalize_cgroup_parent(p).ok())
        .unwrap_or_else(|| e.config.cgroup_parent.clone());
    format!("/{parent}/{}", c.id)
}

/// Whether the kernel killed the container for memory (the v1 memory
/// controller's oom_control or v2 memory.events, read before the cgroup goes).
pub fn oom_killed(cgroups_path: &str) -> bool {
    let v1 = format!("/sys/fs/cgroup/memory{cgroups_path}/memory.oom_control");
    if let Ok(s) = std::fs::read_to_string(v1) {
        return s
            .lines()
            .any(|l| l.strip_prefix("oom_kill ").is_some_and(|n| n.trim() != "0"));
    }
    let v2 = format!("/sys/fs/cgroup{cgroups_path}/memory.events");
    std::fs::read_to_string(v2)
        .map(|s| {
            s.lines()
                .any(|l| l.strip_prefix("oom_kill ").is_some_and(|n| n.trim() != "0"))
        })
        .unwrap_or(false)
}
