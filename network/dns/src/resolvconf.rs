//! Reading resolv.conf files: the host's resolvers are kos-dns's upstreams and the fallback
//! nameservers of containers on networks kos-dns does not serve.

use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The host's resolver configuration.
pub const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";
/// systemd-resolved's list of real upstreams, used when /etc/resolv.conf only names its stub.
pub const RESOLVED_UPSTREAMS: &str = "/run/systemd/resolve/resolv.conf";

/// resolv.conf files are a few hundred bytes; anything past this is not a resolver config.
const MAX_RESOLV_CONF_BYTES: u64 = 64 << 10;

#[derive(Debug, thiserror::Error)]
#[error("reading resolver config {path}: {source}")]
pub struct Error {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// What a resolv.conf says, in file order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvConf {
    pub nameservers: Vec<IpAddr>,
    pub search: Vec<String>,
    pub options: Vec<String>,
}

impl ResolvConf {
    /// Parses resolv.conf text. Unknown keywords and unparsable nameservers are skipped, as
    /// glibc does; the last `search`/`domain` line wins, `options` accumulate.
    pub fn parse(text: &str) -> ResolvConf {
        let mut out = ResolvConf::default();
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    // Link-local v6 servers carry a zone ("fe80::1%eth0"); a container cannot
                    // use the host's zone, so the address alone is kept.
                    if let Some(ip) = words
                        .next()
                        .and_then(|w| w.split('%').next())
                        .and_then(|w| w.parse().ok())
                    {
                        out.nameservers.push(ip);
                    }
                }
                Some("search") | Some("domain") => {
                    out.search = words.map(str::to_owned).collect();
                }
                Some("options") => out.options.extend(words.map(str::to_owned)),
                _ => {}
            }
        }
        out
    }

    /// Reads and parses a resolv.conf, refusing to read past 64 KiB.
    pub fn load(path: &Path) -> Result<ResolvConf, Error> {
        let err = |source| Error {
            path: path.to_owned(),
            source,
        };
        let mut text = String::new();
        std::fs::File::open(path)
            .map_err(err)?
            .take(MAX_RESOLV_CONF_BYTES)
            .read_to_string(&mut text)
            .map_err(err)?;
        Ok(ResolvConf::parse(&text))
    }

    /// The nameservers that work from another network namespace: loopback ones (stubs such as
    /// systemd-resolved's 127.0.0.53 or a local dnsmasq) only answer on the host's own lo.
    pub fn reachable_nameservers(&self) -> Vec<IpAddr> {
        self.nameservers
            .iter()
            .copied()
            .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
            .collect()
    }
}

/// The host's usable upstream resolvers: those of `path` minus loopback ones; when that leaves
/// none and `path` is the host's /etc/resolv.conf, systemd-resolved's upstream list instead.
pub fn host_upstreams(path: &Path) -> Result<Vec<IpAddr>, Error> {
    let conf = ResolvConf::load(path)?;
    let servers = conf.reachable_nameservers();
    if servers.is_empty() && path == Path::new(HOST_RESOLV_CONF) {
        if let Ok(resolved) = ResolvConf::load(Path::new(RESOLVED_UPSTREAMS)) {
            return Ok(resolved.reachable_nameservers());
        }
    }
    Ok(servers)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_servers_search_and_options() {
        let conf = ResolvConf::parse(
            "# comment\nnameserver 127.0.0.53\nnameserver 192.0.2.1\nnameserver fe80::1%eth0\n\
             nameserver bogus\ndomain a.example\nsearch b.example c.example\noptions ndots:2\n\
             options edns0 trust-ad\n; x\n",
        );
        assert_eq!(
            conf.nameservers,
            vec![
                "127.0.0.53".parse::<IpAddr>().unwrap(),
                "192.0.2.1".parse().unwrap(),
                "fe80::1".parse().unwrap()
            ]
        );
        assert_eq!(conf.search, vec!["b.example", "c.example"]);
        assert_eq!(conf.options, vec!["ndots:2", "edns0", "trust-ad"]);
        assert_eq!(
            conf.reachable_nameservers(),
            vec![
                "192.0.2.1".parse::<IpAddr>().unwrap(),
                "fe80::1".parse().unwrap()
            ]
        );
    }

    #[test]
    fn host_upstreams_drop_loopback() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("resolv.conf");
        std::fs::write(
            &p,
            "nameserver ::1\nnameserver 127.0.0.1\nnameserver 2001:db8::53\n",
        )
        .unwrap();
        assert_eq!(
            host_upstreams(&p).unwrap(),
            vec!["2001:db8::53".parse::<IpAddr>().unwrap()]
        );
        assert!(host_upstreams(&dir.path().join("missing")).is_err());
    }
}
