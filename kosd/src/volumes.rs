//! Local volumes: named and anonymous, under `<data-root>/volumes/<name>/_data`,
//! with labels and the `local` driver's tmpfs/bind options; image content is
//! copied into a new, empty volume on first use, as Docker does.

use std::collections::HashMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::containers::Container;
use crate::engine::Engine;
use crate::error::{ApiError, Result};
use crate::state::Table;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Volume {
    pub name: String,
    pub created: i64,
    pub labels: HashMap<String, String>,
    pub options: HashMap<String, String>,
    pub anonymous: bool,
    /// Image content was copied in (or the volume had content): never copy again.
    pub populated: bool,
}

pub fn root(e: &Engine) -> PathBuf {
    e.config.data_root.join("volumes")
}

pub fn data_dir(e: &Engine, name: &str) -> PathBuf {
    root(e).join(name).join("_data")
}

fn valid_name(n: &str) -> bool {
    let mut ch = n.chars();
    ch.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && n.len() >= 2
        && n.len() <= 255
        && ch.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

pub fn get(e: &Engine, name: &str) -> Result<Volume> {
    e.db()
        .get::<Volume>(Table::Volumes, name)?
        .ok_or_else(|| ApiError::NotFound(format!("get {name}: no such volume")))
}

pub fn list(e: &Engine) -> Result<Vec<Volume>> {
    e.db().all(Table::Volumes)
}

/// Creates a volume (or returns the existing one of that name, as Docker does).
pub fn create(
    e: &Engine,
    name: Option<&str>,
    driver: Option<&str>,
    labels: HashMap<String, String>,
    options: HashMap<String, String>,
) -> Result<Volume> {
    if let Some(d) = driver.filter(|d| !d.is_empty() && *d != "local") {
        return Err(ApiError::NotFound(format!(
            "error looking up volume plugin {d}: plugin \"{d}\" not found"
        )));
    }
    let (name, anonymous) = match name.filter(|n| !n.is_empty()) {
        Some(n) => (n.to_string(), false),
        None => (crate::engine::random_id()?, true),
    };
    if !valid_name(&name) {
        return Err(ApiError::bad(format!(
            "create {name}: \"{name}\" includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed"
        )));
    }
    if let Ok(v) = get(e, &name) {
        return Ok(v);
    }
    for (k, v) in &options {
        match k.as_str() {
            "type" if v == "tmpfs" || v == "none" || v == "bind" => {}
            "device" | "o" => {}
            _ => {
                return Err(ApiError::bad(format!(
                    "invalid option: {k}={v} (local driver takes type, device, o)"
                )))
            }
        }
    }
    if options.get("type").map(String::as_str) == Some("bind")
        || options
            .get("o")
            .is_some_and(|o| o.split(',').any(|x| x == "bind"))
    {
        let dev = options
            .get("device")
            .ok_or_else(|| ApiError::bad("bind volume needs a device option"))?;
        if !std::path::Path::new(dev).is_dir() {
            return Err(ApiError::bad(format!(
                "failed to mount local volume: no such device {dev}"
            )));
        }
    }
    let dir = data_dir(e, &name);
    std::fs::create_dir_all(&dir)
        .map_err(|err| ApiError::internal(&format!("creating {}", dir.display()), err))?;
    let v = Volume {
        name: name.clone(),
        created: crate::timefmt::now_nanos(),
        labels,
        options,
        anonymous,
        populated: false,
    };
    if let Err(err) = e.db().put(Table::Volumes, &name, &name, &v) {
        let _ = std::fs::remove_dir_all(root(e).join(&name));
        return Err(err);
    }
    e.event("volume", "create", &name, &[("driver", "local")]);
    Ok(v)
}

/// Containers that use the volume.
pub fn users(e: &Engine, name: &str) -> Vec<String> {
    crate::containers::all(e)
        .into_iter()
        .filter(|c| c.volumes.iter().any(|(v, _)| v == name))
        .map(|c| c.id)
        .collect()
}

pub fn remove(e: &Engine, name: &str, force: bool) -> Result<()> {
    let v = match get(e, name) {
        Ok(v) => v,
        Err(err) if force => {
            let _ = err;
            return Ok(());
        }
        Err(err) => return Err(err),
    };
    let u = users(e, name);
    if !u.is_empty() {
        return Err(ApiError::Conflict(format!(
            "remove {name}: volume is in use - [{}]",
            u.join(", ")
        )));
    }
    let mnt = data_dir(e, &v.name);
    unmount_if_mounted(&mnt);
    let dir = root(e).join(&v.name);
    std::fs::remove_dir_all(&dir)
        .or_else(|err| {
            if err.kind() == std::io::ErrorKind::NotFound {
                Ok(())
            } else {
                Err(err)
            }
        })
        .map_err(|err| ApiError::internal(&format!("removing {}", dir.display()), err))?;
    e.db().delete(Table::Volumes, &v.name)?;
    e.event("volume", "destroy", &v.name, &[("driver", "local")]);
    Ok(())
}

fn unmount_if_mounted(p: &std::path::Path) {
    if kos_image::snapshot::overlay::is_mounted(p) {
        let _ = kos_image::snapshot::overlay::unmount(p);
    }
}

/// The host path to bind for a volume, mounting tmpfs/bind volumes on first use.
pub fn source_path(e: &Engine, v: &Volume) -> Result<PathBuf> {
    let dir = data_dir(e, &v.name);
    let kind = v.options.get("type").map(String::as_str).unwrap_or("");
    if kind == "tmpfs" && !kos_image::snapshot::overlay::is_mounted(&dir) {
        let o = v.options.get("o").cloned().unwrap_or_default();
        let st = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                if o.is_empty() { "defaults" } else { &o },
                "tmpfs",
            ])
            .arg(&dir)
            .status()
            .map_err(|err| ApiError::internal("mounting tmpfs volume", err))?;
        if !st.success() {
            return Err(ApiError::Internal(format!(
                "mounting tmpfs volume {}: mount failed",
                v.name
            )));
        }
    }
    if let Some(dev) = v
        .options
        .get("device")
        .filter(|_| kind == "bind" || v.options.get("o").is_some_and(|o| o.contains("bind")))
    {
        return Ok(PathBuf::from(dev));
    }
    Ok(dir)
}

