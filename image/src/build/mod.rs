//! Dockerfile builds (the legacy builder's contract): a tar context in, an
//! OCI image in the store out, with the progress lines Docker's builder
//! streams (`Step 1/6 : FROM ...`, ` ---> 1a2b3c4d5e6f`, `Successfully
//! built ...`, the aux image ID).
//!
//! - [`dockerfile`] parses (directives, continuations, heredocs, every
//!   instruction); [`lex`] substitutes variables; [`ignore`] is `.dockerignore`.
//! - Each RUN, COPY and ADD runs over an overlay of the parent's layer
//!   snapshots with a fresh upper directory; RUN executes through `kosrun`
//!   with Docker's default capability set and seccomp profile ([`run`]).
//!   The upper directory becomes the step's layer (whiteouts converted,
//!   extended attributes as PAX records: [`layer`], [`xattrs`]) and its
//!   snapshot; the blob is compressed on another thread while the next
//!   steps run. Metadata steps only change the config (`empty_layer`).
//! - `ADD` unpacks local archives recognised by their magic ([`archive`]);
//!   `FROM --platform` and the automatic platform ARGs are in [`platform`].
//! - The [`cache`] maps (parent image ID, instruction after substitution,
//!   content hash of copied files) to the resulting state, so unchanged
//!   steps hit; entries whose layers gc took are dropped ([`cache::prune`]).
//! - Nothing is tagged unless the whole build succeeds; mounts, containers
//!   and scratch directories are removed by guards on every path out. An
//!   untagged result, and the image a moved tag leaves, are kept as
//!   [`dangling`] images.

pub mod archive;
pub mod cache;
pub mod context;
pub mod copy;
pub mod dangling;
pub mod dockerfile;
pub mod error;
mod exec;
pub mod ignore;
pub mod layer;
pub mod lex;
mod mount;
pub mod platform;
pub mod run;
pub mod state;
pub mod xattrs;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::Arc;

pub use self::error::BuildError;
use crate::digest::Digest;
use crate::manifest::Platform;
use crate::registry::{pull::PullOptions, Registry};
use crate::store::Store;

/// The network RUN steps get.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum NetworkMode {
    /// The default bridge (through [`BuildNetwork`]; the host's network when
    /// the builder has none).
    #[default]
    Default,
    /// Loopback only.
    None,
    /// The host's network namespace.
    Host,
}

impl NetworkMode {
    /// Parses Docker's `networkmode` values (`default`, `bridge`, `none`, `host`).
    pub fn parse(s: &str) -> Result<Self, BuildError> {
        match s {
            "" | "default" | "bridge" => Ok(NetworkMode::Default),
            "none" => Ok(NetworkMode::None),
            "host" => Ok(NetworkMode::Host),
            other => Err(BuildError::Options(format!(
                "network mode {other:?}: must be default, bridge, none or host"
            ))),
        }
    }
}

/// A network namespace prepared for one build container.
#[derive(Debug, Clone)]
pub struct NetworkAttachment {
    pub netns: PathBuf,
    pub resolv_conf: Option<PathBuf>,
    pub hosts: Option<PathBuf>,
}

/// Connects build containers to the default bridge (kosd plugs kos-network in).
pub trait BuildNetwork: Send + Sync {
    fn attach(&self, container_id: &str) -> Result<NetworkAttachment, String>;
    fn detach(&self, container_id: &str);
}

/// Fetches a base image that is missing (or `pull` was asked for).
pub trait ImagePuller: Send + Sync {
    fn pull(&self, store: &Arc<Store>, reference: &str) -> crate::Result<()>;

    /// Pulls the manifest for `platform` (`FROM --platform`, `--platform`).
    fn pull_platform(
        &self,
        store: &Arc<Store>,
        reference: &str,
        platform: &Platform,
    ) -> crate::Result<()> {
        let _ = platform;
        self.pull(store, reference)
    }
}

/// Pulls with [`Registry::pull`], on the caller's tokio runtime when there is
/// one (call the build from `spawn_blocking`), else on a private one.
pub struct RegistryPuller {
    pub registry: Registry,
    pub options: PullOptions,
}

impl ImagePuller for RegistryPuller {
    fn pull(&self, store: &Arc<Store>, reference: &str) -> crate::Result<()> {
        self.pull_with(store, reference, self.options.clone())
    }

