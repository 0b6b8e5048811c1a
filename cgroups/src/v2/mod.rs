//! Writers for cgroup v2 (also the v2 half of a hybrid host: hugetlb, rdma, unified keys).

pub(crate) mod controllers;
pub(crate) mod cpu;
pub(crate) mod devices;
pub(crate) mod hugetlb;
pub(crate) mod io;
pub(crate) mod memory;
pub(crate) mod pids;
pub(crate) mod rdma;
pub(crate) mod unified;

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::error::{Error, Result};
use crate::fsutil::Writer;

pub(crate) fn apply(
    d: &Path,
    root: Option<&Path>,
    r: &LinuxResources,
    w: &mut Writer,
    updating: bool,
) -> Result<()> {
    if let Some(n) = r.network() {
        if n.class_id().is_some() {
            return Err(Error::unsupported(
                "linux.resources.network.classID",
                "cgroup v2 has no net_cls controller",
            ));
        }
        if n.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
            return Err(Error::unsupported(
                "linux.resources.network.priorities",
                "cgroup v2 has no net_prio controller",
            ));
        }
    }
    if let Some(c) = r.cpu() {
        cpu::apply(d, c, w)?;
    }
    if let Some(m) = r.memory() {
        memory::apply(d, m, w, updating)?;
    }
    if let Some(p) = r.pids() {
        pids::apply(d, p, w)?;
    }
    if let Some(b) = r.block_io() {
        io::apply(d, b, w)?;
    }
    if let Some(h) = r.hugepage_limits() {
        if !h.is_empty() {
            match root {
                Some(root) => hugetlb::apply(d, root, h, w)?,
                None => hugetlb::write(d, h, w)?,
            }
        }
    }
    if let Some(rd) = r.rdma() {
        if !rd.is_empty() {
            match root {
                Some(root) => rdma::apply(d, root, rd, w)?,
                None => crate::v1::rdma::apply(d, rd, w)?,
            }
        }
    }
    if let Some(u) = r.unified() {
        if !u.is_empty() {
            match root {
                Some(root) => unified::apply(d, root, u, w)?,
                None => unified::write(d, u, w)?,
            }
        }
    }
    if r.devices().as_ref().is_some_and(|d| !d.is_empty()) {
        let rules = crate::validate::device_rules(r)?;
        devices::apply(d, &rules)?;
    }
    Ok(())
}
