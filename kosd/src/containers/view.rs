//! Containers as Docker shows them: inspect, the `ps` list with filters, top.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bollard_stubs::models::{ContainerConfig, HostConfig, Mount};
use serde::ser::{SerializeMap, SerializeStruct, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::netmode::NetMode;
use super::record::{Container, State, Status};
use crate::engine::Engine;
use crate::error::{ApiError, Result};
use crate::filters::Filters;
use crate::state::Table;
use crate::timefmt::{rfc3339_go, ZERO_TIME};

fn time_or_zero(n: i64) -> String {
    if n == 0 {
        ZERO_TIME.to_string()
    } else {
        rfc3339_go(n)
    }
}

/// `NetworkSettings.Networks` of inspect and ps: the endpoints kosd recorded, or for a
/// container without any (none, host, not yet started) one empty endpoint under its mode's name.
/// Typed rather than built as a `Value`, as the ps list writes it once per container.
enum Networks<'a> {
    /// The recorded endpoints, each with the ID its `NetworkID` shows (the record holds
    /// the network's name there; None: shown as recorded).
    Recorded(&'a serde_json::Map<String, Value>, Vec<Option<String>>),
    Unattached(String),
    Shared,
}

/// The ID of a network by its name.
type NetIds<'a> = dyn FnMut(&str) -> String + 'a;

impl<'a> Networks<'a> {
    /// `ids` gives the ID each recorded endpoint's `NetworkID` shows (the record holds
    /// the network's name).
    fn new(
        recorded: &'a serde_json::Map<String, Value>,
        hc: &HostConfig,
        ids: &mut NetIds,
    ) -> Networks<'a> {
        if !recorded.is_empty() {
            let shown = recorded
                .iter()
                .map(|(name, ep)| {
                    ep["NetworkID"]
                        .as_str()
                        .is_some_and(|s| !s.is_empty())
                        .then(|| ids(name))
                })
                .collect();
            return Networks::Recorded(recorded, shown);
        }
        match NetMode::parse(hc) {
            NetMode::Container(_) => Networks::Shared,
            other => Networks::Unattached(other.name()),
        }
    }
}

impl Serialize for Networks<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Networks::Recorded(m, ids) => {
                let mut out = s.serialize_map(Some(m.len()))?;
                for ((name, ep), id) in m.iter().zip(ids) {
                    out.serialize_entry(name, &RecordedEndpoint(ep, id.as_deref()))?;
                }
                out.end()
            }
            Networks::Shared => s.serialize_map(Some(0))?.end(),
            Networks::Unattached(name) => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry(name, &EmptyEndpoint)?;
                m.end()
            }
        }
    }
}

/// A recorded endpoint, its `NetworkID` shown as the network's ID when one is given.
struct RecordedEndpoint<'a>(&'a Value, Option<&'a str>);

impl Serialize for RecordedEndpoint<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match (self.0.as_object(), self.1) {
            (Some(fields), Some(id)) => {
                let mut m = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    if k == "NetworkID" {
                        m.serialize_entry(k, id)?;
                    } else {
                        m.serialize_entry(k, v)?;
                    }
                }
                m.end()
            }
            _ => self.0.serialize(s),
        }
    }
}

/// Docker's EndpointSettings with nothing set.
struct EmptyEndpoint;

impl Serialize for EmptyEndpoint {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut m = s.serialize_struct("EndpointSettings", 14)?;
        m.serialize_field("IPAMConfig", &())?;
        m.serialize_field("Links", &())?;
        m.serialize_field("Aliases", &())?;
        m.serialize_field("DriverOpts", &())?;
        m.serialize_field("NetworkID", "")?;
        m.serialize_field("EndpointID", "")?;
        m.serialize_field("Gateway", "")?;
        m.serialize_field("IPAddress", "")?;
        m.serialize_field("IPPrefixLen", &0)?;
        m.serialize_field("IPv6Gateway", "")?;
        m.serialize_field("GlobalIPv6Address", "")?;
        m.serialize_field("GlobalIPv6PrefixLen", &0)?;
        m.serialize_field("MacAddress", "")?;
        m.serialize_field("DNSNames", &())?;
        m.end()
    }
}

