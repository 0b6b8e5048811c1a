//! Registry mirrors: where to pull a registry's images from, in order, and a pull that
//! tries each place in turn and names the result as the upstream reference.
//!
//! Two sources, as the two daemons that use them configure mirrors:
//! - containerd's `hosts.toml` files (`<dir>/<host>/hosts.toml`, else
//!   `<dir>/_default/hosts.toml`), used by the CRI:
//!
//!   ```toml
//!   server = "https://registry.k8s.io"
//!   [host."http://127.0.0.1:5001"]
//!     capabilities = ["pull", "resolve"]
//!     skip_verify = true
//!   ```
//!
//!   Hosts are tried in file order, then the `server` (the upstream by default).
//! - dockerd's `registry-mirrors` (`--registry-mirror URL`): mirrors of Docker Hub only,
//!   tried in order before Docker Hub itself.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::reference::ImageRef;
use crate::registry::{pull::PullOptions, Registry, RegistryConfig};
use crate::store::{ImageRecord, Store};

/// hosts.toml is small; anything bigger is refused.
const MAX_HOSTS_TOML: u64 = 64 * 1024;
/// The registry name of Docker Hub in references.
pub const DOCKER_HUB: &str = "docker.io";

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

impl Endpoint {
    /// The registry itself.
    pub fn upstream(registry: &str) -> Endpoint {
        Endpoint {
            host: registry.to_string(),
            plain_http: false,
            skip_verify: false,
            resolve: true,
            upstream: true,
        }
    }

    /// A dockerd `registry-mirrors` entry: `http[s]://host[:port]` with no path but `/`.
    pub fn registry_mirror(url: &str) -> Result<Endpoint> {
        let bad = |why: &str| Error::MirrorConfig {
            origin: format!("registry mirror {url:?}"),
            reason: why.to_string(),
        };
        let (plain_http, rest) = if let Some(r) = url.strip_prefix("http://") {
            (true, r)
        } else if let Some(r) = url.strip_prefix("https://") {
            (false, r)
        } else {
            return Err(bad("expected an http:// or https:// URL"));
        };
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        if !valid_host(host) {
            return Err(bad("not a host[:port]"));
        }
        if !path.is_empty() {
            return Err(bad("a mirror URL has no path, query or fragment"));
        }
        Ok(Endpoint {
            host: host.to_string(),
            plain_http,
            skip_verify: false,
            resolve: true,
            upstream: false,
        })
    }

    /// What to pull from this endpoint for `r`: `r` itself upstream, else the same
    /// repository, tag and digest on the mirror's host.
    pub fn reference_for(&self, r: &ImageRef) -> String {
        if self.upstream {
            return r.to_string();
        }
        let mut s = format!("{}/{}", self.host, r.repository());
        if let Some(t) = r.tag() {
            s.push(':');
            s.push_str(t);
        }
        if let Some(d) = r.digest() {
            s.push('@');
            s.push_str(&d.to_string());
        }
        s
    }

    /// The registry settings for pulling from this endpoint.
    pub fn registry_config(&self, base: &RegistryConfig) -> RegistryConfig {
        let mut cfg = base.clone();
        if self.plain_http {
            cfg.insecure_registries.push(self.host.clone());
        }
        if self.skip_verify {
            cfg.skip_verify_registries.push(self.host.clone());
        }
        cfg
    }
}

fn valid_host(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 255
        && !host.contains(['@', '?', '#', ' ', '\\'])
        && host.chars().all(|c| c.is_ascii_graphic())
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
    #[serde(rename = "ca")]
    _ca: Option<toml::Value>,
    #[serde(rename = "client")]
    _client: Option<toml::Value>,
    #[serde(rename = "override_path")]
    _override_path: Option<bool>,
    #[serde(rename = "header")]
    _header: Option<toml::Value>,
}

#[derive(Debug, Deserialize)]
struct HostEntry {
    capabilities: Option<Vec<String>>,
    skip_verify: Option<bool>,
}

/// The mirror configuration: hosts.toml files, dockerd-style Docker Hub mirrors, or both
/// (a hosts.toml for a registry wins over the Docker Hub mirrors).
#[derive(Debug, Clone, Default)]
pub struct Mirrors {
    hosts_dir: Option<PathBuf>,
    hub_mirrors: Vec<Endpoint>,
}

/// `http://127.0.0.1:5001` or `https://mirror.example/v2` to (host, plain http).
fn parse_hosts_url(url: &str, file: &Path) -> Result<(String, bool)> {
    let bad = |why: &str| Error::MirrorConfig {
        origin: format!("{}: host {url:?}", file.display()),
        reason: why.to_string(),
    };
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
    if !valid_host(host) {
        return Err(bad("not a host[:port]"));
    }
    if !(path.is_empty() || path == "v2") {
        return Err(bad("mirror paths other than /v2 are not supported"));
    }
    Ok((host.to_string(), plain))
}

