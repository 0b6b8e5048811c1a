//! `logs`, `top`, `port` and `cp`.

use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result};
use base64::Engine as _;
use serde_json::Value;

use super::seg;
use crate::cli::{CpCmd, LogsCmd, PortCmd, TopCmd};
use crate::client::{query, Client, ReqBody, Request, Response};
use crate::format::tabwrite_min;
use crate::status;
use crate::streams::demux;

/// docker's `GetTimestamp`: a duration is "that long ago", an RFC 3339 time
/// or a unix time passes as seconds.nanoseconds.
pub fn timestamp(v: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    if let Ok(d) = crate::opts::parse_duration(v) {
        let t = now.as_nanos() as i128 - i128::from(d);
        return format!("{}.{:09}", t / 1_000_000_000, t % 1_000_000_000);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(v) {
        return format!("{}.{:09}", t.timestamp(), t.timestamp_subsec_nanos());
    }
    if let Ok(t) = chrono::NaiveDate::parse_from_str(v, "%Y-%m-%d") {
        if let Some(dt) = t.and_hms_opt(0, 0, 0) {
            return format!("{}.000000000", dt.and_utc().timestamp());
        }
    }
    v.to_string()
}

/// The query of a logs request (both streams), as `docker logs` sends it.
pub fn log_query(
    follow: bool,
    since: Option<&str>,
    until: Option<&str>,
    tail: &str,
    timestamps: bool,
    details: bool,
) -> String {
    let b = |x: bool| if x { "1".to_string() } else { String::new() };
    query(&[
        ("stdout", "1".into()),
        ("stderr", "1".into()),
        ("since", since.map(timestamp).unwrap_or_default()),
        ("until", until.map(timestamp).unwrap_or_default()),
        ("timestamps", b(timestamps)),
        ("follow", b(follow)),
        ("tail", tail.to_string()),
        ("details", b(details)),
    ])
}

/// Copies a logs answer to stdout/stderr: raw for a terminal's output,
/// demultiplexed otherwise. A closed stdout (`| head`) ends it quietly.
pub fn copy_logs(r: Response, tty: bool) -> Result<i32> {
    let res = if tty {
        let mut r = r;
        io::copy(&mut r, &mut io::stdout().lock()).map(|_| ())
    } else {
        demux(r, &mut io::stdout().lock(), &mut io::stderr().lock())
    };
    match res {
        Ok(()) => Ok(0),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(0),
        Err(e) => Err(e.into()),
    }
}

pub fn logs(c: &Client, l: LogsCmd) -> Result<i32> {
    let info: Value = c.get_json(&format!("/containers/{}/json", seg(&l.container)))?;
    let tty = info["Config"]["Tty"].as_bool().unwrap_or(false);
    let q = log_query(
        l.follow,
        l.since.as_deref(),
        l.until.as_deref(),
        &l.tail,
        l.timestamps,
        l.details,
    );
    let r = c.get(&format!("/containers/{}/logs{q}", seg(&l.container)))?;
    copy_logs(r, tty)
}

pub fn top(c: &Client, t: TopCmd) -> Result<i32> {
    let q = query(&[("ps_args", t.ps_args.join(" "))]);
    let v: Value = c.get_json(&format!("/containers/{}/top{q}", seg(&t.container)))?;
    let mut text = String::new();
    let titles: Vec<&str> = v["Titles"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    text.push_str(&titles.join("\t"));
    text.push('\n');
    for p in v["Processes"].as_array().into_iter().flatten() {
        let cells: Vec<&str> = p
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        text.push_str(&cells.join("\t"));
        text.push('\n');
    }
    print!("{}", tabwrite_min(&text, 20));
    Ok(0)
}

fn host_port(b: &Value) -> String {
    let ip = b["HostIp"].as_str().unwrap_or("");
    let port = b["HostPort"].as_str().unwrap_or("");
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

pub fn port(c: &Client, p: PortCmd) -> Result<i32> {
    let info: Value = c.get_json(&format!("/containers/{}/json", seg(&p.container)))?;
    let ports = info["NetworkSettings"]["Ports"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    if let Some(want) = &p.port {
        let key = if want.contains('/') {
            want.clone()
        } else {
            format!("{want}/tcp")
        };
        if let Some(bs) = ports
            .get(&key)
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
        {
            for b in bs {
                println!("{}", host_port(b));
            }
            return Ok(0);
        }
        return Err(status(
            1,
            format!(
                "Error: No public port '{want}' published for {}",
                p.container
            ),
        ));
    }
    let mut lines = Vec::new();
    for (k, bs) in &ports {
        for b in bs.as_array().into_iter().flatten() {
            lines.push((k.clone(), host_port(b)));
        }
    }
    lines.sort_by_key(|(k, h)| {
        let (n, proto) = k.split_once('/').unwrap_or((k, ""));
        (n.parse::<u32>().unwrap_or(0), proto.to_string(), h.clone())
    });
    for (k, h) in lines {
        println!("{k} -> {h}");
    }
    Ok(0)
}

/// `CONTAINER:PATH` → (container, path); a local path → None.
fn split_remote(s: &str) -> Option<(&str, &str)> {
    if s.starts_with('/') || s.starts_with('.') {
        return None;
    }
    let (c, p) = s.split_once(':')?;
    (!c.is_empty()).then_some((c, p))
}

/// A tar entry path made relative and free of `..`, or None when hostile.
fn safe_rel(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(x) => out.push(x),
            Component::CurDir => {}
            _ => return None,
        }
    }
    Some(out)
}

fn stat_header(v: Option<&str>) -> Option<Value> {
    let raw = base64::engine::general_purpose::STANDARD.decode(v?).ok()?;
    serde_json::from_slice(&raw).ok()
}

fn copy_from(c: &Client, ctr: &str, src: &str, dest: &str, quiet: bool) -> Result<i32> {
    let src = if src.is_empty() { "/" } else { src };
    let r = c.get(&format!(
        "/containers/{}/archive{}",
        seg(ctr),
        query(&[("path", src.to_string())])
    ))?;
    if dest == "-" {
        let mut r = r;
        io::copy(&mut r, &mut io::stdout().lock())?;
        return Ok(0);
    }
    let stat = stat_header(r.header("X-Docker-Container-Path-Stat"));
    let src_is_dir = stat
        .as_ref()
        .and_then(|s| s["mode"].as_u64())
        .is_some_and(|m| m & (1 << 31) != 0);
    let dest_path = PathBuf::from(dest);
    let dest_is_dir = dest_path.is_dir();
    if dest.ends_with('/') && !dest_is_dir {
        return Err(status(
            1,
            format!("Error response from daemon: destination \"{dest}\" must be a directory"),
        ));
    }
    if !src_is_dir && src.ends_with('/') {
        return Err(status(1, format!("Error: not a directory: {src}")));
    }
    // Into an existing directory the entries keep their names; otherwise the
    // top entry takes the destination's name.
    let (base, rename) = if dest_is_dir {
        (dest_path.clone(), None)
    } else {
        let parent = dest_path
            .parent()
            .map(Path::to_path_buf)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        if !parent.is_dir() {
            return Err(status(
                1,
                format!(
                    "Error: destination directory {} does not exist",
                    parent.display()
                ),
            ));
        }
        (parent, dest_path.file_name().map(PathBuf::from))
    };
    // A renamed copy is unpacked into a private directory first, then moved.
    let stage = match &rename {
        Some(_) => {
            let d = base.join(format!(".kos-cp-{}", std::process::id()));
            std::fs::create_dir(&d).with_context(|| format!("creating {}", d.display()))?;
            Some(StageDir(d))
        }
        None => None,
    };
    let into = stage
        .as_ref()
        .map(|s| s.0.clone())
        .unwrap_or_else(|| base.clone());
    let mut ar = tar::Archive::new(r);
    ar.set_preserve_permissions(true);
    ar.set_overwrite(true);
    let mut total = 0u64;
    let mut top: Option<PathBuf> = None;
    for e in ar
        .entries()
        .context("reading the archive from the daemon")?
    {
        let mut e = e.context("reading the archive from the daemon")?;
        let p = e.path()?.into_owned();
        let Some(rel) = safe_rel(&p) else {
            return Err(status(
                1,
                format!(
                    "Error: archive entry {} points outside the destination",
                    p.display()
                ),
            ));
        };
        if top.is_none() {
            top = rel
                .components()
                .next()
                .map(|c| PathBuf::from(c.as_os_str()));
        }
        total += e.size();
        // unpack_in refuses paths (and links) that escape its directory.
        if !e
            .unpack_in(&into)
            .with_context(|| format!("writing {}", into.join(&rel).display()))?
        {
            return Err(status(
                1,
                format!(
                    "Error: archive entry {} points outside the destination",
                    rel.display()
                ),
            ));
        }
    }
    if let (Some(st), Some(name), Some(top)) = (&stage, &rename, &top) {
        let target = base.join(name);
        if target.is_file() || target.is_symlink() {
            std::fs::remove_file(&target)
                .with_context(|| format!("replacing {}", target.display()))?;
        }
        std::fs::rename(st.0.join(top), &target)
            .with_context(|| format!("moving the copy to {}", target.display()))?;
    }
    drop(stage);
    if !quiet && crate::tty::is_tty(2) {
        eprintln!(
            "Successfully copied {} to {dest}",
            crate::format::units::human_size(total as f64)
        );
    }
    Ok(0)
}

/// A staging directory removed (with whatever is left in it) on drop.
struct StageDir(PathBuf);

impl Drop for StageDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn copy_to(c: &Client, src: &str, ctr: &str, dest: &str, quiet: bool, follow: bool) -> Result<i32> {
    let dest = if dest.is_empty() { "/" } else { dest };
    let put = |path: &str, body: &mut dyn Read| -> Result<()> {
        let mut req = Request::new(
            "PUT",
            format!(
                "/containers/{}/archive{}",
                seg(ctr),
                query(&[
                    ("path", path.to_string()),
                    ("noOverwriteDirNonDir", "true".into())
                ])
            ),
        );
        req.body = ReqBody::Stream(body, "application/x-tar");
        c.request(req)?;
        Ok(())
    };
    if src == "-" {
        put(dest, &mut io::stdin().lock())?;
        return Ok(0);
    }
    let src_path = PathBuf::from(src);
    let meta = if follow {
        std::fs::metadata(&src_path)
    } else {
        std::fs::symlink_metadata(&src_path)
    }
    .map_err(|e| status(1, format!("lstat {src}: {e}")))?;
    // Where the copy lands: into an existing directory under its own name,
    // else under the destination's name in its parent.
    let head = c.request(Request::new(
        "HEAD",
        format!(
            "/containers/{}/archive{}",
            seg(ctr),
            query(&[("path", dest.to_string())])
        ),
    ));
    let dest_stat = match head {
        Ok(r) => stat_header(r.header("X-Docker-Container-Path-Stat")),
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e.into()),
    };
    let dest_is_dir = dest_stat
        .as_ref()
        .and_then(|s| s["mode"].as_u64())
        .is_some_and(|m| m & (1 << 31) != 0);
    let src_name = src_path
        .file_name()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    let (dir, name) = if dest_is_dir {
        (dest.to_string(), src_name)
    } else {
        if dest.ends_with('/') {
            return Err(status(
                1,
                format!(
                    "Error response from daemon: destination \"{ctr}:{dest}\" must be a directory"
                ),
            ));
        }
        let d = Path::new(dest);
        (
            d.parent()
                .map(|p| p.to_string_lossy().into_owned())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "/".into()),
            d.file_name()
                .map(PathBuf::from)
                .unwrap_or_else(|| src_name.clone()),
        )
    };
    let (mut rd, wr) = std::os::unix::net::UnixStream::pair()?;
    let src2 = src_path.clone();
    let is_dir = meta.is_dir();
    let writer = std::thread::spawn(move || -> io::Result<u64> {
        let mut b = tar::Builder::new(io::BufWriter::new(wr));
        b.follow_symlinks(follow);
        if is_dir {
            b.append_dir_all(&name, &src2)?;
        } else {
            b.append_path_with_name(&src2, &name)?;
        }
        let mut w = b.into_inner()?;
        w.flush()?;
        Ok(0)
    });
    let r = put(&dir, &mut rd);
    drop(rd);
    let w = writer
        .join()
        .map_err(|_| anyhow::anyhow!("the archive writer failed"))?;
    r?;
    w.map_err(|e| status(1, format!("Error: reading {src}: {e}")))?;
    if !quiet && crate::tty::is_tty(2) {
        eprintln!(
            "Successfully copied {} to {ctr}:{dest}",
            crate::format::units::human_size(meta.len() as f64)
        );
    }
    Ok(0)
}

