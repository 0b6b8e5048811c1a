//! Registry mirrors per upstream host, read from containerd's `hosts.toml` format:
//! `<dir>/<host>/hosts.toml` (and `<dir>/_default/hosts.toml`), e.g.
//!
//! ```toml
//! server = "https://registry.k8s.io"
//! [host."http://127.0.0.1:5001"]
//!   capabilities = ["pull", "resolve"]
//!   skip_verify = true
//! ```
//!
//! Hosts are tried in file order, then the `server` (the upstream by default).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// hosts.toml is small; anything bigger is refused.
const MAX_HOSTS_TOML: u64 = 64 * 1024;

/// One place to pull from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` as it goes into a reference.
    pub host: String,
    /// Plain HTTP.
    pub plain_http: bool,
    pub skip_verify: bool,
    /// May resolve tags to digests (else only digest references are fetched here).
    pub resolve: bool,
    /// True for the upstream itself (or the `server` entry).
    pub upstream: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostsFile {
    server: Option<String>,
    capabilities: Option<Vec<String>>,
    skip_verify: Option<bool>,
    #[serde(default)]
    host: toml::map::Map<String, toml::Value>,
    // Accepted and not used: KOS has no per-host CA or client certificates yet.
    ca: Option<toml::Value>,
    client: Option<toml::Value>,
    override_path: Option<bool>,
    header: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
struct HostEntry {
    capabilities: Option<Vec<String>>,
    skip_verify: Option<bool>,
    override_path: Option<bool>,
    ca: Option<toml::Value>,
    client: Option<toml::Value>,
    header: Option<toml::Value>,
}

/// The mirror configuration under one directory.
#[derive(Debug, Clone)]
pub struct Mirrors {
    dir: PathBuf,
}

/// `http://127.0.0.1:5001` or `https://mirror.example/v2` to (host, plain http).
fn parse_url(url: &str, file: &Path) -> Result<(String, bool)> {
    let bad =
        |why: &str| Error::InvalidArgument(format!("{}: host {url:?}: {why}", file.display()));
    let (plain, rest) = if let Some(r) = url.strip_prefix("http://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (false, r)
    } else {
        (false, url)
    };
    let (host, path) = match rest.split_once('/') {
        Some((h, p)) => (h, p.trim_end_matches('/')),
        None => (rest, ""),
    };
    if host.is_empty() || host.contains(['@', '?', '#', ' ']) {
        return Err(bad("not a host[:port]"));
    }
    if !(path.is_empty() || path == "v2") {
        return Err(bad("mirror paths other than /v2 are not supported"));
    }
    Ok((host.to_string(), plain))
}

fn caps(list: &Option<Vec<String>>) -> (bool, bool) {
    match list {
        None => (true, true),
        Some(l) => (
            l.iter().any(|c| c == "pull"),
            l.iter().any(|c| c == "resolve"),
        ),
    }
}

impl Mirrors {
    pub fn new(dir: impl Into<PathBuf>) -> Mirrors {
        Mirrors { dir: dir.into() }
    }

    /// The hosts.toml for `registry`: its own directory, else `_default`.
    fn file_for(&self, registry: &str) -> Option<PathBuf> {
        // A registry name never holds a path separator; refuse one rather than walk out.
        if registry.contains('/') || registry.starts_with('.') {
            return None;
        }
        let mut names = vec![registry.to_string()];
        // containerd's directory for Docker Hub is docker.io.
        if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            names.push("docker.io".into());
        }
        names.push("_default".into());
        names
            .into_iter()
            .map(|n| self.dir.join(n).join("hosts.toml"))
            .find(|p| p.is_file())
    }

    /// Where to pull `registry`'s images from, in order. The upstream comes last unless a
    /// `server` entry says otherwise.
    pub fn endpoints(&self, registry: &str) -> Result<Vec<Endpoint>> {
        let upstream = Endpoint {
            host: registry.to_string(),
            plain_http: false,
            skip_verify: false,
            resolve: true,
            upstream: true,
        };
        let Some(file) = self.file_for(registry) else {
            return Ok(vec![upstream]);
        };
        let text = read_bounded(&file)?;
        let parsed: HostsFile = toml::from_str(&text)
            .map_err(|e| Error::InvalidArgument(format!("{}: {}", file.display(), e.message())))?;
        let mut out = Vec::new();
        for (url, value) in &parsed.host {
            let entry: HostEntry = value.clone().try_into().map_err(|e: toml::de::Error| {
                Error::InvalidArgument(format!("{}: host {url:?}: {}", file.display(), e.message()))
            })?;
            let _ = (
                &entry.override_path,
                &entry.ca,
                &entry.client,
                &entry.header,
            );
            let (host, plain_http) = parse_url(url, &file)?;
            let (pull, resolve) = caps(&entry.capabilities);
            if !pull {
                continue;
            }
            out.push(Endpoint {
                host,
                plain_http,
                skip_verify: entry.skip_verify.unwrap_or(false),
                resolve,
                upstream: false,
            });
        }
        let _ = (
            &parsed.ca,
            &parsed.client,
            &parsed.override_path,
            &parsed.header,
        );
        match &parsed.server {
            Some(server) => {
                let (host, plain_http) = parse_url(server, &file)?;
                let (pull, resolve) = caps(&parsed.capabilities);
                if pull {
                    // docker.io's server is registry-1.docker.io; the reference keeps docker.io.
                    let is_upstream = host == registry
                        || (registry == "docker.io" && host.ends_with("docker.io"));
                    out.push(Endpoint {
                        host: if is_upstream {
                            registry.to_string()
                        } else {
                            host
                        },
                        plain_http,
                        skip_verify: parsed.skip_verify.unwrap_or(false),
                        resolve,
                        upstream: is_upstream,
                    });
                }
            }
            None => out.push(upstream),
        }
        Ok(out)
    }
}

