//! The transport under the API client: a unix or TCP stream to kosd, named
//! the way docker names daemon addresses (`unix:///path`, `tcp://host:port`).

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use super::tls::{Tls, TlsStream};

pub const DEFAULT_HOST: &str = "unix:///run/kos/kos.sock";
/// docker's default address when TLS is asked for without one.
pub const DEFAULT_TLS_HOST: &str = "tcp://localhost:2376";

/// Where kosd listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    Unix(PathBuf),
    Tcp(String),
}

impl Host {
    /// Parses docker's address forms (TLS is chosen by flags, not the address).
    pub fn parse(s: &str) -> Result<Host, String> {
        if let Some(p) = s.strip_prefix("unix://") {
            if p.is_empty() {
                return Err(format!("invalid host {s:?}: empty socket path"));
            }
            return Ok(Host::Unix(PathBuf::from(p)));
        }
        if let Some(a) = s
            .strip_prefix("tcp://")
            .or_else(|| s.strip_prefix("http://"))
        {
            let a = a.trim_end_matches('/');
            if a.is_empty() {
                return Err(format!("invalid host {s:?}: empty address"));
            }
            let a = if a
                .rsplit_once(':')
                .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            {
                a.to_string()
            } else {
                format!("{a}:2375")
            };
            return Ok(Host::Tcp(a));
        }
        if s.starts_with('/') {
            return Ok(Host::Unix(PathBuf::from(s)));
        }
        Err(format!(
            "invalid host {s:?}: use unix:///path/to/socket or tcp://host:port"
        ))
    }

    /// The address as the user wrote it (for error messages).
    pub fn display(&self) -> String {
        match self {
            Host::Unix(p) => format!("unix://{}", p.display()),
            Host::Tcp(a) => format!("tcp://{a}"),
        }
    }

    /// Connects; a TCP address speaks TLS when `tls` is given (a unix
    /// socket never does, as docker).
    pub fn connect(&self, tls: Option<&Tls>) -> io::Result<Stream> {
        match self {
            Host::Unix(p) => UnixStream::connect(p).map(Stream::Unix),
            Host::Tcp(a) => {
                let s = TcpStream::connect(a)?;
                s.set_nodelay(true)?;
                match tls {
                    Some(t) => Ok(Stream::Tls(t.connect(s, host_name(a))?)),
                    None => Ok(Stream::Tcp(s)),
                }
            }
        }
    }
}

/// The host part of `host:port` (`[::1]:2376` -> `::1`), as the daemon's
/// certificate names it.
fn host_name(addr: &str) -> &str {
    let h = addr.rsplit_once(':').map(|(h, _)| h).unwrap_or(addr);
    h.strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h)
}

/// One connection to kosd.
#[derive(Debug)]
pub enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
    Tls(TlsStream),
}

impl Stream {
    pub fn try_clone(&self) -> io::Result<Stream> {
        match self {
            Stream::Unix(s) => s.try_clone().map(Stream::Unix),
            Stream::Tcp(s) => s.try_clone().map(Stream::Tcp),
            Stream::Tls(s) => s.try_clone().map(Stream::Tls),
        }
    }

    /// Half-close: the daemon sees end of input, output keeps flowing.
    pub fn shutdown_write(&self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Tls(s) => s.shutdown_write(),
        }
    }

    /// Both directions closed (a detach).
    pub fn shutdown_both(&self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            Stream::Tls(s) => s.shutdown_both(),
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Tcp(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Tcp(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.flush(),
            Stream::Tcp(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn host_forms() {
        assert_eq!(
            Host::parse("unix:///run/kos/kos.sock").unwrap(),
            Host::Unix("/run/kos/kos.sock".into())
        );
        assert_eq!(
            Host::parse("tcp://127.0.0.1:2376").unwrap(),
            Host::Tcp("127.0.0.1:2376".into())
        );
        assert_eq!(
            Host::parse("tcp://localhost").unwrap(),
            Host::Tcp("localhost:2375".into())
        );
        assert!(Host::parse("ssh://x").is_err());
        assert_eq!(host_name("127.0.0.1:2376"), "127.0.0.1");
        assert_eq!(host_name("[::1]:2376"), "::1");
        assert_eq!(host_name("kos.example:2376"), "kos.example");
        assert!(Host::parse("unix://").is_err());
    }
}
