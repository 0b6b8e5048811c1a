//! The forked child of `kosrun exec`: in the container's pid namespace from
//! birth, it joins the remaining namespaces, waits until kosrun has put it in the
//! cgroup, then takes the process's terminal, limits, identity and confinement
//! in the init's order and executes the user's program.

use nix::unistd::chdir;
use oci_spec::runtime::LinuxNamespaceType;

use super::{setns_pidfd, ExecCtx, Namespaces};
use crate::error::{Error, Result, Stage, SysContext};
use crate::linux::console;
use crate::linux::process::{exec, launch, signals};
use crate::linux::sync::{Channel, Msg};

pub fn run(ctx: &ExecCtx, ns: Namespaces, chan: &Channel) -> ! {
    // Until execve nothing in the container may open /proc/<pid>/exe (the runtime
    // binary) or ptrace us (CVE-2019-5736).
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    let err = match setup(ctx, ns, chan) {
        Ok(program) => {
            if let Err(e) = ctx.confinement.last() {
                e
            } else {
                program.exec()
            }
        }
        Err(e) => e,
    };
    let _ = chan.send(&Msg::Error(err.to_remote()));
    // SAFETY: leave without unwinding into the parent's copy of the stack.
    unsafe { libc::_exit(127) }
}

fn setup(ctx: &ExecCtx, ns: Namespaces, chan: &Channel) -> Result<exec::Prepared> {
    setns_pidfd(ctx.init, ns.in_child).map_err(|e| {
        Error::failed_by(
            Stage::Exec,
            format!("join the container's namespaces: {e}"),
            e,
        )
    })?;
    if !ns.mount {
        // Without a mount namespace the init chrooted; so do we.
        nix::unistd::chroot(ctx.rootfs).ctx(|| "chroot".into())?;
        chdir("/").ctx(|| "chdir /".into())?;
    }
    nix::unistd::setsid().ctx(|| "setsid".into())?;
    signals::reset();
    join_session_keyring(ctx.id);
    chan.expect("cgroup joined", |m| matches!(m, Msg::Go))?;

    let process = ctx.process;
    console::setup_terminal(process, ctx.console_socket, false)?;
    let personality = ctx
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.personality().as_ref());
    let in_userns = ctx
        .spec
        .linux()
        .as_ref()
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|l| l.iter().any(|n| n.typ() == LinuxNamespaceType::User));
    let (prepared, listener) = launch::confine(
        launch::Launch {
            process,
            create_cwd: false,
            preserved: ctx.preserved,
            extra_env: Vec::new(),
        },
        personality,
        ctx.confinement,
        in_userns,
    )?;
    if let Some(l) = listener {
        chan.send_fd(&Msg::SeccompListener, &l)?;
    }
    Ok(prepared)
}

/// The container's session keyring (the init's, by name), as runc's exec joins it.
fn join_session_keyring(id: &str) {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    if let Ok(name) = std::ffi::CString::new(format!("_ses.{id}")) {
        // SAFETY: keyctl with a valid name string.
        unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, name.as_ptr()) };
    }
}
