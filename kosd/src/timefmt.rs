//! Docker's time formats: RFC 3339 with nanoseconds out; unix seconds,
//! RFC 3339 dates or Go durations (relative to now) in.

use chrono::{DateTime, SecondsFormat, Utc};

use crate::error::{ApiError, Result};

pub fn now_nanos() -> i64 {
    Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

/// `2024-01-02T03:04:05.123456789Z`
pub fn rfc3339_nanos(nanos: i64) -> String {
    DateTime::<Utc>::from_timestamp_nanos(nanos).to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// A time as dockerd's JSON writes one (Go's RFC3339Nano): the fraction without trailing
/// zeros, none at all for a whole second. Clients that parse and print a time again (the
/// docker CLI's `{{json .Created}}`) give back this form.
pub fn rfc3339_go(nanos: i64) -> String {
    let fixed = rfc3339_nanos(nanos);
    let Some((head, frac)) = fixed.strip_suffix('Z').and_then(|t| t.split_once('.')) else {
        return fixed;
    };
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        format!("{head}Z")
    } else {
        format!("{head}.{frac}Z")
    }
}

/// The zero time Docker prints for "never".
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

/// Parses a Go duration such as `1h30m`, `10s`, `500ms`.
pub fn parse_duration_nanos(s: &str) -> Option<i64> {
    let mut total: f64 = 0.0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_end == 0 {
            return None;
        }
        let n: f64 = rest[..num_end].parse().ok()?;
        rest = &rest[num_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let mult = match &rest[..unit_end] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += n * mult;
        rest = &rest[unit_end..];
    }
    Some(total as i64)
}

/// Parses a `since`/`until` value into unix nanoseconds.
pub fn parse_timestamp(s: &str) -> Result<i64> {
    let bad = || ApiError::bad(format!("invalid timestamp {s:?}"));
    if s.chars().all(|c| c.is_ascii_digit() || c == '.') && !s.is_empty() {
        let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
        let secs: i64 = secs.parse().map_err(|_| bad())?;
        let mut frac = frac.to_string();
        if frac.len() > 9 {
            return Err(bad());
        }
        while frac.len() < 9 {
            frac.push('0');
        }
        let nanos: i64 = frac.parse().map_err(|_| bad())?;
        return secs
            .checked_mul(1_000_000_000)
            .and_then(|v| v.checked_add(nanos))
            .ok_or_else(bad);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return t.timestamp_nanos_opt().ok_or_else(bad);
    }
    if let Some(d) = parse_duration_nanos(s) {
        return Ok(now_nanos() - d);
    }
    Err(bad())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(parse_timestamp("10").unwrap(), 10_000_000_000);
        assert_eq!(parse_timestamp("10.5").unwrap(), 10_500_000_000);
        assert_eq!(
            parse_timestamp("1970-01-01T00:00:01Z").unwrap(),
            1_000_000_000
        );
        let rel = parse_timestamp("1m").unwrap();
        assert!((now_nanos() - rel - 60_000_000_000).abs() < 5_000_000_000);
        assert_eq!(parse_duration_nanos("1h30m"), Some(5_400_000_000_000));
        assert!(parse_timestamp("yesterday").is_err());
        assert_eq!(
            rfc3339_nanos(1_500_000_000),
            "1970-01-01T00:00:01.500000000Z"
        );
        assert_eq!(rfc3339_go(1_500_000_000), "1970-01-01T00:00:01.5Z");
        assert_eq!(rfc3339_go(1_004_733_010), "1970-01-01T00:00:01.00473301Z");
        assert_eq!(rfc3339_go(2_000_000_000), "1970-01-01T00:00:02Z");
    }
}
