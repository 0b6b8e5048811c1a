//! Published ports as the user writes them (`-p [ip:]host[-end]:port[-end][/proto]`) and as
//! they are made; the registry that hands them out is in `port_registry.rs`.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

impl FromStr for Protocol {
    type Err = ();
    fn from_str(s: &str) -> std::result::Result<Self, ()> {
        match s {
            "tcp" => Ok(Protocol::Tcp),
            "udp" => Ok(Protocol::Udp),
            "sctp" => Ok(Protocol::Sctp),
            _ => Err(()),
        }
    }
}

/// A port mapping as the user asks for it (`-p [ip:]hostport[-end]:port[-end][/proto]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortMapping {
    /// None: every address of the host.
    #[serde(default)]
    pub host_ip: Option<IpAddr>,
    /// 0: a random free port.
    pub host_port: u16,
    /// Inclusive end of a host port range. With a single container port, one free port of
    /// the range is chosen; with a container range of the same length, ports map one to one.
    #[serde(default)]
    pub host_port_end: Option<u16>,
    pub container_port: u16,
    #[serde(default)]
    pub container_port_end: Option<u16>,
    pub protocol: Protocol,
}

impl PortMapping {
    pub fn tcp(host_port: u16, container_port: u16) -> Self {
        PortMapping {
            host_ip: None,
            host_port,
            host_port_end: None,
            container_port,
            container_port_end: None,
            protocol: Protocol::Tcp,
        }
    }

    /// Parses Docker's short form: `[ip:][hostport[-end]:]port[-end][/proto]` (IPv6 host IPs
    /// in brackets).
    pub fn parse(spec: &str) -> Result<Self> {
        let bad = |reason: &str| Error::InvalidPort {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        let (rest, protocol) = match spec.rsplit_once('/') {
            Some((r, p)) => (
                r,
                Protocol::from_str(p).map_err(|_| bad("protocol must be tcp, udp or sctp"))?,
            ),
            None => (spec, Protocol::Tcp),
        };
        let (host_ip, rest) = if let Some(after) = rest.strip_prefix('[') {
            let (ip, tail) = after.split_once("]:").ok_or_else(|| bad("unclosed '['"))?;
            let ip = Ipv6Addr::from_str(ip).map_err(|_| bad("bad IPv6 host address"))?;
            (Some(IpAddr::V6(ip)), tail)
        } else {
            let parts: Vec<&str> = rest.split(':').collect();
            match parts.len() {
                1 | 2 => (None, rest),
                3 => {
                    let ip = if parts[0].is_empty() {
                        None
                    } else {
                        Some(IpAddr::from_str(parts[0]).map_err(|_| bad("bad host address"))?)
                    };
                    (ip, &rest[parts[0].len() + 1..])
                }
                _ => return Err(bad("too many ':'")),
            }
        };
        let range = |s: &str| -> Result<(u16, Option<u16>)> {
            let (a, b) = match s.split_once('-') {
                Some((a, b)) => (a, Some(b)),
                None => (s, None),
            };
            let a = u16::from_str(a).map_err(|_| bad("bad port number"))?;
            let b = b
                .map(|b| u16::from_str(b).map_err(|_| bad("bad port number")))
                .transpose()?;
            Ok((a, b))
        };
        let (host, container) = match rest.split_once(':') {
            Some(("", c)) => ((0, None), range(c)?),
            Some((h, c)) => (range(h)?, range(c)?),
            None => ((0, None), range(rest)?),
        };
        let m = PortMapping {
            host_ip,
            host_port: host.0,
            host_port_end: host.1,
            container_port: container.0,
            container_port_end: container.1,
            protocol,
        };
        m.expand_check(spec)?;
        Ok(m)
    }

    pub(crate) fn expand_check(&self, spec: &str) -> Result<()> {
        let bad = |reason: &str| Error::InvalidPort {
            spec: spec.to_string(),
            reason: reason.to_string(),
        };
        if self.container_port == 0 {
            return Err(bad("container port must not be 0"));
        }
        let c_end = self.container_port_end.unwrap_or(self.container_port);
        if c_end < self.container_port {
            return Err(bad("container port range ends before it starts"));
        }
        if let Some(end) = self.host_port_end {
            if self.host_port == 0 {
                return Err(bad("a host port range must not start at 0"));
            }
            if end < self.host_port {
                return Err(bad("host port range ends before it starts"));
            }
            let c_len = c_end - self.container_port;
            if c_len > 0 && end - self.host_port != c_len {
                return Err(bad("host and container port ranges differ in length"));
            }
        } else if c_end != self.container_port && self.host_port != 0 {
            return Err(bad(
                "a container port range needs a host port range of the same length",
            ));
        }
        Ok(())
    }
}

impl fmt::Display for PortMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(ip) = self.host_ip {
            match ip {
                IpAddr::V4(v4) => write!(f, "{v4}:")?,
                IpAddr::V6(v6) => write!(f, "[{v6}]:")?,
            }
        }
        write!(f, "{}", self.host_port)?;
        if let Some(e) = self.host_port_end {
            write!(f, "-{e}")?;
        }
        write!(f, ":{}", self.container_port)?;
        if let Some(e) = self.container_port_end {
            write!(f, "-{e}")?;
        }
        write!(f, "/{}", self.protocol.as_str())
    }
}

/// One published host port, as made and recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PublishedPort {
    pub host_ip: Option<IpAddr>,
    pub host_port: u16,
    pub container_port: u16,
    pub protocol: Protocol,
}

impl PublishedPort {
    pub(crate) fn clashes(&self, other: &PublishedPort) -> bool {
        self.protocol == other.protocol
            && self.host_port == other.host_port
            && match (self.host_ip, other.host_ip) {
                (None, _) | (_, None) => true,
                (Some(a), Some(b)) => a == b,
            }
    }

    pub(crate) fn host_ip_text(&self) -> String {
        self.host_ip
            .map(|ip| ip.to_string())
            .unwrap_or_else(|| "all addresses".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_forms() {
        let m = PortMapping::parse("127.0.0.1:8080:80/udp").unwrap();
        assert_eq!(m.host_ip, Some("127.0.0.1".parse().unwrap()));
        assert_eq!(
            (m.host_port, m.container_port, m.protocol),
            (8080, 80, Protocol::Udp)
        );
        let m = PortMapping::parse("8000-8002:80-82").unwrap();
        assert_eq!(
            (m.host_port_end, m.container_port_end),
            (Some(8002), Some(82))
        );
        let m = PortMapping::parse("80").unwrap();
        assert_eq!((m.host_port, m.container_port), (0, 80));
        let m = PortMapping::parse("[::1]:9000:90/sctp").unwrap();
        assert_eq!(m.host_ip, Some("::1".parse().unwrap()));
        for bad in [
            "x:80",
            "8000-7000:80",
            "8000-8002:80-81",
            "80/icmp",
            "0",
            "1:2:3:4",
        ] {
            assert!(PortMapping::parse(bad).is_err(), "{bad}");
        }
        let e = PortMapping::parse("0-10:80").unwrap_err().to_string();
        assert!(e.contains("must not start at 0"), "{e}");
    }
}
