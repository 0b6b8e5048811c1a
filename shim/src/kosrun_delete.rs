//! The early delete of a kosrun container done by the kosrun library in a forked child of
//! the shim, with no exec: the same `delete` the `kosrun` binary runs, without a second
//! program's start-up (about two thirds of a `kosrun delete` here) on the path between a
//! container's exit and the answer to its Delete.
//!
//! Only for a runtime that is kosrun (by its file name, as `Runtime::is_kosrun`): its
//! state is the format this library reads. Whatever the library cannot do, it reports as
//! a failure (exit status 1), and the caller's Delete then runs the binary's own forced
//! delete, as after any failed early delete.

use std::path::Path;

/// Forks; the child deletes container `id` under `root` and exits 0 (deleted) or 1. The
/// child's pid, for the shim's reaper.
pub fn spawn(root: &Path, id: &str) -> std::io::Result<u32> {
    // SAFETY: the shim is single-threaded (one poll loop), so no lock is held by another
    // thread at the fork and the child may allocate. It leaves only through _exit, so none
    // of the parent's destructors or buffered output run twice.
    match unsafe { nix::unistd::fork() }.map_err(std::io::Error::from)? {
        nix::unistd::ForkResult::Parent { child } => Ok(child.as_raw() as u32),
        nix::unistd::ForkResult::Child => {
            let ok = in_child(root, id);
            // SAFETY: see above.
            unsafe { libc::_exit(if ok { 0 } else { 1 }) }
        }
    }
}

fn in_child(root: &Path, id: &str) -> bool {
    // Poststop hooks are started from here: none of the shim's descriptors (its ttrpc
    // socket, the containers' stdio) may reach them, nor its blocked SIGCHLD.
    if let Err(e) = kosrun::linux::process::fds::cloexec_from(3) {
        crate::log::debug(&format!("{id}: early delete: descriptors: {e}"));
        return false;
    }
    let _ = nix::sys::signal::SigSet::empty().thread_set_mask();
    match kosrun::ops::delete::delete(root, id, false) {
        Ok(warnings) => {
            for w in warnings {
                crate::log::warn(&format!("{id}: delete: {w}"));
            }
            true
        }
        Err(e) => {
            crate::log::debug(&format!("{id}: early delete by the kosrun library: {e}"));
            false
        }
    }
}
