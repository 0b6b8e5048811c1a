//! KOS's unit endpoints under `/kos/` (outside Docker's paths): list, inspect, status,
//! cat, logs, start/stop/restart (answered when the job ends), enable/disable, reload.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, Response, StatusCode};
use axum::Json;
use kos_units::loader::InstallChange;
use kos_units::{ActiveState, UnitStatus};
use serde_json::{json, Value};

use super::params::Params;
use crate::containers::logs::{self, LogOptions};
use crate::engine::Engine;
use crate::error::{ApiError, Result};
use crate::units::{Host, Units};

type E = State<Arc<Engine>>;

/// Lines of log `status` shows unless asked.
const DEFAULT_STATUS_LINES: usize = 10;
/// At most this many log lines in `status`.
const MAX_STATUS_LINES: usize = 10_000;

fn units(e: &Engine) -> Result<Arc<Units>> {
    e.units.get().cloned().ok_or_else(|| {
        ApiError::NotFound(
            "the unit manager is not running (kosd --units=false, or its units failed to load)"
                .into(),
        )
    })
}

fn nanos(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The contract's UnitSummary.
fn summary(st: &UnitStatus, container: Option<String>) -> Value {
    let active_enter = match (st.active_state, st.since) {
        (ActiveState::Active, Some(t)) => crate::timefmt::rfc3339_nanos(nanos(t)),
        _ => String::new(),
    };
    json!({
        "Name": st.name,
        "Description": st.description,
        "LoadState": st.load_state,
        "ActiveState": st.active_state.as_str(),
        "SubState": st.sub_state,
        "Result": st.result.as_str(),
        "MainPID": st.main_pid.unwrap_or(0),
        "Status": st.status_text.clone().unwrap_or_default(),
        "ActiveEnterTimestamp": active_enter,
        "UnitFileState": st.file_state,
        "Preset": st.preset,
        "ContainerID": container.unwrap_or_default(),
    })
}

fn summary_of(h: &Host, name: &str) -> kos_units::Result<Value> {
    let st = h.m.status(name)?;
    let cid = h.m.runtime().container_id(&st.name);
    Ok(summary(&st, cid))
}

fn text(body: String) -> Response<Body> {
    let mut r = Response::new(Body::from(body));
    r.headers_mut().insert(
        "Content-Type",
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// `GET /kos/units`.
pub async fn list(State(e): E, p: Params) -> Result<Json<Value>> {
    let all = p.bool("all")?;
    let v = units(&e)?
        .call(move |h| {
            h.m.list()
                .into_iter()
                // As list-units: without --all only what is loaded and not idle.
                .filter(|s| {
                    all || (s.load_state != "not-found"
                        && (s.active_state != ActiveState::Inactive || s.job.is_some()))
                })
                .map(|s| {
                    let cid = h.m.runtime().container_id(&s.name);
                    summary(&s, cid)
                })
                .collect::<Vec<_>>()
        })
        .await?;
    Ok(Json(Value::Array(v)))
}

/// `GET /kos/units/NAME`.
pub async fn inspect(State(e): E, Path(name): Path<String>) -> Result<Json<Value>> {
    let v = units(&e)?
        .call(move |h| -> kos_units::Result<Value> {
            let n = h.m.resolve(&name)?;
            let st = h.m.status(&n)?;
            let mut v = summary_of(h, &n)?;
            v["FragmentPath"] = json!(st
                .fragment
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default());
            v["DropInPaths"] = json!(st
                .dropins
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>());
            let def = h.m.definition(&n);
            let deps = def.map(|d| d.deps.clone()).unwrap_or_default();
            let install = def.map(|d| d.install.clone());
            v["Requires"] = json!(deps.requires);
            v["Wants"] = json!(deps.wants);
            v["BindsTo"] = json!(deps.binds_to);
            v["After"] = json!(deps.after);
            v["Before"] = json!(deps.before);
            v["Conflicts"] = json!(deps.conflicts);
            v["WantedBy"] = json!(install
                .as_ref()
                .map(|i| i.wanted_by.clone())
                .unwrap_or_default());
            v["RequiredBy"] = json!(install.map(|i| i.required_by).unwrap_or_default());
            Ok(v)
        })
        .await??;
    Ok(Json(v))
}

/// The last `n` lines of a container's log, as journalctl shows them under status.
fn last_log_lines(e: &Engine, container: &str, unit: &str, n: usize) -> Vec<String> {
    if n == 0 {
        return Vec::new();
    }
    let Ok(c) = crate::containers::runtime::load(e, container) else {
        return Vec::new();
    };
    let o = LogOptions {
        stdout: true,
        stderr: true,
        tail: Some(n),
        ..Default::default()
    };
    let Ok((entries, _)) = logs::past(&c.log_path, &o) else {
        return Vec::new();
    };
    entries
        .iter()
        .map(|en| {
            let t = crate::timefmt::rfc3339_nanos(en.time_nano);
            let line = String::from_utf8_lossy(&en.data);
            format!(
                "{} {unit}: {}",
                &t[..19.min(t.len())],
                line.trim_end_matches('\n')
            )
        })
        .collect()
}

/// `GET /kos/units/NAME/status?lines=N`.
pub async fn status(State(e): E, Path(name): Path<String>, p: Params) -> Result<Response<Body>> {
    let lines = match p.int("lines")? {
        None => DEFAULT_STATUS_LINES,
        Some(n) if n >= 0 => (n as usize).min(MAX_STATUS_LINES),
        Some(n) => {
            return Err(ApiError::bad(format!(
                "invalid lines {n}: must be 0 or more"
            )))
        }
    };
    let (st, cid) = units(&e)?
        .call(move |h| -> kos_units::Result<_> {
            let st = h.m.status(&name)?;
            let cid = h.m.runtime().container_id(&st.name);
            Ok((st, cid))
        })
        .await??;
    let eng = e.clone();
    let unit = st.name.clone();
    let log = tokio::task::spawn_blocking(move || {
        cid.map(|c| last_log_lines(&eng, &c, &unit, lines))
            .unwrap_or_default()
    })
    .await?;
    Ok(text(kos_units::status::render_status(
        &st,
        SystemTime::now(),
        &log,
    )))
}

/// `GET /kos/units/NAME/file`.
pub async fn file(State(e): E, Path(name): Path<String>) -> Result<Response<Body>> {
    let s = units(&e)?.call(move |h| h.m.cat(&name)).await??;
    Ok(text(s))
}

/// `GET /kos/units/NAME/logs`: `GET /containers/{id}/logs` of the unit's container.
pub async fn logs_of(State(e): E, Path(name): Path<String>, p: Params) -> Result<Response<Body>> {
    let (unit, cid) = units(&e)?
        .call(move |h| -> kos_units::Result<_> {
            let n = h.m.resolve(&name)?;
            h.m.status(&n)?;
            let cid = h.m.runtime().container_id(&n);
            Ok((n, cid))
        })
        .await??;
    let cid = cid.ok_or_else(|| ApiError::NotFound(format!("unit {unit} has no container")))?;
    super::containers::logs(State(e), Path(cid), p).await
}

fn job_json(o: crate::units::JobOutcome) -> Json<Value> {
    Json(json!({"Job": o.id, "Unit": o.unit, "Type": o.kind, "Result": o.result}))
}

/// `POST /kos/units/NAME/{start,stop,restart,enable,disable}`.
pub async fn action(
    State(e): E,
    Path((name, action)): Path<(String, String)>,
) -> Result<Response<Body>> {
    let u = units(&e)?;
    let json = match action.as_str() {
        "start" | "stop" | "restart" => {
            let kind: &'static str = match action.as_str() {
                "start" => "start",
                "stop" => "stop",
                _ => "restart",
            };
            let o = u
                .job(move |h| {
                    let n = h.m.resolve(&name)?;
                    let id = match kind {
                        "start" => h.m.start(&n)?,
                        "stop" => h.m.stop(&n)?,
                        _ => h.m.restart(&n)?,
                    };
                    Ok((id, n, kind))
                })
                .await?;
            job_json(o)
        }
        "enable" | "disable" => {
            let on = action == "enable";
            let changes = u
                .call(move |h| {
                    if on {
                        h.m.enable(&name)
                    } else {
                        h.m.disable(&name)
                    }
                })
                .await??;
            let changes: Vec<Value> = changes
                .iter()
                .map(|c| match c {
                    InstallChange::Symlink { link, target } => json!({
                        "Type": "symlink",
                        "Path": link.display().to_string(),
                        "Source": target.display().to_string(),
                    }),
                    InstallChange::Removed { link } => json!({
                        "Type": "unlink",
                        "Path": link.display().to_string(),
                        "Source": "",
                    }),
                })
                .collect();
            Json(json!({ "Changes": changes }))
        }
        other => {
            return Err(ApiError::NotFound(format!(
                "unknown unit action {other:?}: expected start, stop, restart, enable or disable"
            )))
        }
    };
    Ok(axum::response::IntoResponse::into_response(json))
}

/// `POST /kos/units/reload`.
pub async fn reload(State(e): E) -> Result<Response<Body>> {
    units(&e)?.call(|h| h.m.reload()).await??;
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::NO_CONTENT;
    Ok(r)
}