/// (pull, resolve) from a capabilities list; both when absent.
fn caps(list: &Option<Vec<String>>) -> (bool, bool) {
    match list {
        None => (true, true),
        Some(l) => (
            l.iter().any(|c| c == "pull"),
            l.iter().any(|c| c == "resolve"),
        ),
    }
}

fn is_docker_hub(registry: &str) -> bool {
    matches!(
        registry,
        DOCKER_HUB | "index.docker.io" | "registry-1.docker.io"
    )
}

impl Mirrors {
    /// containerd-style `hosts.toml` files under `dir`.
    pub fn from_hosts_dir(dir: impl Into<PathBuf>) -> Mirrors {
        Mirrors {
            hosts_dir: Some(dir.into()),
            hub_mirrors: Vec::new(),
        }
    }

    /// dockerd's `registry-mirrors`: Docker Hub mirrors, tried in this order.
    pub fn from_registry_mirrors(urls: &[String]) -> Result<Mirrors> {
        Ok(Mirrors {
            hosts_dir: None,
            hub_mirrors: urls
                .iter()
                .map(|u| Endpoint::registry_mirror(u))
                .collect::<Result<_>>()?,
        })
    }

    /// The hosts.toml for `registry`: its own directory, else `_default`.
    fn file_for(&self, registry: &str) -> Option<PathBuf> {
        let dir = self.hosts_dir.as_ref()?;
        // A registry name never holds a path separator; refuse one rather than walk out.
        if registry.contains('/') || registry.starts_with('.') {
            return None;
        }
        let mut names = vec![registry.to_string()];
        // containerd's directory for Docker Hub is docker.io.
        if is_docker_hub(registry) && registry != DOCKER_HUB {
            names.push(DOCKER_HUB.into());
        }
        names.push("_default".into());
        names
            .into_iter()
            .map(|n| dir.join(n).join("hosts.toml"))
            .find(|p| p.is_file())
    }

    /// Where to pull `registry`'s images from, in order. The upstream comes last unless a
    /// hosts.toml `server` entry says otherwise.
    pub fn endpoints(&self, registry: &str) -> Result<Vec<Endpoint>> {
        if let Some(file) = self.file_for(registry) {
            return endpoints_from_file(&file, registry);
        }
        let mut out = Vec::new();
        if is_docker_hub(registry) {
            out.extend(self.hub_mirrors.iter().cloned());
        }
        out.push(Endpoint::upstream(registry));
        Ok(out)
    }
}

