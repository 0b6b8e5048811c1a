//! `kos system list|status|start|stop|restart|enable|disable|logs|cat|reload`:
//! kosd's units through its `/kos/units` API, printed as systemctl prints them.

pub mod render;

use std::io::Write;

use anyhow::Result;
use serde_json::Value;

use super::seg;
use crate::cli::{UnitEnableCmd, UnitListCmd, UnitLogsCmd, UnitNamesCmd, UnitStatusCmd};
use crate::client::{query, Client, ClientError, MAX_JSON};
use crate::format::{json_ordered, Format, KeyOrder};
use crate::status;
use render::{change_line, glob_match, job_failure, list_table, UNIT_HEADERS};

/// UnitSummary's fields in the order the API contract lists them.
const SUMMARY_ORDER: KeyOrder = KeyOrder {
    keys: &[
        "Name",
        "Description",
        "LoadState",
        "ActiveState",
        "SubState",
        "Result",
        "MainPID",
        "Status",
        "ActiveEnterTimestamp",
        "UnitFileState",
        "Preset",
        "ContainerID",
    ],
    nested: &[],
};

fn unit_path(name: &str, rest: &str) -> String {
    format!("/kos/units/{}{rest}", seg(name))
}

fn text(c: &Client, path: &str) -> std::result::Result<String, ClientError> {
    let b = c
        .get(path)?
        .bytes(MAX_JSON)
        .map_err(|e| ClientError::Io(format!("reading {path}"), e))?;
    Ok(String::from_utf8_lossy(&b).into_owned())
}

pub fn list(c: &Client, l: UnitListCmd) -> Result<i32> {
    let q = query(&[("all", if l.all { "1".into() } else { String::new() })]);
    let mut units: Vec<Value> = c.get_json(&format!("/kos/units{q}"))?;
    if !l.patterns.is_empty() {
        units.retain(|u| {
            let n = u["Name"].as_str().unwrap_or("");
            l.patterns.iter().any(|p| glob_match(p, n))
        });
    }
    let out = match l.format.as_deref().map(str::trim) {
        None | Some("") => list_table(&units, l.all, !l.no_legend),
        // One object per line in the contract's field order.
        Some("json") => units
            .iter()
            .map(|u| json_ordered(u, &SUMMARY_ORDER) + "\n")
            .collect(),
        Some(f) => {
            let default = "table {{.Name}}\t{{.LoadState}}\t{{.ActiveState}}\t{{.SubState}}\t{{.Description}}";
            Format::new(Some(f), default)
                .and_then(|t| t.render(&units, UNIT_HEADERS))
                .map_err(|e| status(1, e))?
        }
    };
    print!("{out}");
    Ok(0)
}

/// systemctl's exit codes: 0 when every unit is active, 3 when one is not,
/// 4 when one does not exist.
pub fn status_cmd(c: &Client, s: UnitStatusCmd) -> Result<i32> {
    let mut code = 0;
    let mut first = true;
    let mut out = std::io::stdout().lock();
    for name in &s.units {
        let summary: Value = match c.get_json(&unit_path(name, "")) {
            Ok(v) => v,
            Err(e) if e.is_not_found() => {
                eprintln!("Unit {name} could not be found.");
                code = 4;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let body = text(c, &unit_path(name, &format!("/status?lines={}", s.lines)))?;
        if !first {
            writeln!(out)?;
        }
        first = false;
        out.write_all(body.as_bytes())?;
        if !body.is_empty() && !body.ends_with('\n') {
            writeln!(out)?;
        }
        let active = matches!(
            summary["ActiveState"].as_str(),
            Some("active" | "reloading" | "refreshing")
        );
        if !active && code == 0 {
            code = 3;
        }
    }
    out.flush()?;
    Ok(code)
}

/// Runs one job per unit; every failure is reported, the exit is 1 if any failed.
pub fn job(c: &Client, names: &[String], verb: &str) -> Result<i32> {
    let mut code = 0;
    for name in names {
        match c.post_json::<Value>(&unit_path(name, &format!("/{verb}")), None) {
            Ok(r) => {
                let unit = r["Unit"].as_str().unwrap_or(name);
                if let Some(msg) = job_failure(unit, r["Result"].as_str().unwrap_or("")) {
                    eprintln!("{msg}");
                    code = 1;
                }
            }
            Err(ClientError::Daemon { message, .. }) => {
                eprintln!("Failed to {verb} {name}: {message}");
                code = 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(code)
}

pub fn enable(c: &Client, e: UnitEnableCmd, enable: bool) -> Result<i32> {
    let verb = if enable { "enable" } else { "disable" };
    let mut code = 0;
    for name in &e.units {
        match c.post_json::<Value>(&unit_path(name, &format!("/{verb}")), None) {
            Ok(r) => {
                if !e.quiet {
                    for ch in r["Changes"].as_array().into_iter().flatten() {
                        eprintln!("{}", change_line(ch));
                    }
                }
            }
            Err(ClientError::Daemon { message, .. }) => {
                eprintln!("Failed to {verb} unit: {message}");
                code = 1;
            }
            Err(x) => return Err(x.into()),
        }
    }
    // As systemctl: the manager reloads so the links take effect at once.
    if code == 0 && !e.no_reload {
        reload(c)?;
    }
    if code == 0 && e.now {
        code = job(c, &e.units, if enable { "start" } else { "stop" })?;
    }
    Ok(code)
}

pub fn logs(c: &Client, l: UnitLogsCmd) -> Result<i32> {
    let q = super::logs::log_query(
        l.follow,
        l.since.as_deref(),
        l.until.as_deref(),
        &l.tail,
        l.timestamps,
        false,
    );
    let r = c.get(&unit_path(&l.unit, &format!("/logs{q}")))?;
    // kosd names the framing as docker does: raw for a terminal's output.
    let tty = r
        .header("Content-Type")
        .is_some_and(|t| t.starts_with("application/vnd.docker.raw-stream"));
    super::logs::copy_logs(r, tty)
}

pub fn cat(c: &Client, n: UnitNamesCmd) -> Result<i32> {
    let mut code = 0;
    let mut first = true;
    let mut out = std::io::stdout().lock();
    for name in &n.units {
        match text(c, &unit_path(name, "/file")) {
            Ok(t) => {
                if !first {
                    writeln!(out)?;
                }
                first = false;
                out.write_all(t.as_bytes())?;
                if !t.is_empty() && !t.ends_with('\n') {
                    writeln!(out)?;
                }
            }
            Err(e) if e.is_not_found() => {
                eprintln!("No files found for {name}.");
                code = 1;
            }
            Err(e) => return Err(e.into()),
        }
    }
    out.flush()?;
    Ok(code)
}

pub fn reload(c: &Client) -> Result<i32> {
    c.post("/kos/units/reload", None)?;
    Ok(0)
}
