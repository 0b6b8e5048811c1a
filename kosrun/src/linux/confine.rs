//! Confinement beyond namespaces and cgroups, in the order kos_security documents:
//! everything is parsed and checked before fork; the init applies it in phases.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use kos_security::caps::Capabilities;
use kos_security::landlock::Ruleset;
use kos_security::seccomp::{self, SeccompProgram};
use kos_security::{label, spec_defaults};
use oci_spec::runtime::Spec;

use crate::error::{Error, Result};

pub struct Confinement {
    pub seccomp: Option<SeccompProgram>,
    caps: Option<Capabilities>,
    landlock: Option<Ruleset>,
    apparmor: Option<String>,
    selinux: Option<String>,
    nnp: bool,
}

fn sec(e: impl std::fmt::Display) -> Error {
    Error::Setup(e.to_string())
}

impl Confinement {
    /// Before the container exists: every profile, capability and label is checked here.
    pub fn prepare(spec: &Spec, rootfs: &Path) -> Result<Confinement> {
        let process = spec
            .process()
            .as_ref()
            .ok_or_else(|| Error::Config("process is required".into()))?;
        let seccomp = match spec.linux().as_ref().and_then(|l| l.seccomp().as_ref()) {
            Some(s) => Some(
                seccomp::compile(s).map_err(|e| Error::Config(format!("linux.seccomp: {e}")))?,
            ),
            None => None,
        };
        let caps = match process.capabilities() {
            Some(c) => Some(
                Capabilities::from_spec(c)
                    .map_err(|e| Error::Config(format!("process.capabilities: {e}")))?,
            ),
            None => None,
        };
        let annotations = spec.annotations().clone().unwrap_or_default();
        // Landlock's errors already name the annotation.
        let landlock =
            Ruleset::from_annotations(&annotations).map_err(|e| Error::Config(e.to_string()))?;
        if let Some(rs) = &landlock {
            let dests: Vec<PathBuf> = spec
                .mounts()
                .iter()
                .flatten()
                .map(|m| m.destination().clone())
                .collect();
            rs.check_paths_in(rootfs, &dests)
                .map_err(|e| Error::Config(e.to_string()))?;
        }
        let selinux = process.selinux_label().clone().filter(|l| !l.is_empty());
        let mount_label = spec
            .linux()
            .as_ref()
            .and_then(|l| l.mount_label().clone())
            .filter(|l| !l.is_empty());
        label::selinux::check_available(selinux.as_deref(), mount_label.as_deref())
            .map_err(|e| Error::Config(e.to_string()))?;
        let apparmor = process.apparmor_profile().clone().filter(|p| !p.is_empty());
        if let Some(p) = &apparmor {
            label::apparmor::check_available(p).map_err(|e| Error::Config(e.to_string()))?;
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

    /// A NOTIFY filter must exist before `create` returns, so its listener can be
    /// handed to the agent; other filters wait until just before exec.
    pub fn seccomp_early(&self) -> bool {
        self.seccomp.as_ref().is_some_and(|s| s.has_notify())
            || (self.seccomp.is_some() && !self.nnp)
    }

    /// Before the user switch. Returns a seccomp listener if the filter went in now.
    pub fn before_user_switch(&self) -> Result<Option<OwnedFd>> {
        let mut listener = None;
        if self.nnp {
            spec_defaults::set_no_new_privileges().map_err(sec)?;
        }
        if self.seccomp_early() {
            // Without no_new_privs the filter needs CAP_SYS_ADMIN, which the switch drops.
            if let Some(s) = &self.seccomp {
                listener = s.install().map_err(sec)?;
            }
        }
        if let Some(c) = &self.caps {
            c.drop_bounding().map_err(sec)?;
            c.keep_across_setuid().map_err(sec)?;
        }
        Ok(listener)
    }

    /// Right after the user switch: capability sets, then the LSM labels for exec.
    pub fn after_user_switch(&self) -> Result<()> {
        if let Some(c) = &self.caps {
            c.apply_after_setuid().map_err(sec)?;
        }
        if let Some(p) = &self.apparmor {
            label::apparmor::apply(p).map_err(sec)?;
        }
        if let Some(l) = &self.selinux {
            label::selinux::set_exec_label(l).map_err(sec)?;
        }
        Ok(())
    }

    /// The last steps before exec: Landlock, then (with no_new_privs) seccomp.
    pub fn last(&self) -> Result<()> {
        if let Some(rs) = &self.landlock {
            rs.apply()
                .map_err(|e| Error::Setup(format!("landlock: {e}")))?;
        }
        if !self.seccomp_early() {
            if let Some(s) = &self.seccomp {
                s.install().map_err(sec)?;
            }
        }
        Ok(())
    }
}
