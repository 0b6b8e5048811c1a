//! `run`/`create` flags turned into the create body docker sends: the
//! container config, host config and networking config (bollard-stubs models,
//! the same ones kosd reads).

use std::collections::HashMap;

use bollard_stubs::models::{
    ContainerConfig, DeviceMapping, HealthConfig, HostConfig, HostConfigLogConfig, Mount,
    MountBindOptions, MountBindOptionsPropagationEnum, MountTmpfsOptions, MountTypeEnum,
    MountVolumeOptions, PortBinding, ResourcesUlimits, RestartPolicy, RestartPolicyNameEnum,
};
use serde_json::{json, Value};

use crate::cli::ContainerOpts;
use crate::format::units::parse_ram;

type R<T> = Result<T, String>;

/// Go's `time.ParseDuration` (`1m30s`, `500ms`, `2h`), in nanoseconds.
pub fn parse_duration(s: &str) -> R<i64> {
    let bad = || format!("invalid duration {s:?}");
    if s == "0" {
        return Ok(0);
    }
    let mut total = 0f64;
    let mut rest = s;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        total += n * mult;
        rest = &rest[unit_len..];
    }
    Ok(total as i64)
}

fn kv_list(items: &[String]) -> HashMap<String, String> {
    items
        .iter()
        .map(|l| match l.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (l.clone(), String::new()),
        })
        .collect()
}

/// Lines of an env or label file: `KEY=VALUE`, bare `KEY` taken from our
/// environment (env files) or kept empty (label files); `#` comments skipped.
pub fn read_kv_file(path: &str, from_env: bool) -> R<Vec<String>> {
    let meta = std::fs::metadata(path).map_err(|e| format!("open {path}: {e}"))?;
    if meta.len() > 1 << 20 {
        return Err(format!("{path}: file is larger than 1 MiB"));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("open {path}: {e}"))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim_start();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        match l.split_once('=') {
            Some(("", _)) => {
                return Err(format!(
                    "{path}:{}: variable name is empty in {line:?}",
                    i + 1
                ))
            }
            Some(_) => out.push(l.to_string()),
            None if from_env => {
                if let Ok(v) = std::env::var(l.trim()) {
                    out.push(format!("{}={v}", l.trim()));
                }
            }
            None => out.push(l.trim().to_string()),
        }
    }
    Ok(out)
}

/// `-e` values: `K=V`, or `K` taken from our environment when set.
pub fn env_list(env: &[String], files: &[String]) -> R<Vec<String>> {
    let mut out = Vec::new();
    for f in files {
        out.extend(read_kv_file(f, true)?);
    }
    for e in env {
        if e.starts_with('=') {
            return Err(format!("invalid environment variable: {e}"));
        }
        if e.contains('=') {
            out.push(e.clone());
        } else if let Ok(v) = std::env::var(e) {
            out.push(format!("{e}={v}"));
        }
    }
    Ok(out)
}

fn port_range(s: &str) -> R<(u16, u16)> {
    let bad = || format!("invalid port {s:?}");
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b): (u16, u16) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
            if b < a {
                return Err(format!("invalid range specified for port: {s}"));
            }
            Ok((a, b))
        }
        None => {
            let p = s.parse().map_err(|_| bad())?;
            Ok((p, p))
        }
    }
}