fn networks(c: &Container, ids: &mut NetIds) -> Value {
    serde_json::to_value(Networks::new(&c.networks, &c.host_config, ids))
        .unwrap_or_else(|_| json!({}))
}

/// Docker's overlay2 `GraphDriver`: the container's own directories and, as `LowerDir`,
/// its image's layers top-most first (left out when the image is gone from the store).
fn graph_driver(e: &Engine, c: &Container) -> Value {
    let mut data = json!({
        "MergedDir": c.dir.join("rootfs"), "UpperDir": c.dir.join("upper"), "WorkDir": c.dir.join("work"),
    });
    let lowers = c
        .image_id
        .parse::<kos_image::Digest>()
        .ok()
        .and_then(|d| e.store.layer_dirs(&d).ok())
        .filter(|l| !l.is_empty());
    if let Some(lowers) = lowers {
        data["LowerDir"] = json!(join_dirs(&lowers));
    }
    json!({"Name": "overlay2", "Data": data})
}

/// Directories joined with ':' as overlayfs's lowerdir lists them.
pub fn join_dirs(dirs: &[std::path::PathBuf]) -> String {
    dirs.iter()
        .map(|d| d.to_string_lossy())
        .collect::<Vec<_>>()
        .join(":")
}

pub fn inspect(e: &Engine, c: &Container, size: bool) -> Value {
    let s = &c.state;
    let health = s.health.as_ref().map(|h| json!({
        "Status": h.status,
        "FailingStreak": h.failing_streak,
        "Log": h.log.iter().map(|l| json!({"Start": rfc3339_go(l.start), "End": rfc3339_go(l.end), "ExitCode": l.exit_code, "Output": l.output})).collect::<Vec<_>>(),
    }));
    let mut state = json!({
        "Status": s.status.as_str(),
        "Running": matches!(s.status, Status::Running | Status::Paused),
        "Paused": s.status == Status::Paused,
        "Restarting": s.status == Status::Restarting,
        "OOMKilled": s.oom_killed,
        "Dead": s.status == Status::Dead,
        "Pid": s.pid,
        "ExitCode": s.exit_code,
        "Error": s.error,
        "StartedAt": time_or_zero(s.started_at),
        "FinishedAt": time_or_zero(s.finished_at),
    });
    if let Some(h) = health {
        state["Health"] = h;
    }
    let mut config = serde_json::to_value(&c.config).unwrap_or_else(|_| json!({}));
    config["Image"] = json!(c.image);
    for k in [
        "AttachStdin",
        "AttachStdout",
        "AttachStderr",
        "Tty",
        "OpenStdin",
        "StdinOnce",
    ] {
        if config.get(k).is_none() {
            config[k] = json!(false);
        }
    }
    let mut hc = serde_json::to_value(&c.host_config).unwrap_or_else(|_| json!({}));
    super::inspect_shape::complete(
        &mut config,
        &mut hc,
        &super::inspect_shape::Applied {
            cgroup_v2: e.host.cgroup_version == "2",
            runtime: &e.config.default_runtime,
            shm_size: super::spec::DEFAULT_SHM_SIZE,
            masked_paths: kos_security::spec_defaults::masked_paths(),
            readonly_paths: kos_security::spec_defaults::readonly_paths(),
        },
    );
    let ports = if c.ports.is_null() {
        json!({})
    } else {
        c.ports.clone()
    };
    let execs = e.execs.of_container(&c.id);
    let exec_ids = if execs.is_empty() {
        Value::Null
    } else {
        json!(execs)
    };
    let mut v = json!({
        "Id": c.id,
        "Created": rfc3339_go(c.created),
        "Path": c.path,
        "Args": c.args,
        "State": state,
        "Image": c.image_id,
        "ResolvConfPath": super::runtime::bundle_file(e, c, "resolv.conf"),
        "HostnamePath": super::runtime::bundle_file(e, c, "hostname"),
        "HostsPath": super::runtime::bundle_file(e, c, "hosts"),
        "LogPath": c.log_path,
        "Name": format!("/{}", c.name),
        "RestartCount": s.restart_count,
        "Driver": "overlay2",
        "Platform": "linux",
        "MountLabel": c.mount_label,
        "ProcessLabel": c.process_label,
        "AppArmorProfile": "",
        "ExecIDs": exec_ids,
        "HostConfig": hc,
        "GraphDriver": graph_driver(e, c),
        "Mounts": super::mounts::describe(e, c),
        "Config": config,
        "NetworkSettings": {
            "Bridge": "", "SandboxID": "", "SandboxKey": "", "HairpinMode": false,
            "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0,
            "Ports": ports, "SecondaryIPAddresses": null, "SecondaryIPv6Addresses": null,
            "EndpointID": "", "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0,
            "IPAddress": "", "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "",
            "Networks": networks(c, &mut |n| crate::network_ids::id_of(e, n)),
        },
    });
    if size {
        v["SizeRw"] = json!(c.size_rw());
        v["SizeRootFs"] = json!(0);
    }
    v
}

