//! MAC labels against the kernel, where the LSM is enabled; elsewhere the refusal path.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;

use common::{in_child, say};
use kos_security::label::{apparmor, selinux};

/// Exec busybox to print the attribute the new program runs with.
fn exec_print_current(out: &mut std::fs::File) -> i32 {
    unsafe { libc::dup2(out.as_raw_fd(), 1) };
    let e = std::process::Command::new("/bin/busybox")
        .args(["cat", "/proc/self/attr/current"])
        .exec();
    say(out, format!("exec failed: {e}"));
    1
}

#[test]
fn selinux_exec_label() {
    if !selinux::is_enabled() {
        let e = selinux::set_exec_label("system_u:system_r:container_t:s0:c1,c2").unwrap_err();
        assert!(e.to_string().contains("SELinux is not enabled"), "{e}");
        common::skip("SELinux is not enabled in this kernel (kernel path)");
        return;
    }
    let current = std::fs::read_to_string("/proc/self/attr/current").unwrap();
    let current = current.trim_end_matches(['\0', '\n']).to_string();
    let want = current.clone();
    let report = in_child(|out| {
        selinux::set_exec_label(&want).unwrap();
        exec_print_current(out)
    })
    .ok();
    assert_eq!(report.trim_end_matches(['\0', '\n']), current);
}

#[test]
fn apparmor_exec_profile() {
    if !apparmor::is_enabled() {
        assert!(apparmor::apply("kos-missing-profile").is_err());
        assert!(apparmor::apply(apparmor::UNCONFINED).is_ok());
        common::skip("AppArmor is not enabled in this kernel (kernel path)");
        return;
    }
    let report = in_child(|out| {
        apparmor::apply(apparmor::UNCONFINED).unwrap();
        exec_print_current(out)
    })
    .ok();
    assert!(report.starts_with("unconfined"), "{report}");
}
