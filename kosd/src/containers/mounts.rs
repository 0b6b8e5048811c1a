//! The container's mounts from `-v`, `--mount`, `--tmpfs` and image volumes,
//! as OCI mount entries.

use serde_json::Value;

use super::record::Container;
use super::spec;
use crate::engine::Engine;
use crate::error::{ApiError, Result};

/// One `-v` entry: `src:dest[:opts]` where src is a host path or a volume name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bind {
    pub src: String,
    pub dest: String,
    pub opts: Vec<String>,
}

impl Bind {
    /// A named volume when the source is not a path.
    pub fn volume_name(&self) -> Option<String> {
        (!self.src.is_empty() && !self.src.starts_with('/')).then(|| self.src.clone())
    }
    /// An anonymous volume (`-v /data`): no source at all.
    pub fn is_anonymous(&self) -> bool {
        self.src.is_empty()
    }
    /// The entry again, naming `volume` as its source.
    pub fn with_volume(&self, volume: &str) -> String {
        if self.opts.is_empty() {
            format!("{volume}:{}", self.dest)
        } else {
            format!("{volume}:{}:{}", self.dest, self.opts.join(","))
        }
    }
    pub fn read_only(&self) -> bool {
        self.opts.iter().any(|o| o == "ro")
    }
}

/// The modes a bind or volume entry may carry after its destination.
fn is_mode(o: &str) -> bool {
    matches!(
        o,
        "ro" | "rw"
            | "z"
            | "Z"
            | "nocopy"
            | "private"
            | "rprivate"
            | "shared"
            | "rslave"
            | "slave"
            | "rshared"
    )
}

/// Parses a `HostConfig.Binds` entry: `src:dest[:opts]`, or `dest[:opts]` alone for an
/// anonymous volume (what `docker run -v /data` sends), whose `src` is empty.
pub fn parse_bind(s: &str) -> Result<Bind> {
    let parts: Vec<&str> = s.split(':').collect();
    let (src, dest, opts, anonymous) = match parts.as_slice() {
        [dest] => ("", *dest, "", true),
        [dest, opts] if dest.starts_with('/') && opts.split(',').all(is_mode) => {
            ("", *dest, *opts, true)
        }
        [src, dest] => (*src, *dest, "", false),
        [src, dest, opts] => (*src, *dest, *opts, false),
        _ => {
            return Err(ApiError::bad(format!(
                "invalid volume specification: '{s}'"
            )))
        }
    };
    if (src.is_empty() && !anonymous) || !dest.starts_with('/') {
        return Err(ApiError::bad(format!(
            "invalid volume specification: '{s}'"
        )));
    }
    let opts: Vec<String> = opts
        .split(',')
        .filter(|o| !o.is_empty())
        .map(str::to_string)
        .collect();
    for o in &opts {
        if !is_mode(o) {
            return Err(ApiError::bad(format!("invalid mode: {o}")));
        }
    }
    Ok(Bind {
        src: src.to_string(),
        dest: dest.to_string(),
        opts,
    })
}

fn volume_mount(
    e: &Engine,
    c: &Container,
    name: &str,
    dest: &str,
    ro: bool,
    nocopy: bool,
) -> Result<Value> {
    let v = crate::volumes::get(e, name)?;
    if !nocopy {
        crate::volumes::copy_up(e, name, &c.dir.join("rootfs"), dest)?;
    }
    let src = crate::volumes::source_path(e, &v)?;
    let opts: Vec<&str> = if ro { vec!["ro"] } else { vec![] };
    spec::bind_mount(&src.to_string_lossy(), dest, &opts)
}

