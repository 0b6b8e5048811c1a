//! KOS's unit manager: KOS's own components run as containers with systemd's semantics.
//!
//! - Unit files ([`loader`], [`unit_file`]): `NAME.container` (a service whose main process
//!   is a container, keys as Podman's Quadlet) and `NAME.target`, from
//!   `/usr/lib/kos/units` then `/etc/kos/units`, drop-ins `NAME.d/*.conf` (so
//!   `kos-dns.container.d/`). `[Container]` maps onto one [`ContainerSpec`] whose fields are
//!   Docker's `Config`/`HostConfig`.
//! - The engine ([`Manager`]): transactions ordered by After/Before, Requires/Wants/BindsTo
//!   pulled in, Conflicts stopped, failure propagation, OnFailure, restart policies with
//!   back-off, start limits, start/stop timeouts, oneshot, watchdog.
//! - [`notify`]: the per-unit `NOTIFY_SOCKET` with sender credentials checked.
//! - [`status`]: `systemctl status` / `list-units` text.
//! - [`UnitRuntime`]: what kosd implements to run a unit's container;
//!   [`runtime::process::ProcessRuntime`] runs plain processes instead.
//!
//! `ExecStartPre=`/`ExecStartPost=` run inside the unit's container; prefixed with `host:`
//! (after an optional `-`, e.g. `ExecStartPre=-host:/usr/bin/mkdir -p /var/lib/x`) they run
//! on the host.

#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod clock;
pub mod engine;
pub mod error;
pub mod events;
pub mod ini;
pub mod loader;
pub mod notify;
pub mod runtime;
pub mod spec;
pub mod state;
pub mod status;
pub mod timespan;
pub mod unit_file;

pub use clock::{Clock, FakeClock, SystemClock};
pub use engine::{Manager, ManagerConfig};
pub use error::{Error, Result, RuntimeError};
pub use events::{EventLog, EventSink, JobEvent, UnitEvent};
pub use loader::UnitPaths;
pub use runtime::UnitRuntime;
pub use spec::{ContainerSpec, ExecCommand};
pub use state::{ActiveState, ExitStatus, JobId, JobKind, JobResult, UnitResult};
pub use status::UnitStatus;