/// One `-p` value: `[ip:][hostPort:]containerPort[/proto]`, ranges allowed.
pub fn parse_publish(spec: &str) -> R<Vec<(String, PortBinding)>> {
    let (body, proto) = match spec.rsplit_once('/') {
        Some((b, p)) => (b, p.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !["tcp", "udp", "sctp"].contains(&proto.as_str()) {
        return Err(format!("invalid proto: {proto}"));
    }
    // An IPv6 host address comes in brackets.
    let (ip, rest) = if let Some(r) = body.strip_prefix('[') {
        let (ip, r) = r
            .split_once("]:")
            .ok_or_else(|| format!("invalid IP address in {spec:?}"))?;
        (ip.to_string(), r)
    } else {
        let parts: Vec<&str> = body.split(':').collect();
        match parts.len() {
            1 | 2 => (String::new(), body),
            3 => (parts[0].to_string(), &body[parts[0].len() + 1..]),
            _ => return Err(format!("invalid port format for --publish: {spec}")),
        }
    };
    if !ip.is_empty() && ip.parse::<std::net::IpAddr>().is_err() {
        return Err(format!("invalid IP address: {ip}"));
    }
    let (host, cont) = match rest.split_once(':') {
        Some((h, c)) => (h, c),
        None => ("", rest),
    };
    if cont.is_empty() {
        return Err(format!("no port specified: {spec}<empty>"));
    }
    let (c0, c1) = port_range(cont)?;
    let hr = if host.is_empty() {
        None
    } else {
        Some(port_range(host)?)
    };
    let n = c1 - c0;
    if let Some((h0, h1)) = hr {
        if h1 - h0 != n && h0 != h1 {
            return Err(format!(
                "invalid ranges specified for container and host Ports: {cont} and {host}"
            ));
        }
    }
    let mut out = Vec::new();
    for i in 0..=n {
        let hp = match hr {
            None => String::new(),
            Some((h0, h1)) if h0 == h1 && n > 0 => format!("{h0}"),
            Some((h0, _)) => format!("{}", h0 + i),
        };
        out.push((
            format!("{}/{proto}", c0 + i),
            PortBinding {
                host_ip: Some(ip.clone()),
                host_port: Some(hp),
            },
        ));
    }
    Ok(out)
}

fn parse_bool(k: &str, v: &str) -> R<bool> {
    match v.to_ascii_lowercase().as_str() {
        "" | "1" | "true" => Ok(true),
        "0" | "false" => Ok(false),
        _ => Err(format!("invalid value for {k}: {v}")),
    }
}

/// `--mount type=bind,source=/a,target=/b,readonly,...`.
pub fn parse_mount(spec: &str) -> R<Mount> {
    let mut m = Mount {
        typ: Some(MountTypeEnum::VOLUME),
        ..Default::default()
    };
    let mut bind = MountBindOptions::default();
    let mut vol = MountVolumeOptions::default();
    let mut tmp = MountTmpfsOptions::default();
    let (mut has_bind, mut has_vol, mut has_tmp) = (false, false, false);
    for field in spec.split(',') {
        let (k, v) = match field.split_once('=') {
            Some((k, v)) => (k.trim().to_ascii_lowercase(), v.trim()),
            None => (field.trim().to_ascii_lowercase(), ""),
        };
        match k.as_str() {
            "type" => {
                m.typ = Some(match v {
                    "bind" => MountTypeEnum::BIND,
                    "volume" => MountTypeEnum::VOLUME,
                    "tmpfs" => MountTypeEnum::TMPFS,
                    other => return Err(format!("invalid mount type {other:?}")),
                })
            }
            "source" | "src" => m.source = Some(v.to_string()),
            "target" | "destination" | "dst" => m.target = Some(v.to_string()),
            "readonly" | "ro" => m.read_only = Some(parse_bool(&k, v)?),
            "consistency" => m.consistency = Some(v.to_string()),
            "bind-propagation" => {
                has_bind = true;
                bind.propagation = Some(match v {
                    "private" => MountBindOptionsPropagationEnum::PRIVATE,
                    "rprivate" => MountBindOptionsPropagationEnum::RPRIVATE,
                    "shared" => MountBindOptionsPropagationEnum::SHARED,
                    "rshared" => MountBindOptionsPropagationEnum::RSHARED,
                    "slave" => MountBindOptionsPropagationEnum::SLAVE,
                    "rslave" => MountBindOptionsPropagationEnum::RSLAVE,
                    other => return Err(format!("invalid bind propagation {other:?}")),
                })
            }
            "bind-nonrecursive" | "bind-recursive" => {
                has_bind = true;
                let on = parse_bool(&k, v)?;
                bind.non_recursive = Some(if k == "bind-nonrecursive" { on } else { !on });
            }
            "bind-create-src" => {
                has_bind = true;
                bind.create_mountpoint = Some(parse_bool(&k, v)?);
            }
            "volume-nocopy" | "volume-no-copy" => {
                has_vol = true;
                vol.no_copy = Some(parse_bool(&k, v)?);
            }
            "volume-subpath" => {
                has_vol = true;
                vol.subpath = Some(v.to_string());
            }
            "volume-label" => {
                has_vol = true;
                let (lk, lv) = v.split_once('=').unwrap_or((v, ""));
                vol.labels
                    .get_or_insert_with(HashMap::new)
                    .insert(lk.to_string(), lv.to_string());
            }
            "volume-driver" | "volume-opt" => {
                has_vol = true;
                let dc = vol.driver_config.get_or_insert_with(Default::default);
                if k == "volume-driver" {
                    dc.name = Some(v.to_string());
                } else {
                    let (ok, ov) = v.split_once('=').unwrap_or((v, ""));
                    dc.options
                        .get_or_insert_with(HashMap::new)
                        .insert(ok.to_string(), ov.to_string());
                }
            }
            "tmpfs-size" => {
                has_tmp = true;
                tmp.size_bytes = Some(parse_ram(v)?);
            }
            "tmpfs-mode" => {
                has_tmp = true;
                tmp.mode = Some(
                    i64::from_str_radix(v, 8).map_err(|_| format!("invalid tmpfs-mode {v:?}"))?,
                );
            }
            "" => {}
            other => return Err(format!("unexpected key '{other}' in '{field}'")),
        }
    }
    if m.target.as_deref().is_none_or(str::is_empty) {
        return Err("target is required".into());
    }
    if has_bind {
        m.bind_options = Some(bind);
    }
    if has_vol {
        m.volume_options = Some(vol);
    }
    if has_tmp {
        m.tmpfs_options = Some(tmp);
    }
    Ok(m)
}

fn parse_ulimit(s: &str) -> R<ResourcesUlimits> {
    let (name, v) = s
        .split_once('=')
        .ok_or_else(|| format!("invalid ulimit argument: {s}"))?;
    let (soft, hard) = match v.split_once(':') {
        Some((a, b)) => (a, b),
        None => (v, v),
    };
    let n = |x: &str| {
        x.parse::<i64>()
            .map_err(|_| format!("invalid ulimit argument: {s}"))
    };
    let (soft, hard) = (n(soft)?, n(hard)?);
    if soft > hard && hard >= 0 {
        return Err(format!(
            "ulimit soft limit must be less than or equal to hard limit: {soft} > {hard}"
        ));
    }
    Ok(ResourcesUlimits {
        name: Some(name.to_string()),
        soft: Some(soft),
        hard: Some(hard),
    })
}

/// `vendor.tld/class=name`: a CDI device name rather than a host path.
fn is_cdi_name(s: &str) -> bool {
    let Some((kind, name)) = s.split_once('=') else {
        return false;
    };
    let Some((vendor, class)) = kind.split_once('/') else {
        return false;
    };
    let ok = |p: &str, extra: &str| {
        p.starts_with(|c: char| c.is_ascii_alphanumeric())
            && p.chars()
                .all(|c| c.is_ascii_alphanumeric() || extra.contains(c))
    };
    !s.starts_with('/')
        && ok(vendor, ".-")
        && ok(class, ".-_")
        && !class.contains('/')
        && ok(name, "_.:-")
}

fn parse_device(s: &str) -> R<DeviceMapping> {
    let parts: Vec<&str> = s.split(':').collect();
    let is_perm = |p: &str| !p.is_empty() && p.chars().all(|c| "rwm".contains(c));
    let (host, cont, perm) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, x] if is_perm(x) => (*h, *h, *x),
        [h, c] => (*h, *c, "rwm"),
        [h, c, p] if is_perm(p) => (*h, *c, *p),
        _ => return Err(format!("invalid device specification: {s}")),
    };
    if !host.starts_with('/') || !cont.starts_with('/') {
        return Err(format!("invalid device specification: {s}"));
    }
    Ok(DeviceMapping {
        path_on_host: Some(host.to_string()),
        path_in_container: Some(cont.to_string()),
        cgroup_permissions: Some(perm.to_string()),
    })
}

