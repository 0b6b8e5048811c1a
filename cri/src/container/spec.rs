//! The OCI runtime spec of a CRI container: image config + ContainerConfig + the pod's
//! namespaces (joined by path), files and cgroup parent.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use k8s_cri::v1 as cri;
use kos_image::config_to_spec::{runtime_config, Overrides};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::state::SandboxRecord;

/// Docker's and containerd's default capability set.
pub const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability the kernel knows, for privileged containers.
fn all_caps() -> Vec<String> {
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    const NAMES: &[&str] = &[
        "CHOWN",
        "DAC_OVERRIDE",
        "DAC_READ_SEARCH",
        "FOWNER",
        "FSETID",
        "KILL",
        "SETGID",
        "SETUID",
        "SETPCAP",
        "LINUX_IMMUTABLE",
        "NET_BIND_SERVICE",
        "NET_BROADCAST",
        "NET_ADMIN",
        "NET_RAW",
        "IPC_LOCK",
        "IPC_OWNER",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_CHROOT",
        "SYS_PTRACE",
        "SYS_PACCT",
        "SYS_ADMIN",
        "SYS_BOOT",
        "SYS_NICE",
        "SYS_RESOURCE",
        "SYS_TIME",
        "SYS_TTY_CONFIG",
        "MKNOD",
        "LEASE",
        "AUDIT_WRITE",
        "AUDIT_CONTROL",
        "SETFCAP",
        "MAC_OVERRIDE",
        "MAC_ADMIN",
        "SYSLOG",
        "WAKE_ALARM",
        "BLOCK_SUSPEND",
        "AUDIT_READ",
        "PERFMON",
        "BPF",
        "CHECKPOINT_RESTORE",
    ];
    NAMES
        .iter()
        .take(last as usize + 1)
        .map(|n| format!("CAP_{n}"))
        .collect()
}

fn cap_name(c: &str) -> Result<String> {
    let up = c.trim().to_ascii_uppercase();
    let full = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    if all_caps().contains(&full) {
        Ok(full)
    } else {
        Err(Error::InvalidArgument(format!("unknown capability {c:?}")))
    }
}

fn capabilities(sc: &cri::LinuxContainerSecurityContext) -> Result<Vec<String>> {
    if sc.privileged {
        return Ok(all_caps());
    }
    let mut caps: Vec<String> = DEFAULT_CAPS.iter().map(|s| s.to_string()).collect();
    if let Some(c) = &sc.capabilities {
        for a in &c.add_capabilities {
            if a.eq_ignore_ascii_case("ALL") {
                caps = all_caps();
            } else {
                let n = cap_name(a)?;
                if !caps.contains(&n) {
                    caps.push(n);
                }
            }
        }
        for d in &c.drop_capabilities {
            if d.eq_ignore_ascii_case("ALL") {
                caps.clear();
            } else {
                let n = cap_name(d)?;
                caps.retain(|x| *x != n);
            }
        }
    }
    Ok(caps)
}

const MAX_PROFILE: u64 = 1024 * 1024;

