//! Confinement beyond namespaces and cgroups, in the order kos_security documents:
//! everything is parsed and checked before fork; the init applies it in phases.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use kos_security::caps::Capabilities;
use kos_security::landlock::Ruleset;
use kos_security::seccomp::{self, SeccompProgram};
use kos_security::{label, spec_defaults};
use oci_spec::runtime::Spec;

use crate::error::{Cause, Error, Result, Stage};

pub struct Confinement {
    pub seccomp: Option<SeccompProgram>,
    caps: Option<Capabilities>,
    landlock: Option<Ruleset>,
    apparmor: Option<String>,
    selinux: Option<String>,
    nnp: bool,
}

/// A kos_security error at `stage`, its message unchanged and its value kept as the source.
fn sec<E: Into<Cause> + std::fmt::Display>(stage: Stage) -> impl FnOnce(E) -> Error {
    move |e| Error::failed_by(stage, e.to_string(), e)
}

impl Confinement {
    /// Before the container exists: every profile, capability and label is checked here.
    pub fn prepare(spec: &Spec, rootfs: &Path) -> Result<Confinement> {
        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| Error::invalid("process", "process is required"))?;
        let seccomp = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
            Some(s) => Some(seccomp::compile(s).map_err(|e| {
                Error::invalid_by(
                    Stage::Seccomp,
                    "linux.seccomp",
                    format!("linux.seccomp: {e}"),
                    e,
                )
            })?),
            None => None,
        };
        let caps = match process.capabilities() {
            Some(c) => Some(Capabilities::from_spec(c).map_err(|e| {
                Error::invalid_by(
                    Stage::Capabilities,
                    "process.capabilities",
                    format!("process.capabilities: {e}"),
                    e,
                )
            })?),
            None => None,
        };
        let annotations = spec.annotations().clone().unwrap_or_default();
        // Landlock's errors already name the annotation.
        let landlock = Ruleset::from_annotations(&annotations)
            .map_err(|e| Error::invalid_by(Stage::Confinement, "annotations", e.to_string(), e))?;
        if let Some(rs) = &landlock {
            let dests: Vec<PathBuf> = spec
                .mounts()
                .iter()
                .flatten()
                .map(|m| m.destination().clone())
                .collect();
            rs.check_paths_in(rootfs, &dests).map_err(|e| {
                Error::invalid_by(Stage::Confinement, "annotations", e.to_string(), e)
            })?;
        }
        let selinux = process.selinux_label().clone().filter(|l| !l.is_empty());
        let mount_label = spec
            .linux()
            .as_ref()
            .and_then(|l| l.mount_label().clone())
            .filter(|l| !l.is_empty());
        label::selinux::check_available(selinux.as_deref(), mount_label.as_deref()).map_err(
            |e| Error::invalid_by(Stage::Confinement, "process.selinuxLabel", e.to_string(), e),
        )?;
        let apparmor = process.apparmor_profile().clone().filter(|p| !p.is_empty());
        if let Some(p) = &apparmor {
            label::apparmor::check_available(p).map_err(|e| {
                Error::invalid_by(
                    Stage::Confinement,
                    "process.apparmorProfile",
                    e.to_string(),
                    e,
                )
            })?;
        }
        Ok(Confinement {
            seccomp,
            caps,
            landlock,
            apparmor,
            selinux,
            nnp: process.no_new_privileges().unwrap_or(false),
        })
    }

    /// Without no_new_privs, loading a filter needs CAP_SYS_ADMIN, which the user switch
    /// or the spec's capability sets may have taken away by then.
    fn seccomp_needs_admin(&self) -> bool {
        self.seccomp.is_some() && !self.nnp
    }

    /// Before the user switch: no_new_privs, the bounding set, and keep-caps so the
    /// permitted set survives the switch (the capability sets, and loading seccomp
    /// without no_new_privs, need it afterwards).
    pub fn before_user_switch(&self) -> Result<()> {
        if self.nnp {
            spec_defaults::set_no_new_privileges().map_err(sec(Stage::Confinement))?;
        }
        if let Some(c) = &self.caps {
            c.drop_bounding().map_err(sec(Stage::Capabilities))?;
            c.keep_across_setuid().map_err(sec(Stage::Capabilities))?;
        } else if self.seccomp_needs_admin() {
            set_keepcaps(true)?;
        }
        Ok(())
    }

    /// After the user switch and the launch checks: capability sets, then the LSM labels
    /// for exec. When seccomp must still be loaded without no_new_privs, CAP_SYS_ADMIN is
    /// kept in effective and permitted on top of the spec's sets: execve recomputes
    /// permitted and effective from the inheritable, ambient and bounding sets alone, so
    /// the extra capability never reaches the program.
    pub fn after_user_switch(&self) -> Result<()> {
        let admin = caps::Capability::CAP_SYS_ADMIN;
        match &self.caps {
            Some(c) if self.seccomp_needs_admin() && !c.effective.contains(&admin) => {
                let mut c = c.clone();
                c.effective.insert(admin);
                c.permitted.insert(admin);
                c.apply_after_setuid().map_err(sec(Stage::Capabilities))?;
            }
            Some(c) => c.apply_after_setuid().map_err(sec(Stage::Capabilities))?,
            None if self.seccomp_needs_admin() => {
                // Permitted was kept across the switch; without it the filter cannot load
                // for a non-root user, and the error then says why.
                let _ = caps::raise(None, caps::CapSet::Effective, admin);
                set_keepcaps(false)?;
            }
            None => {}
        }
        if let Some(p) = &self.apparmor {
            label::apparmor::apply(p).map_err(sec(Stage::Confinement))?;
        }
        if let Some(l) = &self.selinux {
            label::selinux::set_exec_label(l).map_err(sec(Stage::Confinement))?;
        }
        Ok(())
    }

    /// A NOTIFY filter goes in now, once every check is done, so its listener can reach
    /// the agent before `create` returns; the program's own syscalls are what it is for.
    pub fn install_notify(&self) -> Result<Option<OwnedFd>> {
        match &self.seccomp {
            Some(s) if s.has_notify() => s.install().map_err(sec(Stage::Seccomp)),
            _ => Ok(None),
        }
    }

    /// The last steps before exec: Landlock, then any other seccomp filter. Nothing
    /// but the exec follows, so a profile cannot trap or deny the runtime's own steps.
    pub fn last(&self) -> Result<()> {
        if let Some(rs) = &self.landlock {
            rs.apply()
                .map_err(|e| Error::failed_by(Stage::Confinement, format!("landlock: {e}"), e))?;
        }
        if let Some(s) = self.seccomp.as_ref().filter(|s| !s.has_notify()) {
            s.install().map_err(sec(Stage::Seccomp))?;
        }
        Ok(())
    }
}

