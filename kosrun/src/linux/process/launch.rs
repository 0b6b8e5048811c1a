//! The last steps before the user's program, shared by the init and `exec`:
//! working directory (checked to be inside the root), environment, program
//! lookup, and which descriptors survive the exec; and the one confinement
//! sequence both take around them.

use std::os::fd::OwnedFd;
use std::path::Path;

use oci_spec::runtime::{LinuxPersonality, Process};

use super::{exec, fds, user};
use crate::error::{Error, Result, Stage, SysContext};
use crate::linux::confine::Confinement;

pub struct Launch<'a> {
    pub process: &'a Process,
    /// The init creates a missing cwd (as runc does); exec refuses it.
    pub create_cwd: bool,
    /// The caller's descriptors (from 3) that the program gets: only those that were open
    /// when kosrun started, never one of kosrun's own.
    pub preserved: &'a [i32],
    /// Variables that override the process's own (socket activation).
    pub extra_env: Vec<String>,
}

/// From the process's limits to the moment before exec, for the init and `exec` alike:
/// limits and scheduling, the user switch, the launch checks (cwd, program, descriptors),
/// then capabilities and labels, and a NOTIFY filter last of all. Everything that can fail
/// is checked before any seccomp filter is loaded; the other filters wait for
/// [`Confinement::last`], right before the exec. Returns the program and the notify
/// listener, if any, for the caller to hand to the agent.
pub fn confine(
    l: Launch,
    personality: Option<&LinuxPersonality>,
    confinement: &Confinement,
    in_userns: bool,
) -> Result<(exec::Prepared, Option<OwnedFd>)> {
    super::apply_attributes(l.process, personality)?;
    confinement.before_user_switch()?;
    // In a user namespace whose setgroups is "deny", supplementary groups stay as they are.
    user::switch(l.process.user(), !in_userns || setgroups_allowed())?;
    let prepared = prepare(l)?;
    confinement.after_user_switch()?;
    let listener = confinement.install_notify()?;
    Ok((prepared, listener))
}

fn setgroups_allowed() -> bool {
    std::fs::read_to_string("/proc/self/setgroups").map_or(true, |s| s.trim() != "deny")
}

pub fn prepare(l: Launch) -> Result<exec::Prepared> {
    enter_cwd(l.process.cwd(), l.create_cwd)?;
    let mut env = l.process.env().clone().unwrap_or_default();
    for kv in &l.extra_env {
        let key = kv.split('=').next().unwrap_or_default();
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", home_of(l.process.user().uid())));
    }
    let args = l.process.args().clone().unwrap_or_default();
    let arg0 = args.first().ok_or_else(|| {
        Error::invalid_in(
            Stage::Exec,
            "process.args",
            "process.args must name a program".into(),
        )
    })?;
    let program = exec::find_program(arg0, &env)?;
    let prepared = exec::prepare(&program, &args, &env)?;
    fds::cloexec_from(3)
        .map_err(|e| Error::failed_by(Stage::Exec, format!("close host descriptors: {e}"), e))?;
    for fd in l.preserved {
        // SAFETY: clearing FD_CLOEXEC on a descriptor the caller handed to kosrun.
        unsafe { libc::fcntl(*fd, libc::F_SETFD, 0) };
    }
    Ok(prepared)
}

fn enter_cwd(cwd: &Path, create: bool) -> Result<()> {
    match nix::unistd::chdir(cwd) {
        Ok(()) => {}
        Err(nix::errno::Errno::ENOENT) if create => {
            std::fs::create_dir_all(cwd).map_err(|e| {
                Error::failed_by(
                    Stage::Exec,
                    format!("process.cwd {}: {e}", cwd.display()),
                    e,
                )
            })?;
            nix::unistd::chdir(cwd).ctx(|| format!("process.cwd {}", cwd.display()))?;
        }
        Err(e) => return Err(Error::sys(format!("process.cwd {}", cwd.display()), e)),
    }
    // A cwd reached through an inherited descriptor (/proc/self/fd/N) sits outside
    // the root (CVE-2024-21626). glibc reports it as ENOENT, the raw syscall as
    // "(unreachable)...".
    let inside = nix::unistd::getcwd().is_ok_and(|here| {
        here.is_absolute()
            && !here
                .as_os_str()
                .as_encoded_bytes()
                .starts_with(b"(unreachable)")
    });
    if !inside {
        return Err(Error::failed(
            Stage::Exec,
            format!(
                "process.cwd {} resolves outside the container's root",
                cwd.display()
            ),
        ));
    }
    Ok(())
}

/// HOME from the container's /etc/passwd when the spec sets none, as runc does.
fn home_of(uid: u32) -> String {
    std::fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| home_in(&text, uid))
        .unwrap_or_else(|| "/".to_string())
}

fn home_in(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        (f.len() >= 6 && f[2].parse::<u32>().ok() == Some(uid) && !f[5].is_empty())
            .then(|| f[5].to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::home_in;

    #[test]
    fn home_from_passwd() {
        let p = "root:x:0:0:root:/root:/bin/sh\nbad line\nu:x:1000:1000::/home/u:/bin/sh\n";
        assert_eq!(home_in(p, 0).as_deref(), Some("/root"));
        assert_eq!(home_in(p, 1000).as_deref(), Some("/home/u"));
        assert_eq!(home_in(p, 5), None);
    }
}
