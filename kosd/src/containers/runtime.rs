//! Running containers: create, start through the shim, the exit monitor with
//! restart policies and auto-remove, stop, kill, pause, remove, and what the
//! daemon does about them at start and shutdown.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bollard_stubs::models::{ContainerConfig, HostConfig, RestartPolicy, RestartPolicyNameEnum};
use kos_image::config_to_spec::{self, Overrides};
use kos_image::{RootfsOptions, RootfsStrategy};
use kos_network::AttachRequest;
use kos_shim_client::{LaunchOptions, ProcessState, RuntimeOptions, ShimClient as Shim, Stdio};
use serde::Deserialize;
use tokio::sync::broadcast;

use super::netmode::NetMode;
use super::record::{Container, State, Status};
use super::spec::{self, SpecInput};
use crate::engine::Engine;
use crate::error::{ApiError, Result};
use crate::state::Table;
use crate::timefmt;

/// The live side of containers: shim connections, per-container operation
/// locks, and state-change notifications for waiters.
pub struct Runtime {
    shims: Mutex<HashMap<String, Shim>>,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Containers a forced removal is stopping: their exit leaves the rootfs mounted for
    /// the removal to hand over with the directory.
    removing: Mutex<std::collections::HashSet<String>>,
    /// How many exit monitors run (from a start until the exit is handled and the shim
    /// shut down): a daemon shutdown waits for them, so no shim outlives it.
    monitors: tokio::sync::watch::Sender<usize>,
    pub changed: broadcast::Sender<Change>,
}

/// One running exit monitor, counted in `Runtime::monitors` while it lives.
struct Monitoring(tokio::sync::watch::Sender<usize>);

impl Monitoring {
    fn new(rt: &Runtime) -> Monitoring {
        rt.monitors.send_modify(|n| *n += 1);
        Monitoring(rt.monitors.clone())
    }
}

impl Drop for Monitoring {
    fn drop(&mut self) {
        self.0.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A container's record was saved or removed: what waiters and log followers wake on.
#[derive(Debug, Clone)]
pub struct Change {
    pub id: String,
    /// Set when the record went: the exit code it held, which a waiter woken by an earlier
    /// change can no longer load (an exit saved and removed at once, as `--rm` does).
    pub removed_with: Option<i64>,
}

impl Change {
    fn saved(id: &str) -> Change {
        Change {
            id: id.to_string(),
            removed_with: None,
        }
    }
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime {
            shims: Mutex::new(HashMap::new()),
            locks: Mutex::new(HashMap::new()),
            removing: Mutex::new(std::collections::HashSet::new()),
            monitors: tokio::sync::watch::channel(0).0,
            changed: broadcast::channel(1024).0,
        }
    }
}

/// Marks a container as being removed while it lives; unmarked on drop.
struct Removing<'a>(&'a Runtime, String);

impl Drop for Removing<'_> {
    fn drop(&mut self) {
        self.0
            .removing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.1);
    }
}

impl Runtime {
    pub fn lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(id.to_string())
            .or_default()
            .clone()
    }
    pub fn shim(&self, id: &str) -> Option<Shim> {
        self.shims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }
    fn set_shim(&self, id: &str, s: Option<Shim>) {
        let mut m = self.shims.lock().unwrap_or_else(|p| p.into_inner());
        match s {
            Some(s) => m.insert(id.to_string(), s),
            None => m.remove(id),
        };
    }
    fn mark_removing(&self, id: &str) -> Removing<'_> {
        self.removing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string());
        Removing(self, id.to_string())
    }
    fn is_removing(&self, id: &str) -> bool {
        self.removing
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(id)
    }
    fn forget(&self, id: &str) {
        self.set_shim(id, None);
        self.locks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }
}

/// The body of `POST /containers/create`.
#[derive(Debug, Deserialize)]
pub struct CreateBody {
    #[serde(flatten)]
    pub config: ContainerConfig,
    #[serde(rename = "HostConfig", default)]
    pub host_config: Option<HostConfig>,
    #[serde(rename = "NetworkingConfig", default)]
    pub networking_config: Option<serde_json::Value>,
}

pub fn save(e: &Engine, c: &Container) -> Result<()> {
    e.db().put(Table::Containers, &c.id, &c.name, c)?;
    let _ = e.rt.changed.send(Change::saved(&c.id));
    Ok(())
}

pub fn load(e: &Engine, id: &str) -> Result<Container> {
    e.db()
        .get::<Container>(Table::Containers, id)?
        .ok_or_else(|| ApiError::NotFound(format!("No such container: {id}")))
}

/// Finds a container by full id, name (with or without `/`) or unique id prefix.
pub fn find(e: &Engine, key: &str) -> Result<Container> {
    if key.is_empty() {
        return Err(ApiError::NotFound("No such container: ".into()));
    }
    // Through the table's id and name indexes: only the record found is decoded.
    let db = e.db();
    if let Some(c) = db.get::<Container>(Table::Containers, key)? {
        return Ok(c);
    }
    let name = key.strip_prefix('/').unwrap_or(key);
    if let Some(c) = db.get_by_name::<Container>(Table::Containers, name)? {
        return Ok(c);
    }
    match db.ids_with_prefix(Table::Containers, key, 2)?.as_slice() {
        [one] => db
            .get::<Container>(Table::Containers, one)?
            .ok_or_else(|| ApiError::NotFound(format!("No such container: {key}"))),
        [] => Err(ApiError::NotFound(format!("No such container: {key}"))),
        _ => Err(ApiError::bad(format!(
            "multiple IDs found with provided prefix: {key}"
        ))),
    }
}

/// Removes a directory a request made unless the request got through.
struct RemoveDirOnDrop(Option<std::path::PathBuf>);

impl Drop for RemoveDirOnDrop {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}

/// The id of the container holding `name`, if any.
fn name_holder(e: &Engine, name: &str) -> Result<Option<String>> {
    e.db().id_of_name(Table::Containers, name)
}