    fn pull_platform(
        &self,
        store: &Arc<Store>,
        reference: &str,
        platform: &Platform,
    ) -> crate::Result<()> {
        let mut opts = self.options.clone();
        opts.platform = Some(platform.clone());
        self.pull_with(store, reference, opts)
    }
}

impl RegistryPuller {
    fn pull_with(
        &self,
        store: &Arc<Store>,
        reference: &str,
        mut opts: PullOptions,
    ) -> crate::Result<()> {
        opts.unpack = true;
        let fut = self.registry.pull(store.clone(), reference, &opts);
        match tokio::runtime::Handle::try_current() {
            Ok(h) => h.block_on(fut).map(|_| ()),
            Err(_) => tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| crate::Error::io("starting a runtime for the pull", e))?
                .block_on(fut)
                .map(|_| ()),
        }
    }
}

/// What `docker build` lets a user choose.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The Dockerfile's path inside the context.
    pub dockerfile: String,
    /// Names for the image (`-t`), tagged only when the build succeeds.
    pub tags: Vec<String>,
    pub build_args: BTreeMap<String, String>,
    /// The stage to build (`--target`); the last one when `None`.
    pub target: Option<String>,
    pub no_cache: bool,
    /// Labels added to the final image (`--label`).
    pub labels: BTreeMap<String, String>,
    /// Pull base images even when the store has them.
    pub pull: bool,
    pub network: NetworkMode,
    /// Stream only the image id (`-q`).
    pub quiet: bool,
    /// The platform of `FROM scratch` images and pulls; the host's when `None`.
    pub platform: Option<Platform>,
    /// Bound on the context: bytes read and bytes of file content.
    pub max_context_bytes: u64,
    /// Bound on the number of entries in the context.
    pub max_context_entries: u64,
    /// gzip layers (fast level); plain tar layers when false.
    pub compress_layers: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            dockerfile: "Dockerfile".into(),
            tags: Vec::new(),
            build_args: BTreeMap::new(),
            target: None,
            no_cache: false,
            labels: BTreeMap::new(),
            pull: false,
            network: NetworkMode::Default,
            quiet: false,
            platform: None,
            max_context_bytes: 8 << 30,
            max_context_entries: 1_000_000,
            compress_layers: true,
        }
    }
}

/// What the build streams: the legacy builder's `stream` text (each with its
/// newline) and the `aux` image ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildEvent {
    Stream(String),
    Aux { id: String },
}

/// A finished build.
#[derive(Debug, Clone)]
pub struct BuildResult {
    /// The image ID (config digest), as Docker names it.
    pub image_id: Digest,
    pub manifest_digest: Digest,
    /// The canonical names tagged.
    pub tags: Vec<String>,
    /// Steps run and steps taken from the cache.
    pub steps: usize,
    pub cached_steps: usize,
}

/// Builds images into one store.
pub struct Builder {
    store: Arc<Store>,
    kosrun: PathBuf,
    network: Option<Arc<dyn BuildNetwork>>,
    puller: Option<Arc<dyn ImagePuller>>,
    cgroup_parent: String,
}

impl Builder {
    /// A builder running steps with `kosrun` from PATH and no puller.
    pub fn new(store: Arc<Store>) -> Self {
        Builder {
            store,
            kosrun: PathBuf::from("kosrun"),
            network: None,
            puller: None,
            cgroup_parent: "kos".to_string(),
        }
    }

    /// The cgroup RUN steps' containers go below (default `kos`), as the engine's own.
    pub fn with_cgroup_parent(mut self, parent: impl Into<String>) -> Self {
        self.cgroup_parent = parent.into();
        self
    }

    /// The runtime binary for RUN steps.
    pub fn with_kosrun(mut self, path: impl Into<PathBuf>) -> Self {
        self.kosrun = path.into();
        self
    }

    /// Connects RUN steps of the default network mode to a bridge.
    pub fn with_network(mut self, network: Arc<dyn BuildNetwork>) -> Self {
        self.network = Some(network);
        self
    }

    /// Pulls missing base images.
    pub fn with_puller(mut self, puller: Arc<dyn ImagePuller>) -> Self {
        self.puller = Some(puller);
        self
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Builds the context tar `context` (plain, gzip or zstd), reporting
    /// progress to `progress`.
    pub fn build(
        &self,
        context: impl Read + Send,
        opts: &BuildOptions,
        progress: &mut dyn FnMut(BuildEvent),
    ) -> Result<BuildResult, BuildError> {
        exec::build(self, context, opts, progress)
    }
}
