//! Credentials and transport choice for a registry.

use crate::reference::ImageRef;

/// How to authenticate to a registry.
#[derive(Clone, Default)]
pub enum Credentials {
    #[default]
    Anonymous,
    Basic {
        username: String,
        password: String,
    },
    /// A pre-obtained bearer token.
    Bearer(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Anonymous => f.write_str("Anonymous"),
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, <redacted>)"),
            Credentials::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
}

impl Credentials {
    pub(crate) fn to_oci(&self) -> oci_client::secrets::RegistryAuth {
        use oci_client::secrets::RegistryAuth;
        match self {
            Credentials::Anonymous => RegistryAuth::Anonymous,
            Credentials::Basic { username, password } => {
                RegistryAuth::Basic(username.clone(), password.clone())
            }
            Credentials::Bearer(t) => RegistryAuth::Bearer(t.clone()),
        }
    }
}

/// Whether plain HTTP may be used for this reference's registry: only for
/// loopback registries and those configured insecure.
pub(crate) fn plain_http_allowed(r: &ImageRef, insecure: &[String]) -> bool {
    r.is_loopback() || insecure.iter().any(|h| h == r.registry())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_for_loopback_or_insecure() {
        let insecure = vec!["reg.internal:5000".to_string()];
        for (r, ok) in [
            ("localhost:5000/a", true),
            ("127.0.0.1:5000/a", true),
            ("localhost/a", true),
            ("reg.internal:5000/a", true),
            ("reg.internal/a", false),
            ("docker.io/library/busybox", false),
            ("10.0.0.1:5000/a", false),
        ] {
            assert_eq!(
                plain_http_allowed(&ImageRef::parse(r).unwrap(), &insecure),
                ok,
                "{r}"
            );
        }
        assert_eq!(
            format!(
                "{:?}",
                Credentials::Basic {
                    username: "u".into(),
                    password: "p4ss".into()
                }
            ),
            "Basic(u, <redacted>)"
        );
    }
}
