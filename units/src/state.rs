//! Unit states, results and job outcomes, named as `systemctl` shows them.

use std::fmt;

/// systemd's ActiveState.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ActiveState {
    Active,
    Inactive,
    Failed,
    Activating,
    Deactivating,
}

impl ActiveState {
    pub fn as_str(self) -> &'static str {
        match self {
            ActiveState::Active => "active",
            ActiveState::Inactive => "inactive",
            ActiveState::Failed => "failed",
            ActiveState::Activating => "activating",
            ActiveState::Deactivating => "deactivating",
        }
    }
}

impl fmt::Display for ActiveState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a unit last stopped or failed (systemd's service `Result=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UnitResult {
    Success,
    /// The runtime could not create or start the container or a command.
    Resources,
    Timeout,
    ExitCode,
    Signal,
    CoreDump,
    Watchdog,
    StartLimitHit,
    /// The main process exited before READY=1 with status 0.
    Protocol,
}

impl UnitResult {
    pub fn as_str(self) -> &'static str {
        match self {
            UnitResult::Success => "success",
            UnitResult::Resources => "resources",
            UnitResult::Timeout => "timeout",
            UnitResult::ExitCode => "exit-code",
            UnitResult::Signal => "signal",
            UnitResult::CoreDump => "core-dump",
            UnitResult::Watchdog => "watchdog",
            UnitResult::StartLimitHit => "start-limit-hit",
            UnitResult::Protocol => "protocol",
        }
    }
}

impl fmt::Display for UnitResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Exited(i32),
    Signaled { signal: i32, core_dumped: bool },
}

impl ExitStatus {
    /// From a raw `waitpid` status.
    pub fn from_wait_status(status: i32) -> ExitStatus {
        if libc::WIFSIGNALED(status) {
            ExitStatus::Signaled {
                signal: libc::WTERMSIG(status),
                core_dumped: libc::WCOREDUMP(status),
            }
        } else {
            ExitStatus::Exited(libc::WEXITSTATUS(status))
        }
    }

    /// From the single exit code a shim reports (containerd's `exit_status`: 128 + N for a
    /// process killed by signal N, as runc and the shells say).
    pub fn from_shim_code(code: u32) -> ExitStatus {
        match code {
            129..=192 => ExitStatus::Signaled {
                signal: (code - 128) as i32,
                core_dumped: false,
            },
            c => ExitStatus::Exited(i32::try_from(c).unwrap_or(255)),
        }
    }

    /// The unit result of a main process ending this way outside of a stop: exit 0 and the
    /// "clean" signals SIGHUP, SIGINT, SIGTERM and SIGPIPE are success, as in systemd.
    pub fn result(self) -> UnitResult {
        match self {
            ExitStatus::Exited(0) => UnitResult::Success,
            ExitStatus::Exited(_) => UnitResult::ExitCode,
            ExitStatus::Signaled {
                core_dumped: true, ..
            } => UnitResult::CoreDump,
            ExitStatus::Signaled { signal, .. }
                if [libc::SIGHUP, libc::SIGINT, libc::SIGTERM, libc::SIGPIPE].contains(&signal) =>
            {
                UnitResult::Success
            }
            ExitStatus::Signaled { .. } => UnitResult::Signal,
        }
    }

    /// `code=exited, status=1/FAILURE` as systemctl prints it.
    pub fn describe(self) -> String {
        match self {
            ExitStatus::Exited(0) => "code=exited, status=0/SUCCESS".into(),
            ExitStatus::Exited(c) => format!("code=exited, status={c}/FAILURE"),
            ExitStatus::Signaled {
                signal,
                core_dumped,
            } => {
                let name = nix::sys::signal::Signal::try_from(signal)
                    .map(|s| s.as_str().trim_start_matches("SIG").to_string())
                    .unwrap_or_else(|_| signal.to_string());
                format!(
                    "code={}, signal={name}",
                    if core_dumped { "dumped" } else { "killed" }
                )
            }
        }
    }
}

/// A job's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobKind {
    Start,
    Stop,
    /// Stop, then start.
    Restart,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Start => "start",
            JobKind::Stop => "stop",
            JobKind::Restart => "restart",
        }
    }
}

/// How a job ended (systemd's job results).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobResult {
    Done,
    Canceled,
    /// The unit failed.
    Failed,
    /// A unit it requires (Requires=/BindsTo= with After=) failed to start.
    Dependency,
}

impl JobResult {
    pub fn as_str(self) -> &'static str {
        match self {
            JobResult::Done => "done",
            JobResult::Canceled => "canceled",
            JobResult::Failed => "failed",
            JobResult::Dependency => "dependency",
        }
    }
}

pub type JobId = u64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_results_as_systemd() {
        assert_eq!(ExitStatus::Exited(0).result(), UnitResult::Success);
        assert_eq!(ExitStatus::Exited(3).result(), UnitResult::ExitCode);
        let sig = |s, c| ExitStatus::Signaled {
            signal: s,
            core_dumped: c,
        };
        assert_eq!(sig(libc::SIGTERM, false).result(), UnitResult::Success);
        assert_eq!(sig(libc::SIGKILL, false).result(), UnitResult::Signal);
        assert_eq!(sig(libc::SIGABRT, true).result(), UnitResult::CoreDump);
        assert_eq!(
            sig(libc::SIGKILL, false).describe(),
            "code=killed, signal=KILL"
        );
        assert_eq!(
            ExitStatus::Exited(2).describe(),
            "code=exited, status=2/FAILURE"
        );
        assert_eq!(ExitStatus::from_shim_code(137), sig(libc::SIGKILL, false));
        assert_eq!(ExitStatus::from_shim_code(1), ExitStatus::Exited(1));
        assert_eq!(ExitStatus::from_wait_status(0x0100), ExitStatus::Exited(1));
        assert_eq!(
            ExitStatus::from_wait_status(libc::SIGABRT | 0x80),
            sig(libc::SIGABRT, true)
        );
    }
}