pub fn cp(c: &Client, cp: CpCmd) -> Result<i32> {
    match (split_remote(&cp.src), split_remote(&cp.dest)) {
        (Some((ctr, p)), None) => copy_from(c, ctr, p, &cp.dest, cp.quiet),
        (None, Some((ctr, p))) => copy_to(c, &cp.src, ctr, p, cp.quiet, cp.follow_link),
        (Some(_), Some(_)) => Err(status(1, "copying between containers is not supported")),
        (None, None) => Err(status(1, "must specify at least one container source")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn remote_paths() {
        assert_eq!(split_remote("web:/etc/hosts"), Some(("web", "/etc/hosts")));
        assert_eq!(split_remote("./a:b"), None);
        assert_eq!(split_remote("/tmp/x"), None);
        assert_eq!(split_remote("-"), None);
        assert!(safe_rel(Path::new("../x")).is_none());
        assert!(safe_rel(Path::new("/abs")).is_none());
        assert_eq!(safe_rel(Path::new("./a/b")).unwrap(), PathBuf::from("a/b"));
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp("2024-01-01T00:00:00Z"), "1704067200.000000000");
        assert_eq!(timestamp("1704067200"), "1704067200");
        let t: f64 = timestamp("10m").parse().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!((now - t - 600.0).abs() < 5.0);
    }
}