fn read_bounded(path: &Path) -> Result<String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| Error::io("reading", path, e))?;
    let mut s = String::new();
    f.take(MAX_HOSTS_TOML + 1)
        .read_to_string(&mut s)
        .map_err(|e| Error::io("reading", path, e))?;
    if s.len() as u64 > MAX_HOSTS_TOML {
        return Err(Error::InvalidArgument(format!(
            "{}: larger than {MAX_HOSTS_TOML} bytes",
            path.display()
        )));
    }
    Ok(s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn dir_with(host: &str, text: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "kos-cri-mirrors-{}-{}",
            std::process::id(),
            host.replace([':', '.'], "_")
        ));
        std::fs::create_dir_all(d.join(host)).unwrap();
        std::fs::write(d.join(host).join("hosts.toml"), text).unwrap();
        d
    }

    #[test]
    fn mirror_then_upstream() {
        let d = dir_with(
            "registry.k8s.io",
            r#"server = "https://registry.k8s.io"
[host."http://127.0.0.1:5001"]
  capabilities = ["pull", "resolve"]
[host."https://m.example:8443/v2"]
  capabilities = ["pull"]
  skip_verify = true
"#,
        );
        let m = Mirrors::new(&d);
        let e = m.endpoints("registry.k8s.io").unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].host, "127.0.0.1:5001");
        assert!(e[0].plain_http && e[0].resolve && !e[0].upstream);
        assert_eq!(e[1].host, "m.example:8443");
        assert!(e[1].skip_verify && !e[1].resolve);
        assert!(e[2].upstream && e[2].host == "registry.k8s.io");
        // Another registry without a file: only the upstream.
        assert_eq!(m.endpoints("quay.io").unwrap().len(), 1);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn bad_files_are_clear_errors() {
        let d = dir_with("bad.example", "server = [");
        let e = Mirrors::new(&d).endpoints("bad.example").unwrap_err();
        assert!(e.to_string().contains("hosts.toml"), "{e}");
        std::fs::write(
            d.join("bad.example/hosts.toml"),
            "[host.\"http://h/some/path\"]\n",
        )
        .unwrap();
        let e = Mirrors::new(&d).endpoints("bad.example").unwrap_err();
        assert!(e.to_string().contains("/v2"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }
}
