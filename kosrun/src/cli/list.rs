//! `list`: runc's table, `--format json`, `-q`.

use std::path::Path;

use kosrun::ops::{state::list, StateDoc};
use serde::Serialize;

#[derive(Serialize)]
struct Entry {
    #[serde(rename = "ociVersion")]
    oci_version: String,
    id: String,
    pid: i32,
    status: String,
    bundle: String,
    rootfs: String,
    created: String,
    owner: String,
}

pub fn run(root: &Path, format: &str, quiet: bool) -> anyhow::Result<()> {
    let all = list(root)?;
    if quiet {
        for (s, _) in &all {
            println!("{}", s.id);
        }
        return Ok(());
    }
    match format {
        "json" => {
            let v: Vec<Entry> = all
                .iter()
                .map(|(s, st)| {
                    let d = StateDoc::new(s, *st);
                    Entry {
                        oci_version: d.oci_version,
                        id: d.id,
                        pid: d.pid,
                        status: st.to_string(),
                        bundle: d.bundle,
                        rootfs: d.rootfs,
                        created: d.created,
                        owner: if d.owner.is_empty() {
                            "root".into()
                        } else {
                            d.owner
                        },
                    }
                })
                .collect();
            println!("{}", serde_json::to_string(&v)?);
        }
        "table" => {
            let rows: Vec<[String; 6]> = all
                .iter()
                .map(|(s, st)| {
                    let d = StateDoc::new(s, *st);
                    [
                        d.id,
                        d.pid.to_string(),
                        st.to_string(),
                        d.bundle,
                        d.created,
                        "root".into(),
                    ]
                })
                .collect();
            let head = ["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"];
            let mut w = head.map(str::len);
            for r in &rows {
                for (i, c) in r.iter().enumerate() {
                    w[i] = w[i].max(c.len());
                }
            }
            let fmt = |cells: [&str; 6]| {
                let mut line = String::new();
                for (i, c) in cells.iter().enumerate() {
                    if i == 5 {
                        line.push_str(c);
                    } else {
                        line.push_str(&format!("{c:<width$}   ", width = w[i]));
                    }
                }
                line
            };
            println!("{}", fmt(head));
            for r in &rows {
                println!("{}", fmt([&r[0], &r[1], &r[2], &r[3], &r[4], &r[5]]));
            }
        }
        other => anyhow::bail!("invalid --format {other:?}: use table or json"),
    }
    Ok(())
}
