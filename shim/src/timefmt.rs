//! Wall-clock times as the shim reports them: protobuf Timestamps for the task API and
//! RFC 3339 with nanoseconds (Go's RFC3339Nano: trailing zeros of the fraction dropped) for logs.

use std::time::{SystemTime, UNIX_EPOCH};

use protobuf::well_known_types::timestamp::Timestamp;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Time {
    pub secs: i64,
    pub nanos: u32,
}

impl Time {
    pub fn now() -> Time {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Time {
            secs: d.as_secs() as i64,
            nanos: d.subsec_nanos(),
        }
    }

    pub fn to_proto(self) -> Timestamp {
        let mut t = Timestamp::new();
        t.seconds = self.secs;
        t.nanos = self.nanos as i32;
        t
    }

    /// `2006-01-02T15:04:05.999999999Z`, as Go's time.RFC3339Nano prints UTC.
    pub fn rfc3339_nano(self) -> String {
        let days = self.secs.div_euclid(86_400);
        let rem = self.secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let mut s = format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        );
        if self.nanos != 0 {
            let frac = format!("{:09}", self.nanos);
            s.push('.');
            s.push_str(frac.trim_end_matches('0'));
        }
        s.push('Z');
        s
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's published algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go_rfc3339nano() {
        let t = Time {
            secs: 1_700_000_000,
            nanos: 120_000_000,
        };
        assert_eq!(t.rfc3339_nano(), "2023-11-14T22:13:20.12Z");
        let t = Time { secs: 0, nanos: 0 };
        assert_eq!(t.rfc3339_nano(), "1970-01-01T00:00:00Z");
        let t = Time {
            secs: 951_782_400,
            nanos: 1,
        };
        assert_eq!(t.rfc3339_nano(), "2000-02-29T00:00:00.000000001Z");
    }
}
