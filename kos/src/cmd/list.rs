//! `ps` and `images`: docker's columns, fields and `--format` contexts.

use anyhow::Result;
use serde_json::{json, Value};

use super::filters_json;
use crate::cli::{ImagesCmd, PsCmd};
use crate::client::{query, Client};
use crate::format::units::{ago, human_size, human_size4};
use crate::format::{ellipsis, short_id, validate, Ctx, Format};
use crate::status;

const PS_CTX: Ctx = Ctx("*formatter.ContainerContext");

pub const PS_HEADERS: &[(&str, &str)] = &[
    ("ID", "CONTAINER ID"),
    ("Image", "IMAGE"),
    ("Command", "COMMAND"),
    ("CreatedAt", "CREATED AT"),
    ("RunningFor", "CREATED"),
    ("Ports", "PORTS"),
    ("State", "STATE"),
    ("Status", "STATUS"),
    ("Size", "SIZE"),
    ("Names", "NAMES"),
    ("Labels", "LABELS"),
    ("Mounts", "MOUNTS"),
    ("Networks", "NETWORKS"),
    ("LocalVolumes", "LOCAL VOLUMES"),
    ("Platform", "PLATFORM"),
];

/// Go's `strconv.Quote` (printable Unicode kept as is).
pub fn go_quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `time.Time.String()` shape docker prints for CreatedAt, in local time.
pub fn go_time(unix: i64) -> String {
    use chrono::TimeZone;
    match chrono::Local.timestamp_opt(unix, 0).single() {
        Some(t) => {
            let off = t.format("%z").to_string();
            let zone = if off == "+0000" {
                "UTC".to_string()
            } else {
                t.format("%Z").to_string()
            };
            format!("{} {off} {zone}", t.format("%Y-%m-%d %H:%M:%S"))
        }
        None => String::new(),
    }
}

/// Ports as `docker ps` shows them: private ports (or ports published on
/// the same number) grouped into ranges per address and protocol, then the
/// other host mappings one by one, e.g. `443/tcp, 0.0.0.0:8080->80/tcp`.
pub fn display_ports(ports: &[Value]) -> String {
    struct P {
        ip: String,
        public: i64,
        private: i64,
        proto: String,
    }
    let mut items: Vec<P> = ports
        .iter()
        .map(|p| P {
            ip: p["IP"].as_str().unwrap_or("").to_string(),
            public: p["PublicPort"].as_i64().unwrap_or(0),
            private: p["PrivatePort"].as_i64().unwrap_or(0),
            proto: p["Type"].as_str().unwrap_or("tcp").to_string(),
        })
        .collect();
    items.sort_by(|a, b| {
        (a.private, &a.ip, a.public, &a.proto).cmp(&(b.private, &b.ip, b.public, &b.proto))
    });
    let form = |ip: &str, proto: &str, first: i64, last: i64| {
        let mut g = first.to_string();
        if first != last {
            g = format!("{g}-{last}");
        }
        if !ip.is_empty() {
            g = format!("{ip}:{g}->{g}");
        }
        format!("{g}/{proto}")
    };
    // Groups keyed by (ip, proto) in first-seen order: (first, last).
    let mut groups: Vec<((String, String), (i64, i64))> = Vec::new();
    let mut result = Vec::new();
    let mut mappings = Vec::new();
    for p in items {
        if !p.ip.is_empty() && p.public != p.private {
            let host = if p.ip.contains(':') {
                format!("[{}]", p.ip)
            } else {
                p.ip.clone()
            };
            mappings.push(format!("{host}:{}->{}/{}", p.public, p.private, p.proto));
            continue;
        }
        let key = (p.ip.clone(), p.proto.clone());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            None => groups.push((key, (p.private, p.private))),
            Some((_, g)) if p.private == g.1 + 1 => g.1 = p.private,
            Some((k, g)) => {
                result.push(form(&k.0, &k.1, g.0, g.1));
                *g = (p.private, p.private);
            }
        }
    }
    for ((ip, proto), (f, l)) in &groups {
        result.push(form(ip, proto, *f, *l));
    }
    result.extend(mappings);
    result.join(", ")
}

