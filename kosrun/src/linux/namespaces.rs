//! Which namespaces a container gets, and entering the ones given by path.

use std::fs::File;
use std::os::fd::OwnedFd;

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::config::ns_name;
use crate::error::{Error, Result, Stage, SysContext};

pub fn flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
    }
}

/// A namespace to join, opened before we start changing namespaces (paths may
/// stop resolving once we are in another mount namespace).
pub struct Join {
    pub typ: LinuxNamespaceType,
    pub fd: OwnedFd,
}

pub struct Plan {
    /// Namespaces to create.
    pub new: CloneFlags,
    /// Namespaces to join, user first so the others are entered with its privileges.
    pub join: Vec<Join>,
}

impl Plan {
    pub fn from_spec(spec: &Spec) -> Result<Plan> {
        let mut new = CloneFlags::empty();
        let mut join = Vec::new();
        let list = spec
            .linux()
            .as_ref()
            .and_then(|l| l.namespaces().as_deref())
            .unwrap_or(&[]);
        for ns in list {
            match ns.path() {
                None => new |= flag(ns.typ()),
                Some(p) => {
                    let f = File::open(p).map_err(|e| {
                        Error::invalid_in(
                            Stage::Namespaces,
                            "linux.namespaces.path",
                            format!(
                                "linux.namespaces: {} namespace {}: {e}",
                                ns_name(ns.typ()),
                                p.display()
                            ),
                        )
                    })?;
                    join.push(Join {
                        typ: ns.typ(),
                        fd: f.into(),
                    });
                }
            }
        }
        join.sort_by_key(|j| match j.typ {
            LinuxNamespaceType::User => 0,
            LinuxNamespaceType::Mount => 2,
            _ => 1,
        });
        Ok(Plan { new, join })
    }

    pub fn creates(&self, t: LinuxNamespaceType) -> bool {
        self.new.contains(flag(t))
    }

    pub fn joins(&self, t: LinuxNamespaceType) -> bool {
        self.join.iter().any(|j| j.typ == t)
    }

    pub fn has(&self, t: LinuxNamespaceType) -> bool {
        self.creates(t) || self.joins(t)
    }

    pub fn enter_joined(&self) -> Result<()> {
        for j in &self.join {
            nix::sched::setns(&j.fd, flag(j.typ))
                .ctx(|| format!("join {} namespace", ns_name(j.typ)))?;
        }
        Ok(())
    }
}

/// Write uid_map and gid_map of `pid` from the parent's side.
pub fn write_id_maps(pid: i32, spec: &Spec) -> Result<()> {
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    let fmt = |m: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
        m.iter()
            .flatten()
            .map(|x| format!("{} {} {}\n", x.container_id(), x.host_id(), x.size()))
            .collect::<String>()
    };
    let uid = fmt(linux.uid_mappings());
    let gid = fmt(linux.gid_mappings());
    for (file, data) in [("uid_map", uid), ("gid_map", gid)] {
        if data.is_empty() {
            continue;
        }
        let p = format!("/proc/{pid}/{file}");
        std::fs::write(&p, data.as_bytes()).map_err(|e| {
            Error::failed(
                Stage::Namespaces,
                format!("write {p} ({}): {e}", data.trim().replace('\n', ", ")),
            )
        })?;
    }
    Ok(())
}

/// A new time namespace takes its clock offsets before any process enters it, so
/// the parent unshares one for its children, writes the offsets, and after the
/// clone restores its own namespace for children.
pub struct TimeNs {
    original: OwnedFd,
}

impl TimeNs {
    pub fn prepare(spec: &Spec) -> Result<TimeNs> {
        let original: OwnedFd = File::open("/proc/self/ns/time")
            .map_err(|e| Error::io("/proc/self/ns/time", e))?
            .into();
        nix::sched::unshare(CloneFlags::from_bits_retain(libc::CLONE_NEWTIME))
            .ctx(|| "unshare time namespace".into())?;
        let offsets = spec
            .linux()
            .as_ref()
            .and_then(|l| l.time_offsets().clone())
            .unwrap_or_default();
        let mut text = String::new();
        for (clock, off) in offsets {
            text.push_str(&format!(
                "{clock} {} {}\n",
                off.secs().unwrap_or(0),
                off.nanosecs().unwrap_or(0)
            ));
        }
        if !text.is_empty() {
            std::fs::write("/proc/self/timens_offsets", text.as_bytes()).map_err(|e| {
                Error::failed_by(Stage::Namespaces, format!("write timens_offsets: {e}"), e)
            })?;
        }
        Ok(TimeNs { original })
    }

    pub fn restore(self) -> Result<()> {
        nix::sched::setns(
            &self.original,
            CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
        )
        .ctx(|| "restore time namespace".into())
    }
}
