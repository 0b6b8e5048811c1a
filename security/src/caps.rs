//! Capabilities: the five sets of `process.capabilities`, applied around the user switch.
//!
//! # Call order in kosrun's init
//!
//! 1. Parent, before fork: [`Capabilities::from_spec`] (validation; unknown names are already
//!    rejected by the spec parser, see [`parse_name`] for text input).
//! 2. Init, still uid 0 with the full set, after mounts and pivot_root:
//!    [`Capabilities::drop_bounding`] (needs `CAP_SETPCAP`, which the user switch may lose),
//!    then [`Capabilities::keep_across_setuid`] so permitted survives `setresuid`.
//! 3. `setgroups`, `setresgid`, `setresuid` to the spec's user.
//! 4. Immediately: [`Capabilities::apply_after_setuid`]. Between 3 and 4 the effective set is
//!    empty (the kernel clears it when uid 0 is left), so the process holds no usable privilege
//!    it should not; 4 sets effective, permitted and inheritable in one `capset` and then the
//!    ambient set, and clears keep-caps again.
//! 5. Landlock, then (with no_new_privs) seccomp, then `execve`.

use std::collections::HashSet;
use std::str::FromStr;

use caps::{CapSet, Capability as Cap, CapsHashSet};
use oci_spec::runtime::{Capability as SpecCap, LinuxCapabilities};

/// Capability errors.
#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    /// A capability name no kernel defines.
    #[error("unknown capability {0:?}")]
    Unknown(String),
    /// The spec asks for an impossible combination.
    #[error("capabilities: {0}")]
    Invalid(String),
    /// A capability syscall failed.
    #[error("{op}: {source}")]
    Sys {
        /// What was being done.
        op: String,
        /// The kernel's error.
        source: std::io::Error,
    },
}

/// Parse `CAP_SYS_ADMIN` or `SYS_ADMIN` (any case).
pub fn parse_name(name: &str) -> Result<Cap, CapsError> {
    let upper = name.trim().to_ascii_uppercase();
    let canonical = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    Cap::from_str(&canonical).map_err(|_| CapsError::Unknown(name.to_string()))
}

fn from_spec_cap(c: &SpecCap) -> Result<Cap, CapsError> {
    // The spec enum's Display is the name without the CAP_ prefix.
    parse_name(&c.to_string())
}

/// Highest capability number the running kernel knows. Read once per process: the
/// runtime validates with it and its init (a copy of the runtime) drops by it.
pub fn kernel_last_cap() -> u8 {
    static LAST: std::sync::OnceLock<u8> = std::sync::OnceLock::new();
    *LAST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(40)
    })
}

/// The validated sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Bounding set.
    pub bounding: CapsHashSet,
    /// Effective set.
    pub effective: CapsHashSet,
    /// Inheritable set.
    pub inheritable: CapsHashSet,
    /// Permitted set.
    pub permitted: CapsHashSet,
    /// Ambient set.
    pub ambient: CapsHashSet,
    /// Names the running kernel does not know; left out of every set (runc does the same).
    pub unsupported: Vec<String>,
}

impl Capabilities {
    /// Validate the spec's sets. Capabilities newer than the running kernel are dropped with a
    /// warning; an ambient capability missing from permitted or inheritable is an error (the
    /// kernel would refuse it after the container exists).
    pub fn from_spec(spec: &LinuxCapabilities) -> Result<Capabilities, CapsError> {
        let last = kernel_last_cap();
        let mut unsupported = Vec::new();
        let mut conv = |set: &Option<HashSet<SpecCap>>| -> Result<CapsHashSet, CapsError> {
            let mut out = CapsHashSet::new();
            for c in set.iter().flatten() {
                let cap = from_spec_cap(c)?;
                if cap.index() > last {
                    let name = cap.to_string();
                    if !unsupported.contains(&name) {
                        tracing::warn!(capability = %name, "not supported by this kernel; ignored");
                        unsupported.push(name);
                    }
                    continue;
                }
                out.insert(cap);
            }
            Ok(out)
        };
        let caps = Capabilities {
            bounding: conv(spec.bounding())?,
            effective: conv(spec.effective())?,
            inheritable: conv(spec.inheritable())?,
            permitted: conv(spec.permitted())?,
            ambient: conv(spec.ambient())?,
            unsupported: Vec::new(),
        };
        let caps = Capabilities {
            unsupported,
            ..caps
        };
        // The kernel only raises an ambient capability that is both permitted and
        // inheritable. runc's own `spec` lists ambient capabilities without inheritable
        // ones (CVE-2022-29162), and runc skips them with a warning; so do we.
        let mut caps = caps;
        let (permitted, inheritable) = (caps.permitted.clone(), caps.inheritable.clone());
        caps.ambient.retain(|a| {
            let ok = permitted.contains(a) && inheritable.contains(a);
            if !ok {
                tracing::warn!(capability = %a, "ambient capability not in permitted and inheritable; not raised");
            }
            ok
        });
        for e in &caps.effective {
            if !caps.permitted.contains(e) {
                return Err(CapsError::Invalid(format!(
                    "effective capability {e} is not in permitted"
                )));
            }
        }
        Ok(caps)
    }

