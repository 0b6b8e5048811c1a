//! The bundle's config.json: the image's runtime settings plus everything the
//! `HostConfig` asks for, in the OCI runtime spec's shape.

use std::collections::BTreeMap;
use std::path::Path;

use bollard_stubs::models::{HostConfig, MountTypeEnum};
use serde_json::{json, Value};

use crate::config::Ulimit;
use crate::error::{ApiError, Result};

/// /dev/shm's size when the container does not set one (dockerd's default).
pub const DEFAULT_SHM_SIZE: i64 = 64 << 20;

/// Docker's default capability set.
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

/// Every capability the kernel knows (for privileged and `--cap-add ALL`).
pub const ALL_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// Normalises `net_admin`, `NET_ADMIN`, `CAP_NET_ADMIN` to `CAP_NET_ADMIN`.
pub fn cap_name(c: &str) -> Result<String> {
    let up = c.to_ascii_uppercase();
    let full = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    if full == "CAP_ALL" {
        return Ok("ALL".into());
    }
    if !ALL_CAPS.contains(&full.as_str()) {
        return Err(ApiError::bad(format!("invalid capability: {c}")));
    }
    Ok(full)
}

/// The capabilities of ALL_CAPS (numbered by position) in kosd's own bounding set: what
/// `--privileged` and `--cap-add ALL` mean, as dockerd reads them from its environment. A
/// capability the daemon cannot hold (CAP_SYS_RESOURCE in some sandboxes) cannot be granted.
pub fn available_caps() -> &'static [String] {
    static AVAILABLE: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    AVAILABLE.get_or_init(|| {
        let bounding = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|st| {
                st.lines()
                    .find_map(|l| l.strip_prefix("CapBnd:"))
                    .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
            })
            .unwrap_or(u64::MAX);
        ALL_CAPS
            .iter()
            .enumerate()
            .filter(|(bit, _)| bounding & (1u64 << bit) != 0)
            .map(|(_, c)| c.to_string())
            .collect()
    })
}

/// The capability set for `--privileged`, `--cap-add`, `--cap-drop`.
pub fn capabilities(hc: &HostConfig) -> Result<Vec<String>> {
    if hc.privileged.unwrap_or(false) {
        return Ok(available_caps().to_vec());
    }
    let add: Vec<String> = hc
        .cap_add
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|c| cap_name(c))
        .collect::<Result<_>>()?;
    let drop: Vec<String> = hc
        .cap_drop
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|c| cap_name(c))
        .collect::<Result<_>>()?;
    let mut caps: Vec<String> = if drop.iter().any(|d| d == "ALL") {
        Vec::new()
    } else {
        DEFAULT_CAPS
            .iter()
            .map(|s| s.to_string())
            .filter(|c| !drop.contains(c))
            .collect()
    };
    if add.iter().any(|a| a == "ALL") {
        caps = available_caps()
            .iter()
            .filter(|c| !drop.contains(c))
            .cloned()
            .collect();
    }
    for a in add {
        if a != "ALL" && !caps.contains(&a) {
            caps.push(a);
        }
    }
    Ok(caps)
}

/// What `--security-opt` asked for.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SecurityOpts {
    pub no_new_privileges: bool,
    /// None = default profile; Some(None) = unconfined; Some(Some(json)) = a profile.
    pub seccomp: Option<Option<String>>,
    pub apparmor: Option<String>,
    pub label_disable: bool,
    pub label_parts: BTreeMap<String, String>,
    pub landlock: Option<String>,
}

/// Parses `--security-opt` values. The CLI reads a seccomp profile file and sends its content.
pub fn security_opts(opts: &[String]) -> Result<SecurityOpts> {
    let mut s = SecurityOpts::default();
    for o in opts {
        let (k, v) = match o.split_once(['=', ':']) {
            Some(kv) => kv,
            None if o == "no-new-privileges" => (o.as_str(), ""),
            None => return Err(ApiError::bad(format!("invalid --security-opt: {o:?}"))),
        };
        match k {
            "no-new-privileges" => {
                s.no_new_privileges = match v {
                    "" | "true" => true,
                    "false" => false,
                    _ => return Err(ApiError::bad(format!("invalid --security-opt: {o:?}"))),
                }
            }
            "seccomp" => {
                s.seccomp = Some(if v == "unconfined" {
                    None
                } else {
                    Some(v.to_string())
                })
            }
            "apparmor" => s.apparmor = Some(v.to_string()),
            "label" => {
                if v == "disable" {
                    s.label_disable = true;
                } else {
                    let (lk, lv) = v
                        .split_once(':')
                        .ok_or_else(|| ApiError::bad(format!("invalid --security-opt: {o:?}")))?;
                    if !matches!(lk, "user" | "role" | "type" | "level" | "filetype") {
                        return Err(ApiError::bad(format!("invalid --security-opt: {o:?}")));
                    }
                    s.label_parts.insert(lk.to_string(), lv.to_string());
                }
            }
            "landlock" => s.landlock = Some(v.to_string()),
            _ => return Err(ApiError::bad(format!("invalid --security-opt: {o:?}"))),
        }
    }
    Ok(s)
}