fn labels_string(v: &Value) -> String {
    let mut l: Vec<String> = v
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect()
        })
        .unwrap_or_default();
    l.sort();
    l.join(",")
}

/// One container as docker's `ContainerContext` shows it.
pub fn ps_row(c: &Value, trunc: bool, size: bool) -> Value {
    let id = c["Id"].as_str().unwrap_or("");
    let mut image = c["Image"].as_str().unwrap_or("").to_string();
    if trunc {
        if image.starts_with("sha256:") {
            image = short_id(&image);
        } else if let Some((name, _)) = image.split_once('@') {
            image = name.to_string();
        }
    }
    let mut command = c["Command"].as_str().unwrap_or("").to_string();
    if trunc {
        command = ellipsis(&command, 20);
    }
    let names: Vec<String> = c["Names"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(|n| n.trim_start_matches('/').to_string())
                // A name with another "/" is a legacy link alias.
                .filter(|n| !trunc || !n.contains('/'))
                .collect()
        })
        .unwrap_or_default();
    let names = if trunc {
        names.into_iter().take(1).collect::<Vec<_>>()
    } else {
        names
    };
    let created = c["Created"].as_i64().unwrap_or(0);
    let size_s = if size {
        let rw = c["SizeRw"].as_f64().unwrap_or(0.0);
        let rootfs = c["SizeRootFs"].as_f64().unwrap_or(0.0);
        if rootfs > 0.0 {
            format!("{} (virtual {})", human_size(rw), human_size(rootfs))
        } else {
            human_size(rw)
        }
    } else {
        "0B".into()
    };
    let mounts: Vec<String> = c["Mounts"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|m| {
                    let n = m["Name"]
                        .as_str()
                        .filter(|s| !s.is_empty())
                        .or(m["Source"].as_str())
                        .unwrap_or("");
                    if trunc {
                        ellipsis(n, 15)
                    } else {
                        n.to_string()
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let local_volumes = c["Mounts"]
        .as_array()
        .map(|a| a.iter().filter(|m| m["Driver"] == "local").count())
        .unwrap_or(0);
    let mut nets: Vec<String> = c["NetworkSettings"]["Networks"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    nets.sort();
    json!({
        "Command": go_quote(&command),
        "CreatedAt": go_time(created),
        "ID": if trunc { short_id(id) } else { id.to_string() },
        "Image": image,
        "Labels": labels_string(&c["Labels"]),
        "LocalVolumes": local_volumes.to_string(),
        "Mounts": mounts.join(","),
        "Names": names.join(","),
        "Networks": nets.join(","),
        "Platform": c["ImageManifestDescriptor"].get("platform").cloned().unwrap_or(Value::Null),
        "Ports": display_ports(c["Ports"].as_array().map(Vec::as_slice).unwrap_or(&[])),
        "RunningFor": ago(created as f64),
        "Size": size_s,
        "State": c["State"].as_str().unwrap_or(""),
        "Status": c["Status"].as_str().unwrap_or(""),
    })
}

pub fn ps(c: &Client, p: PsCmd) -> Result<i32> {
    if let Some(f) = p.format.as_deref().filter(|f| !f.is_empty()) {
        if p.quiet {
            eprintln!(
                "WARNING: Ignoring custom format, because both --format and --quiet are set."
            );
        }
        // As docker: the format is tried on an empty container before listing.
        validate(f, &ps_row(&json!({}), true, false), PS_CTX).map_err(|e| status(1, e))?;
    }
    let limit = if p.latest { 1 } else { p.last };
    let size_wanted = p.size
        || p.format
            .as_deref()
            .is_some_and(|f| f.contains(".Size") || f.trim() == "json");
    let q = query(&[
        ("all", if p.all { "1".into() } else { String::new() }),
        (
            "limit",
            if limit > 0 {
                limit.to_string()
            } else {
                String::new()
            },
        ),
        (
            "size",
            if size_wanted {
                "1".into()
            } else {
                String::new()
            },
        ),
        ("filters", filters_json(&p.filter)?),
    ]);
    let list: Vec<Value> = c.get_json(&format!("/containers/json{q}"))?;
    let trunc = !p.no_trunc;
    let rows: Vec<Value> = list.iter().map(|x| ps_row(x, trunc, size_wanted)).collect();
    let default = if p.size {
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}\t{{.Size}}"
    } else {
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.RunningFor}}\t{{.Status}}\t{{.Ports}}\t{{.Names}}"
    };
    let fmt = if p.quiet {
        Some("{{.ID}}")
    } else {
        p.format.as_deref()
    };
    let f = Format::new(fmt, default)
        .map_err(|e| status(1, e))?
        .in_context(PS_CTX);
    let labels = super::objects::label_maps(&list);
    print!(
        "{}",
        f.render_labeled(&rows, Some(&labels), PS_HEADERS)
            .map_err(|e| status(1, e))?
    );
    Ok(0)
}

