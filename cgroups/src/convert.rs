//! Conversions between the runtime spec's v1-flavoured numbers and cgroup v2 files.

use crate::error::{Error, Result};

/// cpu.shares range (the kernel clamps writes into it).
const SHARES_MIN: u64 = 2;
const SHARES_MAX: u64 = 262_144;

/// Maps v1 cpu shares (2..=262144, default 1024) linearly onto v2 cpu.weight (1..=10000):
/// the ends meet the ends, so 2 -> 1 and 262144 -> 10000. 0 means "not set".
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    let s = shares.clamp(SHARES_MIN, SHARES_MAX);
    1 + (s - SHARES_MIN) * 9999 / (SHARES_MAX - SHARES_MIN)
}

/// The inverse of `shares_to_weight`, for showing a v2 weight as shares. One weight step
/// spans about 26 shares, so a round trip lands within that of the original.
pub fn weight_to_shares(weight: u64) -> u64 {
    if weight == 0 {
        return 0;
    }
    let w = weight.clamp(1, 10_000);
    SHARES_MIN + ((w - 1) * (SHARES_MAX - SHARES_MIN)).div_ceil(9999)
}

/// Maps a v1 blkio weight (10..=1000) linearly onto v2 io.weight (1..=10000).
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    if weight == 0 {
        return 0;
    }
    let w = u64::from(weight).clamp(10, 1000);
    1 + (w - 10) * 9999 / 990
}

/// A v2 memory.swap.max value from the spec's v1-style memory.swap, which counts memory plus
/// swap, and memory.limit. Returns None when nothing should be written, "max" for unlimited.
pub fn swap_to_v2(swap: Option<i64>, limit: Option<i64>) -> Result<Option<String>> {
    let field = "linux.resources.memory.swap";
    let Some(swap) = swap else {
        return Ok(None);
    };
    if swap == -1 {
        return Ok(Some("max".into()));
    }
    if swap == 0 && matches!(limit, None | Some(-1) | Some(0)) {
        // 0 is the zero value runtimes emit for "unset".
        return Ok(None);
    }
    if swap < 0 {
        return Err(Error::invalid(
            field,
            format!("{swap} is negative (use -1 for unlimited)"),
        ));
    }
    match limit {
        None | Some(0) => Err(Error::invalid(
            field,
            "memory plus swap cannot be limited without memory.limit",
        )),
        Some(-1) => Err(Error::invalid(
            field,
            "memory plus swap cannot be limited while memory.limit is unlimited (-1)",
        )),
        Some(l) if swap < l => Err(Error::invalid(
            field,
            format!("{swap} is below memory.limit {l}; swap counts memory plus swap"),
        )),
        Some(l) => Ok(Some((swap - l).to_string())),
    }
}

/// A byte limit as a v2 file value: -1 is "max".
pub fn limit_to_v2(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_weight_ends_and_default() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262_144), 10_000);
        assert_eq!(shares_to_weight(1024), 39);
        assert_eq!(shares_to_weight(0), 0);
        assert_eq!(shares_to_weight(1), 1);
        assert_eq!(shares_to_weight(1_000_000), 10_000);
    }

    #[test]
    fn weight_shares_round_trip() {
        for s in [2u64, 100, 1024, 4096, 262_144] {
            let back = weight_to_shares(shares_to_weight(s));
            assert!(back.abs_diff(s) <= 27, "{s} -> {back}");
        }
        assert_eq!(weight_to_shares(1), 2);
        assert_eq!(weight_to_shares(10_000), 262_144);
    }

    #[test]
    fn blkio_weight_maps_ends() {
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
        assert_eq!(blkio_weight_to_io_weight(0), 0);
    }

    #[test]
    fn swap_semantics() {
        assert_eq!(swap_to_v2(None, Some(100)).unwrap(), None);
        assert_eq!(
            swap_to_v2(Some(-1), Some(100)).unwrap().as_deref(),
            Some("max")
        );
        assert_eq!(
            swap_to_v2(Some(300), Some(100)).unwrap().as_deref(),
            Some("200")
        );
        assert_eq!(
            swap_to_v2(Some(100), Some(100)).unwrap().as_deref(),
            Some("0")
        );
        assert_eq!(swap_to_v2(Some(0), None).unwrap(), None);
        let e = swap_to_v2(Some(50), Some(100)).unwrap_err().to_string();
        assert!(e.contains("memory.swap") && e.contains("below"), "{e}");
        assert!(swap_to_v2(Some(300), None).is_err());
        assert!(swap_to_v2(Some(300), Some(-1)).is_err());
        assert!(swap_to_v2(Some(-5), Some(100)).is_err());
    }

    #[test]
    fn v2_limits() {
        assert_eq!(limit_to_v2(-1), "max");
        assert_eq!(limit_to_v2(4096), "4096");
    }
}