/// `Ports` of the ps list: one entry per published binding.
fn ps_ports(p: &Value) -> Value {
    let mut out = Vec::new();
    if let Some(m) = p.as_object() {
        for (k, v) in m {
            let (port, proto) = k.split_once('/').unwrap_or((k, "tcp"));
            let port: u16 = port.parse().unwrap_or(0);
            match v.as_array() {
                Some(binds) => {
                    for b in binds {
                        out.push(json!({"IP": b["HostIp"], "PrivatePort": port, "PublicPort": b["HostPort"].as_str().and_then(|s| s.parse::<u16>().ok()), "Type": proto}));
                    }
                }
                None => out.push(json!({"PrivatePort": port, "Type": proto})),
            }
        }
    }
    json!(out)
}

pub const LIST_FILTERS: &[&str] = &[
    "id", "name", "label", "status", "exited", "ancestor", "before", "since", "volume", "network",
    "health", "is-task", "publish", "expose",
];

fn health_status(c: &Container) -> &str {
    c.state
        .health
        .as_ref()
        .map(|h| h.status.as_str())
        .unwrap_or("none")
}

/// The part of a container record the ps list reads. Decoding only this, while the parser
/// skips the rest (mostly Docker's HostConfig with its hundred-odd fields, which made up
/// most of the time of a list), is what keeps `docker ps` cheap with many containers.
/// Field names are the record's (`Container`'s serde names).
#[derive(Deserialize)]
struct Listed {
    id: String,
    name: String,
    created: i64,
    image: String,
    image_id: String,
    #[serde(default)]
    config: ListedConfig,
    #[serde(default)]
    host_config: ListedHostConfig,
    path: String,
    args: Vec<String>,
    state: State,
    dir: PathBuf,
    #[serde(default)]
    volumes: Vec<(String, String)>,
    #[serde(default)]
    networks: serde_json::Map<String, Value>,
    #[serde(default)]
    ports: Value,
}

#[derive(Deserialize, Default)]
struct ListedConfig {
    #[serde(rename = "Labels")]
    labels: Option<std::collections::HashMap<String, String>>,
}

#[derive(Deserialize, Default)]
struct ListedHostConfig {
    #[serde(rename = "NetworkMode")]
    network_mode: Option<String>,
    #[serde(rename = "Binds")]
    binds: Option<Vec<String>>,
    #[serde(rename = "Mounts")]
    mounts: Option<Vec<Mount>>,
}

