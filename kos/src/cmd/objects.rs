//! `volume` and `network` subcommands.

use std::io::{BufRead, Write};

use anyhow::Result;
use serde_json::{json, Value};

use super::inspect::print_objects;
use super::{each, filters_json, seg};
use crate::cli::{NetworkCmd, VolumeCmd};
use crate::client::{query, Client};
use crate::format::units::human_size4;
use crate::format::{short_id, Ctx, Format};
use crate::status;

const VOLUME_HEADERS: &[(&str, &str)] = &[
    ("Name", "VOLUME NAME"),
    ("Driver", "DRIVER"),
    ("Scope", "SCOPE"),
    ("Mountpoint", "MOUNTPOINT"),
    ("Labels", "LABELS"),
    ("Links", "LINKS"),
    ("Size", "SIZE"),
    ("Group", "GROUP"),
    ("Availability", "AVAILABILITY"),
    ("Status", "STATUS"),
];

const NETWORK_HEADERS: &[(&str, &str)] = &[
    ("ID", "NETWORK ID"),
    ("Name", "NAME"),
    ("Driver", "DRIVER"),
    ("Scope", "SCOPE"),
    ("IPv4", "IPV4"),
    ("IPv6", "IPV6"),
    ("Internal", "INTERNAL"),
    ("Labels", "LABELS"),
    ("CreatedAt", "CREATED AT"),
];