/// Anonymous volumes for the image's VOLUME paths the user did not cover.
pub fn create_for(
    e: &Engine,
    c: &mut Container,
    rc: &kos_image::manifest::RunConfig,
) -> Result<()> {
    let mut covered: Vec<String> = Vec::new();
    let mut binds = Vec::new();
    for spec in c.host_config.binds.clone().unwrap_or_default() {
        let b = crate::containers::mounts::parse_bind(&spec)?;
        covered.push(b.dest.clone());
        if b.is_anonymous() {
            // `-v /data`: a new anonymous volume, named in the entry from now on so that
            // every later reader (mounts, inspect, --volumes-from) sees a volume bind.
            let v = create(e, None, None, HashMap::new(), HashMap::new())?;
            c.volumes.push((v.name.clone(), b.dest.clone()));
            binds.push(b.with_volume(&v.name));
            continue;
        }
        if let Some(name) = b.volume_name() {
            create(e, Some(&name), None, HashMap::new(), HashMap::new())?;
            c.volumes.push((name, b.dest.clone()));
        }
        binds.push(spec);
    }
    if c.host_config.binds.is_some() {
        c.host_config.binds = Some(binds);
    }
    for m in c.host_config.mounts.clone().unwrap_or_default() {
        let dest = m.target.clone().unwrap_or_default();
        covered.push(dest.clone());
        if crate::containers::spec::mount_type(m.typ) == "volume" {
            let name = m.source.clone().filter(|s| !s.is_empty());
            let labels = m
                .volume_options
                .as_ref()
                .and_then(|o| o.labels.clone())
                .unwrap_or_default();
            let opts = m
                .volume_options
                .as_ref()
                .and_then(|o| o.driver_config.as_ref())
                .and_then(|d| d.options.clone())
                .unwrap_or_default();
            let v = create(e, name.as_deref(), None, labels, opts)?;
            c.volumes.push((v.name, dest));
        }
    }
    for t in c.host_config.tmpfs.clone().unwrap_or_default().keys() {
        covered.push(t.clone());
    }
    let mut anon: Vec<String> = rc.volumes.clone().unwrap_or_default().into_keys().collect();
    anon.extend(c.config.volumes.clone().unwrap_or_default().into_keys());
    anon.sort();
    anon.dedup();
    for dest in anon {
        if covered
            .iter()
            .any(|d| d.trim_end_matches('/') == dest.trim_end_matches('/'))
        {
            continue;
        }
        let v = create(e, None, None, HashMap::new(), HashMap::new())?;
        c.volumes.push((v.name, dest));
    }
    Ok(())
}

