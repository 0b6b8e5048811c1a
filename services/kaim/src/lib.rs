//! kaim, KOS's application interface manager: a permission-checked proxy of the Docker Engine
//! API. Each client container gets its own unix socket; the peer is identified by SO_PEERCRED
//! and its cgroup, each request is normalised, read whole and judged by a Rego policy
//! (evaluated in-process by regorus, input shaped like Docker's AuthZ plugin requests),
//! audited, and only then forwarded. The policy engine is also a library: kadcm judges device
//! passthrough with it.

pub mod audit;
pub mod body;
pub mod config;
pub mod control;
pub mod error;
pub mod identity;
pub mod input;
pub mod normalize;
pub mod policy;
pub mod proxy;

pub use error::{Error, Result};
pub use policy::{Decision, Policy};
