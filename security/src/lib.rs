//! Process confinement for KOS: seccomp, capabilities, MAC labels, Landlock, safe paths.
//!
//! Every piece has a *validate* half that runs in the runtime before the container exists (so
//! bad input is an error with nothing left half made) and an *apply* half that runs in the
//! container's init.
//!
//! # The order kosrun follows
//!
//! **Runtime, before fork** (errors here mean no container):
//! 1. [`seccomp::compile()`] `linux.seccomp` (or [`seccomp::default_profile`]).
//! 2. [`caps::Capabilities::from_spec`] `process.capabilities`.
//! 3. [`landlock::Ruleset::from_annotations`], then
//!    [`landlock::Ruleset::check_paths_in`]`(rootfs, mount destinations)`.
//! 4. [`label::selinux::check_available`]`(selinuxLabel, mountLabel)` and
//!    [`label::apparmor::check_available`]`(apparmorProfile)`.
//!
//! **Init, in the container's namespaces:**
//! 5. Mounts, each target resolved with [`path`] (`open_in_root_fd`, `mkdir_all_in_root_fd`,
//!    `create_file_in_root_fd`) and mounted through [`path::proc_fd_path`]; `context=` from
//!    [`label::selinux::mount_context_option`] on filesystems [`label::selinux::takes_context`]
//!    names; masked and read-only paths ([`spec_defaults`] has the defaults `kosrun spec`
//!    writes). Then pivot_root, hostname, sysctls, rlimits.
//! 6. If `process.noNewPrivileges`: [`spec_defaults::set_no_new_privileges`]. If not:
//!    [`seccomp::SeccompProgram::install`] **now**, while `CAP_SYS_ADMIN` is still held.
//! 7. [`caps::Capabilities::drop_bounding`], [`caps::Capabilities::keep_across_setuid`].
//! 8. `setgroups`, `setresgid`, `setresuid`.
//! 9. [`caps::Capabilities::apply_after_setuid`] immediately (the effective set is empty from
//!    8 to 9).
//! 10. [`label::apparmor::apply`] and [`label::selinux::set_exec_label`] (effective at exec).
//! 11. [`landlock::Ruleset::apply`] (needs no_new_privs or `CAP_SYS_ADMIN`).
//! 12. If `noNewPrivileges`: [`seccomp::SeccompProgram::install`] — the last call before exec.
//! 13. If install returned a listener fd: send it to the runtime over the sync socket, close
//!     it; the runtime calls [`seccomp::SeccompProgram::send_listener`].
//! 14. `execve`.

pub mod caps;
pub mod label;
pub mod landlock;
pub mod path;
pub mod seccomp;
pub mod spec_defaults;