fn set_keepcaps(on: bool) -> Result<()> {
    // SAFETY: plain prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, libc::c_ulong::from(on), 0, 0, 0) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(Error::failed_by(
            Stage::Capabilities,
            format!("prctl(PR_SET_KEEPCAPS): {e}"),
            e,
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Kind;

    /// A profile kos_security refuses is a config error of the seccomp stage, and the
    /// library's own error stays reachable as the source.
    #[test]
    fn bad_seccomp_profile_keeps_the_security_error() {
        let spec = crate::config::parse_spec(
            br#"{"ociVersion":"1.0.2","process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}},
                "root":{"path":"rootfs"},"linux":{"seccomp":{"defaultAction":"SCMP_ACT_ALLOW",
                "syscalls":[{"names":["read"],"action":"SCMP_ACT_ERRNO",
                "args":[{"index":9,"value":1,"op":"SCMP_CMP_EQ"}]}]}}}"#,
        )
        .expect("parses");
        let e = match Confinement::prepare(&spec, Path::new("/")) {
            Ok(_) => panic!("an argument index past the sixth was accepted"),
            Err(e) => e,
        };
        assert_eq!(e.kind(), Kind::InvalidConfig, "{e}");
        assert_eq!(e.stage(), Some(Stage::Seccomp), "{e}");
        assert_eq!(e.field(), Some("linux.seccomp"), "{e}");
        assert!(
            matches!(e.cause(), Some(Cause::Seccomp(_))),
            "source is not the seccomp error: {e:?}"
        );
    }
}
