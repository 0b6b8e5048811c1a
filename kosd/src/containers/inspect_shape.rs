//! The `Config` and `HostConfig` of `GET /containers/{id}/json` in dockerd's full shape: a
//! client that created the container with only some fields set (the SDKs send what the
//! caller gave) still reads every key, with the value kosd applies where dockerd shows
//! its defaults (IPC and cgroup namespace modes, /dev/shm size, runtime, masked paths).

use serde_json::{json, Map, Value};

/// Every `HostConfig` key dockerd answers, with its value for a container that set none.
fn host_config_defaults() -> Value {
    json!({
        "Binds": null, "ContainerIDFile": "", "LogConfig": {"Type": "json-file", "Config": {}},
        "NetworkMode": "default", "PortBindings": {},
        "RestartPolicy": {"Name": "no", "MaximumRetryCount": 0}, "AutoRemove": false,
        "VolumeDriver": "", "VolumesFrom": null, "ConsoleSize": [0, 0], "CapAdd": null,
        "CapDrop": null, "CgroupnsMode": "", "Dns": [], "DnsOptions": [], "DnsSearch": [],
        "ExtraHosts": null, "GroupAdd": null, "IpcMode": "", "Cgroup": "", "Links": null,
        "OomScoreAdj": 0, "PidMode": "", "Privileged": false, "PublishAllPorts": false,
        "ReadonlyRootfs": false, "SecurityOpt": null, "UTSMode": "", "UsernsMode": "",
        "ShmSize": 0, "Runtime": "", "Isolation": "", "CpuShares": 0, "Memory": 0,
        "NanoCpus": 0, "CgroupParent": "", "BlkioWeight": 0, "BlkioWeightDevice": [],
        "BlkioDeviceReadBps": [], "BlkioDeviceWriteBps": [], "BlkioDeviceReadIOps": [],
        "BlkioDeviceWriteIOps": [], "CpuPeriod": 0, "CpuQuota": 0, "CpuRealtimePeriod": 0,
        "CpuRealtimeRuntime": 0, "CpusetCpus": "", "CpusetMems": "", "Devices": [],
        "DeviceCgroupRules": null, "DeviceRequests": null, "MemoryReservation": 0,
        "MemorySwap": 0, "MemorySwappiness": null, "OomKillDisable": false, "PidsLimit": null,
        "Ulimits": [], "CpuCount": 0, "CpuPercent": 0, "IOMaximumIOps": 0,
        "IOMaximumBandwidth": 0, "MaskedPaths": null, "ReadonlyPaths": null,
    })
}

/// Every `Config` key dockerd answers, with its value for a container that set none.
fn config_defaults() -> Value {
    json!({
        "Hostname": "", "Domainname": "", "User": "", "AttachStdin": false,
        "AttachStdout": false, "AttachStderr": false, "Tty": false, "OpenStdin": false,
        "StdinOnce": false, "Env": null, "Cmd": null, "Image": "", "Volumes": null,
        "WorkingDir": "", "Entrypoint": null, "OnBuild": null, "Labels": {},
    })
}

/// An image's `Config` in dockerd's shape (its container-config keys, `Labels` null when
/// the image has none).
pub fn complete_image_config(config: &mut Value) {
    let mut d = config_defaults();
    d["Labels"] = Value::Null;
    fill(config, d);
}

fn fill(v: &mut Value, defaults: Value) {
    let (Some(obj), Value::Object(d)) = (v.as_object_mut(), defaults) else {
        return;
    };
    for (k, dv) in d {
        obj.entry(k).or_insert(dv);
    }
}

fn is_unset(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Number(n)) => n.as_i64() == Some(0),
        _ => false,
    }
}

/// What kosd applies where the container left a field to the daemon.
pub struct Applied<'a> {
    pub cgroup_v2: bool,
    pub runtime: &'a str,
    pub shm_size: i64,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
}