impl Listed {
    /// A `Container` holding every field the list reads (filters, mounts, status text,
    /// size); the fields it never reads (log path, image store name, labels of SELinux, the
    /// rest of Config and HostConfig) stay empty.
    fn into_container(self) -> Container {
        Container {
            id: self.id,
            name: self.name,
            created: self.created,
            image: self.image,
            image_id: self.image_id,
            image_store_name: String::new(),
            config: ContainerConfig {
                labels: self.config.labels,
                ..Default::default()
            },
            host_config: HostConfig {
                network_mode: self.host_config.network_mode,
                binds: self.host_config.binds,
                mounts: self.host_config.mounts,
                ..Default::default()
            },
            path: self.path,
            args: self.args,
            state: self.state,
            dir: self.dir,
            log_path: PathBuf::new(),
            rootfs_kind: String::new(),
            volumes: self.volumes,
            networks: self.networks,
            ports: self.ports,
            mount_label: String::new(),
            process_label: String::new(),
        }
    }
}

/// One row of `GET /containers/json`, in Docker's field order.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Entry<'a> {
    id: &'a str,
    names: [String; 1],
    image: &'a str,
    #[serde(rename = "ImageID")]
    image_id: &'a str,
    command: String,
    created: i64,
    ports: Value,
    labels: BTreeMap<&'a str, &'a str>,
    state: &'static str,
    status: String,
    host_config: EntryHostConfig<'a>,
    network_settings: EntryNetworkSettings<'a>,
    mounts: Vec<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size_rw: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size_root_fs: Option<i64>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EntryHostConfig<'a> {
    network_mode: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct EntryNetworkSettings<'a> {
    networks: Networks<'a>,
}

fn entry<'a>(e: &Engine, c: &'a Container, size: bool, ids: &mut NetIds) -> Entry<'a> {
    Entry {
        id: &c.id,
        names: [format!("/{}", c.name)],
        image: &c.image,
        image_id: &c.image_id,
        command: c.command_line(),
        created: c.created / 1_000_000_000,
        ports: ps_ports(&c.ports),
        labels: c
            .config
            .labels
            .iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect(),
        state: c.state.status.as_str(),
        status: c.status_text(),
        host_config: EntryHostConfig {
            network_mode: c.host_config.network_mode.as_deref().unwrap_or_default(),
        },
        network_settings: EntryNetworkSettings {
            networks: Networks::new(&c.networks, &c.host_config, ids),
        },
        mounts: super::mounts::describe(e, c),
        size_rw: size.then(|| c.size_rw()),
        size_root_fs: size.then_some(0),
    }
}

/// Decoded list rows by container id, each with the record text it was decoded from.
/// A row is reused only while its record is stored in exactly that text, so a list always
/// shows the record as it is now (start, stop, rename, exit... each rewrite it); rows of
/// containers gone from the store are dropped at the next list. Decoding every record at
/// every list was most of what `docker ps` cost with many containers.
struct Rows(BTreeMap<String, (Box<str>, Arc<Container>)>);

/// The last list's rows, and the store generation (`StateDb::generation`) they were read
/// at, in the store's order: while no container record has been written since, a list
/// reads none of them again.
struct Listing {
    rows: Rows,
    generation: u64,
    order: Vec<Arc<Container>>,
}

static LISTING: Mutex<Listing> = Mutex::new(Listing {
    rows: Rows(BTreeMap::new()),
    generation: 0,
    order: Vec::new(),
});

impl Rows {
    /// The row of a record as stored now, moved (or decoded) into `next`; None for a record
    /// that does not decode (from a newer kosd, or damage), skipped as `StateDb::all` does.
    fn keep(&mut self, next: &mut Rows, id: &str, text: &str) -> Option<Arc<Container>> {
        let row = match self.0.remove(id) {
            Some(row) if *row.0 == *text => row,
            _ => match serde_json::from_str::<Listed>(text) {
                Ok(l) => (text.into(), Arc::new(l.into_container())),
                Err(err) => {
                    tracing::warn!(%id, error = %err, "skipping bad container record");
                    return None;
                }
            },
        };
        let c = row.1.clone();
        next.0.insert(id.to_string(), row);
        Some(c)
    }
}

