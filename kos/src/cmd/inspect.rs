//! `inspect` (and the `volume`/`network` inspect subcommands): the daemon's
//! JSON indented as docker indents it, or a template per object.

use anyhow::Result;
use serde_json::Value;

use super::seg;
use crate::cli::InspectCmd;
use crate::client::Client;
use crate::format::{json_compact, json_indent, Template};
use crate::status;

fn path_for(kind: &str, name: &str, size: bool) -> Option<String> {
    let n = seg(name);
    Some(match kind {
        "container" => format!("/containers/{n}/json{}", if size { "?size=1" } else { "" }),
        "image" => format!("/images/{n}/json"),
        "volume" => format!("/volumes/{n}"),
        "network" => format!("/networks/{n}"),
        _ => return None,
    })
}

/// Prints the objects `names` of `kinds` (tried in order); returns the exit code.
pub fn print_objects(
    c: &Client,
    kinds: &[&str],
    names: &[String],
    format: Option<&str>,
    size: bool,
    typed: bool,
) -> Result<i32> {
    // `json` is docker's JSON inspector: one line holding the array of the
    // daemon's objects, compacted.
    let json_line = format.map(str::trim) == Some("json");
    let tmpl = match format.map(str::trim) {
        None | Some("") | Some("json") => None,
        Some(f) => Some(
            Template::parse(&f.replace("\\t", "\t").replace("\\n", "\n"))
                .map_err(|e| status(1, e))?,
        ),
    };
    let mut raws: Vec<Vec<u8>> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    'names: for name in names {
        let mut last_err = None;
        for k in kinds {
            let Some(p) = path_for(k, name, size) else {
                continue;
            };
            match c.get_raw(&p) {
                Ok(b) => {
                    raws.push(b);
                    continue 'names;
                }
                Err(e) if e.is_not_found() => last_err = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        errors.push(match (typed, last_err) {
            (true, Some(e)) => e.to_string(),
            _ => format!("Error: No such object: {name}"),
        });
    }
    match &tmpl {
        None => {
            let mut joined = b"[".to_vec();
            for (i, r) in raws.iter().enumerate() {
                if i > 0 {
                    joined.push(b',');
                }
                joined.extend_from_slice(r.trim_ascii());
            }
            joined.push(b']');
            if json_line {
                println!("{}", json_compact(&joined));
            } else {
                println!("{}", json_indent(&joined, "    "));
            }
        }
        Some(t) => {
            for r in &raws {
                let v: Value = serde_json::from_slice(r)?;
                let out = t.render(&v, false).map_err(|e| status(1, e))?;
                println!("{out}");
            }
        }
    }
    if errors.is_empty() {
        return Ok(0);
    }
    Err(status(1, errors.join("\n")))
}

pub fn inspect(c: &Client, i: InspectCmd) -> Result<i32> {
    let kinds: Vec<&str> = match i.kind.as_deref() {
        None | Some("") => vec!["container", "image", "volume", "network"],
        Some(k @ ("container" | "image" | "volume" | "network")) => vec![k],
        Some(other) => {
            return Err(status(
                1,
                format!("\"{other}\" is not a valid value for --type"),
            ));
        }
    };
    let typed = i.kind.as_deref().is_some_and(|k| !k.is_empty());
    print_objects(c, &kinds, &i.names, i.format.as_deref(), i.size, typed)
}
