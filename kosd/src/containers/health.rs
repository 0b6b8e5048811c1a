//! Health checks: from the image or the run flags, run as execs on an
//! interval, with Docker's status, failing streak, log and events.

use std::sync::Arc;
use std::time::Duration;

use bollard_stubs::models::HealthConfig;

use super::record::{HealthLog, Status};
use super::runtime::{load, save};
use crate::engine::Engine;

const LOG_ENTRIES: usize = 5;
const OUTPUT_LIMIT: usize = 4096;

/// The image config's `Healthcheck`.
pub fn image_healthcheck(config_bytes: &[u8]) -> Option<HealthConfig> {
    let v: serde_json::Value = serde_json::from_slice(config_bytes).ok()?;
    serde_json::from_value(v["config"]["Healthcheck"].clone()).ok()
}

fn dur(n: Option<i64>, default: Duration) -> Duration {
    match n {
        Some(n) if n > 0 => Duration::from_nanos(n as u64),
        _ => default,
    }
}

/// The command to exec, or None for `NONE` / no test.
pub fn command(h: &HealthConfig) -> Option<Vec<String>> {
    let t = h.test.clone()?;
    match t.first().map(String::as_str) {
        Some("CMD") => Some(t[1..].to_vec()),
        Some("CMD-SHELL") => Some(vec!["/bin/sh".into(), "-c".into(), t[1..].join(" ")]),
        _ => None,
    }
}

/// Runs the container's health check until it stops.
pub fn spawn(e: Arc<Engine>, id: String) {
    let Ok(c) = load(&e, &id) else { return };
    let Some(h) = c.config.healthcheck.clone() else {
        return;
    };
    let Some(cmd) = command(&h) else { return };
    let started = c.state.started_at;
    tokio::spawn(async move {
        let interval = dur(h.interval, Duration::from_secs(30));
        let timeout = dur(h.timeout, Duration::from_secs(30));
        let start_period = dur(h.start_period, Duration::ZERO);
        let retries = h.retries.filter(|r| *r > 0).unwrap_or(3);
        let t0 = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(interval).await;
            match load(&e, &id) {
                Ok(c) if c.state.status == Status::Running && c.state.started_at == started => {}
                _ => return,
            }
            let begin = crate::timefmt::now_nanos();
            let (code, out) = match super::exec::run_captured(
                &e,
                &id,
                cmd.clone(),
                timeout,
                OUTPUT_LIMIT,
            )
            .await
            {
                Ok(r) => r,
                Err(err) => (-1, err.to_string()),
            };
            let end = crate::timefmt::now_nanos();
            let Ok(mut c) = load(&e, &id) else { return };
            if c.state.status != Status::Running || c.state.started_at != started {
                return;
            }
            let Some(hs) = c.state.health.as_mut() else {
                return;
            };
            let before = hs.status.clone();
            hs.log.push(HealthLog {
                start: begin,
                end,
                exit_code: code,
                output: out,
            });
            if hs.log.len() > LOG_ENTRIES {
                hs.log.remove(0);
            }
            if code == 0 {
                hs.failing_streak = 0;
                hs.status = "healthy".into();
            } else if t0.elapsed() >= start_period || hs.status != "starting" {
                hs.failing_streak += 1;
                if hs.failing_streak >= retries {
                    hs.status = "unhealthy".into();
                }
            }
            let now = hs.status.clone();
            let _ = save(&e, &c);
            if now != before {
                e.event(
                    "container",
                    &format!("health_status: {now}"),
                    &c.id,
                    &[("name", &c.name), ("image", &c.image)],
                );
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthcheck_commands() {
        let h = HealthConfig {
            test: Some(vec!["CMD-SHELL".into(), "true".into()]),
            ..Default::default()
        };
        assert_eq!(
            command(&h).unwrap_or_default(),
            vec!["/bin/sh", "-c", "true"]
        );
        let h = HealthConfig {
            test: Some(vec!["NONE".into()]),
            ..Default::default()
        };
        assert!(command(&h).is_none());
        let cfg = br#"{"config":{"Healthcheck":{"Test":["CMD","true"],"Interval":1000000000}},"rootfs":{"type":"layers","diff_ids":[]}}"#;
        assert_eq!(
            image_healthcheck(cfg).and_then(|h| h.interval),
            Some(1_000_000_000)
        );
    }
}
