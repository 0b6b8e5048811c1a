//! Image commands: pull, push, rmi, tag, load, save, history, prune.

use std::io::{self, Write};

use anyhow::Result;
use serde_json::{json, Value};

use super::{each, seg};
use crate::cli::{HistoryCmd, ImagePruneCmd, LoadCmd, PullCmd, PushCmd, RmiCmd, SaveCmd, TagCmd};
use crate::client::{query, Client, ReqBody, Request};
use crate::format::units::{ago, human_size, human_size4};
use crate::format::{ellipsis, short_id, Ctx, Format};
use crate::progress;
use crate::status;

/// A reference split as the API wants it: (name, tag or digest).
pub fn split_ref(r: &str) -> (String, Option<String>) {
    if let Some((n, d)) = r.split_once('@') {
        return (n.to_string(), Some(d.to_string()));
    }
    let last_slash = r.rfind('/').map(|i| i + 1).unwrap_or(0);
    match r[last_slash..].rfind(':') {
        Some(i) => (
            r[..last_slash + i].to_string(),
            Some(r[last_slash + i + 1..].to_string()),
        ),
        None => (r.to_string(), None),
    }
}

/// The fully qualified name docker prints after a pull: `docker.io/library/x:latest`.
pub fn qualified(r: &str) -> String {
    let (name, tag) = split_ref(r);
    let first = name.split('/').next().unwrap_or("");
    let has_registry =
        name.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    let full = if has_registry {
        name.clone()
    } else if name.contains('/') {
        format!("docker.io/{name}")
    } else {
        format!("docker.io/library/{name}")
    };
    match tag {
        Some(t) if t.contains(':') => format!("{full}@{t}"),
        Some(t) => format!("{full}:{t}"),
        None => format!("{full}:latest"),
    }
}

fn valid_ref(r: &str) -> Result<()> {
    let ok = !r.is_empty()
        && r.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._:/@".contains(c))
        && !r.starts_with(['-', '.', '/', ':'])
        && !r.ends_with([':', '/', '@']);
    if !ok || r.chars().any(|c| c.is_ascii_uppercase()) && !r.contains(['@', ':']) {
        return Err(status(1, format!("invalid reference format: {r}")));
    }
    Ok(())
}

/// Pulls `image`, rendering the daemon's progress on stdout (or stderr for `run`).
pub fn pull_image(
    c: &Client,
    image: &str,
    platform: Option<&str>,
    quiet: bool,
    to_stderr: bool,
) -> Result<()> {
    valid_ref(image)?;
    let (name, tag) = split_ref(image);
    let q = query(&[
        ("fromImage", name),
        ("tag", tag.unwrap_or_else(|| "latest".into())),
        ("platform", platform.unwrap_or("").to_string()),
    ]);
    let mut req = Request::new("POST", format!("/images/create{q}"));
    req.headers.push(("X-Registry-Auth".into(), "e30=".into()));
    let r = c.request(req)?;
    if quiet {
        progress::display(r, &mut io::sink(), false)?;
    } else if to_stderr {
        progress::display(r, &mut io::stderr(), crate::tty::is_tty(2))?;
    } else {
        progress::display(r, &mut io::stdout(), crate::tty::is_tty(1))?;
    }
    Ok(())
}

pub fn pull_cmd(c: &Client, p: PullCmd) -> Result<i32> {
    let image = if p.all_tags {
        split_ref(&p.image).0
    } else {
        p.image.clone()
    };
    if p.all_tags && split_ref(&p.image).1.is_some() {
        return Err(status(1, "tag can't be used with --all-tags/-a"));
    }
    pull_image(c, &image, p.platform.as_deref(), p.quiet, false)?;
    if !p.all_tags {
        println!("{}", qualified(&p.image));
    }
    Ok(0)
}