/// Docker's default profile (an allow-list), widened by the capabilities the container
/// holds (e.g. CAP_SYS_ADMIN opens mount and the namespace calls), as dockerd derives it.
/// Built once per set of capabilities (nearly always Docker's default set) and kept: making
/// and encoding the profile's ~40 rules took a third of a millisecond of every start.
fn default_seccomp(caps: &[String]) -> Result<Value> {
    type Profiles = std::sync::Mutex<std::collections::HashMap<Vec<String>, Value>>;
    static BUILT: std::sync::OnceLock<Profiles> = std::sync::OnceLock::new();
    let mut key = caps.to_vec();
    key.sort();
    key.dedup();
    let built = BUILT.get_or_init(Default::default);
    if let Some(v) = built.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
        return Ok(v.clone());
    }
    let held: Vec<oci_spec::runtime::Capability> = key
        .iter()
        .filter_map(|c| serde_json::from_value(json!(c)).ok())
        .collect();
    let v = serde_json::to_value(kos_security::seccomp::default_profile_for(&held))
        .map_err(|e| ApiError::internal("encoding the default seccomp profile", e))?;
    let mut built = built.lock().unwrap_or_else(|p| p.into_inner());
    // A few sets at most in practice; bounded all the same.
    if built.len() >= MAX_KEPT_PROFILES {
        built.clear();
    }
    built.insert(key, v.clone());
    Ok(v)
}

/// How many capability sets' default profiles are kept.
const MAX_KEPT_PROFILES: usize = 16;

fn rlimit_name(n: &str) -> String {
    format!("RLIMIT_{}", n.to_ascii_uppercase())
}

/// Docker's allow-list of devices for unprivileged containers.
fn default_device_rules() -> Vec<Value> {
    let mut v = vec![json!({"allow": false, "access": "rwm"})];
    for (t, maj, min) in [
        ("c", Some(1), Some(3)),
        ("c", Some(1), Some(5)),
        ("c", Some(1), Some(7)),
        ("c", Some(1), Some(8)),
        ("c", Some(1), Some(9)),
        ("c", Some(5), Some(0)),
        ("c", Some(5), Some(1)),
        ("c", Some(5), Some(2)),
        ("c", Some(136), None),
        ("c", Some(10), Some(200)),
    ] {
        v.push(json!({"allow": true, "type": t, "major": maj, "minor": min, "access": "rwm"}));
    }
    v.push(json!({"allow": true, "type": "c", "access": "m"}));
    v.push(json!({"allow": true, "type": "b", "access": "m"}));
    v
}

/// Parses a `--device-cgroup-rule` such as `c 1:3 mr` or `b *:* rwm`.
pub fn device_cgroup_rule(r: &str) -> Result<Value> {
    let bad = || ApiError::bad(format!("invalid device cgroup rule {r:?}"));
    let f: Vec<&str> = r.split_whitespace().collect();
    if f.len() != 3 || !matches!(f[0], "a" | "b" | "c") {
        return Err(bad());
    }
    let (maj, min) = f[1].split_once(':').ok_or_else(bad)?;
    let num = |s: &str| -> Result<Option<i64>> {
        if s == "*" {
            Ok(None)
        } else {
            s.parse().map(Some).map_err(|_| bad())
        }
    };
    if f[2].is_empty() || !f[2].chars().all(|c| "rwm".contains(c)) {
        return Err(bad());
    }
    Ok(json!({"allow": true, "type": f[0], "major": num(maj)?, "minor": num(min)?, "access": f[2]}))
}

