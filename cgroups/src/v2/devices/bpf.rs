//! The bpf(2) calls for cgroup device programs: load, query, attach with atomic replace,
//! detach. Raw syscalls through libc: the attr layouts are the kernel's stable ABI.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use nix::errno::Errno;

use super::program::Insn;
use crate::error::{Error, Result};

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;

const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;

pub(crate) const BPF_F_ALLOW_OVERRIDE: u32 = 1;
pub(crate) const BPF_F_ALLOW_MULTI: u32 = 2;
const BPF_F_REPLACE: u32 = 4;

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
    replace_bpf_fd: u32,
}

#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
}

#[repr(C)]
#[derive(Default)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

/// # Safety
/// `attr` must point to a live value of the layout `cmd` expects.
unsafe fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::result::Result<libc::c_long, Errno> {
    // SAFETY: the caller passes the attr type for `cmd`; its size bounds what the kernel reads.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T as *mut libc::c_void,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(Errno::last())
    } else {
        Ok(r)
    }
}

fn sys(what: impl Into<String>, source: Errno) -> Error {
    Error::Sys {
        what: what.into(),
        source,
    }
}

/// Loads a device program; a verifier rejection carries the verifier's log in the error.
pub(crate) fn load(prog: &[Insn]) -> Result<OwnedFd> {
    let license = CString::new("Apache-2.0").map_err(|_| sys("bpf license", Errno::EINVAL))?;
    let mut log = vec![0u8; 16 * 1024];
    let mut name = [0u8; 16];
    name[..7].copy_from_slice(b"kos_dev");
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt: prog.len() as u32,
        insns: prog.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        prog_name: name,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    // SAFETY: attr is a ProgLoadAttr; insns and license outlive the call.
    match unsafe { bpf(BPF_PROG_LOAD, &mut attr) } {
        // SAFETY: on success the kernel returned a new fd that nothing else owns.
        Ok(fd) => Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }),
        Err(Errno::EACCES) | Err(Errno::EINVAL) => {
            // Load again with the log on, only now, to say why.
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
            // SAFETY: as above; log outlives the call and its size is given.
            let e = unsafe { bpf(BPF_PROG_LOAD, &mut attr) }
                .err()
                .unwrap_or(Errno::EINVAL);
            let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
            let text = String::from_utf8_lossy(&log[..end]);
            let last = text
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            Err(sys(
                format!("loading the device BPF program (verifier: {last})"),
                e,
            ))
        }
        Err(e) => Err(sys("loading the device BPF program", e)),
    }
}

/// Programs attached directly to the cgroup (not inherited) and their attach flags.
pub(crate) fn query(cgroup: RawFd) -> Result<(Vec<u32>, u32)> {
    let mut ids = vec![0u32; 64];
    let mut attr = QueryAttr {
        target_fd: cgroup as u32,
        attach_type: BPF_CGROUP_DEVICE,
        prog_ids: ids.as_mut_ptr() as u64,
        prog_cnt: ids.len() as u32,
        ..Default::default()
    };
    // SAFETY: attr is a QueryAttr; ids has room for prog_cnt entries.
    unsafe { bpf(BPF_PROG_QUERY, &mut attr) }
        .map_err(|e| sys("querying device BPF programs", e))?;
    ids.truncate(attr.prog_cnt as usize);
    Ok((ids, attr.attach_flags))
}

pub(crate) fn prog_fd_by_id(id: u32) -> Result<OwnedFd> {
    let mut attr = GetFdAttr {
        prog_id: id,
        ..Default::default()
    };
    // SAFETY: attr is a GetFdAttr.
    let fd = unsafe { bpf(BPF_PROG_GET_FD_BY_ID, &mut attr) }
        .map_err(|e| sys(format!("opening BPF program {id}"), e))?;
    // SAFETY: a new fd owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

pub(crate) fn attach(
    cgroup: RawFd,
    prog: &OwnedFd,
    flags: u32,
    replace: Option<&OwnedFd>,
) -> Result<()> {
    let mut attr = AttachAttr {
        target_fd: cgroup as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: flags | if replace.is_some() { BPF_F_REPLACE } else { 0 },
        replace_bpf_fd: replace.map_or(0, |r| r.as_raw_fd() as u32),
    };
    // SAFETY: attr is an AttachAttr.
    unsafe { bpf(BPF_PROG_ATTACH, &mut attr) }
        .map_err(|e| sys("attaching the device BPF program", e))?;
    Ok(())
}

pub(crate) fn detach(cgroup: RawFd, prog: &OwnedFd) -> Result<()> {
    let mut attr = AttachAttr {
        target_fd: cgroup as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    // SAFETY: attr is an AttachAttr.
    unsafe { bpf(BPF_PROG_DETACH, &mut attr) }
        .map_err(|e| sys("detaching a device BPF program", e))?;
    Ok(())
}