fn valid_name(n: &str) -> bool {
    let mut ch = n.chars();
    ch.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && n.len() >= 2
        && n.len() <= 255
        && ch.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

const ADJECTIVES: &[&str] = &[
    "brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "keen", "lucid", "merry",
    "nifty", "proud", "quick", "silly", "tender", "vivid", "witty", "zen", "bold", "cool",
];
const NOUNS: &[&str] = &[
    "turing", "hopper", "lovelace", "ritchie", "thompson", "knuth", "dijkstra", "torvalds",
    "hamilton", "liskov", "kay", "backus", "shannon", "noether", "curie", "euler", "gauss",
    "fermat", "babbage", "wozniak",
];

fn random_name(id: &str, taken: &dyn Fn(&str) -> bool) -> String {
    let b = id.as_bytes();
    for i in 0..b.len().saturating_sub(4) {
        let a = ADJECTIVES[(b[i] as usize * 7 + b[i + 1] as usize) % ADJECTIVES.len()];
        let n = NOUNS[(b[i + 2] as usize * 13 + b[i + 3] as usize) % NOUNS.len()];
        let name = if i == 0 {
            format!("{a}_{n}")
        } else {
            format!("{a}_{n}{i}")
        };
        if !taken(&name) {
            return name;
        }
    }
    format!("kos_{}", &id[..12])
}

/// `max-size` as Docker writes it (`10m`, `1g`, `500k`, bytes).
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim().to_ascii_lowercase();
    let s = s.strip_suffix('b').unwrap_or(&s);
    let (num, mult) = match s.chars().last()? {
        'k' => (&s[..s.len() - 1], 1u64 << 10),
        'm' => (&s[..s.len() - 1], 1 << 20),
        'g' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>().ok().map(|n| n * mult)
}

fn log_uri(c: &Container) -> Result<String> {
    let lc = c.host_config.log_config.clone().unwrap_or_default();
    let kind = lc.typ.clone().unwrap_or_default();
    if !kind.is_empty() && kind != "json-file" {
        return Err(ApiError::bad(format!(
            "logging driver {kind:?} is not supported by kosd (json-file only)"
        )));
    }
    let cfg = lc.config.unwrap_or_default();
    let mut q = Vec::new();
    for (k, v) in &cfg {
        match k.as_str() {
            "max-size" => q.push(format!(
                "max-size={}",
                parse_size(v).ok_or_else(|| ApiError::bad(format!("invalid max-size {v:?}")))?
            )),
            "max-file" => {
                let n: u32 = v
                    .parse()
                    .map_err(|_| ApiError::bad(format!("invalid max-file {v:?}")))?;
                q.push(format!("max-file={n}"));
            }
            "compress" | "labels" | "env" | "tag" => {}
            other => {
                return Err(ApiError::bad(format!(
                    "unknown log opt '{other}' for json-file log driver"
                )))
            }
        }
    }
    let mut uri = format!("json-file://{}", c.log_path.display());
    if !q.is_empty() {
        uri.push('?');
        uri.push_str(&q.join("&"));
    }
    Ok(uri)
}

/// `POST /containers/create`.
pub fn create(e: &Arc<Engine>, name: Option<&str>, body: CreateBody) -> Result<Container> {
    let mut config = body.config;
    let hc = body.host_config.clone().unwrap_or_default();
    if let Some(nc) = &body.networking_config {
        // Endpoint settings need the network integration; an empty map is what the CLI sends.
        let eps = nc
            .get("EndpointsConfig")
            .and_then(|v| v.as_object())
            .map(|m| m.len())
            .unwrap_or(0);
        if eps > 0 && matches!(NetMode::parse(&hc), NetMode::None | NetMode::Host) {
            tracing::debug!("endpoint settings ignored for network mode none/host");
        }
    }
    let image = config
        .image
        .clone()
        .filter(|i| !i.is_empty())
        .ok_or_else(|| ApiError::bad("Config.Image is required"))?;
    if let Some(n) = name.filter(|n| !n.is_empty()) {
        let n = n.strip_prefix('/').unwrap_or(n);
        if !valid_name(n) {
            return Err(ApiError::bad(format!(
                "Invalid container name ({n}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
            )));
        }
    }
    let resolved = crate::images::resolve(&e.store, &image)?;
    let img = e.store.image(&resolved.any().name)?;
    // Validate everything that can be checked now, so nothing is made for a bad request.
    let net = NetMode::parse(&hc);
    net.check(&e.nets)?;
    spec::capabilities(&hc)?;
    let sec = spec::security_opts(&hc.security_opt.clone().unwrap_or_default())?;
    // Held until the record is saved: no other create can take the same MCS pair.
    let mcs_labels = super::mcs::labels_for(e, e.host.selinux, &sec)?;
    e.devices.check_create(&hc, config.labels.as_ref())?;
    if let Some(p) = hc.cgroup_parent.as_deref().filter(|p| !p.is_empty()) {
        crate::config::normalize_cgroup_parent(p)
            .map_err(|err| ApiError::bad(format!("invalid CgroupParent {p:?}: {err}")))?;
    }
    let rc = img.config.config.clone().unwrap_or_default();
    let entry = config
        .entrypoint
        .clone()
        .filter(|v| !(v.len() == 1 && v[0].is_empty()));
    let reset_entry = config
        .entrypoint
        .as_ref()
        .is_some_and(|v| v.len() == 1 && v[0].is_empty());
    let (ep, cmd) = match (&entry, &config.cmd, reset_entry) {
        (Some(ep), c, _) => (ep.clone(), c.clone().unwrap_or_default()),
        (None, c, true) => (Vec::new(), c.clone().unwrap_or_default()),
        (None, Some(c), false) => (rc.entrypoint.clone().unwrap_or_default(), c.clone()),
        (None, None, false) => (
            rc.entrypoint.clone().unwrap_or_default(),
            rc.cmd.clone().unwrap_or_default(),
        ),
    };
    let mut argv: Vec<String> = ep.into_iter().chain(cmd).collect();
    if argv.is_empty() {
        return Err(ApiError::bad("No command specified"));
    }
    for b in hc.binds.clone().unwrap_or_default() {
        super::mounts::parse_bind(&b)?;
    }
    for m in hc.mounts.clone().unwrap_or_default() {
        // --mount type=bind never creates its source (unlike -v).
        if spec::mount_type(m.typ) == "bind" {
            spec::bind_mount(
                m.source.as_deref().unwrap_or(""),
                m.target.as_deref().unwrap_or(""),
                &[],
            )?;
        }
    }
    if let Some(p) = &hc.restart_policy {
        if p.name == Some(RestartPolicyNameEnum::ON_FAILURE)
            && p.maximum_retry_count.unwrap_or(0) < 0
        {
            return Err(ApiError::bad("maximum retry count cannot be negative"));
        }
        if hc.auto_remove == Some(true) && restarts_by_policy(Some(p)) {
            return Err(ApiError::bad(
                "Conflicting options: AutoRemove and restart policy cannot both be set",
            ));
        }
    }

    if hc.links.as_ref().is_some_and(|l| !l.is_empty()) {
        return Err(ApiError::bad(
            "legacy container links are not supported; use a user network",
        ));
    }
    let id = crate::engine::random_id()?;
    let name = match name.filter(|n| !n.is_empty()) {
        Some(n) => n.strip_prefix('/').unwrap_or(n).to_string(),
        // A lookup error counts as taken: another name is drawn.
        None => random_name(&id, &|n| !matches!(name_holder(e, n), Ok(None))),
    };
    if let Some(other) = name_holder(e, &name)? {
        return Err(ApiError::Conflict(format!(
            "Conflict. The container name \"/{name}\" is already in use by container \"{other}\". You have to remove (or rename) that container to be able to reuse that name."
        )));
    }
    let dir = e.config.data_root.join("containers").join(&id);
    std::fs::create_dir_all(&dir)
        .map_err(|err| ApiError::internal(&format!("creating {}", dir.display()), err))?;
    // A request refused from here on (a bad stop signal, log option, network or
    // --volumes-from) leaves no directory behind.
    let mut made = RemoveDirOnDrop(Some(dir.clone()));
    if config.hostname.as_deref().unwrap_or("").is_empty() {
        config.hostname = Some(if net.shares_host_uts() {
            e.host.hostname.clone()
        } else {
            id[..12].to_string()
        });
    }
    let mut env = rc.env.clone().unwrap_or_default();
    for o in config.env.clone().unwrap_or_default() {
        let key = o.split('=').next().unwrap_or(&o).to_string();
        env.retain(|b| b.split('=').next() != Some(key.as_str()));
        if o.contains('=') {
            env.push(o);
        }
    }
    config.env = Some(env);
    if config.cmd.is_none() && entry.is_none() && !reset_entry {
        config.cmd = rc.cmd.clone();
    }
    if config.entrypoint.is_none() {
        config.entrypoint = rc.entrypoint.clone();
    }
    if config.working_dir.as_deref().unwrap_or("").is_empty() {
        config.working_dir = rc.working_dir.clone();
    }
    if config.user.as_deref().unwrap_or("").is_empty() {
        config.user = rc.user.clone();
    }
    let mut labels = rc.labels.clone().unwrap_or_default();
    labels.extend(config.labels.clone().unwrap_or_default());
    config.labels = Some(labels.into_iter().collect());
    if config.stop_signal.is_none() {
        config.stop_signal = rc.stop_signal.clone();
    }
    if config.healthcheck.is_none() {
        config.healthcheck = super::health::image_healthcheck(&img.config_bytes);
    }
    if let Some(s) = &config.stop_signal {
        config_to_spec::parse_signal(s)
            .map_err(|_| ApiError::bad(format!("Invalid signal: {s}")))?;
    }
    let path = argv.remove(0);
    let mut hc = hc;
    if hc.network_mode.as_deref().unwrap_or("").is_empty() {
        hc.network_mode = Some("default".into());
    }
    // Fill what dockerd fills, so clients reading these fields find them.
    let mut lc = hc.log_config.clone().unwrap_or_default();
    if lc.typ.as_deref().unwrap_or("").is_empty() {
        lc.typ = Some("json-file".into());
    }
    lc.config.get_or_insert_with(Default::default);
    hc.log_config = Some(lc);
    let mut rp = hc.restart_policy.clone().unwrap_or_default();
    if rp.name.is_none() || rp.name == Some(RestartPolicyNameEnum::EMPTY) {
        rp.name = Some(RestartPolicyNameEnum::NO);
    }
    rp.maximum_retry_count.get_or_insert(0);
    hc.restart_policy = Some(rp);
    let mut c = Container {
        log_path: dir.join(format!("{id}-json.log")),
        id: id.clone(),
        name,
        created: timefmt::now_nanos(),
        image: image.clone(),
        image_id: resolved.id(),
        image_store_name: resolved.any().name.clone(),
        config,
        host_config: hc,
        path,
        args: argv,
        state: State::default(),
        dir: dir.clone(),
        rootfs_kind: "overlay".into(),
        volumes: Vec::new(),
        networks: serde_json::Map::new(),
        ports: serde_json::Value::Null,
        mount_label: mcs_labels.mount.clone(),
        process_label: mcs_labels.process.clone(),
    };
    log_uri(&c)?;
    if let NetMode::Network(n) = &net {
        let eps = body
            .networking_config
            .as_ref()
            .and_then(|nc| nc.get("EndpointsConfig"))
            .and_then(|v| v.as_object())
            .cloned()
            .unwrap_or_default();
        let primary = crate::network::canonical(n).to_string();
        let aliases_of = |name: &str| {
            eps.get(name)
                .or_else(|| {
                    eps.get(if name == crate::network::DEFAULT {
                        "default"
                    } else {
                        name
                    })
                })
                .map(|ep| ep["Aliases"].clone())
                .unwrap_or(serde_json::Value::Null)
        };
        c.networks.insert(
            primary.clone(),
            crate::network::skeleton(aliases_of(&primary)),
        );
        for other in eps.keys() {
            let other = crate::network::canonical(other).to_string();
            if other != primary {
                e.nets.get(&other)?;
                c.networks
                    .insert(other.clone(), crate::network::skeleton(aliases_of(&other)));
            }
        }
    }
    let undo = |e: &Engine, c: &Container| {
        crate::volumes::release(e, c, true);
        let _ = std::fs::remove_dir_all(&c.dir);
    };
    // --volumes-from: the other container's binds and volumes, read-only when asked.
    for vf in c.host_config.volumes_from.clone().unwrap_or_default() {
        let (src, mode) = vf.split_once(':').unwrap_or((&vf, "rw"));
        if mode != "ro" && mode != "rw" {
            return Err(ApiError::bad(format!(
                "invalid mode for volumes-from: {mode}"
            )));
        }
        let other = find(e, src)?;
        let mut binds = c.host_config.binds.clone().unwrap_or_default();
        for b in other.host_config.binds.clone().unwrap_or_default() {
            let pb = super::mounts::parse_bind(&b)?;
            binds.push(if mode == "ro" {
                format!("{}:{}:ro", pb.src, pb.dest)
            } else {
                b
            });
        }
        for (name, dest) in &other.volumes {
            if !binds
                .iter()
                .any(|b| b.split(':').nth(1) == Some(dest.as_str()))
            {
                binds.push(if mode == "ro" {
                    format!("{name}:{dest}:ro")
                } else {
                    format!("{name}:{dest}")
                });
            }
        }
        c.host_config.binds = Some(binds);
    }
    if let Err(err) = crate::volumes::create_for(e, &mut c, &rc) {
        undo(e, &c);
        return Err(err);
    }
    if let Err(err) = save(e, &c) {
        undo(e, &c);
        return Err(err);
    }
    made.0 = None;
    e.event(
        "container",
        "create",
        &c.id,
        &[("name", &c.name), ("image", &c.image)],
    );
    drop(mcs_labels);
    Ok(c)
}

/// hostname, hosts and resolv.conf in the container's bundle: with the host's network
/// copies of the host's own (as dockerd), otherwise kos-network's writers. Nameservers:
/// the container's --dns, else the daemon's, else kos-dns on a user network's gateway,
/// else the host's resolvers.
fn write_etc_files(
    e: &Engine,
    c: &Container,
    net: &NetMode,
    dns_gateways: &[std::net::IpAddr],
) -> Result<()> {
    if *net == NetMode::Host {
        let bundle = super::bundle_dir(e, &c.id);
        let w = |name: &str, data: String| {
            let p = bundle.join(name);
            std::fs::write(&p, data)
                .map_err(|err| ApiError::internal(&format!("writing {}", p.display()), err))
        };
        w("hostname", format!("{}\n", e.host.hostname))?;
        w(
            "hosts",
            std::fs::read_to_string("/etc/hosts").unwrap_or_default(),
        )?;
        // The host's resolv.conf as it is: its loopback resolvers are reachable here.
        w(
            "resolv.conf",
            std::fs::read_to_string(kos_network::etc::HOST_RESOLV_CONF).unwrap_or_default(),
        )?;
        return Ok(());
    }
    let hostname = c.config.hostname.clone().unwrap_or_default();
    let mut dns = c
        .host_config
        .dns
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|d| {
            d.parse::<std::net::IpAddr>()
                .map_err(|_| ApiError::bad(format!("invalid DNS server {d:?}: not an IP address")))
        })
        .collect::<Result<Vec<_>>>()?;
    if dns.is_empty() {
        dns = e.config.dns.clone();
    }
    if dns.is_empty() {
        // kos-dns on the gateway stands in for Docker's 127.0.0.11: it answers container
        // names and aliases of the network and forwards the rest to the host's resolvers.
        dns = dns_gateways.to_vec();
    }
    let extra_hosts = c
        .host_config
        .extra_hosts
        .clone()
        .unwrap_or_default()
        .iter()
        .map(|h| {
            let bad = || ApiError::bad(format!("invalid extra host {h:?}: expected name:ip"));
            let (name, ip) = h.split_once(':').ok_or_else(bad)?;
            Ok(kos_network::etc::ExtraHost {
                names: vec![name.to_string()],
                address: ip.parse().map_err(|_| bad())?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let search = c.host_config.dns_search.clone().unwrap_or_default();
    let options = c.host_config.dns_options.clone().unwrap_or_default();
    let spec = kos_network::EtcSpec {
        hostname: &hostname,
        dns_servers: &dns,
        search: &search,
        options: &options,
        extra_hosts: &extra_hosts,
        // The default bridge has no kos-dns, as dockerd's has no embedded DNS.
        host_resolvers: true,
    };
    e.nets
        .write_etc_files(&c.id, &super::bundle_dir(e, &c.id), &spec)?;
    Ok(())
}

fn write_atomic(p: &Path, data: &[u8]) -> Result<()> {
    let tmp = p.with_extension("tmp");
    std::fs::write(&tmp, data)
        .and_then(|_| std::fs::rename(&tmp, p))
        .map_err(|err| ApiError::internal(&format!("writing {}", p.display()), err))
}

fn unmount_rootfs(c: &Container) {
    let r = c.dir.join("rootfs");
    if kos_image::snapshot::overlay::is_mounted(&r) {
        if let Err(err) = kos_image::snapshot::overlay::unmount(&r) {
            tracing::warn!(id = %c.id, error = %err, "unmounting rootfs");
        }
    }
}

/// The address of the shim serving container `c`: the `address` file the shim writes into
/// its bundle at its start (see [`bundle_file`]), else the `shim.address` still older kosd
/// versions wrote.
pub(crate) fn shim_address(e: &Engine, c: &Container) -> Option<String> {
    [bundle_file(e, c, "address"), c.dir.join("shim.address")]
        .iter()
        .find_map(|f| std::fs::read_to_string(f).ok())
        .map(|a| a.trim().to_string())
        .filter(|a| !a.is_empty())
}

/// A file of the container's bundle (config.json...): on the exec root, or in the
/// container's directory for a container an earlier kosd started (kept running across an
/// upgrade).
pub(crate) fn bundle_file(e: &Engine, c: &Container, name: &str) -> std::path::PathBuf {
    let p = super::bundle_dir(e, &c.id).join(name);
    if p.exists() {
        return p;
    }
    let old = c.dir.join(name);
    if old.exists() {
        old
    } else {
        p
    }
}

/// kosd's own executable, read once (each start asked for it three times, a readlink of
/// /proc/self/exe each).
fn own_exe() -> Option<&'static Path> {
    static EXE: std::sync::OnceLock<Option<std::path::PathBuf>> = std::sync::OnceLock::new();
    EXE.get_or_init(|| std::env::current_exe().ok()).as_deref()
}

/// The shim binary: beside kosd's own executable, else from PATH.
pub(crate) fn shim_binary() -> std::path::PathBuf {
    LaunchOptions::find_shim(own_exe().and_then(Path::parent))
}

/// How kosd launches shims: as containerd does, in its own `kos` namespace, with the
/// socket directory under the exec root.
fn launch_options(e: &Engine) -> LaunchOptions {
    let socket_dir = e.config.exec_root.join("s");
    LaunchOptions {
        shim_binary: shim_binary(),
        namespace: "kos".into(),
        ttrpc_address: socket_dir.join("events.sock"),
        address: socket_dir,
        publish_binary: own_exe()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| std::path::PathBuf::from("kosd")),
        debug: false,
    }
}

/// The runtime the shim runs: a bare name is looked up beside kosd first, then in PATH.
pub(crate) fn runtime_binary(name: &str) -> String {
    if name.contains('/') {
        return name.to_string();
    }
    own_exe()
        .and_then(|p| p.parent().map(|d| d.join(name)))
        .filter(|p| p.is_file())
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_string())
}

/// The netns spec for the bundle (see `SpecInput::netns`).
fn netns_for(e: &Engine, c: &Container, net: &NetMode) -> Result<Option<Option<String>>> {
    Ok(match net {
        NetMode::Host => None,
        NetMode::None => Some(None),
        NetMode::Container(other) => {
            let o = find(e, other)?;
            if o.state.status != Status::Running || o.state.pid <= 0 {
                return Err(ApiError::Conflict(format!(
                    "cannot join network of a non running container: {}",
                    o.id
                )));
            }
            Some(Some(format!("/proc/{}/ns/net", o.state.pid)))
        }
        NetMode::Network(_) if c.networks.is_empty() => Some(None),
        NetMode::Network(_) => Some(Some(
            e.config
                .exec_root
                .join("netns")
                .join(&c.id)
                .to_string_lossy()
                .into_owned(),
        )),
    })
}

/// The container's root filesystem, ready for a start: its overlay mounted already (by
/// [`prepare_ahead`]) or prepared now.
async fn prepare_rootfs(
    e: &Engine,
    c: &Container,
    strategy: RootfsStrategy,
) -> Result<kos_image::RootfsKind> {
    if kos_image::snapshot::overlay::is_mounted(&c.dir.join("rootfs")) {
        return Ok(kos_image::RootfsKind::Overlay);
    }
    let store = e.store.clone();
    let sname = super::image_use::store_name(&e.store, c);
    let (cid, cdir) = (c.id.clone(), c.dir.clone());
    // An auto-remove container's rootfs goes with it: a volatile overlay spares the sync
    // of the whole upper filesystem that unmounting a normal overlay costs at every exit.
    let options = RootfsOptions {
        volatile: c.host_config.auto_remove.unwrap_or(false),
    };
    let mount_points = shared_layer_entries();
    tokio::task::spawn_blocking(move || {
        let r = store.prepare_rootfs_with_mount_points(
            &sname,
            &cid,
            &cdir,
            strategy,
            options,
            &mount_points,
        )?;
        // Without the layer (a copied rootfs, or a layer that could not be built) the
        // marker goes into the container's own filesystem.
        ensure_dockerenv(&r.path);
        Ok::<_, kos_image::Error>(r)
    })
    .await
    .map_err(ApiError::from)
    .and_then(|r| r.map_err(ApiError::from))
    .map(|r| r.kind)
}

const DOCKERENV: &str = "/.dockerenv";

/// What the image store premakes, where the image lacks it, in a layer shared by the
/// image's containers: the targets of the mounts every container gets, so a start creates
/// no inode in the container's own upper directory, and Docker's marker file /.dockerenv
/// (empty; in Docker's init layer, so never in a container's diff), which programs test to
/// tell that they run in a container.
pub fn shared_layer_entries() -> Vec<kos_image::MountPoint> {
    let mut v = kos_image::MountPoint::container_defaults();
    v.extend(kos_image::MountPoint::file(DOCKERENV).ok());
    v
}

/// Creates an empty /.dockerenv in `rootfs` unless the image has that name in any form.
/// O_CREAT|O_EXCL: a symlink an image put there is never followed.
fn ensure_dockerenv(rootfs: &std::path::Path) {
    use std::os::unix::fs::OpenOptionsExt;
    let p = rootfs.join(DOCKERENV.trim_start_matches('/'));
    if std::fs::symlink_metadata(&p).is_ok() {
        return;
    }
    if let Err(err) = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o755)
        .open(&p)
    {
        tracing::debug!(path = %p.display(), error = %err, "creating the container marker");
    }
}