/// seccomp from the security profile (or the deprecated profile path).
// The deprecated fields are still what older kubelets send.
#[allow(deprecated)]
fn seccomp(sc: &cri::LinuxContainerSecurityContext) -> Result<Option<Value>> {
    if sc.privileged {
        return Ok(None);
    }
    use cri::security_profile::ProfileType;
    let (kind, local) = match &sc.seccomp {
        Some(p) => (
            ProfileType::try_from(p.profile_type).map_err(|_| {
                Error::InvalidArgument(format!(
                    "seccomp profile type {} is not valid",
                    p.profile_type
                ))
            })?,
            p.localhost_ref.clone(),
        ),
        None => match sc.seccomp_profile_path.as_str() {
            "" | "unconfined" => (ProfileType::Unconfined, String::new()),
            "runtime/default" | "docker/default" => (ProfileType::RuntimeDefault, String::new()),
            p => match p.strip_prefix("localhost/") {
                Some(rest) => (ProfileType::Localhost, rest.to_string()),
                None => {
                    return Err(Error::InvalidArgument(format!(
                        "seccomp profile path {p:?} is not valid"
                    )))
                }
            },
        },
    };
    match kind {
        ProfileType::Unconfined => Ok(None),
        ProfileType::RuntimeDefault => {
            serde_json::to_value(kos_security::seccomp::profile::default_profile())
                .map(Some)
                .map_err(|e| Error::Internal {
                    step: "encoding the default seccomp profile",
                    message: e.to_string(),
                })
        }
        ProfileType::Localhost => {
            let p = Path::new(&local);
            if local.is_empty() || !p.is_absolute() {
                return Err(Error::InvalidArgument(format!(
                    "seccomp Localhost profile {local:?} must be an absolute path"
                )));
            }
            let f = std::fs::File::open(p)
                .map_err(|e| Error::InvalidArgument(format!("seccomp profile {local}: {e}")))?;
            let mut buf = Vec::new();
            f.take(MAX_PROFILE + 1)
                .read_to_end(&mut buf)
                .map_err(|e| Error::InvalidArgument(format!("seccomp profile {local}: {e}")))?;
            if buf.len() as u64 > MAX_PROFILE {
                return Err(Error::InvalidArgument(format!(
                    "seccomp profile {local} is too large"
                )));
            }
            let v: Value = serde_json::from_slice(&buf)
                .map_err(|e| Error::InvalidArgument(format!("seccomp profile {local}: {e}")))?;
            if !v.get("defaultAction").is_some_and(Value::is_string) {
                return Err(Error::InvalidArgument(format!(
                    "seccomp profile {local} has no defaultAction"
                )));
            }
            Ok(Some(v))
        }
    }
}

fn resources(r: &cri::LinuxContainerResources) -> Value {
    let mut cpu = serde_json::Map::new();
    if r.cpu_shares > 0 {
        cpu.insert("shares".into(), json!(r.cpu_shares));
    }
    if r.cpu_quota > 0 {
        cpu.insert("quota".into(), json!(r.cpu_quota));
    }
    if r.cpu_period > 0 {
        cpu.insert("period".into(), json!(r.cpu_period));
    }
    if !r.cpuset_cpus.is_empty() {
        cpu.insert("cpus".into(), json!(r.cpuset_cpus));
    }
    if !r.cpuset_mems.is_empty() {
        cpu.insert("mems".into(), json!(r.cpuset_mems));
    }
    let mut mem = serde_json::Map::new();
    if r.memory_limit_in_bytes > 0 {
        mem.insert("limit".into(), json!(r.memory_limit_in_bytes));
    }
    if r.memory_swap_limit_in_bytes > 0 {
        mem.insert("swap".into(), json!(r.memory_swap_limit_in_bytes));
    }
    let mut out = json!({});
    if !cpu.is_empty() {
        out["cpu"] = Value::Object(cpu);
    }
    if !mem.is_empty() {
        out["memory"] = Value::Object(mem);
    }
    if !r.hugepage_limits.is_empty() {
        out["hugepageLimits"] = Value::Array(
            r.hugepage_limits
                .iter()
                .map(|h| json!({"pageSize": h.page_size, "limit": h.limit}))
                .collect(),
        );
    }
    if !r.unified.is_empty() {
        out["unified"] = json!(r.unified);
    }
    out
}

/// The OCI LinuxResources of CRI resources (also for UpdateContainerResources).
pub fn oci_resources(r: &cri::LinuxContainerResources) -> Value {
    resources(r)
}

fn propagation(p: i32) -> &'static str {
    match cri::MountPropagation::try_from(p).unwrap_or(cri::MountPropagation::PropagationPrivate) {
        cri::MountPropagation::PropagationPrivate => "rprivate",
        cri::MountPropagation::PropagationHostToContainer => "rslave",
        cri::MountPropagation::PropagationBidirectional => "rshared",
    }
}