/// A host device passed with `--device /dev/x[:/dev/y][:rwm]`.
fn host_device(on_host: &str, in_container: &str, perms: &str) -> Result<(Value, Value)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let md = std::fs::metadata(on_host).map_err(|e| {
        ApiError::bad(format!(
            "error gathering device information while adding custom device {on_host:?}: {e}"
        ))
    })?;
    let ft = md.file_type();
    let kind = if ft.is_char_device() {
        "c"
    } else if ft.is_block_device() {
        "b"
    } else {
        return Err(ApiError::bad(format!("{on_host} is not a device node")));
    };
    let rdev = md.rdev();
    let (maj, min) = (libc::major(rdev) as i64, libc::minor(rdev) as i64);
    // KOS: the node's mode follows the permissions too, so a device given without `w`
    // is not writable by the container's non-root users even when the cgroup cannot
    // tell it from a default one (`/dev/null:/dev/xnull:r` is still c 1:3).
    let mut mode = md.mode() & 0o7777;
    if !perms.contains('w') {
        mode &= !0o222;
    }
    if !perms.contains('r') {
        mode &= !0o444;
    }
    Ok((
        json!({"path": in_container, "type": kind, "major": maj, "minor": min, "fileMode": mode, "uid": 0, "gid": 0}),
        json!({"allow": true, "type": kind, "major": maj, "minor": min, "access": perms}),
    ))
}

/// Major and minor of a block device named by a `--blkio-weight-device` or
/// `--device-*-bps|iops` path.
fn block_device(path: &str, flag: &str) -> Result<(i64, i64)> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let md = std::fs::metadata(path)
        .map_err(|e| ApiError::bad(format!("invalid {flag} device {path:?}: {e}")))?;
    if !md.file_type().is_block_device() {
        return Err(ApiError::bad(format!(
            "invalid {flag} device {path:?}: not a block device"
        )));
    }
    Ok((libc::major(md.rdev()) as i64, libc::minor(md.rdev()) as i64))
}

/// `linux.resources.blockIO`: weight, per-device weights and throttles.
fn block_io(hc: &HostConfig) -> Result<serde_json::Map<String, Value>> {
    let mut b = serde_json::Map::new();
    let check = |w: i64| {
        if (10..=1000).contains(&w) {
            Ok(w)
        } else {
            Err(ApiError::bad("Range of blkio weight is from 10 to 1000"))
        }
    };
    if let Some(w) = hc.blkio_weight.filter(|w| *w > 0) {
        b.insert("weight".into(), json!(check(i64::from(w))?));
    }
    let mut weights = Vec::new();
    for d in hc.blkio_weight_device.clone().unwrap_or_default() {
        let path = d.path.unwrap_or_default();
        let (major, minor) = block_device(&path, "--blkio-weight-device")?;
        let w = i64::try_from(d.weight.unwrap_or(0)).unwrap_or(i64::MAX);
        weights.push(json!({"major": major, "minor": minor, "weight": check(w)?}));
    }
    if !weights.is_empty() {
        b.insert("weightDevice".into(), json!(weights));
    }
    let throttles = [
        (
            &hc.blkio_device_read_bps,
            "throttleReadBpsDevice",
            "--device-read-bps",
        ),
        (
            &hc.blkio_device_write_bps,
            "throttleWriteBpsDevice",
            "--device-write-bps",
        ),
        (
            &hc.blkio_device_read_iops,
            "throttleReadIOPSDevice",
            "--device-read-iops",
        ),
        (
            &hc.blkio_device_write_iops,
            "throttleWriteIOPSDevice",
            "--device-write-iops",
        ),
    ];
    for (list, key, flag) in throttles {
        let mut out = Vec::new();
        for d in list.clone().unwrap_or_default() {
            let path = d.path.unwrap_or_default();
            let (major, minor) = block_device(&path, flag)?;
            let rate = d.rate.unwrap_or(0);
            if rate < 0 {
                return Err(ApiError::bad(format!(
                    "invalid {flag} rate {rate} for {path}"
                )));
            }
            out.push(json!({"major": major, "minor": minor, "rate": rate}));
        }
        if !out.is_empty() {
            b.insert(key.into(), json!(out));
        }
    }
    Ok(b)
}

