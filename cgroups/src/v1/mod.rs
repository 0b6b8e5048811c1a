//! Writers for cgroup v1 hierarchies (also used for the v1 half of a hybrid host).

pub(crate) mod blkio;
pub(crate) mod cpu;
pub(crate) mod cpuset;
pub(crate) mod devices;
pub(crate) mod hugetlb;
pub(crate) mod memory;
pub(crate) mod net;
pub(crate) mod pids;
pub(crate) mod rdma;

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::error::{Error, Result};
use crate::fsutil::Writer;
use crate::manager::Manager;
use crate::v2;

/// The container's directory in the hierarchy of `controller`, or an error naming `field`.
pub(crate) fn dir<'a>(m: &'a Manager, controller: &str, field: &str) -> Result<&'a Path> {
    m.v1_dir(controller).ok_or_else(|| {
        Error::unsupported(
            field,
            format!("the {controller} cgroup controller is not mounted"),
        )
    })
}

pub(crate) fn apply(m: &Manager, r: &LinuxResources, w: &mut Writer, updating: bool) -> Result<()> {
    if let Some(u) = r.unified() {
        if !u.is_empty() {
            // Keys whose controller lives in the hybrid host's v2 mount can be honoured
            // there; anything else has no v2 file to go to.
            match (m.v2_dir(), m.v2_root()) {
                (Some(d), Some(root)) => v2::unified::apply(d, root, u, w)?,
                _ => {
                    return Err(Error::unsupported(
                        "linux.resources.unified",
                        "this host has only cgroup v1 hierarchies",
                    ))
                }
            }
        }
    }
    if let Some(c) = r.cpu() {
        cpu::apply(m, c, w)?;
        cpuset::apply(m, c, w)?;
    }
    if let Some(mem) = r.memory() {
        memory::apply(m, mem, w, updating)?;
    }
    if let Some(p) = r.pids() {
        pids::apply(m, p, w)?;
    }
    if let Some(b) = r.block_io() {
        blkio::apply(m, b, w)?;
    }
    if let Some(h) = r.hugepage_limits() {
        if !h.is_empty() {
            if let Some(d) = m.v1_dir("hugetlb") {
                hugetlb::apply(d, h, w)?;
            } else if let (Some(d), Some(root)) = (m.v2_dir(), m.v2_root()) {
                v2::hugetlb::apply(d, root, h, w)?;
            } else {
                return Err(Error::unsupported(
                    "linux.resources.hugepageLimits",
                    "no hugetlb cgroup controller is mounted",
                ));
            }
        }
    }
    if let Some(n) = r.network() {
        net::apply(m, n, w)?;
    }
    if let Some(rd) = r.rdma() {
        if !rd.is_empty() {
            if let Some(d) = m.v1_dir("rdma") {
                rdma::apply(d, rd, w)?;
            } else if let (Some(d), Some(root)) = (m.v2_dir(), m.v2_root()) {
                v2::rdma::apply(d, root, rd, w)?;
            } else {
                return Err(Error::unsupported(
                    "linux.resources.rdma",
                    "no rdma cgroup controller is mounted",
                ));
            }
        }
    }
    if r.devices().as_ref().is_some_and(|d| !d.is_empty()) {
        match (m.v1_dir("devices"), m.v2_dir()) {
            (Some(d), _) => devices::apply(d, r, w)?,
            // A hybrid host without a v1 devices hierarchy: the processes are also in the
            // unified directory, and a device program there applies to them.
            (None, Some(d)) => v2::devices::apply(d, &crate::validate::device_rules(r)?)?,
            (None, None) => {
                return Err(Error::unsupported(
                    "linux.resources.devices",
                    "the devices cgroup controller is not mounted",
                ))
            }
        }
    }
    Ok(())
}