/// Fills `config` and `host_config` (the stored JSON) to dockerd's shape.
pub fn complete(config: &mut Value, host_config: &mut Value, applied: &Applied) {
    fill(config, config_defaults());
    // The docker CLI sends `"Volumes": {}` with every create; dockerd answers null when
    // neither the request nor the image names a volume.
    if config["Volumes"].as_object().is_some_and(Map::is_empty) {
        config["Volumes"] = Value::Null;
    }
    fill(host_config, host_config_defaults());
    let Some(hc) = host_config.as_object_mut() else {
        return;
    };
    let privileged = hc.get("Privileged").and_then(Value::as_bool) == Some(true);
    let set = |hc: &mut Map<String, Value>, k: &str, v: Value| {
        if is_unset(hc.get(k)) {
            hc.insert(k.to_string(), v);
        }
    };
    set(hc, "IpcMode", json!("private"));
    set(
        hc,
        "CgroupnsMode",
        json!(if applied.cgroup_v2 { "private" } else { "host" }),
    );
    set(hc, "ShmSize", json!(applied.shm_size));
    set(hc, "Runtime", json!(applied.runtime));
    if !privileged {
        if hc.get("MaskedPaths").is_none_or(Value::is_null) {
            hc.insert("MaskedPaths".into(), json!(applied.masked_paths));
        }
        if hc.get("ReadonlyPaths").is_none_or(Value::is_null) {
            hc.insert("ReadonlyPaths".into(), json!(applied.readonly_paths));
        }
    }
    // dockerd keeps "no limit" as null.
    if hc.get("MemorySwappiness").and_then(Value::as_i64) == Some(-1) {
        hc.insert("MemorySwappiness".into(), Value::Null);
    }
    if hc
        .get("PidsLimit")
        .and_then(Value::as_i64)
        .is_some_and(|n| n <= 0)
    {
        hc.insert("PidsLimit".into(), Value::Null);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn applied() -> Applied<'static> {
        Applied {
            cgroup_v2: false,
            runtime: "kosrun",
            shm_size: 64 << 20,
            masked_paths: vec!["/proc/kcore".into()],
            readonly_paths: vec!["/proc/sys".into()],
        }
    }

    #[test]
    fn a_sparse_record_gets_every_key_and_the_applied_defaults() {
        let mut c = json!({"Cmd": ["true"], "Image": "x", "Volumes": {}});
        let mut hc = json!({"Memory": 1024, "PidsLimit": 0, "MemorySwappiness": -1});
        complete(&mut c, &mut hc, &applied());
        assert_eq!(c["User"], "");
        assert_eq!(c["Entrypoint"], Value::Null);
        assert_eq!(c["Cmd"], json!(["true"]));
        assert_eq!(c["Volumes"], Value::Null);
        for k in host_config_defaults().as_object().unwrap().keys() {
            assert!(hc.get(k).is_some(), "{k}");
        }
        assert_eq!(hc["Memory"], 1024);
        assert_eq!(hc["IpcMode"], "private");
        assert_eq!(hc["CgroupnsMode"], "host");
        assert_eq!(hc["ShmSize"], 64 << 20);
        assert_eq!(hc["Runtime"], "kosrun");
        assert_eq!(hc["MaskedPaths"], json!(["/proc/kcore"]));
        assert_eq!(hc["PidsLimit"], Value::Null);
        assert_eq!(hc["MemorySwappiness"], Value::Null);
    }

    #[test]
    fn what_the_container_set_stays() {
        let mut c = json!({});
        let mut hc = json!({"IpcMode": "host", "ShmSize": 1024, "Privileged": true,
                            "MaskedPaths": [], "PidsLimit": 50});
        complete(&mut c, &mut hc, &applied());
        assert_eq!(hc["IpcMode"], "host");
        assert_eq!(hc["ShmSize"], 1024);
        assert_eq!(hc["MaskedPaths"], json!([]));
        assert_eq!(hc["ReadonlyPaths"], Value::Null);
        assert_eq!(hc["PidsLimit"], 50);
    }
}
