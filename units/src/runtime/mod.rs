//! The back end that runs a unit's container: kosd implements [`UnitRuntime`] over its
//! shim; [`process::ProcessRuntime`] runs plain processes (tests, benchmarks).

pub mod process;

use nix::sys::signal::Signal;

use crate::error::RuntimeError;
use crate::spec::{ContainerSpec, ExecCommand};

/// What the manager asks of the runtime. Calls are made from the manager's thread and
/// should return once the operation is done (a start returns once the process exists;
/// readiness is awaited by the manager, so independent units come up in parallel).
///
/// Exits are reported back by the host: [`crate::Manager::process_exited`] with the host pid
/// returned by [`UnitRuntime::start`] or [`UnitRuntime::exec`].
pub trait UnitRuntime {
    /// Creates (does not start) the unit's container from `spec`. Called on every start;
    /// whatever an earlier run left was removed by [`UnitRuntime::remove`].
    fn create(&mut self, unit: &str, spec: &ContainerSpec) -> Result<(), RuntimeError>;
    /// Starts the created container's main process; returns its host pid.
    fn start(&mut self, unit: &str) -> Result<u32, RuntimeError>;
    /// Runs an `ExecStartPre=`/`ExecStartPost=` command: inside the unit's container (created,
    /// maybe not yet started), or on the host when `cmd.on_host`. Returns its host pid.
    fn exec(&mut self, unit: &str, cmd: &ExecCommand) -> Result<u32, RuntimeError>;
    /// Signals all processes of the unit (systemd's `KillMode=control-group`).
    fn kill(&mut self, unit: &str, signal: Signal) -> Result<(), RuntimeError>;
    /// Removes the container and anything left in it. Called once the main process is gone.
    fn remove(&mut self, unit: &str) -> Result<(), RuntimeError>;
    /// Host pids of the unit's processes (its cgroup's members): who may notify.
    fn pids(&mut self, unit: &str) -> Result<Vec<u32>, RuntimeError>;
    /// Whether `pid` is one of the unit's processes. The default lists [`UnitRuntime::pids`];
    /// a runtime can answer cheaper (kosd: `/proc/PID/cgroup` against the container's).
    fn owns_pid(&mut self, unit: &str, pid: u32) -> bool {
        self.pids(unit).is_ok_and(|p| p.contains(&pid))
    }
    /// The unit's cgroup, shown by `status`.
    fn cgroup(&self, _unit: &str) -> Option<String> {
        None
    }
}