pub fn push(c: &Client, p: PushCmd) -> Result<i32> {
    valid_ref(&p.image)?;
    let (name, tag) = split_ref(&p.image);
    if p.all_tags && tag.is_some() {
        return Err(status(1, "tag can't be used with --all-tags/-a"));
    }
    let tag = if p.all_tags {
        None
    } else {
        Some(tag.unwrap_or_else(|| "latest".into()))
    };
    if !p.all_tags && !p.quiet && split_ref(&p.image).1.is_none() {
        println!("Using default tag: latest");
    }
    let q = query(&[("tag", tag.clone().unwrap_or_default())]);
    let mut req = Request::new("POST", format!("/images/{}/push{q}", seg(&name)));
    req.headers.push(("X-Registry-Auth".into(), "e30=".into()));
    let r = c.request(req)?;
    if p.quiet {
        progress::display(r, &mut io::sink(), false)?;
        println!(
            "{}",
            match tag {
                Some(t) => format!("{name}:{t}"),
                None => name,
            }
        );
    } else {
        progress::display(r, &mut io::stdout(), crate::tty::is_tty(1))?;
    }
    Ok(0)
}

pub fn rmi(c: &Client, r: RmiCmd) -> Result<i32> {
    let b = |x: bool| if x { "1".to_string() } else { String::new() };
    let q = query(&[("force", b(r.force)), ("noprune", b(r.no_prune))]);
    each(&r.images, false, |n| {
        let v: Vec<Value> = c
            .request(Request::new("DELETE", format!("/images/{}{q}", seg(n))))
            .and_then(crate::client::json)
            .map_err(|e| e.to_string())?;
        for item in v {
            if let Some(u) = item["Untagged"].as_str() {
                println!("Untagged: {u}");
            }
            if let Some(d) = item["Deleted"].as_str() {
                println!("Deleted: {d}");
            }
        }
        Ok(())
    })
}

pub fn tag(c: &Client, t: TagCmd) -> Result<i32> {
    valid_ref(&t.target)?;
    let (repo, tag) = split_ref(&t.target);
    if tag.as_deref().is_some_and(|t| t.contains(':')) {
        return Err(status(
            1,
            "refusing to create a tag with a digest reference",
        ));
    }
    let q = query(&[
        ("repo", repo),
        ("tag", tag.unwrap_or_else(|| "latest".into())),
    ]);
    c.post(&format!("/images/{}/tag{q}", seg(&t.source)), None)?;
    Ok(0)
}

pub fn load(c: &Client, l: LoadCmd) -> Result<i32> {
    let mut file;
    let mut stdin;
    let input: &mut dyn io::Read = match &l.input {
        Some(p) => {
            file = std::fs::File::open(p).map_err(|e| status(1, format!("open {p}: {e}")))?;
            &mut file
        }
        None => {
            if crate::tty::is_tty(0) {
                return Err(status(1, "requested load from stdin, but stdin is empty"));
            }
            stdin = io::stdin().lock();
            &mut stdin
        }
    };
    let q = if l.quiet { "?quiet=1" } else { "" };
    let mut req = Request::new("POST", format!("/images/load{q}"));
    req.body = ReqBody::Stream(input, "application/x-tar");
    let r = c.request(req)?;
    progress::display(r, &mut io::stdout(), false)?;
    Ok(0)
}

/// Copies a download to `path` (written beside it and renamed, so a failed
/// copy leaves no partial file) or to stdout.
pub fn write_stream(mut r: impl io::Read, path: Option<&str>) -> io::Result<()> {
    match path {
        Some(p) => {
            let tmp = format!("{p}.kos-part-{}", std::process::id());
            let res = (|| -> io::Result<()> {
                let mut f = std::fs::File::create(&tmp)?;
                io::copy(&mut r, &mut f)?;
                f.sync_all()?;
                std::fs::rename(&tmp, p)
            })();
            if res.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            res
        }
        None => {
            let mut out = io::stdout().lock();
            io::copy(&mut r, &mut out)?;
            out.flush()
        }
    }
}

pub fn save(c: &Client, s: SaveCmd) -> Result<i32> {
    if s.output.is_none() && crate::tty::is_tty(1) {
        return Err(status(
            1,
            "cowardly refusing to save to a terminal. Use the -o flag or redirect",
        ));
    }
    let q: Vec<(&str, String)> = s.images.iter().map(|i| ("names", i.clone())).collect();
    let r = c.get(&format!("/images/get{}", query(&q)))?;
    write_stream(r, s.output.as_deref())
        .map_err(|e| status(1, format!("failed to save image: {e}")))?;
    Ok(0)
}