pub fn parse_restart(s: &str) -> R<RestartPolicy> {
    let (name, count) = match s.split_once(':') {
        Some((n, c)) => (
            n,
            Some(c.parse::<i64>().map_err(|_| {
                "invalid restart policy format: maximum retry count must be an integer".to_string()
            })?),
        ),
        None => (s, None),
    };
    let name = match name {
        "" | "no" => RestartPolicyNameEnum::NO,
        "always" => RestartPolicyNameEnum::ALWAYS,
        "unless-stopped" => RestartPolicyNameEnum::UNLESS_STOPPED,
        "on-failure" => RestartPolicyNameEnum::ON_FAILURE,
        other => return Err(format!("invalid restart policy: unknown policy '{other}'; use one of 'no', 'always', 'on-failure', or 'unless-stopped'")),
    };
    if count.is_some() && name != RestartPolicyNameEnum::ON_FAILURE {
        return Err(
            "invalid restart policy format: maximum retry count can only be used with 'on-failure'"
                .to_string(),
        );
    }
    Ok(RestartPolicy {
        name: Some(name),
        maximum_retry_count: Some(count.unwrap_or(0)),
    })
}

pub fn parse_cpus(s: &str) -> R<i64> {
    let f: f64 = s
        .parse()
        .map_err(|_| format!("invalid argument {s:?} for \"--cpus\" flag"))?;
    if !(0.0..=1e6).contains(&f) {
        return Err(format!("invalid argument {s:?} for \"--cpus\" flag"));
    }
    Ok((f * 1e9) as i64)
}

