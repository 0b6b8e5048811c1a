//! v2 device control: an eBPF program compiled from the rules, attached to the cgroup.
//!
//! Updating swaps the program in one BPF_F_REPLACE attach, so there is no moment with no
//! program (everything allowed) or two (the old rules still in force alongside the new).

pub(crate) mod bpf;
pub(crate) mod program;

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use crate::error::{Error, Result};
use crate::validate::DeviceRule;

pub(crate) fn apply(dir: &Path, rules: &[DeviceRule]) -> Result<()> {
    let prog = bpf::load(&program::compile(rules))?;
    let cg = File::options()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|source| Error::Dir {
            op: "open",
            path: dir.to_path_buf(),
            source,
        })?;
    let fd = cg.as_raw_fd();
    let (ids, flags) = bpf::query(fd)?;
    if ids.is_empty() {
        return bpf::attach(fd, &prog, bpf::BPF_F_ALLOW_MULTI, None);
    }
    if flags & bpf::BPF_F_ALLOW_MULTI == 0 {
        // Someone attached in single-program mode; attaching again in that mode replaces
        // that program atomically.
        return bpf::attach(fd, &prog, flags & bpf::BPF_F_ALLOW_OVERRIDE, None);
    }
    let old: Vec<_> = ids
        .iter()
        .map(|id| bpf::prog_fd_by_id(*id))
        .collect::<Result<_>>()?;
    bpf::attach(fd, &prog, bpf::BPF_F_ALLOW_MULTI, Some(&old[0]))?;
    // Any further programs here are older generations; with the new one in force their
    // rules would only narrow it.
    for o in &old[1..] {
        bpf::detach(fd, o)?;
    }
    Ok(())
}