/// Every container as its record is stored now, for the list.
fn current(e: &Engine) -> Result<Vec<Arc<Container>>> {
    let mut listing = LISTING.lock().unwrap_or_else(|p| p.into_inner());
    let db = e.db();
    let generation = db.generation(Table::Containers);
    if generation == listing.generation {
        return Ok(listing.order.clone());
    }
    let mut next = Rows(BTreeMap::new());
    let mut out = Vec::new();
    db.each_record(Table::Containers, |id, text| {
        out.extend(listing.rows.keep(&mut next, id, text));
    })?;
    drop(db);
    listing.rows = next;
    listing.generation = generation;
    listing.order = out.clone();
    Ok(out)
}

/// The container a `before`/`since` filter names, resolved as `runtime::find` resolves a
/// key (full id, then name, then a unique id prefix) among the rows the list already holds,
/// rather than decoding every full record again.
fn named<'a>(cs: &'a [Arc<Container>], key: &str) -> Result<&'a Container> {
    let name = key.strip_prefix('/').unwrap_or(key);
    if let Some(c) = cs
        .iter()
        .find(|c| c.id == key)
        .or_else(|| cs.iter().find(|c| c.name == name))
    {
        return Ok(c);
    }
    let mut hits = cs
        .iter()
        .filter(|c| !key.is_empty() && c.id.starts_with(key));
    match (hits.next(), hits.next()) {
        (Some(c), None) => Ok(c),
        (None, _) => Err(ApiError::NotFound(format!("No such container: {key}"))),
        _ => Err(ApiError::bad(format!(
            "multiple IDs found with provided prefix: {key}"
        ))),
    }
}

/// `GET /containers/json`: the answer's JSON.
pub fn list(e: &Engine, all: bool, limit: Option<i64>, size: bool, f: &Filters) -> Result<Vec<u8>> {
    for s in f.get("status") {
        if ![
            "created",
            "restarting",
            "running",
            "removing",
            "paused",
            "exited",
            "dead",
        ]
        .contains(&s.as_str())
        {
            return Err(ApiError::bad(format!("invalid filter 'status={s}'")));
        }
    }
    let mut cs = current(e)?;
    // A network filter names a network by name, ID or ID prefix.
    let net_names: Vec<String> = f
        .get("network")
        .iter()
        .flat_map(|v| {
            let by_id = crate::api::networks::resolve_name(e, v).ok();
            std::iter::once(v.to_string()).chain(by_id)
        })
        .collect();
    // Looked up once per network for the whole list.
    let mut known: std::collections::HashMap<String, String> = Default::default();
    let mut ids = |n: &str| {
        known
            .entry(n.to_string())
            .or_insert_with(|| crate::network_ids::id_of(e, n))
            .clone()
    };
    let bound = |k: &str| -> Result<Option<i64>> {
        match f.get(k).first() {
            None => Ok(None),
            Some(x) => Ok(Some(named(&cs, x)?.created)),
        }
    };
    let before = bound("before")?;
    let since = bound("since")?;
    let ancestors: Vec<String> = f
        .get("ancestor")
        .iter()
        .filter_map(|a| crate::images::resolve(&e.store, a).ok().map(|r| r.id()))
        .collect();
    let show_all = all
        || f.has("status")
        || f.has("exited")
        || limit.is_some_and(|l| l > 0)
        || before.is_some()
        || since.is_some();
    cs.sort_by_key(|c| std::cmp::Reverse(c.created));
    let mut out = Vec::new();
    for c in &cs {
        if !show_all && !c.state.status.is_live() {
            continue;
        }
        let labels = c.config.labels.as_ref();
        let ok = f.any_or_unset("id", |x| c.id.starts_with(x))
            && f.any_or_unset("name", |x| {
                let x = x.strip_prefix('/').unwrap_or(x);
                c.name.contains(x)
            })
            && f.labels_match("label", |k| {
                labels.and_then(|l| l.get(k)).map(String::as_str)
            })
            && f.any_or_unset("status", |s| s == c.state.status.as_str())
            && f.any_or_unset("exited", |x| {
                c.state.status == Status::Exited && x.parse::<i64>().ok() == Some(c.state.exit_code)
            })
            && (!f.has("ancestor")
                || ancestors.contains(&c.image_id)
                || f.get("ancestor").contains(&c.image))
            && before.is_none_or(|b| c.created < b)
            && since.is_none_or(|s| c.created > s)
            && f.any_or_unset("volume", |v| {
                c.volumes.iter().any(|(n, d)| n == v || d == v)
            })
            && (!f.has("network")
                || net_names.iter().any(|n| {
                    NetMode::parse(&c.host_config).name() == *n || c.networks.contains_key(n)
                }))
            && f.any_or_unset("health", |h| h == health_status(c));
        if !ok {
            continue;
        }
        out.push(entry(e, c, size, &mut ids));
        if limit.is_some_and(|l| l > 0 && out.len() as i64 >= l) {
            break;
        }
    }
    // One buffer about the size of the answer (an entry is near 700 bytes).
    let mut buf = Vec::with_capacity(out.len() * 768 + 2);
    serde_json::to_writer(&mut buf, &out)
        .map_err(|err| ApiError::internal("encoding the container list", err))?;
    Ok(buf)
}

