//! The container record: Docker's config as given, KOS's derived state, and
//! where its bundle and logs live.

use std::path::PathBuf;

use bollard_stubs::models::{ContainerConfig, HostConfig};
use serde::{Deserialize, Serialize};

use crate::timefmt;

/// Docker's container states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    #[default]
    Created,
    Running,
    Paused,
    Restarting,
    Removing,
    Exited,
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Removing => "removing",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }
    /// A process exists (running, paused, or between restarts).
    pub fn is_live(self) -> bool {
        matches!(self, Status::Running | Status::Paused | Status::Restarting)
    }
}

/// Health of a container with a healthcheck.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Health {
    /// starting, healthy, unhealthy
    pub status: String,
    pub failing_streak: i64,
    pub log: Vec<HealthLog>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct HealthLog {
    pub start: i64,
    pub end: i64,
    pub exit_code: i64,
    pub output: String,
}

/// Runtime state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    pub status: Status,
    pub pid: i64,
    pub exit_code: i64,
    pub error: String,
    pub oom_killed: bool,
    /// Unix nanoseconds; 0 = never.
    pub started_at: i64,
    pub finished_at: i64,
    pub restart_count: i64,
    /// Stopped by the user (docker stop/kill), which restart policies honour.
    pub stopped_by_user: bool,
    pub health: Option<Health>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Container {
    pub id: String,
    /// Without the leading slash.
    pub name: String,
    /// Unix nanoseconds.
    pub created: i64,
    /// The image as the user named it.
    pub image: String,
    /// `sha256:` of the image config.
    pub image_id: String,
    /// The store name the rootfs was made from.
    pub image_store_name: String,
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    /// Process path and args as resolved at create.
    pub path: String,
    pub args: Vec<String>,
    pub state: State,
    /// Container directory: bundle (config.json, rootfs), logs.
    pub dir: PathBuf,
    pub log_path: PathBuf,
    /// overlay or copy
    pub rootfs_kind: String,
    /// Named and anonymous volumes mounted (name, destination).
    #[serde(default)]
    pub volumes: Vec<(String, String)>,
    /// Networks and their endpoint settings (Docker's JSON shape).
    #[serde(default)]
    pub networks: serde_json::Map<String, serde_json::Value>,
    /// Published ports (Docker's NetworkSettings.Ports shape) while running.
    #[serde(default)]
    pub ports: serde_json::Value,
    /// MCS label level given to the container, when SELinux allocates one.
    #[serde(default)]
    pub mount_label: String,
    #[serde(default)]
    pub process_label: String,
}

impl Container {
    pub fn command_line(&self) -> String {
        std::iter::once(self.path.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Bytes the container wrote into its own layer.
    pub fn size_rw(&self) -> i64 {
        dir_size(&self.dir.join("upper"))
    }

    /// `Up 5 minutes`, `Exited (0) 2 seconds ago`, as `docker ps` shows.
    pub fn status_text(&self) -> String {
        let now = timefmt::now_nanos();
        let s = &self.state;
        match s.status {
            Status::Created => "Created".into(),
            Status::Running | Status::Paused => {
                let mut t = format!("Up {}", human_duration(now - s.started_at));
                if let Some(h) = &s.health {
                    let hs = if h.status == "starting" {
                        "health: starting".to_string()
                    } else {
                        h.status.clone()
                    };
                    t.push_str(&format!(" ({hs})"));
                }
                if s.status == Status::Paused {
                    t.push_str(" (Paused)");
                }
                t
            }
            Status::Restarting => format!(
                "Restarting ({}) {} ago",
                s.exit_code,
                human_duration(now - s.finished_at)
            ),
            Status::Removing => "Removal In Progress".into(),
            Status::Exited => {
                if s.finished_at == 0 {
                    "Created".into()
                } else {
                    format!(
                        "Exited ({}) {} ago",
                        s.exit_code,
                        human_duration(now - s.finished_at)
                    )
                }
            }
            Status::Dead => "Dead".into(),
        }
    }
}

fn dir_size(p: &std::path::Path) -> i64 {
    let mut total = 0i64;
    let mut stack = vec![p.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(md) = e.metadata() else { continue };
            if md.is_dir() {
                stack.push(e.path());
            } else {
                total += md.len() as i64;
            }
        }
    }
    total
}

/// Docker's `units.HumanDuration`.
pub fn human_duration(nanos: i64) -> String {
    let secs = (nanos / 1_000_000_000).max(0);
    if secs < 1 {
        return "Less than a second".into();
    }
    if secs == 1 {
        return "1 second".into();
    }
    if secs < 60 {
        return format!("{secs} seconds");
    }
    let mins = secs / 60;
    if mins == 1 {
        return "About a minute".into();
    }
    if mins < 60 {
        return format!("{mins} minutes");
    }
    let hours = (secs as f64 / 3600.0).round() as i64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", hours / 24 / 365)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_docker_prints_them() {
        let s = 1_000_000_000;
        assert_eq!(human_duration(0), "Less than a second");
        assert_eq!(human_duration(5 * s), "5 seconds");
        assert_eq!(human_duration(70 * s), "About a minute");
        assert_eq!(human_duration(600 * s), "10 minutes");
        assert_eq!(human_duration(3 * 3600 * s), "3 hours");
    }
}
