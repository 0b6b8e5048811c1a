//! `/_ping`, `/version`, `/info`, `/events`, `/system/df`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, Method, Response};
use axum::Json;
use serde_json::json;

use super::params::Params;
use super::{stream, API_VERSION, MIN_API_VERSION};
use crate::engine::Engine;
use crate::error::Result;
use crate::events::EVENT_FILTERS;
use crate::filters::Filters;
use crate::timefmt;

pub async fn ping(method: Method) -> Response<Body> {
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        Body::from("OK")
    };
    let mut r = Response::new(body);
    let h = r.headers_mut();
    h.insert(
        "Content-Type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(
        "Cache-Control",
        HeaderValue::from_static("no-cache, no-store, must-revalidate"),
    );
    h.insert("Pragma", HeaderValue::from_static("no-cache"));
    h.insert("Builder-Version", HeaderValue::from_static("1"));
    h.insert("Swarm", HeaderValue::from_static("inactive"));
    r
}

/// Go's name for the machine architecture, which clients expect.
pub fn go_arch(machine: &str) -> &str {
    match machine {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "i686" | "i386" => "386",
        "armv7l" => "arm",
        other => other,
    }
}

pub async fn version(State(e): State<Arc<Engine>>) -> Json<serde_json::Value> {
    let v = env!("CARGO_PKG_VERSION");
    let arch = go_arch(&e.host.architecture);
    let details = json!({
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "rust",
        "Os": "linux",
        "Arch": arch,
        "KernelVersion": e.host.kernel_version,
        "Experimental": "false",
        "BuildTime": "",
    });
    Json(json!({
        "Platform": {"Name": "KOS Engine"},
        "Components": [
            {"Name": "Engine", "Version": v, "Details": details},
            {"Name": "containerd-shim-kos-v2", "Version": v, "Details": {"Protocol": "containerd.task.v2 (ttrpc)"}},
            {"Name": e.config.default_runtime, "Version": v, "Details": {"Role": "default runtime"}},
        ],
        "Version": v,
        "ApiVersion": API_VERSION,
        "MinAPIVersion": MIN_API_VERSION,
        "GitCommit": "",
        "GoVersion": "rust",
        "Os": "linux",
        "Arch": arch,
        "KernelVersion": e.host.kernel_version,
        "BuildTime": "",
    }))
}

