//! CNI spec versions: parsing, comparing, and picking the one a config list runs with.

/// Spec versions this runner speaks (results from 0.3.0 on have the shape it reads).
pub const SUPPORTED: &[&str] = &["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// A parsed `MAJOR.MINOR.PATCH`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32, pub u32, pub u32);

impl Version {
    pub fn parse(s: &str) -> Option<Version> {
        let mut parts = s.split('.');
        let mut num = || -> Option<u32> {
            let p = parts.next()?;
            if p.is_empty() || p.len() > 9 || !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            p.parse().ok()
        };
        let v = Version(num()?, num()?, num()?);
        parts.next().is_none().then_some(v)
    }

    pub fn supported(self) -> bool {
        SUPPORTED.iter().any(|s| Version::parse(s) == Some(self))
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

pub const V0_4_0: Version = Version(0, 4, 0);
pub const V1_1_0: Version = Version(1, 1, 0);

/// The version to run a list with: the highest of `cniVersions` this runner supports (CNI
/// 1.1), else `cniVersion`. None when neither names a supported version.
pub fn choose(cni_version: Option<&str>, cni_versions: &[String]) -> Option<Version> {
    let best = cni_versions
        .iter()
        .filter_map(|v| Version::parse(v))
        .filter(|v| v.supported())
        .max();
    best.or_else(|| {
        cni_version
            .and_then(Version::parse)
            .filter(|v| v.supported())
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_choose() {
        assert_eq!(Version::parse("1.0.0"), Some(Version(1, 0, 0)));
        assert!(Version::parse("1.0").is_none());
        assert!(Version::parse("1.0.0.0").is_none());
        assert!(Version::parse("1.x.0").is_none());
        assert!(Version::parse("+1.0.0").is_none());
        assert!(Version(0, 4, 0) < Version(1, 0, 0));
        assert_eq!(choose(Some("0.4.0"), &[]), Some(V0_4_0));
        assert_eq!(
            choose(
                Some("0.4.0"),
                &["1.0.0".into(), "1.1.0".into(), "9.0.0".into()]
            ),
            Some(V1_1_0)
        );
        assert_eq!(choose(Some("0.2.0"), &[]), None);
        assert_eq!(choose(None, &[]), None);
    }
}