/// `linux.resources` (and the host devices to create) from the HostConfig.
pub fn resources(hc: &HostConfig) -> Result<(Value, Vec<Value>)> {
    let privileged = hc.privileged.unwrap_or(false);
    let mut resources = json!({});
    let mut devices = if privileged {
        vec![json!({"allow": true, "access": "rwm"})]
    } else {
        default_device_rules()
    };
    let mut linux_devices = Vec::new();
    for d in hc.devices.clone().unwrap_or_default() {
        let host = d.path_on_host.clone().unwrap_or_default();
        let inside = d
            .path_in_container
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| host.clone());
        let perms = d
            .cgroup_permissions
            .clone()
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| "rwm".into());
        let (dev, rule) = host_device(&host, &inside, &perms)?;
        linux_devices.push(dev);
        devices.push(rule);
    }
    for r in hc.device_cgroup_rules.clone().unwrap_or_default() {
        devices.push(device_cgroup_rule(&r)?);
    }
    resources["devices"] = json!(devices);
    let mut memory = serde_json::Map::new();
    if let Some(m) = hc.memory.filter(|m| *m > 0) {
        if m < 6 << 20 {
            return Err(ApiError::bad("Minimum memory limit allowed is 6MB"));
        }
        memory.insert("limit".into(), json!(m));
    }
    if let Some(s) = hc.memory_swap.filter(|s| *s != 0) {
        if s > 0 && hc.memory.unwrap_or(0) > 0 && s < hc.memory.unwrap_or(0) {
            return Err(ApiError::bad(
                "Minimum memoryswap limit should be larger than memory limit, see usage",
            ));
        }
        memory.insert("swap".into(), json!(s));
    }
    if let Some(r) = hc.memory_reservation.filter(|m| *m > 0) {
        memory.insert("reservation".into(), json!(r));
    }
    if let Some(s) = hc.memory_swappiness.filter(|s| *s >= 0) {
        if s > 100 {
            return Err(ApiError::bad(format!(
                "invalid value: {s}, valid memory swappiness range is 0-100"
            )));
        }
        memory.insert("swappiness".into(), json!(s));
    }
    if hc.oom_kill_disable == Some(true) {
        memory.insert("disableOOMKiller".into(), json!(true));
    }
    if !memory.is_empty() {
        resources["memory"] = Value::Object(memory);
    }
    let mut cpu = serde_json::Map::new();
    if let Some(s) = hc.cpu_shares.filter(|s| *s > 0) {
        cpu.insert("shares".into(), json!(s));
    }
    if let Some(n) = hc.nano_cpus.filter(|n| *n > 0) {
        if hc.cpu_quota.unwrap_or(0) > 0 || hc.cpu_period.unwrap_or(0) > 0 {
            return Err(ApiError::bad(
                "Conflicting options: Nano CPUs and CPU Period/Quota cannot both be set",
            ));
        }
        let period = 100_000i64;
        cpu.insert("period".into(), json!(period));
        cpu.insert("quota".into(), json!(n * period / 1_000_000_000));
    }
    if let Some(q) = hc.cpu_quota.filter(|q| *q > 0) {
        cpu.insert("quota".into(), json!(q));
    }
    if let Some(p) = hc.cpu_period.filter(|p| *p > 0) {
        cpu.insert("period".into(), json!(p));
    }
    if let Some(c) = hc.cpuset_cpus.clone().filter(|c| !c.is_empty()) {
        cpu.insert("cpus".into(), json!(c));
    }
    if let Some(m) = hc.cpuset_mems.clone().filter(|c| !c.is_empty()) {
        cpu.insert("mems".into(), json!(m));
    }
    if !cpu.is_empty() {
        resources["cpu"] = Value::Object(cpu);
    }
    if let Some(p) = hc.pids_limit.filter(|p| *p != 0) {
        resources["pids"] = json!({"limit": p});
    }
    let block_io = block_io(hc)?;
    if !block_io.is_empty() {
        resources["blockIO"] = Value::Object(block_io);
    }

    Ok((resources, linux_devices))
}

/// Inputs besides the HostConfig.
pub struct SpecInput<'a> {
    pub id: &'a str,
    pub process: Value,
    pub tty: bool,
    pub hostname: &'a str,
    pub domainname: &'a str,
    /// The bundle directory holding hostname, hosts, resolv.conf.
    pub dir: &'a Path,
    /// The container's root filesystem (absolute: the bundle lives elsewhere).
    pub rootfs: &'a Path,
    pub mounts: Vec<Value>,
    /// Network namespace: None = host's, Some(None) = new, Some(Some(path)) = join.
    pub netns: Option<Option<String>>,
    pub default_ulimits: &'a [Ulimit],
    pub stop_signal: i32,
    /// `linux.cgroupsPath` (the parent and the id).
    pub cgroups_path: &'a str,
    /// The container's (process, mount) SELinux labels; empty when SELinux is off.
    pub selinux_labels: (&'a str, &'a str),
    pub cgroup_v2: bool,
    pub labels: BTreeMap<String, String>,
    /// CDI devices and kaim grants edit the finished spec (none in unit tests).
    pub devices: Option<&'a crate::devices::Devices>,
}