pub async fn info(State(e): State<Arc<Engine>>) -> Result<Json<serde_json::Value>> {
    let images = e.store.images()?;
    let mut ids: Vec<String> = images.iter().map(|r| r.config.to_string()).collect();
    ids.sort();
    ids.dedup();
    let h = &e.host;
    let counts = crate::containers::counts(&e);
    let mut sec = Vec::new();
    if h.seccomp {
        sec.push("name=seccomp,profile=builtin".to_string());
    }
    if h.apparmor {
        sec.push("name=apparmor".to_string());
    }
    if h.selinux {
        sec.push("name=selinux".to_string());
    }
    if h.landlock_abi > 0 {
        sec.push(format!("name=landlock,abi={}", h.landlock_abi));
    }
    if h.cgroup_version == "2" {
        sec.push("name=cgroupns".to_string());
    }
    let mirrors = &e.config.registry_mirrors;
    let mut insecure_cidrs = vec!["127.0.0.0/8".to_string(), "::1/128".to_string()];
    let mut index = serde_json::Map::new();
    index.insert(
        "docker.io".into(),
        json!({"Name": "docker.io", "Mirrors": mirrors, "Secure": true, "Official": true}),
    );
    for r in &e.config.insecure_registries {
        if r.contains('/') {
            insecure_cidrs.push(r.clone());
        } else {
            index.insert(
                r.clone(),
                json!({"Name": r, "Mirrors": [], "Secure": false, "Official": false}),
            );
        }
    }
    let warnings: Vec<String> = Vec::new();
    Ok(Json(json!({
        "ID": e.id,
        "Containers": counts.total,
        "ContainersRunning": counts.running,
        "ContainersPaused": counts.paused,
        "ContainersStopped": counts.stopped,
        "Images": ids.len(),
        "Driver": "overlay2",
        "DriverStatus": [["Backing Filesystem", "kos-image snapshots"]],
        "Plugins": {"Volume": ["local"], "Network": ["bridge", "host", "null"], "Authorization": null, "Log": ["json-file"]},
        "MemoryLimit": true,
        "SwapLimit": h.swap_total > 0,
        "CpuCfsPeriod": true,
        "CpuCfsQuota": true,
        "CPUShares": true,
        "CPUSet": true,
        "PidsLimit": true,
        "OomKillDisable": h.cgroup_version == "1",
        "IPv4Forwarding": sysctl_on("net/ipv4/ip_forward"),
        "BridgeNfIptables": sysctl_on("net/bridge/bridge-nf-call-iptables"),
        "BridgeNfIp6tables": sysctl_on("net/bridge/bridge-nf-call-ip6tables"),
        "KernelMemory": false,
        "KernelMemoryTCP": false,
        "GenericResources": null,
        "HttpProxy": proxy_env("HTTP_PROXY"),
        "HttpsProxy": proxy_env("HTTPS_PROXY"),
        "NoProxy": proxy_env("NO_PROXY"),
        "Debug": e.config.log_level == "debug",
        "NFd": std::fs::read_dir("/proc/self/fd").map(|d| d.count()).unwrap_or(0),
        "NGoroutines": 0,
        "SystemTime": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
        "LoggingDriver": "json-file",
        "CgroupDriver": "cgroupfs",
        "CgroupVersion": h.cgroup_version,
        "NEventsListener": 0,
        "KernelVersion": h.kernel_version,
        "OperatingSystem": h.operating_system,
        "OSVersion": "",
        "OSType": "linux",
        "Architecture": h.architecture,
        "IndexServerAddress": "https://index.docker.io/v1/",
        "RegistryConfig": {
            "InsecureRegistryCIDRs": insecure_cidrs,
            "IndexConfigs": index,
            "Mirrors": mirrors,
        },
        "NCPU": h.ncpu,
        "MemTotal": h.mem_total,
        "DockerRootDir": e.config.data_root,
        "Name": h.hostname,
        "Labels": [],
        "ExperimentalBuild": false,
        "ServerVersion": env!("CARGO_PKG_VERSION"),
        "Runtimes": {e.config.default_runtime.clone(): {"path": e.config.default_runtime}},
        "DefaultRuntime": e.config.default_runtime,
        "Swarm": {"NodeID": "", "NodeAddr": "", "LocalNodeState": "inactive", "ControlAvailable": false, "Error": "", "RemoteManagers": null},
        "LiveRestoreEnabled": e.config.live_restore,
        "Isolation": "",
        "InitBinary": "",
        "ContainerdCommit": {"ID": "", "Expected": ""},
        "RuncCommit": {"ID": "", "Expected": ""},
        "InitCommit": {"ID": "", "Expected": ""},
        "SecurityOptions": sec,
        // API 1.44: where CDI specs are read (`--cdi-spec-dir`; /etc/cdi, /var/run/cdi).
        "CDISpecDirs": e.config.cdi_spec_dirs,
        "Warnings": warnings,
        "KOS": {
            "CgroupLayout": h.cgroup_layout,
            "CgroupVersion": h.cgroup_version,
            "CgroupControllers": h.cgroup_controllers,
            "LSMs": h.lsms,
            "SELinux": h.selinux,
            "AppArmor": h.apparmor,
            "Seccomp": h.seccomp,
            "LandlockABI": h.landlock_abi,
            "NUMANodes": h.numa_nodes,
            "KVM": h.kvm,
            "SwapTotal": h.swap_total,
            "ExecRoot": e.config.exec_root,
        },
    })))
}