pub const IMAGE_HEADERS: &[(&str, &str)] = &[
    ("ID", "IMAGE ID"),
    ("Repository", "REPOSITORY"),
    ("Tag", "TAG"),
    ("Digest", "DIGEST"),
    ("CreatedSince", "CREATED"),
    ("CreatedAt", "CREATED AT"),
    ("Size", "SIZE"),
    ("Containers", "CONTAINERS"),
    ("SharedSize", "SHARED SIZE"),
    ("UniqueSize", "UNIQUE SIZE"),
    ("VirtualSize", "VIRTUAL SIZE"),
];

fn split_repo_tag(rt: &str) -> (String, String) {
    match rt.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r.to_string(), t.to_string()),
        _ => (rt.to_string(), "<none>".into()),
    }
}

/// Rows of `docker images`: one per tag (or one `<none>` row).
pub fn image_rows(list: &[Value], trunc: bool, digests_shown: bool) -> Vec<Value> {
    let mut rows = Vec::new();
    for im in list {
        let id = im["Id"].as_str().unwrap_or("");
        let id_s = if trunc { short_id(id) } else { id.to_string() };
        let created = im["Created"].as_i64().unwrap_or(0);
        let size = im["Size"].as_f64().unwrap_or(0.0);
        let shared = im["SharedSize"].as_f64().unwrap_or(-1.0);
        let na = |x: f64| {
            if x < 0.0 {
                "N/A".to_string()
            } else {
                human_size(x)
            }
        };
        let containers = im["Containers"].as_i64().unwrap_or(-1);
        let repo_digests: Vec<&str> = im["RepoDigests"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let mut tags: Vec<&str> = im["RepoTags"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        tags.retain(|t| *t != "<none>:<none>");
        let mut digests: Vec<(String, String)> = repo_digests
            .iter()
            .filter(|d| **d != "<none>@<none>")
            .filter_map(|d| {
                d.split_once('@')
                    .map(|(r, g)| (r.to_string(), g.to_string()))
            })
            .collect();
        // As docker: per tag, the digests of its repository (shown with
        // --digests only); repositories known by digest alone get <none> tags.
        let mut pairs: Vec<(String, String, String)> = Vec::new();
        for t in &tags {
            let (repo, tag) = split_repo_tag(t);
            let mine: Vec<String> = digests
                .iter()
                .filter(|(r, _)| *r == repo)
                .map(|(_, g)| g.clone())
                .collect();
            if !digests_shown || mine.is_empty() {
                pairs.push((repo, tag, "<none>".into()));
            } else {
                for g in mine {
                    pairs.push((repo.clone(), tag.clone(), g));
                }
            }
        }
        let tagged: Vec<String> = tags.iter().map(|t| split_repo_tag(t).0).collect();
        digests.retain(|(r, _)| !tagged.contains(r));
        if tags.is_empty() && digests.is_empty() {
            pairs.push(("<none>".into(), "<none>".into(), "<none>".into()));
        }
        let mut seen_repo: Vec<String> = Vec::new();
        for (r, g) in digests {
            if digests_shown {
                pairs.push((r, "<none>".into(), g));
            } else if !seen_repo.contains(&r) {
                seen_repo.push(r.clone());
                pairs.push((r, "<none>".into(), "<none>".into()));
            }
        }
        for (repo, tag, digest) in pairs {
            rows.push(json!({
                "Containers": if containers < 0 { "N/A".to_string() } else { containers.to_string() },
                "CreatedAt": go_time(created),
                "CreatedSince": ago(created as f64),
                "Digest": digest,
                "ID": id_s,
                "Repository": repo,
                "SharedSize": na(shared),
                "Size": human_size(size),
                "Tag": tag,
                "UniqueSize": if shared < 0.0 { "N/A".into() } else { human_size4(size - shared) },
                "VirtualSize": human_size4(size),
            }));
        }
    }
    rows
}

pub fn images(c: &Client, i: ImagesCmd) -> Result<i32> {
    let mut filters = i.filter.clone();
    if let Some(r) = &i.repository {
        filters.push(format!("reference={r}"));
    }
    let q = query(&[
        ("all", if i.all { "1".into() } else { String::new() }),
        ("filters", filters_json(&filters)?),
    ]);
    let list: Vec<Value> = c.get_json(&format!("/images/json{q}"))?;
    // docker shows digests when asked or when the template prints them.
    let digests = i.digests || i.format.as_deref().is_some_and(|f| f.contains(".Digest"));
    let rows = image_rows(&list, !i.no_trunc, digests);
    let default = if i.digests {
        "table {{.Repository}}\t{{.Tag}}\t{{.Digest}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    } else {
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}"
    };
    let fmt = if i.quiet {
        Some("{{.ID}}")
    } else {
        i.format.as_deref()
    };
    let f = Format::new(fmt, default)
        .map_err(|e| status(1, e))?
        .in_context(Ctx("*formatter.imageContext"));
    print!(
        "{}",
        f.render(&rows, IMAGE_HEADERS).map_err(|e| status(1, e))?
    );
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_and_ports() {
        assert_eq!(go_quote("sh -c 'echo \"x\"'"), "\"sh -c 'echo \\\"x\\\"'\"");
        let ports = vec![
            json!({"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}),
            json!({"IP": "0.0.0.0", "PrivatePort": 81, "PublicPort": 8081, "Type": "tcp"}),
            json!({"IP": "::", "PrivatePort": 80, "PublicPort": 8080, "Type": "tcp"}),
            json!({"PrivatePort": 443, "Type": "tcp"}),
        ];
        assert_eq!(
            display_ports(&ports),
            "443/tcp, 0.0.0.0:8080->80/tcp, [::]:8080->80/tcp, 0.0.0.0:8081->81/tcp"
        );
        let same = vec![
            json!({"IP": "0.0.0.0", "PrivatePort": 80, "PublicPort": 80, "Type": "tcp"}),
            json!({"IP": "0.0.0.0", "PrivatePort": 81, "PublicPort": 81, "Type": "tcp"}),
            json!({"PrivatePort": 53, "Type": "udp"}),
        ];
        assert_eq!(display_ports(&same), "53/udp, 0.0.0.0:80-81->80-81/tcp");
        assert_eq!(display_ports(&[]), "");
    }

    #[test]
    fn image_rows_per_tag() {
        let im = json!({"Id": "sha256:0123456789abcdef0000", "Created": 0, "Size": 1_240_000,
                        "RepoTags": ["a/b:1", "localhost:5000/c:latest"], "RepoDigests": ["a/b@sha256:dd"],
                        "SharedSize": -1, "Containers": -1});
        let rows = image_rows(std::slice::from_ref(&im), true, false);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["Repository"], "a/b");
        assert_eq!(rows[0]["Digest"], "<none>");
        assert_eq!(
            image_rows(std::slice::from_ref(&im), true, true)[0]["Digest"],
            "sha256:dd"
        );
        assert_eq!(rows[1]["Repository"], "localhost:5000/c");
        assert_eq!(rows[1]["Tag"], "latest");
        assert_eq!(rows[0]["ID"], "0123456789ab");
        assert_eq!(rows[0]["Size"], "1.24MB");
        let none = image_rows(&[json!({"Id": "sha256:ab", "RepoTags": []})], true, false);
        assert_eq!(
            (none[0]["Repository"].as_str(), none[0]["Tag"].as_str()),
            (Some("<none>"), Some("<none>"))
        );
    }
}
