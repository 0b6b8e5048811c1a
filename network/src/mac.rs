//! MAC addresses: derived from an IP so that a container keeps its MAC across restarts and
//! neighbours' ARP caches stay right, and parsed from user requests.

use std::net::IpAddr;

use crate::error::{Error, Result};

/// 02:4b:<4 bytes of the address>: locally administered, unicast, 0x4b = 'K'.
pub fn from_ip(ip: IpAddr) -> [u8; 6] {
    let tail = match ip {
        IpAddr::V4(v4) => v4.octets(),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            [o[12], o[13], o[14], o[15]]
        }
    };
    [0x02, 0x4b, tail[0], tail[1], tail[2], tail[3]]
}

/// Parses "aa:bb:cc:dd:ee:ff"; multicast and all-zero addresses are refused.
pub fn parse(s: &str) -> Result<[u8; 6]> {
    let bad = || Error::InvalidMac(s.to_string());
    let mut out = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut out {
        let part = parts.next().ok_or_else(bad)?;
        if part.len() != 2 {
            return Err(bad());
        }
        *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
    }
    if parts.next().is_some() || out[0] & 1 == 1 || out == [0; 6] {
        return Err(bad());
    }
    Ok(out)
}

pub fn format(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_mac_is_local_unicast_and_follows_the_ip() {
        let m = from_ip("10.88.0.5".parse().unwrap());
        assert_eq!(format(&m), "02:4b:0a:58:00:05");
        assert_eq!(m[0] & 1, 0);
        assert_eq!(m[0] & 2, 2);
    }

    #[test]
    fn parse_round_trips_and_refuses_garbage() {
        assert_eq!(
            format(&parse("02:aa:bb:cc:dd:ee").unwrap()),
            "02:aa:bb:cc:dd:ee"
        );
        for bad in [
            "",
            "02:aa:bb:cc:dd",
            "02:aa:bb:cc:dd:ee:ff",
            "01:00:5e:00:00:01",
            "zz:aa:bb:cc:dd:ee",
            "00:00:00:00:00:00",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
