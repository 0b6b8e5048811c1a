//! The container a unit runs, in the Docker Engine API's shape: field names follow
//! `ContainerConfig` and `HostConfig` (serialized in PascalCase exactly as Docker's JSON), so
//! kosd maps a [`ContainerSpec`] onto its create request one field to one field.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Docker's `Config` plus `HostConfig`, and what only KOS units need in [`KosOptions`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerSpec {
    /// Container name (Quadlet's `ContainerName=`; default `kos-<unit stem>`).
    pub name: String,
    pub image: String,
    /// `Exec=`: the command (arguments to the image's entrypoint).
    pub cmd: Vec<String>,
    /// `Entrypoint=`; None keeps the image's.
    pub entrypoint: Option<Vec<String>>,
    /// `KEY=VALUE`, including `NOTIFY_SOCKET` and `WATCHDOG_USEC` added by the manager.
    pub env: Vec<String>,
    pub user: Option<String>,
    pub working_dir: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Keys `"80/tcp"`, as Docker's `ExposedPorts`.
    pub exposed_ports: BTreeMap<String, BTreeMap<String, String>>,
    pub healthcheck: Option<HealthConfig>,
    pub host_config: HostConfig,
    /// Not part of Docker's API.
    #[serde(rename = "Kos")]
    pub kos: KosOptions,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HostConfig {
    /// `Volume=` as `SRC:DST[:OPTS]`.
    pub binds: Vec<String>,
    pub mounts: Vec<Mount>,
    /// `PublishPort=`: keys `"80/tcp"`.
    pub port_bindings: BTreeMap<String, Vec<PortBinding>>,
    /// First `Network=`; the rest are in [`KosOptions::networks`].
    pub network_mode: Option<String>,
    pub devices: Vec<DeviceMapping>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub readonly_rootfs: bool,
    /// `label=...` from `SecurityLabel*=`, `landlock=<json>` from `Landlock=`.
    pub security_opt: Vec<String>,
    /// Bytes; 0 = unlimited.
    pub memory: i64,
    /// CPUs × 10⁹; 0 = unlimited.
    pub nano_cpus: i64,
    /// None = unlimited.
    pub pids_limit: Option<i64>,
    /// `Pid=host`: share the host's pid namespace (kaim, kadcm); None = the container's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_mode: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Mount {
    /// `bind`, `volume` or `tmpfs`.
    #[serde(rename = "Type")]
    pub kind: String,
    pub source: String,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PortBinding {
    pub host_ip: String,
    pub host_port: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeviceMapping {
    pub path_on_host: String,
    pub path_in_container: String,
    pub cgroup_permissions: String,
}

/// Docker's `HealthConfig`: durations in nanoseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct HealthConfig {
    /// `["CMD-SHELL", "<HealthCmd>"]`.
    pub test: Vec<String>,
    pub interval: i64,
    pub timeout: i64,
    pub retries: i64,
    pub start_period: i64,
}

/// What a unit's container needs beyond Docker's options.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct KosOptions {
    /// The unit this container belongs to.
    pub unit: String,
    /// `Network=` entries after the first.
    pub networks: Vec<String>,
    /// The unit's notify socket directory on the host: the runtime binds it into the
    /// container at `notify_dir_in_container` (`NOTIFY_SOCKET` in `env` points inside it).
    pub notify_dir: Option<PathBuf>,
    pub notify_dir_in_container: Option<PathBuf>,
}

/// An `ExecStartPre=`/`ExecStartPost=` command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecCommand {
    pub argv: Vec<String>,
    /// `-` prefix: a failure is ignored.
    pub ignore_failure: bool,
    /// `host:` prefix: run on the host instead of inside the unit's container.
    pub on_host: bool,
}