/// Prepares a just-created container's root filesystem in the background, as dockerd
/// makes a container's layer at create: `docker run` asks for the start only after its
/// attach and wait requests, time in which the directories and the overlay mount (new
/// inodes on the data root's filesystem, 1-4 ms on this VM) are made. Under the
/// container's lock, so a start waits for it; a failure leaves nothing behind (the start
/// prepares again and reports it). A container removed without a start has its rootfs
/// unmounted by the trash, as any other.
pub fn prepare_ahead(e: &Arc<Engine>, id: &str) {
    let (e, id) = (e.clone(), id.to_string());
    tokio::spawn(async move {
        let lock = e.rt.lock(&id);
        let _g = lock.lock().await;
        match load(&e, &id) {
            Ok(c) if c.state.status == Status::Created => {
                // Only an overlay: a copy (the fallback) is left to the start.
                if let Err(err) = prepare_rootfs(&e, &c, RootfsStrategy::Overlay).await {
                    tracing::debug!(%id, error = %err, "preparing the rootfs ahead of the start");
                }
            }
            _ => {}
        }
    });
}

/// Whether the policy can restart a container after an exit (any but "no" and none).
fn restarts_by_policy(p: Option<&RestartPolicy>) -> bool {
    matches!(
        p.and_then(|p| p.name),
        Some(
            RestartPolicyNameEnum::ALWAYS
                | RestartPolicyNameEnum::UNLESS_STOPPED
                | RestartPolicyNameEnum::ON_FAILURE
        )
    )
}

