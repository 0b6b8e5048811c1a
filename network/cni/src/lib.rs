//! kos-cni: a CNI runner (spec 0.3.0 to 1.1.0) for KOS's CRI server.
//!
//! - [`config`]: network configs and lists from a directory, in libcni's order.
//! - [`runner`]: ADD, CHECK, DEL, GC, STATUS and VERSION over a list of plugins.
//! - [`exec`]: one plugin call (environment, stdin, bounded output, deadline).
//! - [`result`]: the result types; [`cache`]: results on disk so DEL works after a restart.
//!
//! ```no_run
//! use kos_cni::{config, runner::{Cni, RuntimeConf}};
//! # fn main() -> Result<(), kos_cni::Error> {
//! let list = config::load_default(std::path::Path::new(config::DEFAULT_CONF_DIR))?;
//! let cni = Cni::default();
//! let rt = RuntimeConf {
//!     container_id: "pod1".into(),
//!     netns: "/run/kos/netns/pod1".into(),
//!     ifname: "eth0".into(),
//!     ..RuntimeConf::default()
//! };
//! let result = cni.add(&list, &rt)?;
//! println!("{:?}", result.sandbox_ips());
//! cni.del(&list, &rt)?;
//! # Ok(()) }
//! ```

pub mod cache;
pub mod config;
pub mod error;
pub mod exec;
pub mod result;
pub mod runner;
pub mod version;

pub use error::{Error, PluginError, Result};
