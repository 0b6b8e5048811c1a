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

    /// A plain HTTP client for `host`'s own endpoints that oci-client does not cover
    /// (`/v2/` login checks, search, catalog), reaching it as [`Registry::client`] would:
    /// the client and the base URL (`https://host` or `http://host`).
    pub async fn http_client_for(&self, host: &str) -> Result<(reqwest::Client, String), Error> {
        install_crypto_provider();
        let r = ImageRef::parse(&format!("{host}/probe"))?;
        let insecure = auth::plain_http_allowed(&r, &self.config.insecure_registries);
        let plain = insecure && !self.probes.speaks_tls(r.registry()).await;
        let mut b = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(30))
            .danger_accept_invalid_certs(
                insecure || self.config.skip_verify_registries.iter().any(|h| h == host),
            );
        if let Some(dir) = self.config.certs_dir.as_deref() {
            for c in tls::certs_for(dir, host) {
                match reqwest::Certificate::from_pem(&c.data) {
                    Ok(cert) => b = b.add_root_certificate(cert),
                    Err(e) => {
                        tracing::warn!(%host, error = %e, "a registry CA file is not a PEM certificate")
                    }
                }
            }
        }
        let client = b.build().map_err(|e| {
            Error::io(
                "building an HTTP client",
                std::io::Error::other(e.to_string()),
            )
        })?;
        let scheme = if plain { "http" } else { "https" };
        Ok((client, format!("{scheme}://{host}")))
    }

    /// A client for `r`'s registry: HTTPS, except for a registry that may be reached over
    /// plain HTTP (loopback or insecure) and does not speak TLS; an insecure registry's
    /// certificate is not verified, as dockerd.
    pub(crate) async fn client(&self, r: &ImageRef) -> oci_client::Client {
        install_crypto_provider();
        let insecure = auth::plain_http_allowed(r, &self.config.insecure_registries);
        let plain = insecure && !self.probes.speaks_tls(r.registry()).await;
        let protocol = if plain {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        };
        let extra_root_certificates = self
            .config
            .certs_dir
            .as_deref()
            .map(|d| tls::certs_for(d, r.registry()))
            .unwrap_or_default();
        oci_client::Client::new(ClientConfig {
            protocol,
            use_monolithic_push: true,
            max_concurrent_download: self.config.max_concurrent_downloads.max(1),
            // Platform choice is ours (see manifest::select_platform).
            platform_resolver: None,
            connect_timeout: Some(std::time::Duration::from_secs(30)),
            read_timeout: Some(std::time::Duration::from_secs(120)),
            accept_invalid_certificates: insecure
                || self
                    .config
                    .skip_verify_registries
                    .iter()
                    .any(|h| h == r.registry()),
            extra_root_certificates,
            ..Default::default()
        })
    }
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
