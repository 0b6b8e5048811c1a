//! Images as Docker presents them, over the kos-image store: names, ids,
//! summaries, inspect, history, removal rules.

use std::collections::{BTreeMap, HashMap};

use bollard_stubs::models::{HistoryResponseItem, ImageSummary};
use kos_image::build::dangling;
use kos_image::{Digest, ImageRecord, ImageRef, Store};
use serde_json::json;

use crate::error::{ApiError, Result};
use crate::filters::Filters;

/// The store's canonical name for what a user typed (`busybox` ->
/// `docker.io/library/busybox:latest`).
pub fn normalize(name: &str) -> Result<String> {
    if name.is_empty() {
        return Err(ApiError::bad("image name is empty"));
    }
    if name.len() > 4096 {
        return Err(ApiError::bad("image name is too long"));
    }
    let r = ImageRef::parse(name)?;
    if r.repository().chars().any(|c| c.is_ascii_uppercase()) {
        return Err(ApiError::bad(format!(
            "invalid reference format: repository name ({}) must be lowercase",
            r.repository()
        )));
    }
    Ok(r.to_string())
}

/// The name Docker shows (`docker.io/library/busybox:latest` -> `busybox:latest`).
pub fn familiar(name: &str) -> String {
    if let Some(r) = name.strip_prefix("docker.io/library/") {
        r.to_string()
    } else if let Some(r) = name.strip_prefix("docker.io/") {
        r.to_string()
    } else {
        name.to_string()
    }
}

/// An image and every name that points at it.
#[derive(Debug, Clone)]
pub struct Resolved {
    pub config: Digest,
    pub records: Vec<ImageRecord>,
    /// The record the user's name selected (None when selected by id).
    pub by_name: Option<ImageRecord>,
}

impl Resolved {
    pub fn id(&self) -> String {
        self.config.to_string()
    }
    /// A record to read the manifest and config through.
    pub fn any(&self) -> &ImageRecord {
        self.by_name.as_ref().unwrap_or(&self.records[0])
    }
}

fn is_hex(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

/// Finds an image by name, full id, or unique id prefix, as Docker does.
pub fn resolve(store: &Store, name: &str) -> Result<Resolved> {
    let all = store.images()?;
    let group = |cfg: &Digest, by_name: Option<ImageRecord>| Resolved {
        config: cfg.clone(),
        records: all.iter().filter(|r| &r.config == cfg).cloned().collect(),
        by_name,
    };
    let hex = name.strip_prefix("sha256:").unwrap_or(name);
    let looks_like_id = is_hex(hex) && (name.starts_with("sha256:") || hex.len() == 64);
    if !looks_like_id {
        if let Ok(n) = normalize(name) {
            if let Some(r) = all.iter().find(|r| r.name == n) {
                return Ok(group(&r.config, Some(r.clone())));
            }
        }
    }
    if is_hex(hex) {
        let mut hits: Vec<&Digest> = all
            .iter()
            .map(|r| &r.config)
            .filter(|c| c.hex().starts_with(hex))
            .collect();
        hits.sort_by_key(|d| d.to_string());
        hits.dedup();
        match hits.len() {
            0 => {}
            1 => return Ok(group(hits[0], None)),
            _ => {
                return Err(ApiError::bad(format!(
                    "multiple IDs found with provided prefix: {name}"
                )))
            }
        }
    }
    Err(ApiError::NotFound(format!("No such image: {name}")))
}

/// Tags (`repo:tag`) and digests (`repo@sha256:`) of a group of records.
fn names_of(records: &[ImageRecord]) -> (Vec<String>, Vec<String>) {
    let mut tags = Vec::new();
    let mut digests = Vec::new();
    for r in records {
        let Ok(rf) = ImageRef::parse(&r.name) else {
            continue;
        };
        if rf.tag().is_some() && rf.digest().is_none() {
            tags.push(familiar(&r.name));
        }
        let repo = familiar(&format!("{}/{}", rf.registry(), rf.repository()));
        let d = format!("{repo}@{}", r.target);
        if !digests.contains(&d) {
            digests.push(d);
        }
    }
    tags.sort();
    digests.sort();
    (tags, digests)
}

/// What the list and inspect views need from one image.
pub struct Details {
    pub config_json: serde_json::Value,
    pub size: i64,
    pub diff_ids: Vec<Digest>,
}

pub fn details(store: &Store, rec: &ImageRecord) -> Result<Details> {
    let img = store.image(&rec.name)?;
    let config_json: serde_json::Value = serde_json::from_slice(&img.config_bytes)
        .map_err(|e| ApiError::internal("decoding image config", e))?;
    let size = img.manifest.layers.iter().map(|l| l.size as i64).sum();
    Ok(Details {
        config_json,
        size,
        diff_ids: img.config.rootfs.diff_ids.clone(),
    })
}

fn labels_of(cfg: &serde_json::Value) -> HashMap<String, String> {
    cfg["config"]["Labels"]
        .as_object()
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

fn created_secs(cfg: &serde_json::Value, fallback: i64) -> i64 {
    cfg["created"]
        .as_str()
        .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.timestamp())
        .unwrap_or(fallback)
}

pub const IMAGE_LIST_FILTERS: &[&str] =
    &["dangling", "label", "before", "since", "reference", "until"];

/// Glob match with `*` and `?` as `docker images --filter reference=` uses.
pub fn glob(pat: &str, s: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], s) || (!s.is_empty() && s[0] != b'/' && go(p, &s[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &s[1..]),
            _ => false,
        }
    }
    go(pat.as_bytes(), s.as_bytes())
}