/// Starts a created or stopped container. Callers hold the container lock.
async fn start_locked(e: &Arc<Engine>, id: &str) -> Result<()> {
    let mut c = load(e, id)?;
    match c.state.status {
        Status::Running | Status::Restarting => return Err(ApiError::NotModified),
        Status::Paused => {
            return Err(ApiError::Conflict(
                "cannot start a paused container, try unpause instead".to_string(),
            ))
        }
        Status::Removing | Status::Dead => {
            return Err(ApiError::Conflict(format!(
                "container {} is marked for removal and cannot be started",
                c.id
            )))
        }
        Status::Created | Status::Exited => {}
    }
    let net = NetMode::parse(&c.host_config);
    let netns = netns_for(e, &c, &net)?;
    let bundle = super::bundle_dir(e, &c.id);
    std::fs::create_dir_all(&bundle)
        .map_err(|err| ApiError::internal(&format!("creating {}", bundle.display()), err))?;
    // The shim starts while the rootfs, network and spec are made: it needs none of them
    // (its `start` action only forks the daemon that will serve this container). Its
    // process is started here, not in the task: this handler runs on without yielding
    // until the spec is written, and a task it spawned would wait for it on this worker.
    let mut shim = Some(tokio::spawn(launch_shim(
        launch_options(e),
        &c.id,
        &bundle,
    )?));
    let rootfs = prepare_rootfs(e, &c, RootfsStrategy::Auto).await;
    let rootfs = match rootfs {
        Ok(r) => r,
        Err(err) => {
            discard_shim(shim.take(), &c.id).await;
            return Err(err);
        }
    };
    c.rootfs_kind = match rootfs {
        kos_image::RootfsKind::Overlay => "overlay".into(),
        kos_image::RootfsKind::Copy => "copy".into(),
    };
    let res = start_prepared(e, &mut c, &net, netns, &mut shim).await;
    if let Err(err) = res {
        // Failed before the shim was used: it has nothing to serve.
        discard_shim(shim.take(), &c.id).await;
        release_network(e, &c.id).await;
        if let Some(name) = leave_builtin_network(&mut c) {
            network_event(e, "disconnect", &name, &c.id);
        }
        unmount_rootfs(&c);
        c.state.status = if c.state.finished_at > 0 || c.state.started_at > 0 {
            Status::Exited
        } else {
            Status::Created
        };
        c.state.error = err.to_string();
        c.state.exit_code = 128;
        let _ = save(e, &c);
        return Err(err);
    }
    Ok(())
}

/// A shim being launched for a start.
type Launching = tokio::task::JoinHandle<Result<kos_shim_client::Launched>>;

/// Starts the shim of container `id` (bundle `dir`) now; the future is its launch's end.
fn launch_shim(
    launch: LaunchOptions,
    id: &str,
    dir: &Path,
) -> Result<impl std::future::Future<Output = Result<kos_shim_client::Launched>> + Send + 'static> {
    std::fs::create_dir_all(&launch.address).map_err(|err| {
        ApiError::internal(&format!("creating {}", launch.address.display()), err)
    })?;
    let pending = launch.begin_launch(id, dir)?;
    Ok(async move { Ok(pending.await?) })
}

/// Shuts down a shim launched for a start that failed before using it.
async fn discard_shim(shim: Option<Launching>, id: &str) {
    if let Some(Ok(Ok(l))) = match shim {
        Some(h) => Some(h.await),
        None => None,
    } {
        let _ = l.client.shutdown(id).await;
    }
}

