//! process.rlimits.

use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

use crate::error::{Error, Result, Stage};

/// setrlimit's resource type: glibc has its own, musl a plain int.
#[cfg(target_env = "gnu")]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_env = "gnu"))]
type Resource = libc::c_int;

fn resource(t: PosixRlimitType) -> (Resource, &'static str) {
    use PosixRlimitType::*;
    match t {
        RlimitCpu => (libc::RLIMIT_CPU, "RLIMIT_CPU"),
        RlimitFsize => (libc::RLIMIT_FSIZE, "RLIMIT_FSIZE"),
        RlimitData => (libc::RLIMIT_DATA, "RLIMIT_DATA"),
        RlimitStack => (libc::RLIMIT_STACK, "RLIMIT_STACK"),
        RlimitCore => (libc::RLIMIT_CORE, "RLIMIT_CORE"),
        RlimitRss => (libc::RLIMIT_RSS, "RLIMIT_RSS"),
        RlimitNproc => (libc::RLIMIT_NPROC, "RLIMIT_NPROC"),
        RlimitNofile => (libc::RLIMIT_NOFILE, "RLIMIT_NOFILE"),
        RlimitMemlock => (libc::RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK"),
        RlimitAs => (libc::RLIMIT_AS, "RLIMIT_AS"),
        RlimitLocks => (libc::RLIMIT_LOCKS, "RLIMIT_LOCKS"),
        RlimitSigpending => (libc::RLIMIT_SIGPENDING, "RLIMIT_SIGPENDING"),
        RlimitMsgqueue => (libc::RLIMIT_MSGQUEUE, "RLIMIT_MSGQUEUE"),
        RlimitNice => (libc::RLIMIT_NICE, "RLIMIT_NICE"),
        RlimitRtprio => (libc::RLIMIT_RTPRIO, "RLIMIT_RTPRIO"),
        RlimitRttime => (libc::RLIMIT_RTTIME, "RLIMIT_RTTIME"),
    }
}

/// Apply each limit. Raising a hard limit needs CAP_SYS_RESOURCE; without it the
/// error names the limit and the hard value in force, so the caller can lower it.
pub fn apply(limits: &[PosixRlimit]) -> Result<()> {
    for l in limits {
        let (res, name) = resource(l.typ());
        if l.soft() > l.hard() {
            return Err(Error::invalid_in(
                Stage::Rlimits,
                "process.rlimits",
                format!(
                    "process.rlimits {name}: soft limit {} exceeds hard limit {}",
                    l.soft(),
                    l.hard()
                ),
            ));
        }
        let want = libc::rlimit {
            rlim_cur: l.soft(),
            rlim_max: l.hard(),
        };
        // SAFETY: valid resource and struct.
        if unsafe { libc::setrlimit(res, &want) } != 0 {
            let e = std::io::Error::last_os_error();
            let mut cur = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: valid out-parameter.
            unsafe { libc::getrlimit(res, &mut cur) };
            if e.raw_os_error() == Some(libc::EPERM) && l.hard() > cur.rlim_max {
                return Err(Error::failed(Stage::Rlimits, format!(
                    "process.rlimits {name}: cannot raise the hard limit to {} above the current hard limit {} (needs CAP_SYS_RESOURCE)",
                    l.hard(),
                    cur.rlim_max
                )));
            }
            return Err(Error::failed(
                Stage::Rlimits,
                format!(
                    "process.rlimits {name} soft={} hard={}: {e}",
                    l.soft(),
                    l.hard()
                ),
            ));
        }
    }
    Ok(())
}