/// At container removal: anonymous volumes go with `-v` (and always for auto-remove).
pub fn release(e: &Engine, c: &Container, remove_anonymous: bool) {
    if !remove_anonymous {
        return;
    }
    for (name, _) in &c.volumes {
        if let Ok(v) = get(e, name) {
            if v.anonymous && users(e, name).iter().all(|id| *id == c.id) {
                // Our own record still names it; remove it directly.
                let dir = root(e).join(name);
                unmount_if_mounted(&data_dir(e, name));
                let _ = std::fs::remove_dir_all(&dir);
                let _ = e.db().delete(Table::Volumes, name);
                e.event("volume", "destroy", name, &[("driver", "local")]);
            }
        }
    }
}

/// Copies the image's content at `dest` into an empty, never-populated volume.
pub fn copy_up(e: &Engine, name: &str, rootfs: &std::path::Path, dest: &str) -> Result<()> {
    let mut v = get(e, name)?;
    if v.populated {
        return Ok(());
    }
    let dir = source_path(e, &v)?;
    let empty = std::fs::read_dir(&dir)
        .map(|mut d| d.next().is_none())
        .unwrap_or(false);
    if empty {
        let root = kos_image::unpack::safe_path::Root::open(rootfs)
            .map_err(|err| ApiError::internal("opening rootfs", err))?;
        let rel = dest.trim_start_matches('/');
        match root.open_in(std::path::Path::new(rel), libc::O_PATH | libc::O_DIRECTORY) {
            Ok(fd) => {
                use std::os::fd::AsRawFd;
                let src = format!("/proc/{}/fd/{}/.", std::process::id(), fd.as_raw_fd());
                let st = std::process::Command::new("cp")
                    .args(["-a", "--", &src])
                    .arg(&dir)
                    .status()
                    .map_err(|err| ApiError::internal("copying image content into volume", err))?;
                if !st.success() {
                    return Err(ApiError::Internal(format!(
                        "copying image content of {dest} into volume {name} failed"
                    )));
                }
            }
            Err(err)
                if err.raw_os_error() == Some(libc::ENOENT)
                    || err.raw_os_error() == Some(libc::ENOTDIR) => {}
            Err(err) => {
                return Err(ApiError::internal(
                    &format!("resolving {dest} in the image"),
                    err,
                ))
            }
        }
    }
    v.populated = true;
    e.db().put(Table::Volumes, name, name, &v)?;
    Ok(())
}

pub fn to_json(e: &Engine, v: &Volume) -> serde_json::Value {
    json!({
        "Name": v.name,
        "Driver": "local",
        "Mountpoint": data_dir(e, &v.name),
        "CreatedAt": chrono::DateTime::<chrono::Utc>::from_timestamp_nanos(v.created).to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "Labels": v.labels,
        "Scope": "local",
        "Options": if v.options.is_empty() { serde_json::Value::Null } else { json!(v.options) },
    })
}

/// Bytes held by a volume.
pub fn size(e: &Engine, name: &str) -> i64 {
    let mut t = 0i64;
    let mut stack = vec![data_dir(e, name)];
    while let Some(d) = stack.pop() {
        for en in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if let Ok(m) = en.metadata() {
                if m.is_dir() {
                    stack.push(en.path());
                } else {
                    t += m.len() as i64;
                }
            }
        }
    }
    t
}