async fn start_prepared(
    e: &Arc<Engine>,
    c: &mut Container,
    net: &NetMode,
    netns: Option<Option<String>>,
    shim: &mut Option<Launching>,
) -> Result<()> {
    let img = e.store.image(&super::image_use::store_name(&e.store, c))?;
    let ov = Overrides {
        entrypoint: Some(vec![c.path.clone()]),
        cmd: Some(c.args.clone()),
        env: c.config.env.clone().unwrap_or_default(),
        user: c.config.user.clone().filter(|u| !u.is_empty()),
        working_dir: c.config.working_dir.clone().filter(|w| !w.is_empty()),
    };
    let rootfs = c.dir.join("rootfs");
    let bundle = super::bundle_dir(e, &c.id);
    let rc = config_to_spec::runtime_config(&img.config, &rootfs, &ov)?;
    let mut dns_gateways = Vec::new();
    if let NetMode::Network(mode_net) = net {
        let mut exposed: Vec<String> = rc
            .exposed_ports
            .iter()
            .map(|p| format!("{}/{}", p.port, p.protocol))
            .collect();
        exposed.extend(
            c.config
                .exposed_ports
                .clone()
                .unwrap_or_default()
                .into_keys(),
        );
        exposed.sort();
        exposed.dedup();
        // The network of the mode first (it gets eth0 and the published ports).
        let primary = crate::network::canonical(mode_net).to_string();
        let mut names: Vec<String> = c.networks.keys().cloned().collect();
        names.sort_by_key(|n| *n != primary);
        let mut atts = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let aliases: Vec<String> = c.networks[name.as_str()]["Aliases"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            let mut req = AttachRequest::new(&c.id, name);
            req.name = Some(c.name.clone());
            req.aliases = aliases.clone();
            req.ifname = Some(format!("eth{i}"));
            if i == 0 {
                req.ports = crate::network::port_mappings(&c.host_config, &exposed)?;
            }
            let nets = e.nets.clone();
            let att = tokio::task::spawn_blocking(move || nets.attach(&req)).await??;
            if i == 0 {
                // As dockerd gives only user networks its embedded DNS, kos-dns (on the
                // gateway) serves names on user networks and the default network keeps the
                // host's resolvers.
                if primary != crate::network::DEFAULT {
                    dns_gateways = att.gateways.clone();
                }
            }
            c.networks
                .insert(name.clone(), crate::network::endpoint(&att, &aliases));
            network_event(e, "connect", name, &c.id);
            atts.push(att);
        }
        c.ports = crate::network::ports_json(&atts, &exposed);
    } else if let Some(name) = net.builtin_network() {
        // As dockerd, which joins such a container to its `none` or `host` network: an
        // endpoint there while it runs, with the connect event (and the disconnect at exit).
        let mut ep = crate::network::skeleton(serde_json::Value::Null);
        ep["NetworkID"] = serde_json::json!(name);
        ep["EndpointID"] = serde_json::json!(crate::engine::random_id()?);
        c.networks.insert(name.to_string(), ep);
        network_event(e, "connect", name, &c.id);
    }
    write_etc_files(e, c, net, &dns_gateways)?;
    let mut mounts = super::mounts::collect(e, c)?;
    let mut process = rc.process_json();
    if c.host_config.init.unwrap_or(false) {
        mounts.push(crate::init_binary::wrap(&e.config.exec_root, &mut process)?);
    }
    let stop_signal = c
        .config
        .stop_signal
        .as_deref()
        .map(config_to_spec::parse_signal)
        .transpose()
        .map_err(|_| ApiError::bad("invalid stop signal"))?
        .unwrap_or(rc.stop_signal);
    let labels = c
        .config
        .labels
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let tty = c.config.tty.unwrap_or(false);
    let spec_json = spec::build(
        &c.host_config,
        &SpecInput {
            id: &c.id,
            process,
            tty,
            hostname: c.config.hostname.as_deref().unwrap_or(""),
            domainname: c.config.domainname.as_deref().unwrap_or(""),
            dir: &bundle,
            rootfs: &rootfs,
            mounts,
            netns,
            default_ulimits: &e.config.default_ulimits,
            stop_signal,
            cgroups_path: &super::cgroups_path(e, c),
            selinux_labels: (&c.process_label, &c.mount_label),
            cgroup_v2: e.host.cgroup_version == "2",
            labels,
            devices: Some(&e.devices),
        },
    )?;
    // Compact, as containerd writes it: half the bytes of the pretty form for the runtime to
    // read, parse and keep in its state.
    let data = serde_json::to_vec(&spec_json)
        .map_err(|err| ApiError::internal("encoding config.json", err))?;
    write_atomic(&bundle.join("config.json"), &data)?;

    let stdin = if c.config.open_stdin.unwrap_or(false) {
        let p = bundle.join("init-stdin");
        super::fifo::make(&p)?;
        p.to_string_lossy().into_owned()
    } else {
        String::new()
    };
    let uri = log_uri(c)?;
    let io = Stdio {
        stdin,
        stdout: uri.clone(),
        stderr: if tty { String::new() } else { uri },
        terminal: tty,
    };
    let opts = RuntimeOptions {
        binary_name: runtime_binary(&e.config.default_runtime),
        root: e
            .config
            .exec_root
            .join("runtime")
            .to_string_lossy()
            .into_owned(),
        systemd_cgroup: false,
    }
    // kosd starts every task right after creating it: the shim runs the program at
    // create (one runtime exec instead of two), the task API unchanged.
    .to_kos_any(true)?;
    let launched = match shim.take() {
        Some(h) => h
            .await
            .map_err(|err| ApiError::internal("launching the shim", err))??,
        None => launch_shim(launch_options(e), &c.id, &bundle)?.await?,
    };
    // The shim wrote its address into the bundle (`address`): reconcile finds it there.
    let sh = launched.client;
    let created = sh
        .create(&c.id, &bundle.to_string_lossy(), &io, Some(opts))
        .await;
    let pid = match created {
        Ok(p) => p,
        Err(err) => {
            let _ = sh.delete(&c.id, "").await;
            let _ = sh.shutdown(&c.id).await;
            return Err(err.into());
        }
    };
    if let Err(err) = sh.start(&c.id, "").await {
        let _ = sh.kill(&c.id, "", libc::SIGKILL as u32, true).await;
        let _ = sh.wait(&c.id, "").await;
        let _ = sh.delete(&c.id, "").await;
        let _ = sh.shutdown(&c.id).await;
        return Err(err.into());
    }
    c.state = State {
        status: Status::Running,
        pid: pid as i64,
        started_at: timefmt::now_nanos(),
        restart_count: c.state.restart_count,
        health: c
            .config
            .healthcheck
            .as_ref()
            .map(|_| super::record::Health {
                status: "starting".into(),
                ..Default::default()
            }),
        ..State::default()
    };
    save(e, c)?;
    e.rt.set_shim(&c.id, Some(sh.clone()));
    e.event(
        "container",
        "start",
        &c.id,
        &[("name", &c.name), ("image", &c.image)],
    );
    spawn_monitor(e.clone(), c.id.clone(), sh);
    super::health::spawn(e.clone(), c.id.clone());
    Ok(())
}

/// `POST /containers/{id}/start`.
pub async fn start(e: &Arc<Engine>, key: &str) -> Result<()> {
    let c = find(e, key)?;
    let lock = e.rt.lock(&c.id);
    let g = lock.lock().await;
    let r = start_locked(e, &c.id).await;
    drop(g);
    if let Err(err) = &r {
        // As dockerd: an auto-remove container that cannot start is removed.
        if c.host_config.auto_remove.unwrap_or(false) && !matches!(err, ApiError::NotModified) {
            if let Err(e2) = remove(e, &c.id, true, true).await {
                tracing::warn!(id = %c.id, error = %e2, "auto-remove after a failed start");
            }
        }
    }
    r
}

fn spawn_monitor(e: Arc<Engine>, id: String, sh: Shim) {
    let counted = Monitoring::new(&e.rt);
    tokio::spawn(async move {
        let _counted = counted;
        let (code, at) = match sh.wait(&id, "").await {
            // A shim that gives no exit time: now is as close as kosd can tell.
            Ok((code, 0)) => (code, timefmt::now_nanos()),
            Ok(r) => r,
            Err(err) => {
                tracing::warn!(%id, error = %err, "waiting on the shim failed; treating the task as gone");
                (255, timefmt::now_nanos())
            }
        };
        on_exit(&e, &id, &sh, code as i64, at).await;
    });
}

async fn on_exit(e: &Arc<Engine>, id: &str, sh: &Shim, code: i64, at: i64) {
    let lock = e.rt.lock(id);
    let g = lock.lock().await;
    let Ok(mut c) = load(e, id) else {
        let _ = sh.delete(id, "").await;
        e.rt.set_shim(id, None);
        let _ = sh.shutdown(id).await;
        return;
    };
    // The kernel's OOM count lives in the cgroup, which the runtime's delete removes.
    let oom = super::oom_killed(&super::cgroups_path(e, &c));
    let policy = c.host_config.restart_policy.clone().unwrap_or_default();
    let removing = e.rt.is_removing(id);
    let restart = !c.state.stopped_by_user
        && !removing
        && !e.stopping.load(std::sync::atomic::Ordering::SeqCst)
        && match policy.name {
            Some(RestartPolicyNameEnum::ALWAYS) | Some(RestartPolicyNameEnum::UNLESS_STOPPED) => {
                true
            }
            Some(RestartPolicyNameEnum::ON_FAILURE) => {
                code != 0
                    && (policy.maximum_retry_count.unwrap_or(0) == 0
                        || c.state.restart_count < policy.maximum_retry_count.unwrap_or(0))
            }
            _ => false,
        };
    let auto_remove = !restart && c.host_config.auto_remove.unwrap_or(false);
    // The runtime's delete (in the shim) and kosd's own bookkeeping need nothing of each
    // other once the task has exited: they run side by side, and only the record's removal
    // (what a waiter on `removed` is answered by) waits for both.
    let bookkeeping = async {
        let mut left = release_network_quietly(e, id).await;
        left.extend(leave_builtin_network(&mut c));
        c.ports = serde_json::Value::Null;
        for ep in c.networks.values_mut() {
            for k in [
                "IPAddress",
                "Gateway",
                "MacAddress",
                "EndpointID",
                "GlobalIPv6Address",
                "IPv6Gateway",
            ] {
                ep[k] = serde_json::json!("");
            }
            ep["IPPrefixLen"] = serde_json::json!(0);
        }
        // A container removed after its exit (auto-remove, or the forced removal that
        // killed it) goes straight to "removing", in the one save of its exit.
        c.state.status = if auto_remove || removing {
            Status::Removing
        } else {
            Status::Exited
        };
        c.state.pid = 0;
        c.state.exit_code = code;
        c.state.finished_at = at;
        c.state.oom_killed = oom;
        c.state.health = None;
        let _ = save(e, &c);
        let code_s = code.to_string();
        if oom {
            e.event(
                "container",
                "oom",
                &c.id,
                &[("name", &c.name), ("image", &c.image)],
            );
        }
        e.event(
            "container",
            "die",
            &c.id,
            &[
                ("name", &c.name),
                ("image", &c.image),
                ("exitCode", &code_s),
            ],
        );
        for net in left {
            network_event(e, "disconnect", &net, id);
        }
        if auto_remove {
            // The networks were left above.
            Some(prepare_removal(e, &c, true, false).await)
        } else {
            None
        }
    };
    let (_, removal) = tokio::join!(sh.delete(id, ""), bookkeeping);
    e.rt.set_shim(id, None);
    // After the runtime's delete, which kills what the init left (in a shared pid
    // namespace). A removal that follows (auto-remove, or the forced removal that killed
    // it) hands the mounted rootfs over with the directory: its unmount happens after the
    // answer.
    if !(auto_remove || e.rt.is_removing(id)) {
        unmount_rootfs(&c);
    }
    let ran = at - c.state.started_at;
    let removal = match removal {
        Some(Ok(doomed)) => Some(finish_removal(e, &c, doomed)),
        Some(Err(err)) => Some(Err(err)),
        None => None,
    };
    if !auto_remove {
        // Under the container's lock: a start that follows must not meet the old shim.
        let _ = sh.shutdown(id).await;
    }
    drop(g);
    if let Some(Ok(())) = removal {
        announce_removal(e, &c);
    }
    if restart {
        // Docker's backoff: 100ms doubling, reset after 10s of running, at most a minute.
        let delay = if ran > 10_000_000_000 {
            100
        } else {
            (100u64 << c.state.restart_count.clamp(0, 10)).min(60_000)
        };
        c.state.status = Status::Restarting;
        c.state.restart_count += 1;
        let _ = save(e, &c);
        let e2 = e.clone();
        let id2 = id.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let lock = e2.rt.lock(&id2);
            let _g = lock.lock().await;
            match load(&e2, &id2) {
                // The daemon is stopping: the next one restarts it, by its policy.
                Ok(mut c)
                    if c.state.status == Status::Restarting
                        && e2.stopping.load(std::sync::atomic::Ordering::SeqCst) =>
                {
                    c.state.status = Status::Exited;
                    let _ = save(&e2, &c);
                }
                Ok(c) if c.state.status == Status::Restarting && !c.state.stopped_by_user => {
                    let mut c2 = c.clone();
                    c2.state.status = Status::Exited;
                    let _ = save(&e2, &c2);
                    if let Err(err) = start_locked(&e2, &id2).await {
                        tracing::warn!(id = %id2, error = %err, "restart failed");
                    }
                }
                _ => {}
            }
        });
    } else if let Some(removal) = removal {
        if let Err(err) = removal {
            tracing::warn!(%id, error = %err, "auto-remove failed");
        }
        // After the removal (a waiter on `removed` has its answer already): the container is
        // gone, so no new start can be racing its old shim.
        let _ = sh.shutdown(id).await;
    }
}

