//! The pod's /etc/hostname, /etc/hosts and /etc/resolv.conf, written once for the pod and
//! bind-mounted into each of its containers.

use std::io::Read;
use std::path::Path;

use k8s_cri::v1 as cri;

use crate::error::{Error, Result};

const MAX_HOST_FILE: u64 = 64 * 1024;

fn read_host(path: &str) -> String {
    let mut s = String::new();
    if let Ok(f) = std::fs::File::open(path) {
        let _ = f.take(MAX_HOST_FILE).read_to_string(&mut s);
    }
    s
}

fn check_line(what: &str, s: &str) -> Result<()> {
    if s.is_empty() || s.len() > 253 || s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::InvalidArgument(format!(
            "DNS {what} {s:?} is not valid"
        )));
    }
    Ok(())
}

/// resolv.conf from the pod's DNS config, or the host's when it has none.
pub fn resolv_conf(dns: Option<&cri::DnsConfig>) -> Result<String> {
    let Some(d) =
        dns.filter(|d| !(d.servers.is_empty() && d.searches.is_empty() && d.options.is_empty()))
    else {
        return Ok(read_host("/etc/resolv.conf"));
    };
    let mut out = String::new();
    for s in &d.servers {
        s.parse::<std::net::IpAddr>().map_err(|_| {
            Error::InvalidArgument(format!("DNS server {s:?} is not an IP address"))
        })?;
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !d.searches.is_empty() {
        for s in &d.searches {
            check_line("search domain", s)?;
        }
        out.push_str(&format!("search {}\n", d.searches.join(" ")));
    }
    if !d.options.is_empty() {
        for s in &d.options {
            check_line("option", s)?;
        }
        out.push_str(&format!("options {}\n", d.options.join(" ")));
    }
    Ok(out)
}

/// Writes hostname, hosts and resolv.conf into the pod directory.
pub fn write(
    dir: &Path,
    hostname: &str,
    host_network: bool,
    ips: &[String],
    resolv: &str,
) -> Result<()> {
    let hosts = if host_network {
        read_host("/etc/hosts")
    } else {
        let mut h =
            String::from("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n");
        for ip in ips {
            h.push_str(&format!("{ip}\t{hostname}\n"));
        }
        h
    };
    for (name, body) in [
        ("hostname", format!("{hostname}\n")),
        ("hosts", hosts),
        ("resolv.conf", resolv.to_string()),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, body).map_err(|e| Error::io("writing", &p, e))?;
    }
    Ok(())
}

/// Checks a pod hostname (RFC 1123 label characters, at most 64 bytes as the kernel allows).
pub fn check_hostname(h: &str) -> Result<()> {
    let ok = !h.is_empty()
        && h.len() <= 64
        && h.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "hostname {h:?} is not valid"
        )))
    }
}
