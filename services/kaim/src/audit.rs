//! The audit log: one JSON object per decision, appended with a single write so concurrent
//! records never interleave.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::identity::Client;

#[derive(Debug, Serialize)]
pub struct Record<'a> {
    pub time: String,
    pub client: &'a Client,
    pub method: &'a str,
    pub path: &'a str,
    pub decision: &'static str,
    pub reason: &'a str,
    pub policy: &'a str,
}

pub struct Audit {
    file: Mutex<File>,
}

impl Audit {
    pub fn open(path: &Path) -> Result<Audit> {
        use std::os::unix::fs::OpenOptionsExt;
        let file = File::options()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|source| Error::AuditOpen {
                path: path.to_path_buf(),
                source,
            })?;
        Ok(Audit {
            file: Mutex::new(file),
        })
    }

    pub fn write(&self, rec: &Record<'_>) -> Result<()> {
        let mut line = serde_json::to_vec(rec).map_err(|e| Error::AuditWrite(e.into()))?;
        line.push(b'\n');
        let mut f = match self.file.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        f.write_all(&line).map_err(Error::AuditWrite)
    }
}

/// RFC 3339 UTC time with microseconds.
pub fn now_rfc3339() -> String {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    rfc3339(d.as_secs(), d.subsec_micros())
}

fn rfc3339(secs: u64, micros: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (Howard Hinnant's algorithm).
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
    fn formats_known_instants() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(951_782_400, 5), "2000-02-29T00:00:00.000005Z");
        assert_eq!(rfc3339(1_798_761_599, 0), "2026-12-31T23:59:59.000000Z");
    }
}