fn device(d: &cri::Device) -> Result<(Value, Value)> {
    let m = std::fs::metadata(&d.host_path)
        .map_err(|e| Error::InvalidArgument(format!("device {}: {e}", d.host_path)))?;
    let ft = m.file_type();
    let kind = if ft.is_char_device() {
        "c"
    } else if ft.is_block_device() {
        "b"
    } else {
        return Err(Error::InvalidArgument(format!(
            "{} is not a device",
            d.host_path
        )));
    };
    let rdev = m.rdev();
    let (major, minor) = (libc::major(rdev) as i64, libc::minor(rdev) as i64);
    let perms = if d.permissions.is_empty() {
        "rwm".to_string()
    } else {
        d.permissions.clone()
    };
    if perms.chars().any(|c| !"rwm".contains(c)) {
        return Err(Error::InvalidArgument(format!(
            "device permissions {perms:?} are not valid"
        )));
    }
    let path = if d.container_path.is_empty() {
        &d.host_path
    } else {
        &d.container_path
    };
    Ok((
        json!({"path": path, "type": kind, "major": major, "minor": minor, "fileMode": m.mode() & 0o777, "uid": 0, "gid": 0}),
        json!({"allow": true, "type": kind, "major": major, "minor": minor, "access": perms}),
    ))
}

fn ns_path(kind: &str, path: Option<&Path>) -> Value {
    match path {
        Some(p) => json!({"type": kind, "path": p}),
        None => json!({"type": kind}),
    }
}

/// What the spec of one container needs besides the configs.
pub struct SpecInput<'a> {
    pub id: &'a str,
    pub config: &'a cri::ContainerConfig,
    pub sandbox: &'a SandboxRecord,
    pub image: &'a kos_image::Image,
    pub rootfs: &'a Path,
    pub cgroups_path: &'a str,
}