/// Detaches the container from every network and unpins its namespace; a `disconnect`
/// event for each network it left, as dockerd.
pub async fn release_network(e: &Engine, id: &str) {
    for net in release_network_quietly(e, id).await {
        network_event(e, "disconnect", &net, id);
    }
}

/// [`release_network`] without the events: the networks left, for the caller to report.
/// The container's processes are gone: its veths are set down now and deleted after the
/// answer (a link deletion waits for an RCU barrier, about 20 ms).
async fn release_network_quietly(e: &Engine, id: &str) -> Vec<String> {
    let nets = e.nets.clone();
    let id2 = id.to_string();
    match tokio::task::spawn_blocking(move || nets.release_container_deferred(&id2)).await {
        Ok(Ok(left)) => left,
        Ok(Err(err)) => {
            tracing::warn!(%id, error = %err, "releasing the container's networks");
            Vec::new()
        }
        Err(err) => {
            tracing::warn!(%id, error = %err, "releasing the container's networks");
            Vec::new()
        }
    }
}

/// Ends the container's endpoint on its built-in network, if it has one; the network's
/// name, for the disconnect event.
fn leave_builtin_network(c: &mut Container) -> Option<String> {
    let name = NetMode::parse(&c.host_config).builtin_network()?;
    let ep = c.networks.get_mut(name)?;
    if ep["EndpointID"].as_str().is_none_or(str::is_empty) {
        return None;
    }
    ep["EndpointID"] = serde_json::json!("");
    Some(name.to_string())
}

/// dockerd's `network connect|disconnect` event; `type` is the network's driver.
pub fn network_event(e: &Engine, action: &str, net: &str, container: &str) {
    e.event(
        "network",
        action,
        &crate::network_ids::id_of(e, net),
        &[
            ("container", container),
            ("name", net),
            ("type", crate::network::driver_of(net)),
        ],
    );
}

/// Sends a signal; `not running` is Docker's 409.
pub async fn kill(e: &Arc<Engine>, key: &str, signal: Option<&str>) -> Result<()> {
    let c = find(e, key)?;
    let sig = match signal.filter(|s| !s.is_empty()) {
        None => libc::SIGKILL,
        Some(s) => config_to_spec::parse_signal(s)
            .map_err(|_| ApiError::bad(format!("Invalid signal: {s}")))?,
    };
    let sh = match e.rt.shim(&c.id) {
        Some(sh) if c.state.status.is_live() => sh,
        _ => {
            return Err(ApiError::Conflict(format!(
                "Cannot kill container: {key}: Container {} is not running",
                c.id
            )))
        }
    };
    if sig == libc::SIGKILL || sig == libc::SIGTERM || sig == libc::SIGINT {
        let mut c2 = c.clone();
        c2.state.stopped_by_user = true;
        save(e, &c2)?;
    }
    sh.kill(&c.id, "", sig as u32, false).await?;
    kill_event(e, &c, sig);
    Ok(())
}

/// The `kill` event dockerd sends for every signal it delivers (kill, stop, rm -f).
fn kill_event(e: &Engine, c: &Container, sig: i32) {
    let s = sig.to_string();
    e.event(
        "container",
        "kill",
        &c.id,
        &[("name", &c.name), ("image", &c.image), ("signal", &s)],
    );
}

/// Waits until the container is no longer live, up to `timeout`.
pub async fn wait_not_live(e: &Engine, id: &str, timeout: Option<Duration>) -> bool {
    let mut rx = e.rt.changed.subscribe();
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    loop {
        match load(e, id) {
            Ok(c) if c.state.status.is_live() => {}
            _ => return true,
        }
        let wait = async {
            loop {
                match rx.recv().await {
                    Ok(x) if x.id == id => return,
                    Ok(_) => continue,
                    Err(broadcast::error::RecvError::Lagged(_)) => return,
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        return;
                    }
                }
            }
        };
        match deadline {
            Some(d) => {
                if tokio::time::timeout_at(d, wait).await.is_err() {
                    return false;
                }
            }
            None => wait.await,
        }
    }
}

/// `POST /containers/{id}/stop`: stop signal, then SIGKILL after the timeout.
pub async fn stop(
    e: &Arc<Engine>,
    key: &str,
    timeout: Option<i64>,
    signal: Option<&str>,
) -> Result<()> {
    let c = find(e, key)?;
    let Some(sh) = e.rt.shim(&c.id).filter(|_| c.state.status.is_live()) else {
        if c.state.status == Status::Restarting {
            let mut c2 = c.clone();
            c2.state.stopped_by_user = true;
            c2.state.status = Status::Exited;
            save(e, &c2)?;
            return Ok(());
        }
        return Err(ApiError::NotModified);
    };
    let mut c2 = c.clone();
    c2.state.stopped_by_user = true;
    save(e, &c2)?;
    let sig = match signal
        .filter(|s| !s.is_empty())
        .or(c.config.stop_signal.as_deref())
    {
        Some(s) => config_to_spec::parse_signal(s)
            .map_err(|_| ApiError::bad(format!("Invalid signal: {s}")))?,
        None => libc::SIGTERM,
    };
    let t = timeout.or(c.config.stop_timeout).unwrap_or(10);
    if c.state.status == Status::Paused {
        let _ = sh.resume(&c.id).await;
    }
    if sh.kill(&c.id, "", sig as u32, false).await.is_ok() {
        kill_event(e, &c, sig);
    }
    let done = if t < 0 {
        wait_not_live(e, &c.id, None).await
    } else {
        wait_not_live(e, &c.id, Some(Duration::from_secs(t as u64))).await
    };
    if !done {
        if sh.kill(&c.id, "", libc::SIGKILL as u32, true).await.is_ok() {
            kill_event(e, &c, libc::SIGKILL);
        }
        wait_not_live(e, &c.id, Some(Duration::from_secs(30))).await;
    }
    e.event(
        "container",
        "stop",
        &c.id,
        &[("name", &c.name), ("image", &c.image)],
    );
    Ok(())
}

pub async fn restart(
    e: &Arc<Engine>,
    key: &str,
    timeout: Option<i64>,
    signal: Option<&str>,
) -> Result<()> {
    let c = find(e, key)?;
    match stop(e, &c.id, timeout, signal).await {
        Ok(()) | Err(ApiError::NotModified) => {}
        Err(err) => return Err(err),
    }
    let mut c2 = load(e, &c.id)?;
    c2.state.stopped_by_user = false;
    save(e, &c2)?;
    start(e, &c.id).await?;
    e.event(
        "container",
        "restart",
        &c.id,
        &[("name", &c.name), ("image", &c.image)],
    );
    Ok(())
}

