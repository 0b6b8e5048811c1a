//! Human sizes and durations exactly as docker prints them (its go-units
//! rules: decimal sizes with 3 significant digits in Go's `%g`, binary sizes
//! with 4, and durations such as "About a minute").

const DECIMAL: [&str; 9] = ["B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB"];
const BINARY: [&str; 9] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB"];

/// Go's `%.{prec}g` for a finite, non-negative float.
pub fn go_g(x: f64, prec: usize) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let prec = prec.max(1);
    // Round to `prec` significant digits first: the exponent after rounding
    // decides between plain and exponent form, as Go does.
    let e = format!("{:.*e}", prec - 1, x);
    let (mant, exp) = e.split_once('e').unwrap_or((&e, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if exp < -4 || exp >= prec as i32 {
        let mant = trim_zeros(mant);
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mant}e{sign}{:02}", exp.abs());
    }
    let decimals = (prec as i32 - 1 - exp).max(0) as usize;
    trim_zeros(&format!("{x:.decimals$}"))
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

fn custom(size: f64, prec: usize, base: f64, units: &[&str]) -> String {
    let mut size = size;
    let mut i = 0;
    while size >= base && i < units.len() - 1 {
        size /= base;
        i += 1;
    }
    format!("{}{}", go_g(size, prec), units[i])
}

/// `units.HumanSizeWithPrecision(size, 3)`: "1.24MB".
pub fn human_size(size: f64) -> String {
    custom(size, 3, 1000.0, &DECIMAL)
}

/// `units.HumanSize`: 4 significant digits ("4.256MB"), as `system df` prints.
pub fn human_size4(size: f64) -> String {
    custom(size, 4, 1000.0, &DECIMAL)
}

/// `units.BytesSize`: "1.5MiB" (4 significant digits).
pub fn bytes_size(size: f64) -> String {
    custom(size, 4, 1024.0, &BINARY)
}

/// `units.HumanDuration` for a span in seconds.
pub fn human_duration(secs: f64) -> String {
    let seconds = secs as i64;
    if seconds < 1 {
        return "Less than a second".into();
    }
    if seconds == 1 {
        return "1 second".into();
    }
    if seconds < 60 {
        return format!("{seconds} seconds");
    }
    let minutes = (secs / 60.0) as i64;
    if minutes == 1 {
        return "About a minute".into();
    }
    if minutes < 60 {
        return format!("{minutes} minutes");
    }
    let hours = (secs / 3600.0).round() as i64;
    if hours == 1 {
        return "About an hour".into();
    }
    if hours < 48 {
        return format!("{hours} hours");
    }
    if hours < 24 * 7 * 2 {
        return format!("{} days", hours / 24);
    }
    if hours < 24 * 30 * 2 {
        return format!("{} weeks", hours / 24 / 7);
    }
    if hours < 24 * 365 * 2 {
        return format!("{} months", hours / 24 / 30);
    }
    format!("{} years", (secs / 3600.0) as i64 / 24 / 365)
}

/// Seconds since the epoch, now.
pub fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// "2 seconds ago" for a unix time.
pub fn ago(unix: f64) -> String {
    format!("{} ago", human_duration(now() - unix))
}

/// Parses docker's size strings for flags: `512m`, `1g`, `100k`, `1024` (bytes, binary multiples).
pub fn parse_ram(s: &str) -> Result<i64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').filter(|x| !x.is_empty()).unwrap_or(&t);
    let t = t.strip_suffix('i').unwrap_or(t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        Some('p') => (&t[..t.len() - 1], 1 << 50),
        _ => (t, 1),
    };
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("invalid size: '{s}'"))?;
    if n < 0.0 || !n.is_finite() {
        return Err(format!("invalid size: '{s}'"));
    }
    Ok((n * mult as f64) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_like_go_units() {
        assert_eq!(human_size(0.0), "0B");
        assert_eq!(human_size(999.0), "999B");
        assert_eq!(human_size(1000.0), "1kB");
        assert_eq!(human_size(12345.0), "12.3kB");
        assert_eq!(human_size(1_240_000.0), "1.24MB");
        assert_eq!(human_size(123_456_789.0), "123MB");
        // Go's %g switches to exponent form when rounding reaches the precision.
        assert_eq!(human_size(999_999.0), "1e+03kB");
        assert_eq!(bytes_size(1536.0 * 1024.0), "1.5MiB");
        assert_eq!(bytes_size(7.654e9), "7.128GiB");
        assert_eq!(bytes_size(0.0), "0B");
    }

    #[test]
    fn durations_like_go_units() {
        assert_eq!(human_duration(0.4), "Less than a second");
        assert_eq!(human_duration(1.0), "1 second");
        assert_eq!(human_duration(59.9), "59 seconds");
        assert_eq!(human_duration(60.0), "About a minute");
        assert_eq!(human_duration(119.0), "About a minute");
        assert_eq!(human_duration(120.0), "2 minutes");
        assert_eq!(human_duration(3599.0), "59 minutes");
        assert_eq!(human_duration(3600.0 * 1.4), "About an hour");
        assert_eq!(human_duration(3600.0 * 5.0), "5 hours");
        assert_eq!(human_duration(3600.0 * 50.0), "2 days");
        assert_eq!(human_duration(86400.0 * 20.0), "2 weeks");
        assert_eq!(human_duration(86400.0 * 90.0), "3 months");
        assert_eq!(human_duration(86400.0 * 800.0), "2 years");
    }

    #[test]
    fn ram_flags() {
        assert_eq!(parse_ram("512m"), Ok(512 << 20));
        assert_eq!(parse_ram("1g"), Ok(1 << 30));
        assert_eq!(parse_ram("1GB"), Ok(1 << 30));
        assert_eq!(parse_ram("100"), Ok(100));
        assert_eq!(parse_ram("1.5k"), Ok(1536));
        assert!(parse_ram("lots").is_err());
        assert!(parse_ram("-1m").is_err());
    }
}