/// Builds config.json.
pub fn build(hc: &HostConfig, inp: &SpecInput<'_>) -> Result<Value> {
    let privileged = hc.privileged.unwrap_or(false);
    let sec = security_opts(&hc.security_opt.clone().unwrap_or_default())?;
    let caps = capabilities(hc)?;
    let mut process = inp.process.clone();
    process["terminal"] = json!(inp.tty);
    if inp.tty {
        if let Some(env) = process["env"].as_array_mut() {
            if !env
                .iter()
                .any(|e| e.as_str().is_some_and(|s| s.starts_with("TERM=")))
            {
                env.push(json!("TERM=xterm"));
            }
        }
    }
    if let Some(env) = process["env"].as_array_mut() {
        if !env
            .iter()
            .any(|e| e.as_str().is_some_and(|s| s.starts_with("HOSTNAME=")))
        {
            env.insert(
                1.min(env.len()),
                json!(format!("HOSTNAME={}", inp.hostname)),
            );
        }
    }
    process["capabilities"] = json!({
        "bounding": caps, "effective": caps, "permitted": caps,
    });
    process["noNewPrivileges"] = json!(sec.no_new_privileges);
    if let Some(groups) = &hc.group_add {
        let mut extra: Vec<u32> = Vec::new();
        for g in groups {
            extra.push(g.parse().map_err(|_| {
                ApiError::bad(format!(
                    "group-add {g:?}: only numeric groups are supported"
                ))
            })?);
        }
        if let Some(a) = process["user"]["additionalGids"].as_array_mut() {
            a.extend(extra.into_iter().map(|g| json!(g)));
        }
    }
    let mut rlimits: BTreeMap<String, Value> = BTreeMap::new();
    for u in inp.default_ulimits {
        rlimits.insert(
            rlimit_name(&u.name),
            json!({"type": rlimit_name(&u.name), "soft": u.soft, "hard": u.hard}),
        );
    }
    for u in hc.ulimits.clone().unwrap_or_default() {
        let name = u.name.clone().unwrap_or_default();
        crate::config::parse_ulimit(&format!("{name}=0"))
            .map_err(|_| ApiError::bad(format!("invalid ulimit name {name:?}")))?;
        rlimits.insert(rlimit_name(&name), json!({"type": rlimit_name(&name), "soft": u.soft.unwrap_or(0), "hard": u.hard.unwrap_or(0)}));
    }
    process["rlimits"] = json!(rlimits.into_values().collect::<Vec<_>>());
    if let Some(a) = &sec.apparmor {
        process["apparmorProfile"] = json!(a);
    }
    if !inp.selinux_labels.0.is_empty() {
        process["selinuxLabel"] = json!(inp.selinux_labels.0);
    } else if !sec.label_disable {
        if let Some(l) = sec.label_parts.get("level") {
            process["selinuxLabel"] = json!(format!(
                "{}:{}:{}:{}",
                sec.label_parts
                    .get("user")
                    .map(String::as_str)
                    .unwrap_or("system_u"),
                sec.label_parts
                    .get("role")
                    .map(String::as_str)
                    .unwrap_or("system_r"),
                sec.label_parts
                    .get("type")
                    .map(String::as_str)
                    .unwrap_or("container_t"),
                l
            ));
        }
    }
    if let Some(o) = hc.oom_score_adj {
        process["oomScoreAdj"] = json!(o);
    }

    let shm = hc.shm_size.filter(|s| *s > 0).unwrap_or(DEFAULT_SHM_SIZE);
    let mut mounts = vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc", "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", if privileged { "rw" } else { "ro" }]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", if privileged { "rw" } else { "ro" }]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]}),
    ];
    if hc.ipc_mode.as_deref() != Some("host") {
        mounts.push(json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", format!("size={shm}")]}));
    }
    for f in ["hostname", "hosts", "resolv.conf"] {
        let src = inp.dir.join(f);
        if src.exists() {
            mounts.push(json!({"destination": format!("/etc/{f}"), "type": "bind", "source": src, "options": ["rbind", "rprivate"]}));
        }
    }
    mounts.extend(inp.mounts.iter().cloned());
    // A later mount at the same destination replaces an earlier one (the user's win).
    let mut seen = std::collections::HashSet::new();
    let mut deduped: Vec<Value> = Vec::new();
    for m in mounts.into_iter().rev() {
        let d = m["destination"]
            .as_str()
            .unwrap_or("")
            .trim_end_matches('/')
            .to_string();
        if seen.insert(d) {
            deduped.push(m);
        }
    }
    deduped.reverse();

    let mut namespaces = vec![json!({"type": "mount"})];
    if hc.pid_mode.as_deref() != Some("host") {
        namespaces.push(json!({"type": "pid"}));
    }
    if hc.ipc_mode.as_deref() != Some("host") {
        namespaces.push(json!({"type": "ipc"}));
    }
    if hc.uts_mode.as_deref() != Some("host") {
        namespaces.push(json!({"type": "uts"}));
    }
    match &inp.netns {
        None => {}
        Some(None) => namespaces.push(json!({"type": "network"})),
        Some(Some(p)) => namespaces.push(json!({"type": "network", "path": p})),
    }
    let cgroupns = match hc.cgroupns_mode {
        Some(bollard_stubs::models::HostConfigCgroupnsModeEnum::HOST) => false,
        Some(bollard_stubs::models::HostConfigCgroupnsModeEnum::PRIVATE) => true,
        _ => inp.cgroup_v2,
    };
    if cgroupns {
        namespaces.push(json!({"type": "cgroup"}));
    }
    if let Some(u) = hc
        .userns_mode
        .as_deref()
        .filter(|u| !u.is_empty() && *u != "host")
    {
        return Err(ApiError::bad(format!(
            "userns mode {u:?} is not supported (only host)"
        )));
    }

    let (resources, linux_devices) = resources(hc)?;

    let mut linux = json!({
        "namespaces": namespaces,
        "cgroupsPath": inp.cgroups_path,
        "resources": resources,
    });
    if !linux_devices.is_empty() {
        linux["devices"] = json!(linux_devices);
    }
    if !privileged {
        // The container's own lists when it gave them (`--security-opt systempaths=unconfined`
        // sends empty ones), else the defaults.
        linux["maskedPaths"] = json!(hc
            .masked_paths
            .clone()
            .unwrap_or_else(kos_security::spec_defaults::masked_paths));
        linux["readonlyPaths"] = json!(hc
            .readonly_paths
            .clone()
            .unwrap_or_else(kos_security::spec_defaults::readonly_paths));
    }
    let seccomp = if privileged {
        None
    } else {
        match &sec.seccomp {
            None => Some(default_seccomp(&caps)?),
            Some(None) => None,
            Some(Some(profile)) => Some(
                serde_json::from_str::<Value>(profile)
                    .map_err(|e| ApiError::bad(format!("decoding seccomp profile failed: {e}")))?,
            ),
        }
    };
    if let Some(s) = seccomp {
        linux["seccomp"] = s;
    }
    if let Some(sysctls) = &hc.sysctls {
        for k in sysctls.keys() {
            let net_ok = k.starts_with("net.") && inp.netns.is_some();
            let ipc_ok = (k.starts_with("kernel.msg")
                || k.starts_with("kernel.sem")
                || k.starts_with("kernel.shm")
                || k.starts_with("fs.mqueue."))
                && hc.ipc_mode.as_deref() != Some("host");
            if !net_ok && !ipc_ok {
                return Err(ApiError::bad(format!("sysctl {k:?} is not allowed (only namespaced net.*, kernel.msg*/sem*/shm*, fs.mqueue.*)")));
            }
        }
        linux["sysctl"] = json!(sysctls);
    }
    if !inp.selinux_labels.1.is_empty() {
        linux["mountLabel"] = json!(inp.selinux_labels.1);
    } else if let Some(sec_label) = sec.label_parts.get("level").filter(|_| !sec.label_disable) {
        linux["mountLabel"] = json!(format!("system_u:object_r:container_file_t:{sec_label}"));
    }
    let mut annotations: BTreeMap<String, String> = inp.labels.clone();
    annotations.insert("org.kos.stop-signal".into(), inp.stop_signal.to_string());
    if let Some(l) = &sec.landlock {
        annotations.insert("org.kos.landlock".into(), l.clone());
    }
    let mut spec = json!({
        "ociVersion": "1.0.2",
        "process": process,
        "root": {"path": inp.rootfs, "readonly": hc.readonly_rootfs.unwrap_or(false)},
        "hostname": inp.hostname,
        "domainname": inp.domainname,
        "mounts": deduped,
        "linux": linux,
        "annotations": annotations,
    });
    if let Some(d) = inp.devices {
        d.edit_spec(&mut spec, hc, inp.id, &inp.labels)?;
    }
    Ok(spec)
}