const HISTORY_HEADERS: &[(&str, &str)] = &[
    ("ID", "IMAGE"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("CreatedBy", "CREATED BY"),
    ("Size", "SIZE"),
    ("Comment", "COMMENT"),
];

/// One layer of `docker history` as its formatter shows it.
pub fn history_row(h: &Value, trunc: bool, human: bool) -> Value {
    let id = h["Id"].as_str().unwrap_or("");
    let created = h["Created"].as_i64().unwrap_or(0);
    let created_at = chrono::DateTime::from_timestamp(created, 0)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        })
        .unwrap_or_default();
    let by = h["CreatedBy"].as_str().unwrap_or("").replace('\t', " ");
    let size = h["Size"].as_i64().unwrap_or(0);
    json!({
        "Comment": h["Comment"].as_str().unwrap_or(""),
        "CreatedAt": created_at,
        "CreatedBy": if trunc { ellipsis(&by, 45) } else { by },
        "CreatedSince": if human { ago(created as f64) } else { created_at.clone() },
        "ID": if trunc && id != "<missing>" { short_id(id) } else { id.to_string() },
        "Size": if human { human_size(size as f64) } else { size.to_string() },
    })
}

pub fn history(c: &Client, h: HistoryCmd) -> Result<i32> {
    let list: Vec<Value> = c.get_json(&format!("/images/{}/history", seg(&h.image)))?;
    let rows: Vec<Value> = list
        .iter()
        .map(|x| history_row(x, !h.no_trunc, h.human))
        .collect();
    let default = if h.human {
        "table {{.ID}}\t{{.CreatedSince}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
    } else {
        "table {{.ID}}\t{{.CreatedAt}}\t{{.CreatedBy}}\t{{.Size}}\t{{.Comment}}"
    };
    let fmt = if h.quiet {
        Some("{{.ID}}")
    } else {
        h.format.as_deref()
    };
    let f = Format::new(fmt, default)
        .map_err(|e| status(1, e))?
        .in_context(Ctx("*image.historyContext"));
    print!(
        "{}",
        f.render(&rows, HISTORY_HEADERS).map_err(|e| status(1, e))?
    );
    Ok(0)
}

/// `image prune`: docker's prompt, what was untagged and deleted, the space reclaimed.
pub fn prune(c: &Client, p: ImagePruneCmd) -> Result<i32> {
    let warning = if p.all {
        "WARNING! This will remove all images without at least one container associated to them."
    } else {
        "WARNING! This will remove all dangling images."
    };
    if !super::objects::confirm(p.force, warning) {
        return Ok(0);
    }
    let mut f = p.filter.clone();
    f.push(format!("dangling={}", !p.all));
    let q = query(&[("filters", super::filters_json(&f)?)]);
    let r: Value = c.post_json(&format!("/images/prune{q}"), None)?;
    let gone = r["ImagesDeleted"].as_array().cloned().unwrap_or_default();
    if !gone.is_empty() {
        println!("Deleted Images:");
        for i in gone {
            if let Some(u) = i["Untagged"].as_str() {
                println!("untagged: {u}");
            }
            if let Some(d) = i["Deleted"].as_str() {
                println!("deleted: {d}");
            }
        }
        println!();
    }
    println!(
        "Total reclaimed space: {}",
        human_size4(r["SpaceReclaimed"].as_f64().unwrap_or(0.0))
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references() {
        assert_eq!(split_ref("busybox"), ("busybox".into(), None));
        assert_eq!(
            split_ref("127.0.0.1:5000/x:1"),
            ("127.0.0.1:5000/x".into(), Some("1".into()))
        );
        assert_eq!(
            split_ref("127.0.0.1:5000/x"),
            ("127.0.0.1:5000/x".into(), None)
        );
        assert_eq!(
            split_ref("x@sha256:ab"),
            ("x".into(), Some("sha256:ab".into()))
        );
        assert_eq!(qualified("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(qualified("me/app:2"), "docker.io/me/app:2");
        assert_eq!(qualified("127.0.0.1:5000/x:1"), "127.0.0.1:5000/x:1");
        assert_eq!(qualified("localhost/x"), "localhost/x:latest");
        assert!(valid_ref("UPPER").is_err());
        assert!(valid_ref("ok/name:tag").is_ok());
        assert!(valid_ref("bad name").is_err());
    }
}