/// Builds config.json; returns it and the stop signal of the image.
#[allow(deprecated)]
pub fn build(input: &SpecInput<'_>) -> Result<(Value, i32)> {
    let c = input.config;
    let lin = c.linux.clone().unwrap_or_default();
    let sc = lin.security_context.clone().unwrap_or_default();
    let user = if !sc.run_as_username.is_empty() {
        Some(sc.run_as_username.clone())
    } else {
        sc.run_as_user.as_ref().map(|u| match &sc.run_as_group {
            Some(g) => format!("{}:{}", u.value, g.value),
            None => u.value.to_string(),
        })
    };
    if let Some(u) = &sc.run_as_user {
        if u.value < 0 || u.value > u32::MAX as i64 {
            return Err(Error::InvalidArgument(format!(
                "run_as_user {} is not valid",
                u.value
            )));
        }
    }
    let ov = Overrides {
        entrypoint: (!c.command.is_empty()).then(|| c.command.clone()),
        cmd: (!c.args.is_empty()).then(|| c.args.clone()),
        env: c
            .envs
            .iter()
            .map(|kv| format!("{}={}", kv.key, kv.value))
            .collect(),
        user,
        working_dir: (!c.working_dir.is_empty()).then(|| c.working_dir.clone()),
    };
    let rc = runtime_config(&input.image.config, input.rootfs, &ov)
        .map_err(|e| Error::InvalidArgument(format!("container process: {e}")))?;
    let mut gids = rc.additional_gids.clone();
    for g in &sc.supplemental_groups {
        let g = u32::try_from(*g)
            .map_err(|_| Error::InvalidArgument(format!("supplemental group {g} is not valid")))?;
        if !gids.contains(&g) {
            gids.push(g);
        }
    }
    let caps = capabilities(&sc)?;
    let mut process = json!({
        "terminal": c.tty,
        "args": rc.args,
        "env": rc.env,
        "cwd": rc.cwd,
        "user": {"uid": rc.uid, "gid": rc.gid, "additionalGids": gids},
        "capabilities": {"bounding": caps, "effective": caps, "permitted": caps},
        "noNewPrivileges": sc.no_new_privs,
    });
    if let Some(r) = &lin.resources {
        if r.oom_score_adj != 0 {
            process["oomScoreAdj"] = json!(r.oom_score_adj);
        }
    }
    if let Some(a) = &sc.apparmor {
        if a.profile_type == cri::security_profile::ProfileType::Localhost as i32 {
            process["apparmorProfile"] = json!(a.localhost_ref);
        }
    } else if !sc.apparmor_profile.is_empty() && sc.apparmor_profile != "unconfined" {
        process["apparmorProfile"] = json!(sc.apparmor_profile.trim_start_matches("localhost/"));
    }
    if let Some(se) = &sc.selinux_options {
        if !se.r#type.is_empty() || !se.level.is_empty() {
            process["selinuxLabel"] = json!(format!(
                "{}:{}:{}:{}",
                se.user, se.role, se.r#type, se.level
            ));
        }
    }

    let sb = input.sandbox;
    let pod_ns = sb
        .config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone());
    let c_ns = sc.namespace_options.clone().or(pod_ns);
    let pid_mode = crate::sandbox::mode(c_ns.as_ref(), |n| n.pid);
    let mut namespaces = vec![json!({"type": "mount"})];
    if let Some(p) = &sb.userns {
        // Joined first by the runtime; the pod's other namespaces belong to it.
        namespaces.push(ns_path("user", Some(p)));
    }
    if let Some(p) = &sb.netns {
        namespaces.push(ns_path("network", Some(p)));
    }
    if let Some(p) = &sb.ipcns {
        namespaces.push(ns_path("ipc", Some(p)));
    }
    if let Some(p) = &sb.utsns {
        namespaces.push(ns_path("uts", Some(p)));
    }
    match pid_mode {
        cri::NamespaceMode::Node => {}
        cri::NamespaceMode::Pod => match sb.holder {
            Some((pid, _)) => namespaces.push(ns_path(
                "pid",
                Some(Path::new(&format!("/proc/{pid}/ns/pid"))),
            )),
            None => {
                return Err(Error::FailedPrecondition(
                    "the pod's shared PID namespace holder is gone".into(),
                ))
            }
        },
        _ => namespaces.push(json!({"type": "pid"})),
    }
    namespaces.push(json!({"type": "cgroup"}));

    let ro_sys = !sc.privileged;
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": if ro_sys { json!(["nosuid", "noexec", "nodev", "ro"]) } else { json!(["nosuid", "noexec", "nodev"]) }}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}),
    ];
    let shm = if sb.ipcns.is_some() {
        sb.dir.join("shm")
    } else {
        "/dev/shm".into()
    };
    mounts.push(json!({"destination": "/dev/shm", "type": "bind", "source": shm, "options": ["rbind", "nosuid", "nodev", "noexec"]}));
    let user_paths: Vec<&str> = c.mounts.iter().map(|m| m.container_path.as_str()).collect();
    for f in ["hostname", "hosts", "resolv.conf"] {
        let dest = format!("/etc/{f}");
        if !user_paths.contains(&dest.as_str()) {
            let ro = if sc.readonly_rootfs { "ro" } else { "rw" };
            mounts.push(json!({"destination": dest, "type": "bind", "source": sb.dir.join(f), "options": ["rbind", "rprivate", ro]}));
        }
    }
    for m in &c.mounts {
        if !m.container_path.starts_with('/') {
            return Err(Error::InvalidArgument(format!(
                "mount destination {:?} is not absolute",
                m.container_path
            )));
        }
        let src = Path::new(&m.host_path);
        if !src.is_absolute() {
            return Err(Error::InvalidArgument(format!(
                "mount source {:?} is not absolute",
                m.host_path
            )));
        }
        if !src.exists() {
            // As containerd: a missing host directory is made.
            std::fs::create_dir_all(src).map_err(|e| Error::io("creating mount source", src, e))?;
        }
        let mut opts = vec!["rbind".to_string(), propagation(m.propagation).to_string()];
        opts.push(if m.readonly { "ro".into() } else { "rw".into() });
        if m.recursive_read_only {
            opts.push("rro".into());
        }
        mounts.push(json!({"destination": m.container_path, "type": "bind", "source": m.host_path, "options": opts}));
    }

    let mut devices = Vec::new();
    let mut dev_rules = vec![json!({"allow": false, "access": "rwm"})];
    for d in &c.devices {
        let (dev, rule) = device(d)?;
        devices.push(dev);
        dev_rules.push(rule);
    }
    let mut res = lin
        .resources
        .as_ref()
        .map(resources)
        .unwrap_or_else(|| json!({}));
    res["devices"] = Value::Array(dev_rules);

    let mut linux = json!({
        "namespaces": namespaces,
        "cgroupsPath": input.cgroups_path,
        "resources": res,
        "devices": devices,
    });
    let sysctls = sb
        .config
        .linux
        .as_ref()
        .map(|l| l.sysctls.clone())
        .unwrap_or_default();
    if !sysctls.is_empty() {
        linux["sysctl"] = json!(sysctls);
    }
    if !sc.privileged {
        let masked = if sc.masked_paths.is_empty() {
            kos_security::spec_defaults::masked_paths()
        } else {
            sc.masked_paths.clone()
        };
        let ro = if sc.readonly_paths.is_empty() {
            kos_security::spec_defaults::readonly_paths()
        } else {
            sc.readonly_paths.clone()
        };
        linux["maskedPaths"] = json!(masked);
        linux["readonlyPaths"] = json!(ro);
    }
    if let Some(s) = seccomp(&sc)? {
        linux["seccomp"] = s;
    }
    if let Some(se) = &sc.selinux_options {
        if !se.level.is_empty() {
            linux["mountLabel"] = json!(format!(
                "{}:{}:{}:{}",
                se.user, se.role, se.r#type, se.level
            ));
        }
    }
    let spec = json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": input.rootfs, "readonly": sc.readonly_rootfs},
        "mounts": mounts,
        "linux": linux,
        "annotations": {
            "io.kubernetes.cri.container-type": "container",
            "io.kubernetes.cri.sandbox-id": sb.id,
            "io.kubernetes.cri.container-name": c.metadata.as_ref().map(|m| m.name.clone()).unwrap_or_default(),
        },
    });
    Ok((spec, rc.stop_signal))
}

