//! Name rules and the names KOS derives (bridges, host-side veth ends).

use crate::error::{Error, Result};

/// Longest interface name the kernel accepts (IFNAMSIZ - 1).
pub const IFNAME_MAX: usize = 15;

fn safe_chars(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-')
}

pub fn check_network_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && safe_chars(name)
        && name.as_bytes()[0].is_ascii_alphanumeric();
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidName(name.to_string()))
    }
}

/// Container ids become file names (records, pins): no separators, no dot-only names.
pub fn check_container_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && safe_chars(id)
        && id != "."
        && id != ".."
        && !id.starts_with('.');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidContainerId(id.to_string()))
    }
}

/// Interface names: 1-15 bytes, no '/', ':', whitespace; '.' refused too because it would make
/// the /proc/sys path of the interface ambiguous.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= IFNAME_MAX
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// FNV-1a: stable across builds and processes, so derived names can be recomputed after a
/// crash from the record alone.
pub fn stable_hash(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain(std::iter::once(0)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// Prefix of the host-side veth ends KOS makes.
pub const VETH_PREFIX: &str = "kv";

/// Host-side veth name of `container` on `network`: "kv" + 12 hex digits (14 bytes).
pub fn host_veth_name(container: &str, network: &str) -> String {
    format!(
        "{VETH_PREFIX}{:012x}",
        stable_hash(&[container, network]) & 0xffff_ffff_ffff
    )
}

/// Default bridge name of a user network: "kosb" + 8 hex digits.
pub fn default_bridge_name(network: &str) -> String {
    format!("kosb{:08x}", stable_hash(&[network]) & 0xffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_names_fit_ifnamsiz() {
        let v = host_veth_name("a-very-long-container-id-0123456789abcdef", "net");
        assert!(valid_ifname(&v) && v.starts_with(VETH_PREFIX), "{v}");
        assert_ne!(
            v,
            host_veth_name("a-very-long-container-id-0123456789abcdef", "net2")
        );
        let b = default_bridge_name("mynet");
        assert!(valid_ifname(&b) && b.starts_with("kos"), "{b}");
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", "../x", "a/b", ".hidden", &"x".repeat(200)] {
            assert!(check_container_id(bad).is_err(), "{bad}");
        }
        for bad in ["", "-x", "a b", "a/b"] {
            assert!(check_network_name(bad).is_err(), "{bad}");
        }
        for bad in ["", "sixteen-chars-xx", "a:b", "a.b", "a b"] {
            assert!(!valid_ifname(bad), "{bad}");
        }
        assert!(valid_ifname("eth0"));
    }
}