pub async fn events(State(e): State<Arc<Engine>>, p: Params) -> Result<Response<Body>> {
    let f = Filters::parse(p.str("filters"), EVENT_FILTERS)?;
    let since = p
        .non_empty("since")
        .map(timefmt::parse_timestamp)
        .transpose()?;
    let until = p
        .non_empty("until")
        .map(timefmt::parse_timestamp)
        .transpose()?;
    let (past, mut rx) = e.events.subscribe(since, until);
    let (tx, resp) = stream::json_lines(64);
    tokio::spawn(async move {
        for ev in past.iter().filter(|ev| ev.matches(&f)) {
            if tx.send(ev.to_json()).await.is_err() {
                return;
            }
        }
        loop {
            let wait = match until {
                Some(u) => {
                    let left = u - timefmt::now_nanos();
                    if left <= 0 {
                        return;
                    }
                    std::time::Duration::from_nanos(left as u64)
                }
                None => std::time::Duration::from_secs(3600),
            };
            tokio::select! {
                _ = tx.closed() => return,
                r = tokio::time::timeout(wait, rx.recv()) => match r {
                    Err(_) => continue,
                    Ok(Ok(ev)) => {
                        if until.is_some_and(|u| ev.time_nano > u) {
                            return;
                        }
                        if ev.matches(&f) && tx.send(ev.to_json()).await.is_err() {
                            return;
                        }
                    }
                    Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(n))) => {
                        tracing::warn!(missed = n, "events reader fell behind");
                    }
                    Ok(Err(_)) => return,
                }
            }
        }
    });
    Ok(resp)
}

pub async fn df(State(e): State<Arc<Engine>>) -> Result<Json<serde_json::Value>> {
    let eng = e.clone();
    let (images, layers) = tokio::task::spawn_blocking(move || -> Result<_> {
        let users = crate::containers::image_use::counts(&eng);
        let list = crate::images::list(&eng.store, &Filters::default(), &users)?;
        let total = list.iter().map(|i| i.size).sum::<i64>();
        Ok((list, total))
    })
    .await??;
    let volumes: Vec<serde_json::Value> = crate::volumes::list(&e)?
        .iter()
        .map(|v| {
            let mut j = crate::volumes::to_json(&e, v);
            j["UsageData"] = json!({
                "Size": crate::volumes::size(&e, &v.name),
                "RefCount": crate::volumes::users(&e, &v.name).len(),
            });
            j
        })
        .collect();
    Ok(Json(json!({
        "LayersSize": layers,
        "Images": images,
        "Containers": crate::containers::df(&e),
        "Volumes": volumes,
        "BuildCache": [],
        "BuilderSize": 0,
    })))
}

/// A boolean sysctl under /proc/sys; false when it is absent (a module not loaded).
fn sysctl_on(path: &str) -> bool {
    std::fs::read_to_string(format!("/proc/sys/{path}")).is_ok_and(|s| s.trim() == "1")
}

/// kosd's proxy setting as dockerd reports it: the variable, upper or lower case.
fn proxy_env(name: &str) -> String {
    std::env::var(name)
        .or_else(|_| std::env::var(name.to_ascii_lowercase()))
        .unwrap_or_default()
}

/// `GET /plugins`: kosd runs no managed plugins (an empty list, as dockerd with none).
pub async fn plugins() -> Json<serde_json::Value> {
    Json(serde_json::json!([]))
}

/// The swarm endpoints (`/swarm`, `/services`, `/nodes`, `/tasks`, `/secrets`, `/configs`):
/// kosd is never a swarm node, and answers as dockerd does outside a swarm.
pub async fn not_a_swarm() -> Result<Response<Body>> {
    Err(crate::error::ApiError::Unavailable(
        "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.".into(),
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn arch_names() {
        assert_eq!(super::go_arch("x86_64"), "amd64");
        assert_eq!(super::go_arch("riscv64"), "riscv64");
    }
}
