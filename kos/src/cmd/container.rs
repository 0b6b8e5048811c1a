//! Container state changes: stop, restart, kill, rm, pause, unpause, wait,
//! rename, update, prune; and what a container's filesystem holds: diff, export.

use anyhow::Result;
use serde_json::{json, Value};

use super::{each, seg};
use crate::cli::{
    ContainersCmd, DiffCmd, ExportCmd, KillCmd, PruneCmd, RenameCmd, RmCmd, StopCmd, UpdateCmd,
};
use crate::client::{query, Client};
use crate::format::units::{human_size4, parse_ram};
use crate::status;

pub fn stop(c: &Client, s: StopCmd, op: &str) -> Result<i32> {
    let q = query(&[
        ("t", s.timeout.map(|t| t.to_string()).unwrap_or_default()),
        ("signal", s.signal.clone().unwrap_or_default()),
    ]);
    each(&s.containers, true, |n| {
        c.post(&format!("/containers/{}/{op}{q}", seg(n)), None)
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
}

pub fn kill(c: &Client, k: KillCmd) -> Result<i32> {
    let q = query(&[("signal", k.signal.clone())]);
    each(&k.containers, true, |n| {
        c.post(&format!("/containers/{}/kill{q}", seg(n)), None)
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
}

pub fn rm(c: &Client, r: RmCmd) -> Result<i32> {
    let b = |x: bool| if x { "1".to_string() } else { String::new() };
    let q = query(&[
        ("force", b(r.force)),
        ("v", b(r.volumes)),
        ("link", b(r.link)),
    ]);
    each(&r.containers, true, |n| {
        c.delete(&format!("/containers/{}{q}", seg(n.trim_matches('/'))))
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
}

pub fn simple(c: &Client, p: ContainersCmd, op: &str) -> Result<i32> {
    each(&p.containers, true, |n| {
        c.post(&format!("/containers/{}/{op}", seg(n)), None)
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
}

pub fn wait(c: &Client, w: ContainersCmd) -> Result<i32> {
    each(&w.containers, false, |n| {
        let v: Value = c
            .post_json(&format!("/containers/{}/wait", seg(n)), None)
            .map_err(|e| e.to_string())?;
        if let Some(m) = v["Error"]["Message"].as_str().filter(|m| !m.is_empty()) {
            return Err(m.to_string());
        }
        println!("{}", v["StatusCode"].as_i64().unwrap_or(-1));
        Ok(())
    })
}

pub fn rename(c: &Client, r: RenameCmd) -> Result<i32> {
    let new = r.new_name.trim();
    if new.is_empty() || new.trim_start_matches('/').is_empty() {
        return Err(status(1, "Error: Neither old nor new names may be empty"));
    }
    c.post(
        &format!(
            "/containers/{}/rename{}",
            seg(&r.container),
            query(&[("name", new.to_string())])
        ),
        None,
    )?;
    Ok(0)
}

pub fn update(c: &Client, u: UpdateCmd) -> Result<i32> {
    let mut body = json!({});
    let ram = |v: &Option<String>| -> Result<Option<i64>> {
        v.as_deref()
            .map(|s| if s == "-1" { Ok(-1) } else { parse_ram(s) })
            .transpose()
            .map_err(|e| status(125, e))
    };
    let set = |b: &mut Value, k: &str, v: Option<Value>| {
        if let Some(v) = v {
            b[k] = v;
        }
    };
    set(&mut body, "BlkioWeight", u.blkio_weight.map(|x| json!(x)));
    set(&mut body, "CpuPeriod", u.cpu_period.map(|x| json!(x)));
    set(&mut body, "CpuQuota", u.cpu_quota.map(|x| json!(x)));
    set(&mut body, "CpuShares", u.cpu_shares.map(|x| json!(x)));
    if let Some(cpus) = &u.cpus {
        body["NanoCpus"] = json!(crate::opts::parse_cpus(cpus).map_err(|e| status(125, e))?);
    }
    set(
        &mut body,
        "CpusetCpus",
        u.cpuset_cpus.clone().map(Value::String),
    );
    set(
        &mut body,
        "CpusetMems",
        u.cpuset_mems.clone().map(Value::String),
    );
    set(&mut body, "Memory", ram(&u.memory)?.map(|x| json!(x)));
    set(
        &mut body,
        "MemoryReservation",
        ram(&u.memory_reservation)?.map(|x| json!(x)),
    );
    set(
        &mut body,
        "MemorySwap",
        ram(&u.memory_swap)?.map(|x| json!(x)),
    );
    set(&mut body, "PidsLimit", u.pids_limit.map(|x| json!(x)));
    if let Some(r) = &u.restart {
        let p = crate::opts::parse_restart(r).map_err(|e| status(125, e))?;
        body["RestartPolicy"] = serde_json::to_value(p)?;
    }
    if body.as_object().is_some_and(|o| o.is_empty()) {
        return Err(status(
            1,
            "you must provide one or more flags when using this command",
        ));
    }
    each(&u.containers, true, |n| {
        let v: Value = c
            .post_json(&format!("/containers/{}/update", seg(n)), Some(&body))
            .map_err(|e| e.to_string())?;
        for w in v["Warnings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            eprintln!("{w}");
        }
        Ok(())
    })
}

/// `container prune`: docker's prompt, the removed ids, the space reclaimed.
pub fn prune(c: &Client, p: PruneCmd) -> Result<i32> {
    if !super::objects::confirm(p.force, "WARNING! This will remove all stopped containers.") {
        return Ok(0);
    }
    let q = query(&[("filters", super::filters_json(&p.filter)?)]);
    let r: Value = c.post_json(&format!("/containers/prune{q}"), None)?;
    let ids: Vec<&str> = r["ContainersDeleted"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !ids.is_empty() {
        println!("Deleted Containers:\n{}\n", ids.join("\n"));
    }
    println!(
        "Total reclaimed space: {}",
        human_size4(r["SpaceReclaimed"].as_f64().unwrap_or(0.0))
    );
    Ok(0)
}

/// docker's change kinds: 0 modified, 1 added, 2 deleted.
fn change_kind(k: i64) -> &'static str {
    match k {
        0 => "C",
        1 => "A",
        2 => "D",
        _ => "?",
    }
}

pub fn diff(c: &Client, d: DiffCmd) -> Result<i32> {
    let changes: Value = c.get_json(&format!("/containers/{}/changes", seg(&d.container)))?;
    for ch in changes.as_array().into_iter().flatten() {
        println!(
            "{} {}",
            change_kind(ch["Kind"].as_i64().unwrap_or(-1)),
            ch["Path"].as_str().unwrap_or("")
        );
    }
    Ok(0)
}

pub fn export(c: &Client, e: ExportCmd) -> Result<i32> {
    if e.output.is_none() && crate::tty::is_tty(1) {
        return Err(status(
            1,
            "cowardly refusing to save to a terminal. Use the -o flag or redirect",
        ));
    }
    let r = c.get(&format!("/containers/{}/export", seg(&e.container)))?;
    super::image::write_stream(r, e.output.as_deref())
        .map_err(|x| status(1, format!("failed to export container: {x}")))?;
    Ok(0)
}
