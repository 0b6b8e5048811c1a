//! What the shim knows about each container and process it runs.

use std::collections::BTreeMap;
use std::path::PathBuf;

use kos_cgroups::OomWatch;

use crate::runtime::Runtime;
use crate::stdio::ProcessIo;
use crate::timefmt::Time;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Paused,
    Stopped,
}

pub struct Process {
    /// Empty for the container's init process.
    pub exec_id: String,
    pub pid: u32,
    pub status: Status,
    /// Exit status (128+signal for a signal) and time, kept until Delete.
    pub exit: Option<(u32, Time)>,
    pub io: ProcessIo,
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
    /// An exec's process JSON, until it is started.
    pub spec: Option<Vec<u8>>,
}

impl Process {
    pub fn new(exec_id: &str, stdin: &str, stdout: &str, stderr: &str, terminal: bool) -> Process {
        Process {
            exec_id: exec_id.to_string(),
            pid: 0,
            status: Status::Created,
            exit: None,
            io: ProcessIo::default(),
            stdin: stdin.to_string(),
            stdout: stdout.to_string(),
            stderr: stderr.to_string(),
            terminal,
            spec: None,
        }
    }

    pub fn exited(&self) -> bool {
        self.status == Status::Stopped
    }

    pub fn set_exited(&mut self, code: u32) {
        self.status = Status::Stopped;
        self.exit = Some((code, Time::now()));
        self.io.drain();
    }
}

/// The runtime's `delete` of a container whose processes are all gone, started before the
/// caller's Delete asks for it (see `service::early_delete`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EarlyDelete {
    /// Not (yet) started: something still runs, or nothing exited.
    #[default]
    NotYet,
    /// Not wanted: the runtime's state stays for Delete (an OOM kill's count in the cgroup,
    /// which kosd and the CRI server read after the exit).
    Declined,
    /// Running as this child of the shim.
    Running(u32),
    /// Finished; whether it succeeded.
    Done(bool),
}

pub struct Container {
    pub id: String,
    pub bundle: PathBuf,
    pub runtime: Runtime,
    pub init: Process,
    pub execs: BTreeMap<String, Process>,
    pub cgroups_path: Option<String>,
    pub oom: Option<OomWatch>,
    pub rootfs_mounted: bool,
    /// No pid namespace of its own: kill every process when the init exits.
    pub kill_all_on_exit: bool,
    /// Owner of the stdio pipes (runtime options io_uid/io_gid), for execs too.
    pub io_owner: Option<(u32, u32)>,
    /// The program has run since Create (start at create) and Start has not come yet: its
    /// exit is held back in `held_exit` until then.
    pub awaiting_start: bool,
    pub held_exit: Option<(u32, Time)>,
    pub early_delete: EarlyDelete,
    /// The memory cgroup's file with the OOM kill count (v1 memory.oom_control, v2
    /// memory.events), read at the exit in one go before an early delete.
    pub oom_count_file: Option<PathBuf>,
}

impl Container {
    pub fn process(&self, exec_id: &str) -> Option<&Process> {
        if exec_id.is_empty() {
            Some(&self.init)
        } else {
            self.execs.get(exec_id)
        }
    }

    pub fn process_mut(&mut self, exec_id: &str) -> Option<&mut Process> {
        if exec_id.is_empty() {
            Some(&mut self.init)
        } else {
            self.execs.get_mut(exec_id)
        }
    }

    pub fn processes_mut(&mut self) -> impl Iterator<Item = &mut Process> {
        std::iter::once(&mut self.init).chain(self.execs.values_mut())
    }

    pub fn rootfs(&self) -> PathBuf {
        self.bundle.join("rootfs")
    }
}
