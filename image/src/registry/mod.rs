//! Talking to OCI distribution registries (through `oci-client`).

pub mod auth;
pub mod inspect;
pub mod pull;
pub mod push;

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
}

impl Default for RegistryConfig {
    fn default() -> Self {
        RegistryConfig {
            insecure_registries: Vec::new(),
            max_concurrent_downloads: 4,
            platform: None,
            skip_verify_registries: Vec::new(),
        }
    }
}

/// A registry client.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    pub config: RegistryConfig,
}

impl Registry {
    pub fn new(config: RegistryConfig) -> Self {
        Registry { config }
    }

    pub(crate) fn client(&self, r: &ImageRef) -> oci_client::Client {
        install_crypto_provider();
        let protocol = if auth::plain_http_allowed(r, &self.config.insecure_registries) {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        };
        oci_client::Client::new(ClientConfig {
            protocol,
            use_monolithic_push: true,
            max_concurrent_download: self.config.max_concurrent_downloads.max(1),
            // Platform choice is ours (see manifest::select_platform).
            platform_resolver: None,
            connect_timeout: Some(std::time::Duration::from_secs(30)),
            read_timeout: Some(std::time::Duration::from_secs(120)),
            accept_invalid_certificates: self
                .config
                .skip_verify_registries
                .iter()
                .any(|h| h == r.registry()),
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
