//! Escape regression suite: each published container-escape class, attempted against the
//! runtime, and shown blocked.
//!
//! Every test names its CVE, plays the attack (a hook stands in for the winner of a race
//! when the race itself cannot be made deterministic) and checks both sides: what the
//! container sees, and that the host object the attack aims at is untouched. Where the
//! class does not apply to a runtime's design, the test still runs the attack and shows
//! the design holds instead of skipping. Tests that may succeed against a vulnerable
//! runtime aim at copies or at host files they restore, so running the suite against one
//! does no lasting damage.
//!
//! A runtime known to be vulnerable is recorded as a known departure with the CVE.

mod caps;
mod common;
mod cwd;
mod dev_nodes;
mod mount_race;
mod proc_mounts;
mod runtime_exe;

use super::{departs, t, TestCase};
use crate::harness::report::Departure;

const RUNC_30465: &[Departure] = &[Departure {
    runtime: "runc",
    clause: "CVE-2024-45310 (the CVE-2021-30465 race, fixed in runc 1.1.14): runc 1.1.5 creates \
             a mount destination's directories by path, so under the symlink exchange it makes \
             directories in the host directory the symlink names (its mount is then refused)",
}];

const RUNC_31133: &[Departure] = &[Departure {
    runtime: "runc",
    clause: "CVE-2025-31133 (fixed in runc 1.2.8/1.3.3/1.4.0-rc.3): runc 1.1.5 uses the \
             container's own /dev/null: with it swapped for a link to \
             /proc/sys/kernel/core_pattern, runc makes the host's core_pattern the container's \
             stdout and stderr and binds it writable over the masked files",
}];

const RUNC_52565: &[Departure] = &[Departure {
    runtime: "runc",
    clause: "CVE-2025-52565 (fixed in runc 1.2.8/1.3.3/1.4.0-rc.3): runc 1.1.5 follows a \
             /dev/console symlink when binding the pty, so the bind lands on the procfs file \
             the link names",
}];

const RUNC_52881: &[Departure] = &[Departure {
    runtime: "runc",
    clause: "CVE-2025-52881 (fixed in runc 1.2.8/1.3.3/1.4.0-rc.3): runc 1.1.5 writes sysctls \
             by path after the root switch, so a mount placed over the /proc/sys file receives \
             the write",
}];

pub fn tests() -> Vec<TestCase> {
    vec![
        t(
            "escapes::cve_2019_5736_runtime_exe_not_writable",
            runtime_exe::cve_2019_5736,
        ),
        t(
            "escapes::cve_2019_16884_fake_proc_refused",
            proc_mounts::cve_2019_16884,
        ),
        departs(
            "escapes::cve_2021_30465_symlink_exchange_mount_race",
            mount_race::cve_2021_30465,
            RUNC_30465,
        ),
        t(
            "escapes::cve_2022_29162_no_inheritable_caps",
            caps::cve_2022_29162,
        ),
        t(
            "escapes::cve_2023_27561_28642_proc_symlink",
            proc_mounts::cve_2023_27561,
        ),
        t(
            "escapes::cve_2024_21626_cwd_through_leaked_fd",
            cwd::cve_2024_21626,
        ),
        departs(
            "escapes::cve_2025_31133_masked_dev_null_symlink",
            dev_nodes::cve_2025_31133,
            RUNC_31133,
        ),
        departs(
            "escapes::cve_2025_52565_dev_console_symlink",
            dev_nodes::cve_2025_52565,
            RUNC_52565,
        ),
        departs(
            "escapes::cve_2025_52881_redirected_sysctl_write",
            proc_mounts::cve_2025_52881,
            RUNC_52881,
        ),
    ]
}
