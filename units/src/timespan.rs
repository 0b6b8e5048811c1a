//! Time spans as systemd writes them (`systemd.time(7)`): `90`, `1min 30s`, `1h30min`,
//! `500ms`, `1.5s`, `infinity`. A bare number is seconds.

use std::time::Duration;

/// A parsed span: `None` is `infinity`.
pub type Span = Option<Duration>;

const UNITS: &[(&str, u128)] = &[
    ("usec", 1_000),
    ("us", 1_000),
    ("µs", 1_000),
    ("msec", 1_000_000),
    ("ms", 1_000_000),
    ("seconds", 1_000_000_000),
    ("second", 1_000_000_000),
    ("sec", 1_000_000_000),
    ("s", 1_000_000_000),
    ("minutes", 60_000_000_000),
    ("minute", 60_000_000_000),
    ("min", 60_000_000_000),
    ("m", 60_000_000_000),
    ("hours", 3_600_000_000_000),
    ("hour", 3_600_000_000_000),
    ("hr", 3_600_000_000_000),
    ("h", 3_600_000_000_000),
    ("days", 86_400_000_000_000),
    ("day", 86_400_000_000_000),
    ("d", 86_400_000_000_000),
    ("weeks", 604_800_000_000_000),
    ("week", 604_800_000_000_000),
    ("w", 604_800_000_000_000),
    ("months", 2_629_800_000_000_000),
    ("month", 2_629_800_000_000_000),
    ("M", 2_629_800_000_000_000),
    ("years", 31_557_600_000_000_000),
    ("year", 31_557_600_000_000_000),
    ("y", 31_557_600_000_000_000),
];

/// Parses a span; the error text says what was wrong with it.
pub fn parse(text: &str) -> Result<Span, String> {
    parse_with_default_unit(text, 1_000_000_000)
}

/// Parses a span whose bare numbers are in `default_ns` (systemd reads `WATCHDOG_USEC=` as µs).
pub fn parse_with_default_unit(text: &str, default_ns: u128) -> Result<Span, String> {
    let t = text.trim();
    if t == "infinity" {
        return Ok(None);
    }
    if t.is_empty() {
        return Err("empty time span".into());
    }
    let mut total: u128 = 0;
    let mut rest = t;
    while !rest.is_empty() {
        rest = rest.trim_start();
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..num_len];
        if num.is_empty() {
            return Err(format!(
                "invalid time span {text:?}: expected a number at {rest:?}"
            ));
        }
        rest = rest[num_len..].trim_start();
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.' || c.is_whitespace())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let mult = if unit.is_empty() {
            default_ns
        } else {
            UNITS
                .iter()
                .find(|(n, _)| *n == unit)
                .map(|(_, m)| *m)
                .ok_or_else(|| format!("invalid time span {text:?}: unknown unit {unit:?}"))?
        };
        let (int, frac) = num.split_once('.').unwrap_or((num, ""));
        if int.is_empty() && frac.is_empty() || frac.contains('.') {
            return Err(format!("invalid time span {text:?}: bad number {num:?}"));
        }
        let int_v: u128 = if int.is_empty() {
            0
        } else {
            int.parse()
                .map_err(|_| format!("invalid time span {text:?}: number too large"))?
        };
        let mut part = int_v
            .checked_mul(mult)
            .ok_or_else(|| format!("invalid time span {text:?}: too large"))?;
        let mut scale = mult;
        for d in frac.chars().take(12) {
            scale /= 10;
            part += u128::from(d.to_digit(10).unwrap_or(0)) * scale;
        }
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("invalid time span {text:?}: too large"))?;
    }
    let secs = u64::try_from(total / 1_000_000_000)
        .map_err(|_| format!("invalid time span {text:?}: too large"))?;
    Ok(Some(Duration::new(secs, (total % 1_000_000_000) as u32)))
}

/// Formats a span the way systemctl shows them: `1min 30s`, `500ms`, `infinity`.
pub fn format(span: Span) -> String {
    let Some(d) = span else {
        return "infinity".into();
    };
    if d.is_zero() {
        return "0".into();
    }
    let mut ns = d.as_nanos();
    let mut out = Vec::new();
    for (name, mult) in [
        ("d", 86_400_000_000_000u128),
        ("h", 3_600_000_000_000),
        ("min", 60_000_000_000),
        ("s", 1_000_000_000),
        ("ms", 1_000_000),
        ("us", 1_000),
    ] {
        if ns >= mult {
            out.push(format!("{}{name}", ns / mult));
            ns %= mult;
        }
    }
    out.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Result<Span, String> {
        Ok(Some(Duration::from_millis(v)))
    }

    #[test]
    fn systemd_examples() {
        assert_eq!(parse("2 h"), ms(7_200_000));
        assert_eq!(parse("2hours"), ms(7_200_000));
        assert_eq!(parse("48hr"), ms(172_800_000));
        assert_eq!(
            parse("1y 12month"),
            Ok(Some(Duration::from_secs(31_557_600 + 31_557_600)))
        );
        assert_eq!(parse("55s500ms"), ms(55_500));
        assert_eq!(parse("300ms20s 5day"), ms(300 + 20_000 + 5 * 86_400_000));
        assert_eq!(parse("1min 30s"), ms(90_000));
        assert_eq!(parse("1min30s"), ms(90_000));
        assert_eq!(parse("500ms"), ms(500));
        assert_eq!(parse("90"), ms(90_000));
        assert_eq!(parse("1.5s"), ms(1_500));
        assert_eq!(parse("0.25"), ms(250));
        assert_eq!(parse("infinity"), Ok(None));
        assert_eq!(parse(" 10us "), Ok(Some(Duration::from_micros(10))));
    }

    #[test]
    fn bad_spans_say_why() {
        assert!(parse("").unwrap_err().contains("empty"));
        assert!(parse("5 parsecs")
            .unwrap_err()
            .contains("unknown unit \"parsecs\""));
        assert!(parse("s").unwrap_err().contains("expected a number"));
        assert!(parse("1.2.3s").is_err());
        assert!(parse("-5s").is_err());
        assert!(parse("99999999999999999999999999y").is_err());
    }

    #[test]
    fn microsecond_default_unit() {
        assert_eq!(
            parse_with_default_unit("3000000", 1_000),
            Ok(Some(Duration::from_secs(3)))
        );
    }

    #[test]
    fn formats_like_systemctl() {
        let f = |v: u64| format(Some(Duration::from_millis(v)));
        assert_eq!(f(90_000), "1min 30s");
        assert_eq!(f(500), "500ms");
        assert_eq!(format(None), "infinity");
        assert_eq!(f(0), "0");
    }
}