    /// `PR_SET_KEEPCAPS`: keep permitted across the switch away from uid 0.
    pub fn keep_across_setuid(&self) -> Result<(), CapsError> {
        set_keepcaps(true)
    }

    /// Drop from the bounding set every capability not listed, by number up to the kernel's
    /// last one, so capabilities newer than this crate's table are dropped too. Needs
    /// `CAP_SETPCAP`.
    pub fn drop_bounding(&self) -> Result<(), CapsError> {
        let keep: HashSet<u8> = self.bounding.iter().map(|c| c.index()).collect();
        for index in 0..=kernel_last_cap() {
            if keep.contains(&index) {
                continue;
            }
            // SAFETY: plain prctl with integer arguments.
            let r =
                unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(index), 0, 0, 0) };
            if r != 0 {
                return Err(CapsError::Sys {
                    op: format!("drop capability {index} from the bounding set"),
                    source: std::io::Error::last_os_error(),
                });
            }
        }
        Ok(())
    }

    /// Set effective, permitted and inheritable together, then the ambient set, then clear
    /// keep-caps. Call right after the user switch.
    pub fn apply_after_setuid(&self) -> Result<(), CapsError> {
        capset(&self.effective, &self.permitted, &self.inheritable)?;
        caps::clear(None, CapSet::Ambient).map_err(|e| CapsError::Sys {
            op: "clear the ambient set".into(),
            source: std::io::Error::other(e.to_string()),
        })?;
        for cap in &self.ambient {
            caps::raise(None, CapSet::Ambient, *cap).map_err(|e| CapsError::Sys {
                op: format!("raise {cap} in the ambient set"),
                source: std::io::Error::other(e.to_string()),
            })?;
        }
        set_keepcaps(false)
    }
}

fn set_keepcaps(on: bool) -> Result<(), CapsError> {
    // SAFETY: plain prctl with integer arguments.
    let r = unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, libc::c_ulong::from(on), 0, 0, 0) };
    if r != 0 {
        return Err(CapsError::Sys {
            op: "prctl(PR_SET_KEEPCAPS)".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

fn mask(set: &CapsHashSet) -> u64 {
    set.iter().fold(0u64, |m, c| m | c.bitmask())
}

/// One capset(2) for the three sets, so the kernel checks them together (setting them one at a
/// time can fail halfway, e.g. effective not yet reduced when permitted shrinks).
fn capset(eff: &CapsHashSet, perm: &CapsHashSet, inh: &CapsHashSet) -> Result<(), CapsError> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;
    let (e, p, i) = (mask(eff), mask(perm), mask(inh));
    let hdr = Header {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let data = [
        Data {
            effective: e as u32,
            permitted: p as u32,
            inheritable: i as u32,
        },
        Data {
            effective: (e >> 32) as u32,
            permitted: (p >> 32) as u32,
            inheritable: (i >> 32) as u32,
        },
    ];
    // SAFETY: header and two data structs as capset(2) v3 expects.
    let r = unsafe { libc::syscall(libc::SYS_capset, &hdr as *const Header, data.as_ptr()) };
    if r != 0 {
        return Err(CapsError::Sys {
            op: "capset(effective, permitted, inheritable)".into(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_with_or_without_prefix() {
        assert_eq!(parse_name("CAP_SYS_ADMIN").ok(), Some(Cap::CAP_SYS_ADMIN));
        assert_eq!(
            parse_name("net_bind_service").ok(),
            Some(Cap::CAP_NET_BIND_SERVICE)
        );
        let e = parse_name("CAP_BOGUS").expect_err("bogus");
        assert_eq!(e.to_string(), "unknown capability \"CAP_BOGUS\"");
    }

    #[test]
    fn every_spec_capability_maps() {
        let all = [
            SpecCap::AuditControl,
            SpecCap::Bpf,
            SpecCap::CheckpointRestore,
            SpecCap::DacReadSearch,
            SpecCap::NetBindService,
            SpecCap::Perfmon,
            SpecCap::SysAdmin,
            SpecCap::WakeAlarm,
        ];
        for c in all {
            assert!(from_spec_cap(&c).is_ok(), "{c}");
        }
    }

    #[test]
    fn spec_parser_rejects_unknown_names() {
        let e = serde_json::from_str::<LinuxCapabilities>(r#"{"bounding":["CAP_NOPE"]}"#)
            .expect_err("unknown");
        assert!(e.to_string().to_uppercase().contains("NOPE"), "{e}");
    }

    #[test]
    fn ambient_outside_inheritable_is_dropped_and_effective_outside_permitted_fails() {
        let spec: LinuxCapabilities = serde_json::from_str(
            r#"{"permitted":["CAP_KILL"],"inheritable":[],"ambient":["CAP_KILL"]}"#,
        )
        .expect("json");
        let c = Capabilities::from_spec(&spec).expect("ambient is skipped, as runc does");
        assert!(c.ambient.is_empty());
        assert!(c.permitted.contains(&Cap::CAP_KILL));
        let spec: LinuxCapabilities =
            serde_json::from_str(r#"{"effective":["CAP_KILL"],"permitted":[]}"#).expect("json");
        assert!(Capabilities::from_spec(&spec).is_err());
    }
}