/// `GET /images/json`.
pub fn list(
    store: &Store,
    f: &Filters,
    containers: &HashMap<String, i64>,
) -> Result<Vec<ImageSummary>> {
    let all = store.images()?;
    let mut groups: BTreeMap<String, Vec<ImageRecord>> = BTreeMap::new();
    for r in all {
        groups.entry(r.config.to_string()).or_default().push(r);
    }
    let dangling = f.bool_value("dangling")?;
    let bound = |key: &str| -> Result<Option<i64>> {
        match f.get(key).first() {
            None => Ok(None),
            Some(n) => {
                let r = resolve(store, n)?;
                let d = details(store, r.any())?;
                Ok(Some(created_secs(&d.config_json, r.any().created)))
            }
        }
    };
    let before = bound("before")?;
    let since = bound("since")?;
    let until = match f.get("until").first() {
        None => None,
        Some(u) => Some(crate::timefmt::parse_timestamp(u)? / 1_000_000_000),
    };
    let mut out = Vec::new();
    for (id, recs) in groups {
        let d = details(store, &recs[0])?;
        let (mut tags, mut digests) = names_of(&recs);
        let created = created_secs(&d.config_json, recs[0].created);
        let labels = labels_of(&d.config_json);
        // Dangling: only the builder's `<none>:<none>` names reach it.
        let is_dangling = recs.iter().all(|r| dangling::is_dangling(&r.name));
        if dangling.is_some_and(|d| d != is_dangling) {
            continue;
        }
        if !f.labels_match("label", |k| labels.get(k).map(String::as_str)) {
            continue;
        }
        if f.has("reference") {
            // As Docker does, only the tags that match are listed.
            tags.retain(|t| {
                f.get("reference").iter().any(|p| {
                    glob(p, t) || t.rsplit_once(':').is_some_and(|(repo, _)| glob(p, repo))
                })
            });
            if tags.is_empty() {
                continue;
            }
            digests.retain(|d| {
                let repo = d.split('@').next().unwrap_or(d);
                tags.iter()
                    .any(|t| t.rsplit_once(':').is_some_and(|(r, _)| r == repo))
            });
        }
        if before.is_some_and(|b| created >= b) || since.is_some_and(|s| created <= s) {
            continue;
        }
        if until.is_some_and(|u| created > u) {
            continue;
        }
        out.push(ImageSummary {
            id: id.clone(),
            parent_id: String::new(),
            repo_tags: tags,
            repo_digests: digests,
            created,
            size: d.size,
            shared_size: -1,
            virtual_size: None,
            labels,
            containers: containers.get(&id).copied().unwrap_or(0),
            manifests: None,
        });
    }
    out.sort_by(|a, b| b.created.cmp(&a.created).then(a.id.cmp(&b.id)));
    Ok(out)
}