/// Annotations naming CDI devices (`cdi.k8s.io/<any>: vendor/class=name[,...]`), the form
/// kubelet's device plugins used before the `CDI_devices` field.
pub const CDI_ANNOTATION_PREFIX: &str = "cdi.k8s.io/";

/// The qualified CDI device names a container asks for: the `CDI_devices` field first,
/// then the annotations (in key order, so the result is stable), each name once.
pub fn cdi_names(c: &cri::ContainerConfig) -> Vec<String> {
    let mut names: Vec<String> = c.cdi_devices.iter().map(|d| d.name.clone()).collect();
    let mut keys: Vec<&String> = c
        .annotations
        .keys()
        .filter(|k| k.starts_with(CDI_ANNOTATION_PREFIX))
        .collect();
    keys.sort();
    for k in keys {
        names.extend(
            c.annotations[k]
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(String::from),
        );
    }
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cdi_names_from_field_and_annotations_once_each() {
        let c = cri::ContainerConfig {
            cdi_devices: vec![cri::CdiDevice {
                name: "v.com/gpu=0".into(),
            }],
            annotations: [
                (
                    "cdi.k8s.io/b".to_string(),
                    "v.com/gpu=1, v.com/gpu=0".to_string(),
                ),
                ("cdi.k8s.io/a".to_string(), "v.com/nic=x".to_string()),
                ("other/c".to_string(), "v.com/gpu=9".to_string()),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        assert_eq!(
            cdi_names(&c),
            vec!["v.com/gpu=0", "v.com/nic=x", "v.com/gpu=1"]
        );
    }
}
