//! CVE-2022-29162: capabilities gained through the inheritable set.
//!
//! A runtime that fills the process's inheritable set although the config gives none lets
//! any binary with inheritable file capabilities gain them on exec: the kernel adds
//! pI & fI to the new permitted set, and the bounding set does not limit that term. The
//! test runs as a non-root user without no_new_privs and execs two copies of busybox with
//! file capabilities written as the security.capability xattr: one whose inheritable set
//! holds CAP_SYS_ADMIN, CAP_SYS_PTRACE, CAP_NET_RAW, CAP_DAC_OVERRIDE and CAP_KILL (and
//! whose permitted set is empty), and, as a control that file capabilities work at all,
//! one whose permitted set holds CAP_KILL, which the config's bounding set allows.
//!
//! Blocked means: CapInh is 0 in the container's process and in both exec'd binaries; the
//! inheritable-only binary gains no capability; the control gains CAP_KILL and nothing
//! outside the bounding set.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use anyhow::{anyhow, bail, ensure, Context, Result};
use kos_testsupport::executable::copy_executable;

use serde_json::json;

use crate::harness::bundle::Bundle;
use crate::harness::ctx::Ctx;
use crate::harness::parse::{get, sections, status_field};

const CAP_DAC_OVERRIDE: u32 = 1;
const CAP_KILL: u32 = 5;
const CAP_NET_BIND_SERVICE: u32 = 10;
const CAP_NET_RAW: u32 = 13;
const CAP_SYS_PTRACE: u32 = 19;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_AUDIT_WRITE: u32 = 29;

const VFS_CAP_REVISION_2: u32 = 0x0200_0000;
const VFS_CAP_FLAGS_EFFECTIVE: u32 = 0x1;

/// Writes a revision-2 security.capability xattr (permitted and inheritable masks, the
/// effective flag set) on `path`.
fn set_file_caps(path: &Path, permitted: u64, inheritable: u64) -> Result<()> {
    let mut v = Vec::with_capacity(20);
    v.extend_from_slice(&(VFS_CAP_REVISION_2 | VFS_CAP_FLAGS_EFFECTIVE).to_le_bytes());
    for shift in [0, 32] {
        v.extend_from_slice(&((permitted >> shift) as u32).to_le_bytes());
        v.extend_from_slice(&((inheritable >> shift) as u32).to_le_bytes());
    }
    let p = CString::new(path.as_os_str().as_bytes())?;
    // SAFETY: valid path and name strings, a buffer of the length passed.
    let rc = unsafe {
        libc::setxattr(
            p.as_ptr(),
            c"security.capability".as_ptr(),
            v.as_ptr().cast(),
            v.len(),
            0,
        )
    };
    if rc != 0 {
        bail!(
            "setting file capabilities on {}: {}",
            path.display(),
            std::io::Error::last_os_error()
        );
    }
    Ok(())
}

fn hex_field(status: &str, key: &str) -> Result<u64> {
    let v = status_field(status, key)
        .ok_or_else(|| anyhow!("no {key} in the status the container printed: {status:?}"))?;
    u64::from_str_radix(&v, 16).map_err(|e| anyhow!("{key} {v:?}: {e}"))
}

const SCRIPT: &str = "echo @@sh; grep ^Cap /proc/self/status; \
    echo @@inh; /kos-capinh/busybox grep ^Cap /proc/self/status 2>&1; \
    echo @@kill; /kos-capkill/busybox grep ^Cap /proc/self/status 2>&1; echo @@end";

/// A copy of busybox (not the shared hard link: the xattr must not reach other bundles)
/// with file capabilities, at /NAME/busybox so busybox takes its first argument as the
/// applet.
fn capable_copy(b: &Bundle, name: &str, permitted: u64, inheritable: u64) -> Result<()> {
    let dir = b.in_rootfs(&format!("/{name}"));
    fs::create_dir(&dir)?;
    let bin = dir.join("busybox");
    copy_executable(&b.in_rootfs("/bin/busybox"), &bin).context("copying busybox")?;
    set_file_caps(&bin, permitted, inheritable)
}

struct Caps {
    inh: u64,
    prm: u64,
    eff: u64,
}

fn caps_of(section: &str) -> Result<Caps> {
    Ok(Caps {
        inh: hex_field(section, "CapInh")?,
        prm: hex_field(section, "CapPrm")?,
        eff: hex_field(section, "CapEff")?,
    })
}

pub fn cve_2022_29162(ctx: &Ctx) -> Result<()> {
    let bit = |c: u32| 1u64 << c;
    let mut b = ctx.bundle(&["sh", "-c", SCRIPT])?;
    let wanted = bit(CAP_SYS_ADMIN)
        | bit(CAP_SYS_PTRACE)
        | bit(CAP_NET_RAW)
        | bit(CAP_DAC_OVERRIDE)
        | bit(CAP_KILL);
    capable_copy(&b, "kos-capinh", 0, wanted)?;
    capable_copy(&b, "kos-capkill", bit(CAP_KILL), 0)?;
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    b.config["process"]["noNewPrivileges"] = json!(false);
    let configured = bit(CAP_AUDIT_WRITE) | bit(CAP_KILL) | bit(CAP_NET_BIND_SERVICE);
    let out = ctx.run_ok(&b)?;
    ctx.log(format!("container output: {out:?}"));
    let s = sections(&out);
    let sh = get(&s, "sh")?;
    let bnd = hex_field(sh, "CapBnd")?;
    ensure!(
        bnd == configured,
        "CapBnd inside is {bnd:#x}, the config's bounding set is {configured:#x}"
    );
    let sh = caps_of(sh)?;
    ensure!(
        sh.inh == 0,
        "the container's process has inheritable capabilities {:#x} though the config gives none",
        sh.inh
    );
    let inh = caps_of(get(&s, "inh")?)
        .map_err(|e| anyhow!("{e}: the inheritable-only binary did not run"))?;
    ensure!(
        inh.inh == 0 && inh.prm == 0 && inh.eff == 0,
        "exec of a binary with inheritable file capabilities {wanted:#x} gained permitted \
         {:#x}, effective {:#x} (inheritable {:#x})",
        inh.prm,
        inh.eff,
        inh.inh
    );
    let kill = caps_of(get(&s, "kill")?)
        .map_err(|e| anyhow!("{e}: the control binary with CAP_KILL did not run"))?;
    ensure!(
        kill.inh == 0 && (kill.prm | kill.eff) & !bnd == 0,
        "the control binary gained capabilities outside the bounding set {bnd:#x}: permitted \
         {:#x}, effective {:#x}, inheritable {:#x}",
        kill.prm,
        kill.eff,
        kill.inh
    );
    ensure!(
        kill.prm == bit(CAP_KILL) && kill.eff == bit(CAP_KILL),
        "file capabilities are not honoured (the CAP_KILL control has permitted {:#x}, \
         effective {:#x}): the test cannot show anything about the inheritable set",
        kill.prm,
        kill.eff
    );
    Ok(())
}