fn endpoints_from_file(file: &Path, registry: &str) -> Result<Vec<Endpoint>> {
    let text = read_bounded(file)?;
    let parsed: HostsFile = toml::from_str(&text).map_err(|e| Error::MirrorConfig {
        origin: file.display().to_string(),
        reason: e.message().to_string(),
    })?;
    let mut out = Vec::new();
    for (url, value) in &parsed.host {
        let entry: HostEntry =
            value
                .clone()
                .try_into()
                .map_err(|e: toml::de::Error| Error::MirrorConfig {
                    origin: format!("{}: host {url:?}", file.display()),
                    reason: e.message().to_string(),
                })?;
        let (host, plain_http) = parse_hosts_url(url, file)?;
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
    match &parsed.server {
        Some(server) => {
            let (host, plain_http) = parse_hosts_url(server, file)?;
            let (pull, resolve) = caps(&parsed.capabilities);
            if pull {
                // docker.io's server is registry-1.docker.io; the reference keeps docker.io.
                let is_upstream =
                    host == registry || (is_docker_hub(registry) && host.ends_with("docker.io"));
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
        None => out.push(Endpoint::upstream(registry)),
    }
    Ok(out)
}

fn read_bounded(path: &Path) -> Result<String> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| Error::path("reading", path, e))?;
    let mut s = String::new();
    f.take(MAX_HOSTS_TOML + 1)
        .read_to_string(&mut s)
        .map_err(|e| Error::path("reading", path, e))?;
    if s.len() as u64 > MAX_HOSTS_TOML {
        return Err(Error::MirrorConfig {
            origin: path.display().to_string(),
            reason: format!("larger than {MAX_HOSTS_TOML} bytes"),
        });
    }
    Ok(s)
}

/// What one endpoint's attempt came to, for the caller's log.
#[derive(Debug)]
pub struct Attempt {
    pub endpoint: Endpoint,
    pub error: Error,
}

/// Pulls `reference` from each endpoint in turn until one has it, and names the image as
/// `reference` (a mirror's own name is not left behind unless the store had it already).
/// Returns the record, the endpoint that served it and the failed attempts before it; when
/// every endpoint fails, the last error (or ImageNotFound when none may resolve a tag).
pub async fn pull_through(
    base: &RegistryConfig,
    store: Arc<Store>,
    reference: &str,
    endpoints: &[Endpoint],
    opts: &PullOptions,
) -> Result<(ImageRecord, Endpoint, Vec<Attempt>)> {
    let r = ImageRef::parse(reference)?;
    let name = r.to_string();
    let mut failed: Vec<Attempt> = Vec::new();
    for ep in endpoints {
        if !ep.resolve && r.digest().is_none() {
            continue;
        }
        let reg = Registry::new(ep.registry_config(base));
        let from = ep.reference_for(&r);
        let existed = store.image_record(&from).is_ok();
        match reg.pull(store.clone(), &from, opts).await {
            Ok(rec) if ep.upstream => return Ok((rec, ep.clone(), failed)),
            Ok(_) => {
                let st = store.clone();
                let (f, n) = (from.clone(), name.clone());
                let rec = tokio::task::spawn_blocking(move || -> Result<ImageRecord> {
                    let rec = st.tag(&f, &n)?;
                    if !existed {
                        st.remove_image(&f)?;
                    }
                    Ok(rec)
                })
                .await
                .map_err(|e| Error::io("naming the mirrored image", std::io::Error::other(e)))??;
                return Ok((rec, ep.clone(), failed));
            }
            Err(error) => failed.push(Attempt {
                endpoint: ep.clone(),
                error,
            }),
        }
    }
    match failed.pop() {
        Some(a) => Err(a.error),
        None => Err(Error::ImageNotFound(format!(
            "{name}: no host in the mirror configuration may resolve it"
        ))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn dir_with(host: &str, text: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "kos-image-mirrors-{}-{}",
            std::process::id(),
            host.replace([':', '.'], "_")
        ));
        std::fs::create_dir_all(d.join(host)).unwrap();
        std::fs::write(d.join(host).join("hosts.toml"), text).unwrap();
        d
    }

    struct Gone(PathBuf);
    impl Drop for Gone {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn hosts_toml_mirror_then_upstream() {
        let d = Gone(dir_with(
            "registry.k8s.io",
            r#"server = "https://registry.k8s.io"
[host."http://127.0.0.1:5001"]
  capabilities = ["pull", "resolve"]
[host."https://m.example:8443/v2"]
  capabilities = ["pull"]
  skip_verify = true
"#,
        ));
        let m = Mirrors::from_hosts_dir(&d.0);
        let e = m.endpoints("registry.k8s.io").unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!(e[0].host, "127.0.0.1:5001");
        assert!(e[0].plain_http && e[0].resolve && !e[0].upstream);
        assert_eq!(e[1].host, "m.example:8443");
        assert!(e[1].skip_verify && !e[1].resolve);
        assert!(e[2].upstream && e[2].host == "registry.k8s.io");
        // Another registry without a file: only the upstream.
        assert_eq!(m.endpoints("quay.io").unwrap().len(), 1);
    }

    #[test]
    fn bad_hosts_files_are_clear_errors() {
        let d = Gone(dir_with("bad.example", "server = ["));
        let e = Mirrors::from_hosts_dir(&d.0)
            .endpoints("bad.example")
            .unwrap_err();
        assert!(e.to_string().contains("hosts.toml"), "{e}");
        std::fs::write(
            d.0.join("bad.example/hosts.toml"),
            "[host.\"http://h/some/path\"]\n",
        )
        .unwrap();
        let e = Mirrors::from_hosts_dir(&d.0)
            .endpoints("bad.example")
            .unwrap_err();
        assert!(e.to_string().contains("/v2"), "{e}");
    }

    #[test]
    fn registry_mirrors_apply_to_docker_hub_only() {
        let m = Mirrors::from_registry_mirrors(&[
            "http://127.0.0.1:5001".into(),
            "https://mirror.example/".into(),
        ])
        .unwrap();
        let e = m.endpoints("docker.io").unwrap();
        let hosts: Vec<_> = e.iter().map(|e| (e.host.as_str(), e.upstream)).collect();
        assert_eq!(
            hosts,
            [
                ("127.0.0.1:5001", false),
                ("mirror.example", false),
                ("docker.io", true)
            ]
        );
        assert!(e[0].plain_http && !e[1].plain_http);
        assert_eq!(
            m.endpoints("quay.io").unwrap(),
            [Endpoint::upstream("quay.io")]
        );
        let r = ImageRef::parse("busybox:1.36").unwrap();
        assert_eq!(
            e[0].reference_for(&r),
            "127.0.0.1:5001/library/busybox:1.36"
        );
        assert_eq!(e[2].reference_for(&r), r.to_string());
        let cfg = e[0].registry_config(&RegistryConfig::default());
        assert_eq!(cfg.insecure_registries, ["127.0.0.1:5001"]);
    }

    #[test]
    fn bad_registry_mirrors_are_refused() {
        for bad in [
            "127.0.0.1:5000",
            "ftp://m.example",
            "http://m.example/path",
            "http://",
            "https://u@m.example",
        ] {
            let e = Mirrors::from_registry_mirrors(&[bad.to_string()]).unwrap_err();
            assert!(e.to_string().contains("registry mirror"), "{bad}: {e}");
        }
    }
}