/// `ps` output filtered to the container's `pids`, as dockerd's top: the header's fields
/// are the titles, the last one (the command) takes the rest of each line, and rows whose
/// PID column is not one of the container's are dropped.
pub fn parse_ps(output: &str, pids: &[u32]) -> std::result::Result<Value, String> {
    let mut lines = output.lines();
    let titles: Vec<&str> = lines
        .next()
        .map(|h| h.split_whitespace().collect())
        .unwrap_or_default();
    let pid_col = titles
        .iter()
        .position(|t| *t == "PID")
        .ok_or("Couldn't find PID field in ps output")?;
    let mut rows = Vec::new();
    for line in lines {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.len() < titles.len() {
            continue;
        }
        let Ok(pid) = fields[pid_col].parse::<u32>() else {
            return Err(format!("Unexpected pid '{}'", fields[pid_col]));
        };
        if !pids.contains(&pid) {
            continue;
        }
        let mut row: Vec<String> = fields[..titles.len() - 1]
            .iter()
            .map(|f| f.to_string())
            .collect();
        row.push(fields[titles.len() - 1..].join(" "));
        rows.push(row);
    }
    Ok(json!({"Titles": titles, "Processes": rows}))
}

/// `GET /containers/{id}/top` without `ps` on the host: ps-style rows from /proc.
pub fn top(pids: &[u32]) -> Value {
    let ticks = 100u64;
    let mut rows = Vec::new();
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let after = stat.rsplit_once(") ").map(|x| x.1).unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        let ppid = f.get(1).copied().unwrap_or("0");
        let cpu_ticks: u64 = f.get(11).and_then(|x| x.parse().ok()).unwrap_or(0)
            + f.get(12).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0);
        let secs = cpu_ticks / ticks;
        let uid = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix("Uid:")
                    .map(|r| r.split_whitespace().next().unwrap_or("0").to_string())
            })
            .unwrap_or_else(|| "0".into());
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .replace('\0', " ")
                    .trim()
                    .to_string()
            })
            .unwrap_or_default();
        rows.push(json!([
            uid,
            pid.to_string(),
            ppid,
            "0",
            "",
            "?",
            format!("{:02}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60),
            cmd
        ]));
    }
    json!({"Titles": ["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"], "Processes": rows})
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ps_output_is_filtered_to_the_container() {
        let out = "UID          PID    PPID  C STIME TTY          TIME CMD\n\
                   root           1       0  0 10:00 ?        00:00:01 /sbin/init\n\
                   root         812       1  0 10:01 ?        00:00:00 sleep 100 now\n";
        let v = parse_ps(out, &[812]).unwrap();
        assert_eq!(
            v["Titles"],
            json!(["UID", "PID", "PPID", "C", "STIME", "TTY", "TIME", "CMD"])
        );
        assert_eq!(
            v["Processes"],
            json!([[
                "root",
                "812",
                "1",
                "0",
                "10:01",
                "?",
                "00:00:00",
                "sleep 100 now"
            ]])
        );
        let aux = "USER PID %CPU COMMAND\nroot 812 0.0 sleep 1\n";
        assert_eq!(parse_ps(aux, &[812]).unwrap()["Processes"][0][3], "sleep 1");
        assert!(parse_ps("USER COMMAND\nroot x\n", &[1]).is_err());
        assert!(parse_ps("PID CMD\nabc x\n", &[1]).is_err());
    }

    /// A record with every part the list reads set, and heavy parts it skips.
    fn rich() -> Container {
        serde_json::from_value(json!({
            "id": "a".repeat(64), "name": "web", "created": 1_700_000_000_123_456_789i64,
            "image": "reg/img:1", "image_id": "sha256:abc", "image_store_name": "reg/img:1",
            "config": {"Labels": {"tier": "front", "a": "b"}, "Env": ["A=1"], "Cmd": ["sleep", "9"],
                       "Healthcheck": {"Test": ["CMD", "true"]}},
            "host_config": {"NetworkMode": "mynet", "Binds": ["/tmp:/h:ro", "vol1:/v"],
                            "Mounts": [{"Type": "tmpfs", "Target": "/t", "ReadOnly": true}],
                            "Memory": 1048576, "CapAdd": ["NET_ADMIN"], "Privileged": false,
                            "RestartPolicy": {"Name": "always"}},
            "path": "sleep", "args": ["9"],
            "state": {"status": "paused", "pid": 42, "exit_code": 0, "error": "", "oom_killed": false,
                      "started_at": 1_700_000_001_000_000_000i64, "finished_at": 0, "restart_count": 2,
                      "stopped_by_user": false,
                      "health": {"status": "healthy", "failing_streak": 0,
                                 "log": [{"start": 1, "end": 2, "exit_code": 0, "output": "ok"}]}},
            "dir": "/var/lib/kos/containers/x", "log_path": "/var/lib/kos/containers/x/x-json.log",
            "rootfs_kind": "overlay", "volumes": [["vol1", "/v"], ["anon", "/data"]],
            "networks": {"mynet": {"IPAddress": "10.1.0.2", "Aliases": ["web"], "NetworkID": "mynet"}},
            "ports": {"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}], "53/udp": null},
            "mount_label": "s0:c1,c2", "process_label": "s0:c1,c2"
        }))
        .unwrap()
    }

    #[test]
    fn listed_projection_keeps_every_field_the_list_reads() {
        let full = rich();
        let rec = serde_json::to_string(&full).unwrap();
        let lean: Listed = serde_json::from_str(&rec).unwrap();
        let lean = lean.into_container();
        let (a, b) = (
            serde_json::to_value(&full).unwrap(),
            serde_json::to_value(&lean).unwrap(),
        );
        for p in [
            "/id",
            "/name",
            "/created",
            "/image",
            "/image_id",
            "/config/Labels",
            "/host_config/NetworkMode",
            "/host_config/Binds",
            "/host_config/Mounts",
            "/path",
            "/args",
            "/state",
            "/dir",
            "/volumes",
            "/networks",
            "/ports",
        ] {
            assert!(a.pointer(p).is_some(), "{p} missing from the full record");
            assert_eq!(a.pointer(p), b.pointer(p), "{p}");
        }
        assert_eq!(lean.status_text(), full.status_text());
        assert_eq!(lean.command_line(), "sleep 9");
        assert_eq!(health_status(&lean), "healthy");
        let mut ids = |n: &str| n.to_string();
        assert_eq!(networks(&lean, &mut ids), networks(&full, &mut ids));
    }

    #[test]
    fn rows_are_reused_only_for_the_same_record_text() {
        let mut c = rich();
        let one = serde_json::to_string(&c).unwrap();
        c.state.status = Status::Running;
        c.name = "renamed".into();
        let two = serde_json::to_string(&c).unwrap();
        let id = c.id.clone();
        let mut rows = Rows(BTreeMap::new());
        let mut next = Rows(BTreeMap::new());
        let a = rows.keep(&mut next, &id, &one).unwrap();
        assert_eq!((a.state.status, a.name.as_str()), (Status::Paused, "web"));
        rows = next;
        // The same text: the row decoded before.
        let mut next = Rows(BTreeMap::new());
        let b = rows.keep(&mut next, &id, &one).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        rows = next;
        // A rewritten record: decoded again, never the old row.
        let mut next = Rows(BTreeMap::new());
        let b = rows.keep(&mut next, &id, &two).unwrap();
        assert_eq!(
            (b.state.status, b.name.as_str()),
            (Status::Running, "renamed")
        );
        // A record that does not decode is skipped; rows not kept are gone.
        assert!(rows.keep(&mut next, "other", "{\"id\": 1}").is_none());
        assert_eq!(next.0.keys().collect::<Vec<_>>(), [&id]);
    }

    #[test]
    fn before_and_since_name_containers_as_find_does() {
        let mk = |id: &str, name: &str| {
            let mut c = rich();
            c.id = id.into();
            c.name = name.into();
            Arc::new(c)
        };
        let cs = [mk("abc1", "web"), mk("abd2", "abc1x"), mk("ffff", "abc")];
        assert_eq!(named(&cs, "abc1").unwrap().name, "web");
        assert_eq!(named(&cs, "/abc1x").unwrap().id, "abd2");
        // A name before an id prefix, and a unique prefix.
        assert_eq!(named(&cs, "abc").unwrap().id, "ffff");
        assert_eq!(named(&cs, "abd").unwrap().id, "abd2");
        let e = named(&cs, "ab").unwrap_err();
        assert!(matches!(e, ApiError::BadRequest(_)), "{e}");
        let e = named(&cs, "zz").unwrap_err();
        assert!(matches!(e, ApiError::NotFound(_)), "{e}");
        assert!(matches!(named(&cs, ""), Err(ApiError::NotFound(_))));
    }

    #[test]
    fn networks_of_unattached_shared_and_recorded_containers() {
        let mut c = rich();
        let mut ids = |n: &str| format!("id-of-{n}");
        // An endpoint not joined yet keeps its empty NetworkID.
        c.networks
            .insert("later".into(), json!({"NetworkID": "", "IPAddress": ""}));
        let v = networks(&c, &mut ids);
        assert_eq!(v["mynet"]["IPAddress"], "10.1.0.2");
        assert_eq!(v["mynet"]["Aliases"], json!(["web"]));
        assert_eq!(v["mynet"]["NetworkID"], "id-of-mynet");
        assert_eq!(v["later"], json!({"NetworkID": "", "IPAddress": ""}));
        c.networks.clear();
        let v = networks(&c, &mut ids);
        let ep = v["mynet"].as_object().unwrap();
        assert_eq!(v.as_object().unwrap().len(), 1);
        assert_eq!(ep.len(), 14);
        assert_eq!(ep["IPAMConfig"], Value::Null);
        assert_eq!(ep["IPPrefixLen"], 0);
        assert_eq!(ep["NetworkID"], "");
        c.host_config.network_mode = Some("container:abc".into());
        assert_eq!(networks(&c, &mut ids), json!({}));
        c.host_config.network_mode = None;
        assert!(networks(&c, &mut ids).get("bridge").is_some());
    }

    #[test]
    fn ps_ports_one_entry_per_binding() {
        let v = ps_ports(&rich().ports);
        let a = v.as_array().unwrap();
        assert_eq!(a.len(), 2);
        assert!(a.contains(&json!({"PrivatePort": 53, "Type": "udp"})));
        assert!(a.contains(
            &json!({"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"})
        ));
    }
}