pub async fn pause(e: &Arc<Engine>, key: &str, on: bool) -> Result<()> {
    let c = find(e, key)?;
    let lock = e.rt.lock(&c.id);
    let _g = lock.lock().await;
    let mut c = load(e, &c.id)?;
    let sh = e.rt.shim(&c.id);
    match (on, c.state.status, sh) {
        (true, Status::Running, Some(sh)) => {
            sh.pause(&c.id).await?;
            c.state.status = Status::Paused;
        }
        (false, Status::Paused, Some(sh)) => {
            sh.resume(&c.id).await?;
            c.state.status = Status::Running;
        }
        (true, Status::Paused, _) => {
            return Err(ApiError::Conflict(format!(
                "Container {} is already paused",
                c.id
            )))
        }
        (false, _, _) => {
            return Err(ApiError::Conflict(format!(
                "Container {} is not paused",
                c.id
            )))
        }
        _ => {
            return Err(ApiError::Conflict(format!(
                "Container {} is not running",
                c.id
            )))
        }
    }
    save(e, &c)?;
    e.event(
        "container",
        if on { "pause" } else { "unpause" },
        &c.id,
        &[("name", &c.name), ("image", &c.image)],
    );
    Ok(())
}

/// Where removed containers' directories wait for deletion (same filesystem as theirs).
fn trash_dir(e: &Engine) -> std::path::PathBuf {
    e.config.data_root.join("trash")
}

fn remove_tree(p: &Path) -> Result<()> {
    match std::fs::remove_dir_all(p) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(ApiError::internal(
            &format!("removing {}", p.display()),
            err,
        )),
        _ => Ok(()),
    }
}

/// Deletes what removals left in the trash when kosd stopped before finishing. The
/// entries are listed now, so removals made meanwhile are not raced.
fn empty_trash(e: &Engine) {
    let Ok(entries) = std::fs::read_dir(trash_dir(e)) else {
        return;
    };
    for p in entries.filter_map(|d| d.ok().map(|d| d.path())) {
        e.trash.delete_later(p);
    }
}

/// `DELETE /containers/{id}`.
pub async fn remove(e: &Arc<Engine>, key: &str, force: bool, volumes: bool) -> Result<()> {
    let c = find(e, key)?;
    if c.state.status.is_live() {
        if !force {
            return Err(ApiError::Conflict(format!(
                "You cannot remove a running container {}. Stop the container before attempting removal or force remove",
                c.id
            )));
        }
        if let Some(sh) = e.rt.shim(&c.id) {
            let _removing = e.rt.mark_removing(&c.id);
            // The exit monitor sees the mark and neither restarts the container nor saves it
            // as exited; the record says so too where a restart policy could otherwise act
            // on it (a kosd restarted meanwhile).
            if restarts_by_policy(c.host_config.restart_policy.as_ref()) {
                let mut c2 = c.clone();
                c2.state.stopped_by_user = true;
                save(e, &c2)?;
            }
            if c.state.status == Status::Paused {
                let _ = sh.resume(&c.id).await;
            }
            if sh.kill(&c.id, "", libc::SIGKILL as u32, true).await.is_ok() {
                kill_event(e, &c, libc::SIGKILL);
            }
            wait_not_live(e, &c.id, Some(Duration::from_secs(30))).await;
        } else {
            let mut c2 = c.clone();
            c2.state.status = Status::Exited;
            save(e, &c2)?;
        }
    }
    let lock = e.rt.lock(&c.id);
    let g = lock.lock().await;
    let Ok(c) = load(e, &c.id) else {
        // Someone else (auto-remove) finished first.
        return Ok(());
    };
    if c.state.status.is_live() {
        return Err(ApiError::Conflict(format!(
            "container {} is still running after SIGKILL",
            c.id
        )));
    }
    let doomed = prepare_removal(e, &c, volumes, true).await?;
    finish_removal(e, &c, doomed)?;
    drop(g);
    announce_removal(e, &c);
    Ok(())
}

/// The first part of removing a container that has stopped, under its lock: "removing"
/// recorded, networks left, its directory moved out of the containers' tree (the rootfs
/// still mounted if it is: the unmount, with its RCU grace periods and the sync of a
/// non-volatile upper filesystem, and the deletion of its files come after the answer), its
/// image lease and volumes released. Returns the directory to delete. `leave_networks`:
/// false when the caller has just left them (the exit's own bookkeeping).
async fn prepare_removal(
    e: &Arc<Engine>,
    c: &Container,
    volumes: bool,
    leave_networks: bool,
) -> Result<Option<std::path::PathBuf>> {
    if c.state.status != Status::Removing {
        let mut c2 = c.clone();
        c2.state.status = Status::Removing;
        save(e, &c2)?;
    }
    if leave_networks {
        release_network(e, &c.id).await;
    }
    let doomed = trash_dir(e).join(&c.id);
    if let Some(parent) = doomed.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let doomed = match std::fs::rename(&c.dir, &doomed) {
        Ok(()) => Some(doomed),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => {
            tracing::debug!(id = %c.id, error = %err, "moving the container's directory aside");
            // In place: unmounted first, never deleted through the mount.
            unmount_rootfs(c);
            let rootfs = c.dir.join("rootfs");
            if kos_image::snapshot::overlay::is_mounted(&rootfs) {
                return Err(ApiError::Internal(format!(
                    "the rootfs of container {} is still mounted at {}",
                    c.id,
                    rootfs.display()
                )));
            }
            remove_tree(&c.dir)?;
            None
        }
    };
    let store = e.store.clone();
    let id = c.id.clone();
    tokio::task::spawn_blocking(move || store.remove_lease(&id)).await??;
    crate::volumes::release(e, c, volumes);
    Ok(doomed)
}

/// The record goes (a waiter on `removed` is answered by that) and the directory to the
/// trash. Under the container's lock.
fn finish_removal(e: &Engine, c: &Container, doomed: Option<std::path::PathBuf>) -> Result<()> {
    e.db().delete(Table::Containers, &c.id)?;
    if let Some(doomed) = doomed {
        e.trash.delete_later(doomed);
    }
    // A few small files on the exec root: gone at once.
    let _ = std::fs::remove_dir_all(super::bundle_dir(e, &c.id));
    Ok(())
}

/// After the lock: the container is forgotten and its `destroy` event sent.
fn announce_removal(e: &Engine, c: &Container) {
    e.rt.forget(&c.id);
    let _ = e.rt.changed.send(Change {
        id: c.id.clone(),
        removed_with: Some(c.state.exit_code),
    });
    e.event(
        "container",
        "destroy",
        &c.id,
        &[("name", &c.name), ("image", &c.image)],
    );
}

