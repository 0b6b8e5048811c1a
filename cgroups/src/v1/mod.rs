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

use crate::dirs::Dirs;
use crate::error::{Error, Result};
use crate::fsutil::Writer;
use crate::v2;

/// The container's directory in the hierarchy of `controller`, or an error naming `field`.
fn dir<'a>(m: &'a Dirs, controller: &str, field: &str) -> Result<&'a Path> {
    m.v1(controller).ok_or_else(|| {
        Error::unsupported(
            field,
            format!("the {controller} cgroup controller is not mounted"),
        )
    })
}

pub(crate) fn apply(m: &Dirs, r: &LinuxResources, w: &mut Writer, updating: bool) -> Result<()> {
    if let Some(u) = r.unified() {
        if !u.is_empty() {
            // Keys whose controller lives in the hybrid host's v2 mount can be honoured
            // there; anything else has no v2 file to go to.
            match (m.v2(), m.v2_root()) {
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
        if cpu::wants(c) {
            cpu::write(dir(m, "cpu", "linux.resources.cpu")?, c, w)?;
        }
        if let Some((cpus, mems)) = cpuset::wanted(c) {
            let d = dir(m, "cpuset", "linux.resources.cpu.cpus")?;
            cpuset::write(d, cpus, mems, w)?;
        }
    }
    if let Some(mem) = r.memory().as_ref().filter(|mem| memory::wants(mem)) {
        memory::write(
            dir(m, "memory", "linux.resources.memory")?,
            mem,
            w,
            updating,
        )?;
    }
    if let Some(v) = r.pids().as_ref().and_then(|p| pids::value(p.limit())) {
        pids::write(dir(m, "pids", "linux.resources.pids.limit")?, &v, w)?;
    }
    if let Some(b) = r.block_io().as_ref().filter(|b| blkio::wants(b)) {
        blkio::write(dir(m, "blkio", "linux.resources.blockIO")?, b, w)?;
    }
    if let Some(h) = r.hugepage_limits() {
        if !h.is_empty() {
            if let Some(d) = m.v1("hugetlb") {
                hugetlb::apply(d, h, w)?;
            } else if let (Some(d), Some(root)) = (m.v2(), m.v2_root()) {
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
        if let Some(id) = n.class_id() {
            let d = dir(m, "net_cls", "linux.resources.network.classID")?;
            net::write_class_id(d, id, w)?;
        }
        let prios = n.priorities().as_deref().unwrap_or_default();
        if !prios.is_empty() {
            let d = dir(m, "net_prio", "linux.resources.network.priorities")?;
            net::write_priorities(d, prios, w)?;
        }
    }
    if let Some(rd) = r.rdma() {
        if !rd.is_empty() {
            if let Some(d) = m.v1("rdma") {
                rdma::apply(d, rd, w)?;
            } else if let (Some(d), Some(root)) = (m.v2(), m.v2_root()) {
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
        match (m.v1("devices"), m.v2()) {
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
