//! Talking to OCI distribution registries (through `oci-client`).

pub mod auth;
pub mod inspect;
pub mod pull;
pub mod push;
pub mod tls;

use oci_client::client::{ClientConfig, ClientProtocol};

pub use self::auth::Credentials;
use crate::error::Error;
use crate::manifest::Platform;
use crate::reference::ImageRef;

/// Registry settings.
#[derive(Debug, Clone)]
pub struct RegistryConfig {
    /// Registries (`host[:port]`) that may be reached over plain HTTP.
    /// Loopback registries always may.
    pub insecure_registries: Vec<String>,
    /// Layers downloaded at once.
    pub max_concurrent_downloads: usize,
    /// The platform to select from an index; the host's when `None`.
    pub platform: Option<Platform>,
    /// Registries (`host[:port]`) whose TLS certificates are not verified (containerd's
    /// `skip_verify` for a mirror in `hosts.toml`).
    pub skip_verify_registries: Vec<String>,
    /// `<dir>/<host[:port]>/*.crt` are CA certificates trusted for that registry.
    pub certs_dir: Option<std::path::PathBuf>,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            insecure_registries: Vec::new(),
            max_concurrent_downloads: 4,
            platform: None,
            skip_verify_registries: Vec::new(),
            certs_dir: None,
        }
    }
}

/// A registry client.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    pub config: RegistryConfig,
    probes: tls::TlsProbes,
}

impl Registry {
    pub fn new(config: RegistryConfig) -> Self {
        Registry {
            config,
            probes: Default::default(),
        }
    }

    /// How `r`'s registry is reached: HTTPS, except for a registry that may be reached over
    /// plain HTTP (loopback or insecure) and does not speak TLS; an insecure registry's
    /// certificate is not verified, as dockerd; its `certs.d` CAs trusted.
    async fn reach(&self, r: &ImageRef) -> Reach {
        install_crypto_provider();
        let host = r.registry();
        let insecure = auth::plain_http_allowed(r, &self.config.insecure_registries);
        Reach {
            plain: insecure && !self.probes.speaks_tls(host).await,
            skip_verify: insecure || self.config.skip_verify_registries.iter().any(|h| h == host),
            cas: self
                .config
                .certs_dir
                .as_deref()
                .map(|d| tls::certs_for(d, host))
                .unwrap_or_default(),
        }
    }

    /// A plain HTTP client for `host`'s own endpoints that oci-client does not cover
    /// (`/v2/` login checks, search, catalog), reaching it as [`Registry::client`] would:
    /// the client and the base URL (`https://host` or `http://host`).
    pub async fn http_client_for(&self, host: &str) -> Result<(reqwest::Client, String), Error> {
        let reach = self
            .reach(&ImageRef::parse(&format!("{host}/probe"))?)
            .await;
        let mut b = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .danger_accept_invalid_certs(reach.skip_verify);
        for c in &reach.cas {
            match reqwest::Certificate::from_pem(&c.data) {
                Ok(cert) => b = b.add_root_certificate(cert),
                Err(e) => {
                    tracing::warn!(%host, error = %e, "a registry CA file is not a PEM certificate")
                }
            }
        }
        let client = b.build().map_err(|e| {
            Error::io(
                "building an HTTP client",
                std::io::Error::other(e.to_string()),
            )
        })?;
        let scheme = if reach.plain { "http" } else { "https" };
        Ok((client, format!("{scheme}://{host}")))
    }

    /// An oci-client for `r`'s registry, reaching it as [`Registry::reach`] says.
    pub(crate) async fn client(&self, r: &ImageRef) -> oci_client::Client {
        let reach = self.reach(r).await;
        oci_client::Client::new(ClientConfig {
            protocol: if reach.plain {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            use_monolithic_push: true,
            max_concurrent_download: self.config.max_concurrent_downloads.max(1),
            // Platform choice is ours (see manifest::select_platform).
            platform_resolver: None,
            connect_timeout: Some(std::time::Duration::from_secs(30)),
            read_timeout: Some(std::time::Duration::from_secs(120)),
            accept_invalid_certificates: reach.skip_verify,
            extra_root_certificates: reach.cas,
            ..Default::default()
        })
    }
}

/// How a registry is reached (see [`Registry::reach`]).
struct Reach {
    plain: bool,
    skip_verify: bool,
    cas: Vec<oci_client::client::Certificate>,
}

/// reqwest (under oci-client) builds its rustls configuration from the process's default
/// crypto provider: ring, unless the program installed another first.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err only when a provider is already installed, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

pub(crate) fn reg_err(r: &ImageRef, e: impl std::fmt::Display) -> Error {
    // Registry bodies end in newlines and may span several; errors are one line.
    let message = e
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    Error::Registry {
        reference: r.to_string(),
        message,
    }
}