/// `GET /images/{name}/json`.
pub fn inspect(store: &Store, r: &Resolved) -> Result<serde_json::Value> {
    let d = details(store, r.any())?;
    let (tags, digests) = names_of(&r.records);
    let c = &d.config_json;
    let mut cfg = c["config"].clone();
    if cfg.is_null() {
        cfg = json!({});
    }
    crate::containers::inspect_shape::complete_image_config(&mut cfg);
    Ok(json!({
        "Id": r.id(),
        "RepoTags": tags,
        "RepoDigests": digests,
        "Parent": "",
        "Comment": c["comment"].as_str().unwrap_or(""),
        "Created": c["created"].as_str().unwrap_or(crate::timefmt::ZERO_TIME),
        "DockerVersion": c["docker_version"].as_str().unwrap_or(""),
        "Author": c["author"].as_str().unwrap_or(""),
        "Config": cfg,
        "Architecture": c["architecture"].as_str().unwrap_or(""),
        "Variant": c["variant"],
        "Os": c["os"].as_str().unwrap_or(""),
        "Size": d.size,
        "GraphDriver": graph_driver(&store.layer_dirs_of(&d.diff_ids)),
        "RootFS": {"Type": "layers", "Layers": d.diff_ids.iter().map(Digest::to_string).collect::<Vec<_>>()},
        "Metadata": {"LastTagTime": crate::timefmt::rfc3339_go(r.any().created * 1_000_000_000)},
    }))
}

/// Docker's overlay2 `GraphDriver` of an image: its top layer's directory as `UpperDir`,
/// the layers below it (top-most first) as `LowerDir`. kosd keeps no merged or work
/// directory per image, so those two are not claimed.
fn graph_driver(dirs: &[std::path::PathBuf]) -> serde_json::Value {
    let Some((upper, lower)) = dirs.split_first() else {
        return json!({"Name": "overlay2", "Data": null});
    };
    let mut data = json!({ "UpperDir": upper });
    if !lower.is_empty() {
        data["LowerDir"] = json!(crate::containers::view::join_dirs(lower));
    }
    json!({"Name": "overlay2", "Data": data})
}

/// `GET /images/{name}/history`: newest first, as Docker lists it.
pub fn history(store: &Store, r: &Resolved) -> Result<Vec<HistoryResponseItem>> {
    let img = store.image(&r.any().name)?;
    let (tags, _) = names_of(&r.records);
    let hist = img.config.history.clone().unwrap_or_default();
    let mut layer_sizes = img.manifest.layers.iter().map(|l| l.size as i64);
    let mut items = Vec::new();
    if hist.is_empty() {
        // Images without history get one entry per layer, as Docker shows them.
        for _ in &img.manifest.layers {
            items.push(HistoryResponseItem {
                id: "<missing>".into(),
                created: 0,
                created_by: String::new(),
                tags: Vec::new(),
                size: layer_sizes.next().unwrap_or(0),
                comment: String::new(),
            });
        }
    }
    for h in hist {
        let empty = h["empty_layer"].as_bool().unwrap_or(false);
        items.push(HistoryResponseItem {
            id: "<missing>".into(),
            created: h["created"]
                .as_str()
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                .map(|t| t.timestamp())
                .unwrap_or(0),
            created_by: h["created_by"].as_str().unwrap_or("").to_string(),
            tags: Vec::new(),
            size: if empty {
                0
            } else {
                layer_sizes.next().unwrap_or(0)
            },
            comment: h["comment"].as_str().unwrap_or("").to_string(),
        });
    }
    items.reverse();
    if let Some(top) = items.first_mut() {
        top.id = r.id();
        top.tags = tags;
    }
    Ok(items)
}

/// Who uses an image: (container id, running).
pub type Users = Vec<(String, bool)>;

