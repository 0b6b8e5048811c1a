//! The container's network namespace, by network mode. This is the one place
//! bridge networking (kos-network) plugs in; until then `bridge`, `default`
//! and user networks are refused with a clear message.

use bollard_stubs::models::HostConfig;

use crate::error::Result;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetMode {
    /// Own namespace with only loopback.
    None,
    /// The host's namespace.
    Host,
    /// Another container's namespace.
    Container(String),
    /// A bridge or user network (by name).
    Network(String),
}

impl NetMode {
    pub fn parse(hc: &HostConfig) -> NetMode {
        let m = hc.network_mode.clone().unwrap_or_default();
        match m.as_str() {
            "none" => NetMode::None,
            "host" => NetMode::Host,
            "" | "default" => NetMode::Network("bridge".into()),
            other => match other.strip_prefix("container:") {
                Some(c) => NetMode::Container(c.to_string()),
                None => NetMode::Network(other.to_string()),
            },
        }
    }

    /// The name Docker shows in HostConfig.NetworkMode and in Networks.
    pub fn name(&self) -> String {
        match self {
            NetMode::None => "none".into(),
            NetMode::Host => "host".into(),
            NetMode::Container(c) => format!("container:{c}"),
            NetMode::Network(n) => n.clone(),
        }
    }

    /// Refuses what cannot be run here before anything is made: the network must exist
    /// (the default one is made on first use).
    pub fn check(&self, nets: &kos_network::Networks) -> Result<()> {
        match self {
            NetMode::Network(n) if crate::network::canonical(n) == crate::network::DEFAULT => {
                nets.ensure_default()?;
                Ok(())
            }
            NetMode::Network(n) => {
                nets.get(n)?;
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// The built-in network (`none` or `host`) a container of this mode is joined to while
    /// it runs; kos-network has no part in it.
    pub fn builtin_network(&self) -> Option<&'static str> {
        match self {
            NetMode::None => Some("none"),
            NetMode::Host => Some("host"),
            _ => None,
        }
    }

    pub fn shares_host_uts(&self) -> bool {
        matches!(self, NetMode::Host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        let hc = |m: &str| HostConfig {
            network_mode: Some(m.into()),
            ..Default::default()
        };
        assert_eq!(NetMode::parse(&hc("none")), NetMode::None);
        assert_eq!(
            NetMode::parse(&hc("default")),
            NetMode::Network("bridge".into())
        );
        assert_eq!(
            NetMode::parse(&hc("container:abc")),
            NetMode::Container("abc".into())
        );
    }
}