fn parse_swap(s: &str) -> R<i64> {
    if s == "-1" {
        Ok(-1)
    } else {
        parse_ram(s)
    }
}

/// The create body for `run`/`create`.
pub fn create_body(
    o: &ContainerOpts,
    attach_stdout: bool,
    attach_stderr: bool,
    attach_stdin: bool,
) -> R<Value> {
    let mut cfg = ContainerConfig {
        image: Some(o.image.clone()),
        hostname: o.hostname.clone(),
        domainname: o.domainname.clone(),
        user: o.user.clone(),
        attach_stdin: Some(attach_stdin),
        attach_stdout: Some(attach_stdout),
        attach_stderr: Some(attach_stderr),
        tty: Some(o.tty),
        open_stdin: Some(o.interactive),
        stdin_once: Some(o.interactive && attach_stdin),
        working_dir: o.workdir.clone(),
        stop_signal: o.stop_signal.clone(),
        stop_timeout: o.stop_timeout,
        ..Default::default()
    };
    if !o.command.is_empty() {
        cfg.cmd = Some(o.command.clone());
    }
    if let Some(ep) = &o.entrypoint {
        // An empty --entrypoint resets the image's.
        cfg.entrypoint = Some(if ep.is_empty() {
            vec![String::new()]
        } else {
            vec![ep.clone()]
        });
    }
    let env = env_list(&o.env, &o.env_file)?;
    if !env.is_empty() {
        cfg.env = Some(env);
    }
    let mut labels = HashMap::new();
    for f in &o.label_file {
        labels.extend(kv_list(&read_kv_file(f, false)?));
    }
    labels.extend(kv_list(&o.label));
    cfg.labels = Some(labels);

    let mut hc = HostConfig {
        network_mode: Some(o.network.clone().unwrap_or_else(|| "default".into())),
        auto_remove: Some(o.rm),
        privileged: Some(o.privileged),
        readonly_rootfs: Some(o.read_only),
        publish_all_ports: Some(o.publish_all),
        cpu_shares: o.cpu_shares,
        cpu_period: o.cpu_period,
        cpu_quota: o.cpu_quota,
        cpuset_cpus: o.cpuset_cpus.clone(),
        cpuset_mems: o.cpuset_mems.clone(),
        blkio_weight: o.blkio_weight,
        pids_limit: o.pids_limit,
        memory_swappiness: o.memory_swappiness,
        oom_score_adj: o.oom_score_adj,
        pid_mode: o.pid.clone(),
        ipc_mode: o.ipc.clone(),
        uts_mode: o.uts.clone(),
        userns_mode: o.userns.clone(),
        cgroup_parent: o.cgroup_parent.clone(),
        runtime: o.runtime.clone(),
        restart_policy: Some(parse_restart(&o.restart)?),
        console_size: Some(vec![0, 0]),
        ..Default::default()
    };
    if o.oom_kill_disable {
        hc.oom_kill_disable = Some(true);
    }
    if o.init {
        hc.init = Some(true);
    }
    if o.rm
        && hc
            .restart_policy
            .as_ref()
            .and_then(|r| r.name)
            .is_some_and(|n| n != RestartPolicyNameEnum::NO)
    {
        return Err("conflicting options: cannot specify both --restart and --rm".into());
    }
    if let Some(m) = &o.memory {
        hc.memory = Some(parse_ram(m)?);
    }
    if let Some(m) = &o.memory_reservation {
        hc.memory_reservation = Some(parse_ram(m)?);
    }
    if let Some(m) = &o.memory_swap {
        hc.memory_swap = Some(parse_swap(m)?);
    }
    if let Some(m) = &o.shm_size {
        hc.shm_size = Some(parse_ram(m)?);
    }
    if let Some(c) = &o.cpus {
        hc.nano_cpus = Some(parse_cpus(c)?);
    }
    if let Some(c) = &o.cgroupns {
        hc.cgroupns_mode = Some(match c.as_str() {
            "host" => bollard_stubs::models::HostConfigCgroupnsModeEnum::HOST,
            "private" => bollard_stubs::models::HostConfigCgroupnsModeEnum::PRIVATE,
            other => return Err(format!("invalid cgroup namespace mode: {other}")),
        });
    }
    let mut exposed: HashMap<String, HashMap<(), ()>> = HashMap::new();
    for e in &o.expose {
        let (p, proto) = e.split_once('/').unwrap_or((e, "tcp"));
        let (a, b) = port_range(p)?;
        for x in a..=b {
            exposed.insert(format!("{x}/{proto}"), HashMap::new());
        }
    }
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for p in &o.publish {
        for (k, b) in parse_publish(p)? {
            exposed.insert(k.clone(), HashMap::new());
            bindings
                .entry(k)
                .or_insert(Some(Vec::new()))
                .get_or_insert_with(Vec::new)
                .push(b);
        }
    }
    if !exposed.is_empty() {
        cfg.exposed_ports = Some(exposed);
    }
    if !bindings.is_empty() {
        hc.port_bindings = Some(bindings);
    }
    let mut binds = Vec::new();
    let mut volumes: HashMap<String, HashMap<(), ()>> = HashMap::new();
    for v in &o.volume {
        if v.is_empty() {
            return Err("invalid empty volume spec".into());
        }
        if v.contains(':') {
            binds.push(v.clone());
        } else {
            if !v.starts_with('/') {
                return Err(format!("invalid volume specification: '{v}': invalid mount config for type \"volume\": invalid mount path: '{v}' mount path must be absolute"));
            }
            volumes.insert(v.clone(), HashMap::new());
        }
    }
    if !binds.is_empty() {
        hc.binds = Some(binds);
    }
    if !volumes.is_empty() {
        cfg.volumes = Some(volumes);
    }
    if !o.volumes_from.is_empty() {
        hc.volumes_from = Some(o.volumes_from.clone());
    }
    if !o.mount.is_empty() {
        hc.mounts = Some(o.mount.iter().map(|m| parse_mount(m)).collect::<R<_>>()?);
    }
    if !o.tmpfs.is_empty() {
        let mut t = HashMap::new();
        for x in &o.tmpfs {
            let (d, opts) = x.split_once(':').unwrap_or((x, ""));
            if !d.starts_with('/') {
                return Err(format!("invalid tmpfs mount path {d:?}: must be absolute"));
            }
            t.insert(d.to_string(), opts.to_string());
        }
        hc.tmpfs = Some(t);
    }
    if !o.ulimit.is_empty() {
        hc.ulimits = Some(o.ulimit.iter().map(|u| parse_ulimit(u)).collect::<R<_>>()?);
    }
    // CDI names (vendor/class=name) go as a "cdi" device request, as the docker CLI sends them.
    let (cdi, paths): (Vec<&String>, Vec<&String>) = o.device.iter().partition(|d| is_cdi_name(d));
    if !paths.is_empty() {
        hc.devices = Some(paths.iter().map(|d| parse_device(d)).collect::<R<_>>()?);
    }
    if !cdi.is_empty() {
        hc.device_requests = Some(vec![bollard_stubs::models::DeviceRequest {
            driver: Some("cdi".into()),
            device_ids: Some(cdi.into_iter().cloned().collect()),
            ..Default::default()
        }]);
    }
    let nonempty = |v: &Vec<String>| if v.is_empty() { None } else { Some(v.clone()) };
    hc.device_cgroup_rules = nonempty(&o.device_cgroup_rule);
    hc.security_opt = nonempty(&o.security_opt);
    hc.cap_add = nonempty(&o.cap_add);
    hc.cap_drop = nonempty(&o.cap_drop);
    hc.dns = nonempty(&o.dns);
    hc.dns_options = nonempty(&o.dns_option);
    hc.dns_search = nonempty(&o.dns_search);
    hc.extra_hosts = nonempty(&o.add_host);
    hc.group_add = nonempty(&o.group_add);
    for s in &o.sysctl {
        if !s.contains('=') {
            return Err(format!("invalid sysctl {s:?}: expected KEY=VALUE"));
        }
    }
    if !o.sysctl.is_empty() {
        hc.sysctls = Some(kv_list(&o.sysctl));
    }
    if !o.storage_opt.is_empty() {
        hc.storage_opt = Some(kv_list(&o.storage_opt));
    }
    hc.log_config = Some(HostConfigLogConfig {
        typ: Some(o.log_driver.clone().unwrap_or_default()),
        config: Some(kv_list(&o.log_opt)),
    });
    // Health check flags.
    let has_health = o.health_cmd.is_some()
        || o.health_interval.is_some()
        || o.health_timeout.is_some()
        || o.health_retries.is_some()
        || o.health_start_period.is_some()
        || o.health_start_interval.is_some();
    if o.no_healthcheck {
        if has_health {
            return Err("--no-healthcheck conflicts with --health-* options".into());
        }
        cfg.healthcheck = Some(HealthConfig {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        });
    } else if has_health {
        let d = |v: &Option<String>, name: &str| -> R<Option<i64>> {
            match v {
                None => Ok(None),
                Some(s) => {
                    let n = parse_duration(s)?;
                    if n < 0 {
                        return Err(format!("--{name} cannot be negative"));
                    }
                    Ok(Some(n))
                }
            }
        };
        cfg.healthcheck = Some(HealthConfig {
            test: o
                .health_cmd
                .as_ref()
                .map(|c| vec!["CMD-SHELL".into(), c.clone()]),
            interval: d(&o.health_interval, "health-interval")?,
            timeout: d(&o.health_timeout, "health-timeout")?,
            start_period: d(&o.health_start_period, "health-start-period")?,
            start_interval: d(&o.health_start_interval, "health-start-interval")?,
            retries: o.health_retries,
        });
    }
    let mut body = serde_json::to_value(&cfg).map_err(|e| e.to_string())?;
    body["HostConfig"] = serde_json::to_value(&hc).map_err(|e| e.to_string())?;
    let net = o.network.clone().unwrap_or_else(|| "default".into());
    let mut ep = json!({});
    if !o.network_alias.is_empty() {
        ep["Aliases"] = json!(o.network_alias);
    }
    if let Some(ip) = &o.ip {
        ep["IPAMConfig"] = json!({"IPv4Address": ip});
    }
    if let Some(m) = &o.mac_address {
        ep["MacAddress"] = json!(m);
    }
    body["NetworkingConfig"] = json!({"EndpointsConfig": {net: ep}});
    Ok(body)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(30_000_000_000));
        assert_eq!(parse_duration("1m30s"), Ok(90_000_000_000));
        assert_eq!(parse_duration("500ms"), Ok(500_000_000));
        assert_eq!(parse_duration("1.5h"), Ok(5_400_000_000_000));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn publish_specs() {
        let p = parse_publish("8080:80").unwrap();
        assert_eq!(p[0].0, "80/tcp");
        assert_eq!(p[0].1.host_port.as_deref(), Some("8080"));
        let p = parse_publish("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(
            (p[0].0.as_str(), p[0].1.host_ip.as_deref()),
            ("80/udp", Some("127.0.0.1"))
        );
        let p = parse_publish("[::1]:9000:90").unwrap();
        assert_eq!(p[0].1.host_ip.as_deref(), Some("::1"));
        let p = parse_publish("8000-8001:80-81").unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[1].1.host_port.as_deref(), Some("8001"));
        let p = parse_publish("80").unwrap();
        assert_eq!(p[0].1.host_port.as_deref(), Some(""));
        assert!(parse_publish("80/icmp").is_err());
        assert!(parse_publish("x:80").is_err());
        assert!(parse_publish("1.2.3.4.5:80:80").is_err());
    }

    #[test]
    fn mounts_devices_ulimits_restart() {
        let m =
            parse_mount("type=bind,source=/a,target=/b,readonly,bind-propagation=rshared").unwrap();
        assert_eq!(m.typ, Some(MountTypeEnum::BIND));
        assert_eq!(m.read_only, Some(true));
        assert!(parse_mount("type=bind,source=/a").is_err());
        assert!(parse_mount("type=weird,target=/a").is_err());
        let t = parse_mount("type=tmpfs,target=/t,tmpfs-size=64m,tmpfs-mode=1770").unwrap();
        assert_eq!(t.tmpfs_options.as_ref().unwrap().size_bytes, Some(64 << 20));
        assert_eq!(t.tmpfs_options.unwrap().mode, Some(0o1770));
        let d = parse_device("/dev/fuse:/dev/f:rw").unwrap();
        assert_eq!(d.cgroup_permissions.as_deref(), Some("rw"));
        assert!(parse_device("fuse").is_err());
        assert!(is_cdi_name("kos.dev/kvm=kvm"));
        assert!(is_cdi_name("nvidia.com/gpu=all"));
        assert!(!is_cdi_name("/dev/fuse"));
        assert!(!is_cdi_name("/dev/a=b/c"));
        assert!(!is_cdi_name("kos.dev/kvm"));
        let u = parse_ulimit("nofile=1024:2048").unwrap();
        assert_eq!((u.soft, u.hard), (Some(1024), Some(2048)));
        assert!(parse_ulimit("nofile=10:5").is_err());
        let r = parse_restart("on-failure:3").unwrap();
        assert_eq!(r.maximum_retry_count, Some(3));
        assert!(parse_restart("always:3").is_err());
        assert!(parse_restart("sometimes").is_err());
        assert_eq!(parse_cpus("1.5"), Ok(1_500_000_000));
    }

    #[test]
    fn body_shape() {
        let o = ContainerOpts {
            image: "img".into(),
            command: vec!["true".into()],
            publish: vec!["8080:80".into()],
            volume: vec!["/tmp:/x".into(), "/anon".into()],
            env: vec!["A=1".into()],
            restart: "no".into(),
            pull: "missing".into(),
            memory: Some("64m".into()),
            ..Default::default()
        };
        let b = create_body(&o, true, true, false).unwrap();
        assert_eq!(b["Image"], "img");
        assert_eq!(b["Cmd"], json!(["true"]));
        assert_eq!(b["ExposedPorts"], json!({"80/tcp": {}}));
        assert_eq!(b["Volumes"], json!({"/anon": {}}));
        assert_eq!(b["HostConfig"]["Binds"], json!(["/tmp:/x"]));
        assert_eq!(
            b["HostConfig"]["PortBindings"]["80/tcp"][0]["HostPort"],
            "8080"
        );
        assert_eq!(b["HostConfig"]["Memory"], 64 << 20);
        assert_eq!(b["HostConfig"]["NetworkMode"], "default");
        let mut bad = o.clone();
        bad.rm = true;
        bad.restart = "always".into();
        assert!(create_body(&bad, true, true, false).is_err());
    }
}