/// Keeps an image that is losing its last name under its dangling name
/// (`<none>:<none>`), as dockerd keeps an image a container still uses: its content
/// survives gc and its containers find it by id. Named before the last tag goes, so a
/// gc in between cannot take it.
fn keep_unnamed(store: &Store, rec: &ImageRecord) -> Result<()> {
    store.tag_image(&dangling::name(&rec.config), &rec.target, &rec.manifest)?;
    Ok(())
}

/// `DELETE /images/{name}`: untags (and deletes once no name is left),
/// with Docker's conflict rules. `users` are the containers (of both API sides)
/// using the image. Returns the response items.
pub fn remove(
    store: &Store,
    name: &str,
    force: bool,
    users: &Users,
) -> Result<Vec<serde_json::Value>> {
    let r = resolve(store, name)?;
    let short = &r.config.hex()[..12];
    let mut out = Vec::new();
    let untag = |rec: &ImageRecord, out: &mut Vec<serde_json::Value>| -> Result<()> {
        store.remove_image(&rec.name)?;
        if dangling::is_dangling(&rec.name) {
            // Not a name users gave: dockerd reports only the deletion.
            return Ok(());
        }
        let (tags, digests) = names_of(std::slice::from_ref(rec));
        let shown = tags.into_iter().next().or(digests.into_iter().next());
        out.push(json!({"Untagged": shown.unwrap_or_else(|| rec.name.clone())}));
        Ok(())
    };
    let short_id = |c: &str| c[..12.min(c.len())].to_string();
    match &r.by_name {
        Some(rec) if r.records.len() > 1 => {
            // Another name keeps the image; only this tag goes.
            untag(rec, &mut out)?;
            return Ok(out);
        }
        Some(rec) => {
            if let Some((c, _)) = users.first() {
                if !force {
                    return Err(ApiError::Conflict(format!(
                        "conflict: unable to remove repository reference \"{name}\" (must force) - container {} is using its referenced image {short}",
                        short_id(c)
                    )));
                }
                // Forced: the name goes, the image stays for its containers.
                keep_unnamed(store, rec)?;
                untag(rec, &mut out)?;
                return Ok(out);
            }
            untag(rec, &mut out)?;
        }
        None => {
            if let Some((c, running)) = users.iter().find(|(_, r)| *r).or(users.first()) {
                if *running {
                    return Err(ApiError::Conflict(format!(
                        "conflict: unable to delete {short} (cannot be forced) - image is being used by running container {}",
                        short_id(c)
                    )));
                }
                if !force {
                    return Err(ApiError::Conflict(format!(
                        "conflict: unable to delete {short} (must be forced) - image is being used by stopped container {}",
                        short_id(c)
                    )));
                }
            }
            if r.records.len() > 1 && !force {
                return Err(ApiError::Conflict(format!(
                    "conflict: unable to delete {short} (must be forced) - image is referenced in multiple repositories"
                )));
            }
            if !users.is_empty() {
                // Forced with stopped containers: every name goes, but kosd starts a
                // container from its image's config, so the image stays unnamed until
                // the last of them is removed (dockerd deletes it here).
                keep_unnamed(store, r.any())?;
                for rec in r.records.iter().filter(|x| !dangling::is_dangling(&x.name)) {
                    untag(rec, &mut out)?;
                }
                return Ok(out);
            }
            for rec in &r.records {
                untag(rec, &mut out)?;
            }
        }
    }
    out.push(json!({"Deleted": r.id()}));
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            normalize("busybox").unwrap(),
            "docker.io/library/busybox:latest"
        );
        assert_eq!(
            familiar("docker.io/library/busybox:latest"),
            "busybox:latest"
        );
        assert_eq!(familiar("127.0.0.1:5000/bb:1"), "127.0.0.1:5000/bb:1");
        assert!(normalize("UPPER/case").is_err());
        assert!(normalize("").is_err());
    }

    #[test]
    fn globbing() {
        assert!(glob("127.0.0.1:5000/*", "127.0.0.1:5000/bb"));
        assert!(!glob("*", "a/b"));
        assert!(glob("b?", "bb"));
    }
}