/// Every user and image mount, in Docker's order (binds, mounts, tmpfs, anonymous volumes).
pub fn collect(e: &Engine, c: &Container) -> Result<Vec<Value>> {
    let mut out = Vec::new();
    let hc = &c.host_config;
    for b in hc.binds.clone().unwrap_or_default() {
        let b = parse_bind(&b)?;
        if let Some(name) = b.volume_name() {
            let nocopy = b.opts.iter().any(|o| o == "nocopy");
            out.push(volume_mount(e, c, &name, &b.dest, b.read_only(), nocopy)?);
        } else {
            // As dockerd does for -v, a missing host directory is created.
            if !std::path::Path::new(&b.src).exists() {
                std::fs::create_dir_all(&b.src).map_err(|err| {
                    ApiError::bad(format!(
                        "error while creating mount source path '{}': {err}",
                        b.src
                    ))
                })?;
            }
            let o: Vec<&str> = b.opts.iter().map(String::as_str).collect();
            out.push(spec::bind_mount(&b.src, &b.dest, &o)?);
        }
    }
    for m in hc.mounts.clone().unwrap_or_default() {
        let dest = m.target.clone().unwrap_or_default();
        let ro = m.read_only.unwrap_or(false);
        match spec::mount_type(m.typ) {
            "bind" => {
                let src = m.source.clone().unwrap_or_default();
                let mut o = vec![];
                if ro {
                    o.push("ro");
                }
                out.push(spec::bind_mount(&src, &dest, &o)?);
            }
            "volume" => {
                let name = c
                    .volumes
                    .iter()
                    .find(|(_, d)| *d == dest)
                    .map(|(n, _)| n.clone())
                    .ok_or_else(|| {
                        ApiError::Internal(format!("volume for {dest} was not created"))
                    })?;
                let nocopy = m
                    .volume_options
                    .as_ref()
                    .and_then(|o| o.no_copy)
                    .unwrap_or(false);
                out.push(volume_mount(e, c, &name, &dest, ro, nocopy)?);
            }
            "tmpfs" => {
                let mut o = Vec::new();
                if let Some(t) = &m.tmpfs_options {
                    if let Some(s) = t.size_bytes.filter(|s| *s > 0) {
                        o.push(format!("size={s}"));
                    }
                    if let Some(md) = t.mode.filter(|m| *m > 0) {
                        o.push(format!("mode={md:o}"));
                    }
                }
                if ro {
                    o.push("ro".into());
                }
                out.push(spec::tmpfs_mount(&dest, &o.join(","))?);
            }
            other => {
                return Err(ApiError::bad(format!(
                    "mount type {other:?} is not supported"
                )))
            }
        }
    }
    for (dest, opts) in hc.tmpfs.clone().unwrap_or_default() {
        out.push(spec::tmpfs_mount(&dest, &opts)?);
    }
    let explicit: Vec<String> = out
        .iter()
        .filter_map(|m| m["destination"].as_str().map(str::to_string))
        .collect();
    for (name, dest) in &c.volumes {
        if !explicit.iter().any(|d| d == dest) {
            out.push(volume_mount(e, c, name, dest, false, false)?);
        }
    }
    Ok(out)
}

/// The `Mounts` list of inspect and ps.
pub fn describe(e: &Engine, c: &Container) -> Vec<Value> {
    let mut out = Vec::new();
    for b in c.host_config.binds.clone().unwrap_or_default() {
        let Ok(b) = parse_bind(&b) else { continue };
        let rw = !b.read_only();
        match b.volume_name() {
            Some(n) => out.push(serde_json::json!({"Type": "volume", "Name": n, "Source": crate::volumes::data_dir(e, &n), "Destination": b.dest, "Driver": "local", "Mode": b.opts.join(","), "RW": rw, "Propagation": ""})),
            None => out.push(serde_json::json!({"Type": "bind", "Source": b.src, "Destination": b.dest, "Mode": b.opts.join(","), "RW": rw, "Propagation": "rprivate"})),
        }
    }
    for m in c.host_config.mounts.clone().unwrap_or_default() {
        let t = spec::mount_type(m.typ);
        let dest = m.target.clone().unwrap_or_default();
        let rw = !m.read_only.unwrap_or(false);
        match t {
            "volume" => {
                let n = c.volumes.iter().find(|(_, d)| *d == dest).map(|(n, _)| n.clone()).unwrap_or_default();
                out.push(serde_json::json!({"Type": "volume", "Name": n, "Source": crate::volumes::data_dir(e, &n), "Destination": dest, "Driver": "local", "Mode": "z", "RW": rw, "Propagation": ""}));
            }
            _ => out.push(serde_json::json!({"Type": t, "Source": m.source.clone().unwrap_or_default(), "Destination": dest, "Mode": "", "RW": rw, "Propagation": if t == "bind" { "rprivate" } else { "" }})),
        }
    }
    let listed: Vec<String> = out
        .iter()
        .filter_map(|m| m["Destination"].as_str().map(str::to_string))
        .collect();
    for (n, dest) in &c.volumes {
        if !listed.contains(dest) {
            out.push(serde_json::json!({"Type": "volume", "Name": n, "Source": crate::volumes::data_dir(e, n), "Destination": dest, "Driver": "local", "Mode": "", "RW": true, "Propagation": ""}));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn binds() {
        let b = parse_bind("/tmp:/data:ro").unwrap();
        assert!(b.read_only() && b.volume_name().is_none());
        let v = parse_bind("cache:/cache").unwrap();
        assert_eq!(v.volume_name().as_deref(), Some("cache"));
        let anon = parse_bind("/data").unwrap();
        assert!(anon.is_anonymous() && anon.dest == "/data" && anon.volume_name().is_none());
        let anon = parse_bind("/data:ro").unwrap();
        assert!(anon.is_anonymous() && anon.read_only());
        assert_eq!(anon.with_volume("v1"), "v1:/data:ro");
        assert!(parse_bind("data").is_err());
        assert!(parse_bind(":/data").is_err());
        assert!(parse_bind("/tmp:rel").is_err());
        assert!(parse_bind("/tmp:/x:bogus").is_err());
    }
}