fn labels(v: &Value) -> String {
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

/// Each object's `Labels` (for docker's `{{.Label "key"}}`).
pub fn label_maps(objs: &[Value]) -> Vec<Value> {
    objs.iter().map(|o| o["Labels"].clone()).collect()
}

/// Go's `time.Time.String()` of an RFC 3339 time as docker prints a
/// network's CreatedAt: `2026-11-30 11:25:00.1234 +0000 UTC`.
pub fn go_time_string(rfc3339: &str) -> String {
    let Ok(t) = chrono::DateTime::parse_from_rfc3339(rfc3339) else {
        return rfc3339.to_string();
    };
    let mut frac = format!("{:09}", t.timestamp_subsec_nanos());
    while frac.ends_with('0') {
        frac.pop();
    }
    let off = t.format("%z").to_string();
    let zone = if t.offset().local_minus_utc() == 0 {
        "UTC".to_string()
    } else {
        off.clone()
    };
    format!(
        "{}{}{} {off} {zone}",
        t.format("%Y-%m-%d %H:%M:%S"),
        if frac.is_empty() { "" } else { "." },
        frac
    )
}

fn kv(items: &[String]) -> Value {
    let mut m = serde_json::Map::new();
    for i in items {
        let (k, v) = i.split_once('=').unwrap_or((i, ""));
        m.insert(k.to_string(), json!(v));
    }
    Value::Object(m)
}

/// docker's prune prompt; true when the user agreed (or `force`).
pub fn confirm(force: bool, warning: &str) -> bool {
    if force {
        return true;
    }
    print!("{warning}\nAre you sure you want to continue? [y/N] ");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    let _ = std::io::stdin().lock().take_line(&mut line);
    matches!(line.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

trait TakeLine {
    fn take_line(&mut self, s: &mut String) -> std::io::Result<usize>;
}

impl<R: BufRead> TakeLine for R {
    fn take_line(&mut self, s: &mut String) -> std::io::Result<usize> {
        use std::io::Read;
        self.take(4096).read_line(s)
    }
}

pub fn volume(c: &Client, v: VolumeCmd) -> Result<i32> {
    match v {
        VolumeCmd::Create {
            driver,
            label,
            opt,
            name,
        } => {
            let body = json!({"Name": name.unwrap_or_default(), "Driver": driver, "DriverOpts": kv(&opt), "Labels": kv(&label)});
            let r: Value = c.post_json("/volumes/create", Some(&body))?;
            println!("{}", r["Name"].as_str().unwrap_or(""));
            Ok(0)
        }
        VolumeCmd::Ls {
            filter,
            format,
            quiet,
        } => {
            let r: Value = c.get_json(&format!(
                "/volumes{}",
                query(&[("filters", filters_json(&filter)?)])
            ))?;
            let mut vols: Vec<Value> = r["Volumes"].as_array().cloned().unwrap_or_default();
            vols.sort_by(|a, b| a["Name"].as_str().cmp(&b["Name"].as_str()));
            let rows: Vec<Value> = vols
                .iter()
                .map(|x| {
                    json!({
                        // Swarm cluster volumes only; kosd's are all local.
                        "Availability": "N/A",
                        "Driver": x["Driver"].as_str().unwrap_or(""),
                        "Group": "N/A",
                        "Labels": labels(&x["Labels"]),
                        "Links": x["UsageData"]["RefCount"].as_i64().filter(|n| *n >= 0).map(|n| n.to_string()).unwrap_or_else(|| "N/A".into()),
                        "Mountpoint": x["Mountpoint"].as_str().unwrap_or(""),
                        "Name": x["Name"].as_str().unwrap_or(""),
                        "Scope": x["Scope"].as_str().unwrap_or("local"),
                        "Size": x["UsageData"]["Size"].as_f64().filter(|n| *n >= 0.0).map(human_size4).unwrap_or_else(|| "N/A".into()),
                        "Status": "N/A",
                    })
                })
                .collect();
            let fmt = if quiet {
                Some("{{.Name}}")
            } else {
                format.as_deref()
            };
            let f = Format::new(fmt, "table {{.Driver}}\t{{.Name}}")
                .map_err(|e| status(1, e))?
                .in_context(Ctx("*formatter.volumeContext"));
            print!(
                "{}",
                f.render_labeled(&rows, Some(&label_maps(&vols)), VOLUME_HEADERS)
                    .map_err(|e| status(1, e))?
            );
            Ok(0)
        }
        VolumeCmd::Inspect { format, names } => {
            print_objects(c, &["volume"], &names, format.as_deref(), false, true)
        }
        VolumeCmd::Rm { force, names } => {
            let q = if force { "?force=1" } else { "" };
            each(&names, true, |n| {
                c.delete(&format!("/volumes/{}{q}", seg(n)))
                    .map(|_| ())
                    .map_err(|e| e.to_string())
            })
        }
        VolumeCmd::Prune { all, filter, force } => {
            let warn = if all {
                "WARNING! This will remove all local volumes not used by at least one container."
            } else {
                "WARNING! This will remove anonymous local volumes not used by at least one container."
            };
            if !confirm(force, warn) {
                return Ok(0);
            }
            let mut f = filter.clone();
            if all {
                f.push("all=true".into());
            }
            let r: Value = c.post_json(
                &format!("/volumes/prune{}", query(&[("filters", filters_json(&f)?)])),
                None,
            )?;
            let deleted: Vec<&str> = r["VolumesDeleted"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if !deleted.is_empty() {
                println!("Deleted Volumes:");
                for d in deleted {
                    println!("{d}");
                }
                println!();
            }
            println!(
                "Total reclaimed space: {}",
                human_size4(r["SpaceReclaimed"].as_f64().unwrap_or(0.0))
            );
            Ok(0)
        }
    }
}

pub fn network(c: &Client, n: NetworkCmd) -> Result<i32> {
    match n {
        NetworkCmd::Create {
            driver,
            subnet,
            gateway,
            ip_range,
            ipv6,
            internal,
            attachable,
            label,
            opt,
            name,
        } => {
            if gateway.len() > subnet.len() || ip_range.len() > subnet.len() {
                return Err(status(1, "every --gateway and --ip-range needs a --subnet"));
            }
            let config: Vec<Value> = subnet
                .iter()
                .enumerate()
                .map(|(i, s)| {
                    let mut m = json!({"Subnet": s});
                    if let Some(g) = gateway.get(i) {
                        m["Gateway"] = json!(g);
                    }
                    if let Some(r) = ip_range.get(i) {
                        m["IPRange"] = json!(r);
                    }
                    m
                })
                .collect();
            let body = json!({
                "Name": name, "Driver": driver, "EnableIPv6": ipv6, "Internal": internal,
                "Attachable": attachable, "Labels": kv(&label), "Options": kv(&opt),
                "IPAM": {"Driver": "default", "Config": config, "Options": {}},
            });
            let r: Value = c.post_json("/networks/create", Some(&body))?;
            if let Some(w) = r["Warning"].as_str().filter(|w| !w.is_empty()) {
                eprintln!("{w}");
            }
            println!("{}", r["Id"].as_str().unwrap_or(""));
            Ok(0)
        }
        NetworkCmd::Ls {
            filter,
            format,
            no_trunc,
            quiet,
        } => {
            let list: Vec<Value> = c.get_json(&format!(
                "/networks{}",
                query(&[("filters", filters_json(&filter)?)])
            ))?;
            let mut list = list;
            list.sort_by(|a, b| a["Name"].as_str().cmp(&b["Name"].as_str()));
            let rows: Vec<Value> = list
                .iter()
                .map(|x| {
                    let id = x["Id"].as_str().unwrap_or("");
                    json!({
                        "CreatedAt": go_time_string(x["Created"].as_str().unwrap_or("")),
                        "Driver": x["Driver"].as_str().unwrap_or(""),
                        "ID": if no_trunc { id.to_string() } else { short_id(id) },
                        "IPv4": x["EnableIPv4"].as_bool().unwrap_or(false).to_string(),
                        "IPv6": x["EnableIPv6"].as_bool().unwrap_or(false).to_string(),
                        "Internal": x["Internal"].as_bool().unwrap_or(false).to_string(),
                        "Labels": labels(&x["Labels"]),
                        "Name": x["Name"].as_str().unwrap_or(""),
                        "Scope": x["Scope"].as_str().unwrap_or("local"),
                    })
                })
                .collect();
            let fmt = if quiet {
                Some("{{.ID}}")
            } else {
                format.as_deref()
            };
            let f = Format::new(fmt, "table {{.ID}}\t{{.Name}}\t{{.Driver}}\t{{.Scope}}")
                .map_err(|e| status(1, e))?
                .in_context(Ctx("*network.networkContext"));
            print!(
                "{}",
                f.render_labeled(&rows, Some(&label_maps(&list)), NETWORK_HEADERS)
                    .map_err(|e| status(1, e))?
            );
            Ok(0)
        }
        NetworkCmd::Inspect { format, names } => {
            print_objects(c, &["network"], &names, format.as_deref(), false, true)
        }
        NetworkCmd::Rm { force, names } => {
            let code = each(&names, true, |n| {
                match c.delete(&format!("/networks/{}", seg(n))) {
                    Ok(_) => Ok(()),
                    Err(e) if force && e.is_not_found() => Ok(()),
                    Err(e) => Err(e.to_string()),
                }
            })?;
            // docker ends a failed `network rm` with this line.
            if code != 0 {
                return Err(status(1, "exit status 1"));
            }
            Ok(0)
        }
        NetworkCmd::Connect {
            alias,
            ip,
            network,
            container,
        } => {
            let mut ep = json!({});
            if !alias.is_empty() {
                ep["Aliases"] = json!(alias);
            }
            if let Some(ip) = ip {
                ep["IPAMConfig"] = json!({"IPv4Address": ip});
            }
            c.post(
                &format!("/networks/{}/connect", seg(&network)),
                Some(&json!({"Container": container, "EndpointConfig": ep})),
            )?;
            Ok(0)
        }
        NetworkCmd::Disconnect {
            force,
            network,
            container,
        } => {
            c.post(
                &format!("/networks/{}/disconnect", seg(&network)),
                Some(&json!({"Container": container, "Force": force})),
            )?;
            Ok(0)
        }
        NetworkCmd::Prune { filter, force } => {
            if !confirm(
                force,
                "WARNING! This will remove all custom networks not used by at least one container.",
            ) {
                return Ok(0);
            }
            let r: Value = c.post_json(
                &format!(
                    "/networks/prune{}",
                    query(&[("filters", filters_json(&filter)?)])
                ),
                None,
            )?;
            let deleted: Vec<&str> = r["NetworksDeleted"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if !deleted.is_empty() {
                println!("Deleted Networks:");
                for d in deleted {
                    println!("{d}");
                }
            }
            Ok(0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_times_like_go() {
        assert_eq!(
            go_time_string("0001-01-01T00:00:00Z"),
            "0001-01-01 00:00:00 +0000 UTC"
        );
        assert_eq!(
            go_time_string("2026-11-30T11:25:00.123400000Z"),
            "2026-11-30 11:25:00.1234 +0000 UTC"
        );
        assert_eq!(
            go_time_string("2026-11-30T12:25:00+01:00"),
            "2026-11-30 12:25:00 +0100 +0100"
        );
        assert_eq!(go_time_string("junk"), "junk");
    }
}