/// A `tmpfs` mount from `--tmpfs /path:opts`.
pub fn tmpfs_mount(dest: &str, opts: &str) -> Result<Value> {
    if !dest.starts_with('/') {
        return Err(ApiError::bad(format!(
            "invalid mount path {dest:?}: must be absolute"
        )));
    }
    let mut o: Vec<String> = vec!["nosuid".into(), "nodev".into(), "noexec".into()];
    for x in opts.split(',').filter(|s| !s.is_empty()) {
        match x {
            "exec" => o.retain(|y| y != "noexec"),
            "suid" => o.retain(|y| y != "nosuid"),
            "dev" => o.retain(|y| y != "nodev"),
            _ => o.push(x.to_string()),
        }
    }
    Ok(json!({"destination": dest, "type": "tmpfs", "source": "tmpfs", "options": o}))
}

/// A bind mount; the source must exist on the host.
pub fn bind_mount(src: &str, dest: &str, opts: &[&str]) -> Result<Value> {
    if !dest.starts_with('/') {
        return Err(ApiError::bad(format!(
            "invalid mount config: destination {dest:?} must be an absolute path"
        )));
    }
    if !src.starts_with('/') {
        return Err(ApiError::bad(format!(
            "invalid mount config: source {src:?} must be an absolute path"
        )));
    }
    if !Path::new(src).exists() {
        return Err(ApiError::bad(format!(
            "invalid mount config for type \"bind\": bind source path does not exist: {src}"
        )));
    }
    let mut o = vec!["rbind".to_string()];
    let mut prop = "rprivate".to_string();
    for x in opts {
        match *x {
            "ro" | "readonly" => o.push("ro".into()),
            "rw" | "" | "z" | "Z" | "nocopy" => {}
            p @ ("private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave") => {
                prop = p.to_string()
            }
            other => return Err(ApiError::bad(format!("invalid mode: {other}"))),
        }
    }
    o.push(prop);
    Ok(json!({"destination": dest, "type": "bind", "source": src, "options": o}))
}

