//! `system df -v`: docker's per-object tables of what uses space.

use serde_json::{json, Value};

use super::list::{image_rows, ps_row, IMAGE_HEADERS, PS_HEADERS};
use crate::format::units::{ago, human_size, human_size4};
use crate::format::{short_id, Format};

const VOLUME_HEADERS: &[(&str, &str)] = &[
    ("Name", "VOLUME NAME"),
    ("Links", "LINKS"),
    ("Size", "SIZE"),
];

const CACHE_HEADERS: &[(&str, &str)] = &[
    ("ID", "CACHE ID"),
    ("CacheType", "CACHE TYPE"),
    ("Size", "SIZE"),
    ("CreatedSince", "CREATED"),
    ("LastUsedSince", "LAST USED"),
    ("UsageCount", "USAGE"),
    ("Shared", "SHARED"),
];

fn table(rows: &[Value], format: &str, headers: &[(&str, &str)]) -> Result<String, String> {
    Format::new(Some(format), format)?.render(rows, headers)
}

fn unix(rfc3339: &str) -> Option<f64> {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .ok()
        .map(|t| t.timestamp() as f64)
}

/// One build cache record as docker's buildCacheContext shows it.
fn cache_row(b: &Value) -> Value {
    let id = short_id(b["ID"].as_str().unwrap_or(""));
    let since = |k: &str| b[k].as_str().and_then(unix).map(ago).unwrap_or_default();
    json!({
        "CacheType": b["Type"].as_str().unwrap_or(""),
        "CreatedSince": since("CreatedAt"),
        "ID": if b["InUse"] == true { format!("{id}*") } else { id },
        "LastUsedSince": since("LastUsedAt"),
        "Shared": (b["Shared"] == true).to_string(),
        "Size": human_size(b["Size"].as_f64().unwrap_or(0.0)),
        "UsageCount": b["UsageCount"].as_i64().unwrap_or(0).to_string(),
    })
}

/// The whole `docker system df -v` text from `/system/df`.
pub fn verbose(v: &Value) -> Result<String, String> {
    let arr = |k: &str| v[k].as_array().cloned().unwrap_or_default();
    let images = image_rows(&arr("Images"), true, false);
    let containers: Vec<Value> = arr("Containers")
        .iter()
        .map(|c| ps_row(c, true, true))
        .collect();
    let volumes: Vec<Value> = arr("Volumes")
        .iter()
        .map(|x| {
            let u = &x["UsageData"];
            json!({
                "Links": u["RefCount"].as_i64().filter(|n| *n >= 0).map(|n| n.to_string()).unwrap_or_else(|| "N/A".into()),
                "Name": x["Name"].as_str().unwrap_or(""),
                "Size": u["Size"].as_f64().filter(|n| *n >= 0.0).map(human_size4).unwrap_or_else(|| "N/A".into()),
            })
        })
        .collect();
    let cache = arr("BuildCache");
    let builder: f64 = cache
        .iter()
        .filter(|b| b["Shared"] != true)
        .map(|b| b["Size"].as_f64().unwrap_or(0.0))
        .sum();
    let cache_rows: Vec<Value> = cache.iter().map(cache_row).collect();
    let mut out = String::from("Images space usage:\n\n");
    out.push_str(&table(
        &images,
        "table {{.Repository}}\t{{.Tag}}\t{{.ID}}\t{{.CreatedSince}}\t{{.Size}}\t{{.SharedSize}}\t{{.UniqueSize}}\t{{.Containers}}",
        IMAGE_HEADERS,
    )?);
    out.push_str("\nContainers space usage:\n\n");
    out.push_str(&table(
        &containers,
        "table {{.ID}}\t{{.Image}}\t{{.Command}}\t{{.LocalVolumes}}\t{{.Size}}\t{{.RunningFor}}\t{{.Status}}\t{{.Names}}",
        PS_HEADERS,
    )?);
    out.push_str("\nLocal Volumes space usage:\n\n");
    out.push_str(&table(
        &volumes,
        "table {{.Name}}\t{{.Links}}\t{{.Size}}",
        VOLUME_HEADERS,
    )?);
    out.push_str(&format!(
        "\nBuild cache usage: {}\n\n",
        human_size4(builder)
    ));
    out.push_str(&table(
        &cache_rows,
        "table {{.ID}}\t{{.CacheType}}\t{{.Size}}\t{{.CreatedSince}}\t{{.LastUsedSince}}\t{{.UsageCount}}\t{{.Shared}}",
        CACHE_HEADERS,
    )?);
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sections_like_docker() {
        let v = json!({
            "Images": [{"Id": "sha256:5ef3578d047f05d3", "Created": 0, "Size": 1_294_849,
                        "SharedSize": -1, "Containers": 1, "RepoTags": ["bb:1"]}],
            "Containers": [],
            "Volumes": [{"Name": "vol1", "UsageData": {"RefCount": 0, "Size": 0}}],
            "BuildCache": [{"ID": "abcdef0123456789", "Type": "regular", "Size": 2000,
                            "InUse": true, "Shared": false, "UsageCount": 3,
                            "CreatedAt": "2020-01-01T00:00:00Z"}],
        });
        let t = verbose(&v).unwrap();
        assert!(
            t.starts_with("Images space usage:\n\nREPOSITORY   TAG       IMAGE ID       CREATED"),
            "{t}"
        );
        assert!(t.contains("   1.29MB    N/A           N/A           1\n\nContainers space usage:\n\nCONTAINER ID   IMAGE     COMMAND   LOCAL VOLUMES   SIZE      CREATED   STATUS    NAMES\n\nLocal Volumes space usage:\n\nVOLUME NAME   LINKS     SIZE\nvol1          0         0B\n\nBuild cache usage: 2kB\n\nCACHE ID"), "{t}");
        assert!(t.contains("\nabcdef012345*   regular      2kB "), "{t}");
    }
}
