//! Facts about the running kernel that decide which files still do something.

use std::sync::OnceLock;

/// (major, minor) of a release string such as "6.18.44-fc".
pub(crate) fn parse_release(s: &str) -> Option<(u32, u32)> {
    let mut it = s.split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

fn version() -> (u32, u32) {
    static V: OnceLock<(u32, u32)> = OnceLock::new();
    *V.get_or_init(|| {
        nix::sys::utsname::uname()
            .ok()
            .and_then(|u| parse_release(&u.release().to_string_lossy()))
            .unwrap_or((0, 0))
    })
}

/// Linux 5.16 stopped enforcing memory.kmem.limit_in_bytes: the file may still take writes,
/// but they do nothing.
pub(crate) fn kmem_limit_works() -> bool {
    version() < (5, 16)
}

#[cfg(test)]
mod tests {
    #[test]
    fn releases() {
        assert_eq!(super::parse_release("6.18.44-fc-v782"), Some((6, 18)));
        assert_eq!(super::parse_release("5.4.0"), Some((5, 4)));
        assert_eq!(super::parse_release("x"), None);
    }
}