/// `MountTypeEnum` as Docker's lowercase word.
pub fn mount_type(t: Option<MountTypeEnum>) -> &'static str {
    match t {
        Some(MountTypeEnum::BIND) => "bind",
        Some(MountTypeEnum::VOLUME) => "volume",
        Some(MountTypeEnum::TMPFS) => "tmpfs",
        Some(MountTypeEnum::NPIPE) => "npipe",
        Some(MountTypeEnum::CLUSTER) => "cluster",
        _ => "",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn default_seccomp_is_kept_per_capability_set() {
        let names = |v: &Value| -> Vec<String> {
            v["syscalls"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| r["args"].is_null())
                .flat_map(|r| r["names"].as_array().unwrap().clone())
                .map(|n| n.as_str().unwrap().to_string())
                .collect()
        };
        let plain = default_seccomp(&["CAP_CHOWN".into()]).unwrap();
        assert_eq!(plain, default_seccomp(&["CAP_CHOWN".into()]).unwrap());
        let admin = default_seccomp(&["CAP_SYS_ADMIN".into(), "CAP_CHOWN".into()]).unwrap();
        // The order the capabilities come in does not make another profile.
        let again = default_seccomp(&["CAP_CHOWN".into(), "CAP_SYS_ADMIN".into()]).unwrap();
        assert_eq!(admin, again);
        assert!(names(&admin).contains(&"mount".to_string()));
        assert!(!names(&plain).contains(&"mount".to_string()));
    }

    fn input(dir: &Path) -> SpecInput<'_> {
        SpecInput {
            id: "abc",
            process: json!({"args": ["sh"], "env": ["PATH=/bin"], "cwd": "/", "user": {"uid": 0, "gid": 0, "additionalGids": []}}),
            tty: false,
            hostname: "abc",
            domainname: "",
            dir,
            rootfs: dir,
            mounts: vec![],
            netns: Some(None),
            default_ulimits: &[],
            stop_signal: 15,
            cgroups_path: "/kos/abc",
            selinux_labels: ("", ""),
            cgroup_v2: false,
            labels: BTreeMap::new(),
            devices: None,
        }
    }

    #[test]
    fn selinux_labels_reach_the_runtime_config() {
        let dir = std::env::temp_dir();
        let mut inp = input(&dir);
        inp.selinux_labels = (
            "system_u:system_r:container_t:s0:c1,c2",
            "system_u:object_r:container_file_t:s0:c1,c2",
        );
        let v = build(&HostConfig::default(), &inp).unwrap();
        assert_eq!(
            v["process"]["selinuxLabel"],
            "system_u:system_r:container_t:s0:c1,c2"
        );
        assert_eq!(
            v["linux"]["mountLabel"],
            "system_u:object_r:container_file_t:s0:c1,c2"
        );
        // SELinux off: no labels at all.
        let v = build(&HostConfig::default(), &input(&dir)).unwrap();
        assert!(v["process"].get("selinuxLabel").is_none());
        assert!(v["linux"].get("mountLabel").is_none());
    }

    #[test]
    fn caps_add_drop_privileged() {
        let hc = HostConfig {
            cap_add: Some(vec!["net_admin".into()]),
            cap_drop: Some(vec!["CAP_CHOWN".into(), "mknod".into()]),
            ..Default::default()
        };
        let c = capabilities(&hc).unwrap();
        assert!(
            c.contains(&"CAP_NET_ADMIN".into())
                && !c.contains(&"CAP_CHOWN".into())
                && !c.contains(&"CAP_MKNOD".into())
        );
        let hc = HostConfig {
            cap_drop: Some(vec!["ALL".into()]),
            cap_add: Some(vec!["KILL".into()]),
            ..Default::default()
        };
        assert_eq!(capabilities(&hc).unwrap(), vec!["CAP_KILL".to_string()]);
        let hc = HostConfig {
            privileged: Some(true),
            ..Default::default()
        };
        assert_eq!(capabilities(&hc).unwrap().len(), available_caps().len());
        let hc = HostConfig {
            cap_add: Some(vec!["BOGUS".into()]),
            ..Default::default()
        };
        assert!(capabilities(&hc).is_err());
    }

    #[test]
    fn spec_from_host_config() {
        let dir = tempfile::tempdir().unwrap();
        let hc = HostConfig {
            memory: Some(64 << 20),
            nano_cpus: Some(500_000_000),
            pids_limit: Some(50),
            readonly_rootfs: Some(true),
            security_opt: Some(vec!["no-new-privileges".into()]),
            sysctls: Some([("net.ipv4.ip_forward".to_string(), "1".to_string())].into()),
            ulimits: Some(vec![bollard_stubs::models::ResourcesUlimits {
                name: Some("nofile".into()),
                soft: Some(10),
                hard: Some(20),
            }]),
            ..Default::default()
        };
        let s = build(&hc, &input(dir.path())).unwrap();
        assert_eq!(s["linux"]["resources"]["memory"]["limit"], 64 << 20);
        assert_eq!(s["linux"]["resources"]["cpu"]["quota"], 50_000);
        assert_eq!(s["linux"]["resources"]["pids"]["limit"], 50);
        assert_eq!(s["root"]["readonly"], true);
        assert_eq!(s["process"]["noNewPrivileges"], true);
        assert_eq!(s["process"]["rlimits"][0]["type"], "RLIMIT_NOFILE");
        // Docker's default profile: an allow-list without keyctl, read allowed.
        let seccomp = &s["linux"]["seccomp"];
        assert_eq!(seccomp["defaultAction"], "SCMP_ACT_ERRNO");
        let allowed = |name: &str| {
            seccomp["syscalls"].as_array().unwrap().iter().any(|r| {
                r["action"] == "SCMP_ACT_ALLOW"
                    && r["args"].is_null()
                    && r["names"].as_array().unwrap().contains(&json!(name))
            })
        };
        assert!(allowed("read") && !allowed("keyctl"));
        assert!(s["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .contains(&json!({"type": "network"})));
        // A host-wide sysctl is refused.
        let hc = HostConfig {
            sysctls: Some([("kernel.panic".to_string(), "1".to_string())].into()),
            ..Default::default()
        };
        assert!(build(&hc, &input(dir.path())).is_err());
        let hc = HostConfig {
            memory: Some(1024),
            ..Default::default()
        };
        assert!(build(&hc, &input(dir.path())).is_err());
        let hc = HostConfig {
            security_opt: Some(vec!["seccomp=unconfined".into()]),
            pid_mode: Some("host".into()),
            ..Default::default()
        };
        let s = build(&hc, &input(dir.path())).unwrap();
        assert!(s["linux"]["seccomp"].is_null());
        assert!(!s["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .contains(&json!({"type": "pid"})));
    }

    #[test]
    fn mounts_and_rules() {
        assert!(bind_mount("/nonexistent-kos-path", "/x", &[]).is_err());
        let m = bind_mount("/tmp", "/x", &["ro"]).unwrap();
        assert_eq!(m["options"], json!(["rbind", "ro", "rprivate"]));
        assert!(bind_mount("/tmp", "rel", &[]).is_err());
        let t = tmpfs_mount("/run", "size=1m,exec").unwrap();
        assert!(!t["options"].as_array().unwrap().contains(&json!("noexec")));
        assert_eq!(device_cgroup_rule("c 1:3 mr").unwrap()["minor"], 3);
        assert!(device_cgroup_rule("x 1:3 r").is_err());
        assert!(security_opts(&["bogus=1".into()]).is_err());
        assert_eq!(
            security_opts(&["apparmor=unconfined".into()])
                .unwrap()
                .apparmor
                .as_deref(),
            Some("unconfined")
        );
    }
}