pub async fn rename(e: &Arc<Engine>, key: &str, new: &str) -> Result<()> {
    let new = new.strip_prefix('/').unwrap_or(new);
    if !valid_name(new) {
        return Err(ApiError::bad(format!(
            "Invalid container name ({new}), only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )));
    }
    let c = find(e, key)?;
    let lock = e.rt.lock(&c.id);
    let _g = lock.lock().await;
    let mut c = load(e, &c.id)?;
    if c.name == new {
        return Err(ApiError::Conflict(
            "Renaming a container with the same name as its current name".to_string(),
        ));
    }
    if let Some(o) = name_holder(e, new)? {
        return Err(ApiError::Conflict(format!(
            "Conflict. The container name \"/{new}\" is already in use by container \"{o}\". You have to remove (or rename) that container to be able to reuse that name."
        )));
    }
    let old = std::mem::replace(&mut c.name, new.to_string());
    save(e, &c)?;
    e.event(
        "container",
        "rename",
        &c.id,
        &[("name", &c.name), ("oldName", &format!("/{old}"))],
    );
    Ok(())
}

/// What `wait` waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitCondition {
    NotRunning,
    NextExit,
    Removed,
}

/// Blocks until the condition holds; returns the exit code.
pub async fn wait(e: &Arc<Engine>, id: &str, cond: WaitCondition) -> Result<i64> {
    let mut rx = e.rt.changed.subscribe();
    let first = load(e, id)?;
    let start_finished = first.state.finished_at;
    let mut last_code = first.state.exit_code;
    loop {
        let record = e.db().get::<Container>(Table::Containers, id)?;
        match record {
            // Gone: the removal's own change carries the code it went with (subscribed
            // before the first load, so that change is still ahead in `rx`, sent as the
            // removal lets go of the lock; bounded in case a lag dropped it).
            None => {
                let removal = tokio::time::timeout(REMOVAL_NEWS, next_change(&mut rx, id));
                return Ok(match removal.await {
                    Ok(Ok(Some(ch))) => ch.removed_with.unwrap_or(last_code),
                    Ok(Err(err)) => return Err(err),
                    _ => last_code,
                });
            }
            Some(c) => {
                last_code = c.state.exit_code;
                let exited_since = c.state.finished_at != start_finished;
                let done = match cond {
                    WaitCondition::NotRunning => !c.state.status.is_live(),
                    WaitCondition::NextExit => exited_since && c.state.status != Status::Running,
                    WaitCondition::Removed => false,
                };
                if done {
                    return Ok(c.state.exit_code);
                }
            }
        }
        // A save (reloaded above), or changes missed: reload.
        if let Some(Change {
            removed_with: Some(code),
            ..
        }) = next_change(&mut rx, id).await?
        {
            return Ok(code);
        }
    }
}

/// How long a waiter that found the record gone waits for the removal's change.
const REMOVAL_NEWS: Duration = Duration::from_secs(5);

/// The next change of container `id`; `None` when changes were missed (the reader lagged).
async fn next_change(rx: &mut broadcast::Receiver<Change>, id: &str) -> Result<Option<Change>> {
    loop {
        match rx.recv().await {
            Ok(x) if x.id == id => return Ok(Some(x)),
            Ok(_) => {}
            Err(broadcast::error::RecvError::Lagged(_)) => return Ok(None),
            Err(_) => return Err(ApiError::Internal("daemon shutting down".into())),
        }
    }
}

/// Bundles on the exec root whose container has no record (a crash between the record's
/// removal and the bundle's).
fn remove_orphan_bundles(e: &Engine) {
    let dir = e.config.exec_root.join("bundles");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if matches!(e.db().get::<Container>(Table::Containers, &name), Ok(None)) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// At start: reconnect to shims of containers that kept running (live-restore),
/// and mark the rest as exited, cleaning what they left.
pub async fn reconcile(e: &Arc<Engine>) {
    empty_trash(e);
    remove_orphan_bundles(e);
    for mut c in super::all(e) {
        if !c.state.status.is_live() && c.state.status != Status::Removing {
            continue;
        }
        if c.state.status == Status::Removing {
            let _ = remove(e, &c.id, true, false).await;
            continue;
        }
        let addr = shim_address(e, &c).unwrap_or_default();
        let live = if addr.starts_with("unix://") {
            match Shim::connect(addr.trim()).await {
                Ok(sh) => match sh.state(&c.id, "").await {
                    Ok(st)
                        if matches!(
                            st.status,
                            ProcessState::Running | ProcessState::Paused | ProcessState::Pausing
                        ) =>
                    {
                        Some(sh)
                    }
                    Ok(_) => {
                        // The task ended while we were away: collect its status.
                        let code = sh.wait(&c.id, "").await.map(|r| r.0 as i64).unwrap_or(255);
                        on_exit(e, &c.id, &sh, code, timefmt::now_nanos()).await;
                        continue;
                    }
                    Err(_) => None,
                },
                Err(_) => None,
            }
        } else {
            None
        };
        match live {
            Some(sh) => {
                tracing::info!(id = %c.id, "reattached to running container");
                e.rt.set_shim(&c.id, Some(sh.clone()));
                spawn_monitor(e.clone(), c.id.clone(), sh);
                super::health::spawn(e.clone(), c.id.clone());
            }
            None => {
                tracing::info!(id = %c.id, "container's shim is gone; marking it exited");
                release_network(e, &c.id).await;
                unmount_rootfs(&c);
                c.state.status = Status::Exited;
                c.state.pid = 0;
                c.state.exit_code = 255;
                c.state.finished_at = timefmt::now_nanos();
                let _ = save(e, &c);
                // As dockerd: an auto-remove container that ended while kosd was away is
                // removed (its volatile rootfs could not be mounted again anyway).
                if c.host_config.auto_remove.unwrap_or(false) {
                    if let Err(err) = remove(e, &c.id, true, true).await {
                        tracing::warn!(id = %c.id, error = %err, "auto-remove at start failed");
                    }
                }
            }
        }
    }
    // Restart policies apply across daemon restarts, as dockerd does.
    for c in super::all(e) {
        if c.state.status != Status::Exited && c.state.status != Status::Restarting {
            continue;
        }
        let p = c.host_config.restart_policy.clone().unwrap_or_default();
        let want = match p.name {
            Some(RestartPolicyNameEnum::ALWAYS) => true,
            Some(RestartPolicyNameEnum::UNLESS_STOPPED) => !c.state.stopped_by_user,
            _ => false,
        } && !(c.state.stopped_by_user
            && p.name == Some(RestartPolicyNameEnum::UNLESS_STOPPED));
        if want || c.state.status == Status::Restarting {
            let mut c2 = c.clone();
            c2.state.status = Status::Exited;
            c2.state.stopped_by_user = false;
            let _ = save(e, &c2);
            if let Err(err) = start(e, &c.id).await {
                tracing::warn!(id = %c.id, error = %err, "restart policy: start failed");
            }
        }
    }
}

/// At shutdown: without live-restore, stop every container (as dockerd does).
pub async fn shutdown(e: &Arc<Engine>) {
    e.stopping.store(true, std::sync::atomic::Ordering::SeqCst);
    if e.config.live_restore {
        return;
    }
    // A restart that was under way when the stop began can bring one more container up:
    // another round stops what the earlier ones had not tried.
    let mut tried = std::collections::HashSet::new();
    for round in 0..3 {
        let live: Vec<Container> = super::all(e)
            .into_iter()
            .filter(|c| c.state.status.is_live() && tried.insert(c.id.clone()))
            .collect();
        let none_left = live.is_empty();
        if none_left && round > 0 {
            break;
        }
        let mut tasks = Vec::new();
        for c in live {
            let e = e.clone();
            tasks.push(tokio::spawn(async move { stop_for_shutdown(&e, &c).await }));
        }
        for t in tasks {
            let _ = t.await;
        }
        // Each exit is handled to its end (the runtime's delete, the shim's shutdown)
        // before the daemon leaves: a shim left serving would outlive it.
        let mut monitors = e.rt.monitors.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(15), monitors.wait_for(|n| *n == 0)).await;
        if none_left {
            break;
        }
    }
}

/// Stops a container as the daemon's shutdown does: its stop signal, SIGKILL after its
/// stop timeout. The restart policy stays for the next start: this is not a user stop.
async fn stop_for_shutdown(e: &Arc<Engine>, c: &Container) {
    let Some(sh) = e.rt.shim(&c.id) else {
        return;
    };
    let t = c.config.stop_timeout.unwrap_or(10);
    let sig = c
        .config
        .stop_signal
        .as_deref()
        .and_then(|s| config_to_spec::parse_signal(s).ok())
        .unwrap_or(libc::SIGTERM);
    let _ = sh.kill(&c.id, "", sig as u32, false).await;
    if !wait_not_live(e, &c.id, Some(Duration::from_secs(t.max(0) as u64))).await {
        let _ = sh.kill(&c.id, "", libc::SIGKILL as u32, true).await;
        wait_not_live(e, &c.id, Some(Duration::from_secs(10))).await;
    }
}

/// `POST /containers/{id}/update`: resources and restart policy, applied live
/// to a running container.
pub async fn update(e: &Arc<Engine>, key: &str, body: serde_json::Value) -> Result<Vec<String>> {
    let c = find(e, key)?;
    let lock = e.rt.lock(&c.id);
    let _g = lock.lock().await;
    let mut c = load(e, &c.id)?;
    let obj = body
        .as_object()
        .ok_or_else(|| ApiError::bad("update body must be a JSON object"))?;
    let mut hc = serde_json::to_value(&c.host_config)
        .map_err(|err| ApiError::internal("encoding host config", err))?;
    for (k, v) in obj {
        if v.is_null() {
            continue;
        }
        // Zero means "unchanged" for numbers in Docker's update API.
        if v.as_i64() == Some(0) && k != "RestartPolicy" {
            continue;
        }
        hc[k.as_str()] = v.clone();
    }
    let new: HostConfig = serde_json::from_value(hc)
        .map_err(|err| ApiError::bad(format!("invalid update: {err}")))?;
    if new.auto_remove == Some(true) && restarts_by_policy(new.restart_policy.as_ref()) {
        return Err(ApiError::bad(
            "Restart policy cannot be updated because AutoRemove is enabled for the container",
        ));
    }
    let (res, _) = spec::resources(&new)?;
    if c.state.status.is_live() {
        if let Some(sh) = e.rt.shim(&c.id) {
            sh.update(&c.id, &res).await?;
        }
    }
    c.host_config = new;
    save(e, &c)?;
    e.event(
        "container",
        "update",
        &c.id,
        &[("name", &c.name), ("image", &c.image)],
    );
    Ok(Vec::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_always_unless_stopped_and_on_failure_restart() {
        let policy = |name| RestartPolicy {
            name,
            maximum_retry_count: None,
        };
        for name in [
            RestartPolicyNameEnum::ALWAYS,
            RestartPolicyNameEnum::UNLESS_STOPPED,
            RestartPolicyNameEnum::ON_FAILURE,
        ] {
            assert!(restarts_by_policy(Some(&policy(Some(name)))), "{name:?}");
        }
        assert!(!restarts_by_policy(Some(&policy(Some(
            RestartPolicyNameEnum::NO
        )))));
        assert!(!restarts_by_policy(Some(&policy(Some(
            RestartPolicyNameEnum::EMPTY
        )))));
        assert!(!restarts_by_policy(Some(&policy(None))));
        assert!(!restarts_by_policy(None));
    }

    #[test]
    fn names_and_sizes() {
        assert!(
            valid_name("web-1")
                && valid_name("a.b_c")
                && !valid_name("-x")
                && !valid_name("a b")
                && !valid_name("x")
        );
        assert_eq!(parse_size("10m"), Some(10 << 20));
        assert_eq!(parse_size("1k"), Some(1024));
        assert_eq!(parse_size("100"), Some(100));
        assert_eq!(parse_size("x"), None);
        let n = random_name("0123456789abcdef0123456789abcdef", &|_| false);
        assert!(n.contains('_'));
    }
}
