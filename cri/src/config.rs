//! What the CRI server is given by its host (kosd, or the example server).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kos_image::{RegistryConfig, Store};

/// Settings of the CRI server.
#[derive(Clone)]
pub struct CriConfig {
    /// Persistent state (sandboxes, containers): `<data-root>/cri`.
    pub data_dir: PathBuf,
    /// Runtime state: namespace pins, shim sockets, bundles, the runtime's root.
    pub exec_root: PathBuf,
    /// The image store, shared with the Docker API side.
    pub store: Arc<Store>,
    pub registry: RegistryConfig,
    /// containerd-style `<dir>/<host>/hosts.toml` mirror files.
    pub registry_config_dir: PathBuf,
    pub cni_conf_dir: PathBuf,
    pub cni_bin_dirs: Vec<PathBuf>,
    /// CNI result cache (so DEL works after a restart).
    pub cni_cache_dir: PathBuf,
    /// The OCI runtime the shim runs (`kosrun` by default).
    pub runtime_binary: String,
    /// `containerd-shim-kos-v2`.
    pub shim_binary: PathBuf,
    /// The cgroup parent of pods that come without one (cgroupfs driver).
    pub cgroup_root: String,
    /// CDI spec directories, lowest priority first (default /etc/cdi, /var/run/cdi).
    pub cdi_spec_dirs: Vec<PathBuf>,
    /// Where the streaming server of Exec/Attach/PortForward listens (port 0: any).
    pub stream_address: SocketAddr,
    /// How long a streaming URL stays valid unused.
    pub stream_token_ttl: Duration,
    /// Whether the host's other containers (kosd's Docker side) use an image, by id.
    pub image_in_use: Option<ImageInUse>,
}

/// Asked by RemoveImage with an image id (`sha256:...`): when it answers yes, the
/// image's names go but its content is kept, unnamed, for those containers.
pub type ImageInUse = Arc<dyn Fn(&str) -> bool + Send + Sync>;

pub const DEFAULT_REGISTRY_CONFIG_DIR: &str = "/etc/kos/certs.d";
pub const DEFAULT_CNI_CONF_DIR: &str = "/etc/cni/net.d";

impl CriConfig {
    /// The defaults of design.md's places on the host for a store already open.
    pub fn new(data_dir: PathBuf, exec_root: PathBuf, store: Arc<Store>) -> CriConfig {
        CriConfig {
            cni_cache_dir: data_dir.join("cni-cache"),
            data_dir,
            exec_root,
            store,
            registry: RegistryConfig::default(),
            registry_config_dir: PathBuf::from(DEFAULT_REGISTRY_CONFIG_DIR),
            cni_conf_dir: PathBuf::from(DEFAULT_CNI_CONF_DIR),
            cni_bin_dirs: kos_cni::runner::DEFAULT_PLUGIN_DIRS
                .iter()
                .map(PathBuf::from)
                .collect(),
            runtime_binary: "kosrun".into(),
            shim_binary: kos_shim_client::LaunchOptions::find_shim(None),
            cgroup_root: "kos".into(),
            cdi_spec_dirs: kadcm::cdi::default_dirs(),
            stream_address: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            stream_token_ttl: crate::streaming::tokens::TOKEN_TTL,
            image_in_use: None,
        }
    }
}
