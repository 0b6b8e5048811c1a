//! The whole confinement sequence kosrun's init follows, in both orders the crate documents,
//! observed from the program that is finally executed.
#![allow(clippy::unwrap_used)]

mod common;

use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;

use common::{in_child, say, unique, Cleanup};
use kos_security::caps::Capabilities;
use kos_security::landlock::{kernel_abi, Ruleset};
use kos_security::seccomp;
use kos_security::spec_defaults::set_no_new_privileges;
use oci_spec::runtime::{Capability, LinuxCapabilities};

const CAPS: &str = r#"{"bounding":["CAP_NET_BIND_SERVICE","CAP_KILL"],
    "effective":["CAP_NET_BIND_SERVICE"],"permitted":["CAP_NET_BIND_SERVICE"],
    "inheritable":["CAP_NET_BIND_SERVICE"],"ambient":["CAP_NET_BIND_SERVICE"]}"#;

fn switch_user() {
    unsafe {
        assert_eq!(libc::setgroups(0, std::ptr::null()), 0);
        assert_eq!(libc::setresgid(1000, 1000, 1000), 0);
        assert_eq!(libc::setresuid(1000, 1000, 1000), 0);
    }
}

/// Exec a shell that prints the confinement it runs under and tries a write.
fn exec_probe(out: &mut std::fs::File, write_target: &std::path::Path) -> i32 {
    unsafe { libc::dup2(out.as_raw_fd(), 1) };
    unsafe { libc::dup2(out.as_raw_fd(), 2) };
    let script = format!(
        "grep -E '^(Cap(Eff|Bnd|Amb)|NoNewPrivs|Seccomp|Seccomp_filters):' /proc/self/status; \
         if echo x > {} 2>/dev/null; then echo write=ok; else echo write=denied; fi",
        write_target.display()
    );
    let e = std::process::Command::new("/bin/busybox")
        .args(["sh", "-c", &script])
        .exec();
    say(out, format!("exec failed: {e}"));
    1
}

fn field<'a>(report: &'a str, key: &str) -> &'a str {
    report
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(str::trim)
        .unwrap_or_else(|| panic!("{key} missing in {report}"))
}

#[test]
fn with_no_new_privs_everything_after_the_drop() {
    common::require_busybox();
    if kernel_abi() == 0 {
        common::skip("Landlock is not enabled in this kernel");
        return;
    }
    let spec: LinuxCapabilities = serde_json::from_str(CAPS).unwrap();
    let caps = Capabilities::from_spec(&spec).unwrap();
    let profile = seccomp::default_profile_for(&[Capability::NetBindService, Capability::Kill]);
    let prog = seccomp::compile(&profile).unwrap();
    let denied = unique("order-denied");
    let _c = Cleanup(denied.clone());
    let ruleset = Ruleset::parse(r#"{"fs":[{"path":"/","access":["read","execute"]}]}"#).unwrap();
    let report = in_child(|out| {
        set_no_new_privileges().unwrap();
        caps.drop_bounding().unwrap();
        caps.keep_across_setuid().unwrap();
        switch_user();
        caps.apply_after_setuid().unwrap();
        ruleset.apply().unwrap();
        assert!(prog.install().unwrap().is_none());
        exec_probe(out, &denied)
    })
    .ok();
    assert_eq!(field(&report, "NoNewPrivs"), "1");
    assert_eq!(field(&report, "Seccomp"), "2");
    assert_eq!(field(&report, "Seccomp_filters"), "1");
    assert_eq!(field(&report, "CapEff"), "0000000000000400");
    assert_eq!(field(&report, "CapAmb"), "0000000000000400");
    assert_eq!(field(&report, "CapBnd"), "0000000000000420");
    assert!(report.contains("write=denied"), "{report}");
    assert!(!denied.exists());
}

#[test]
fn without_no_new_privs_seccomp_goes_first() {
    common::require_busybox();
    let spec: LinuxCapabilities = serde_json::from_str(CAPS).unwrap();
    let caps = Capabilities::from_spec(&spec).unwrap();
    let prog = seccomp::compile(&seccomp::default_profile()).unwrap();
    // Writable by uid 1000: the file is created by the probe in a world-writable dir.
    let dir = unique("order-dir");
    let _d = Cleanup(dir.clone());
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o1777)).unwrap();
    let file = dir.join("w");
    let report = in_child(|out| {
        // CAP_SYS_ADMIN still held: the kernel accepts the filter without no_new_privs, and the
        // rest of the setup runs under it.
        assert!(prog.install().unwrap().is_none());
        caps.drop_bounding().unwrap();
        caps.keep_across_setuid().unwrap();
        switch_user();
        caps.apply_after_setuid().unwrap();
        exec_probe(out, &file)
    })
    .ok();
    assert_eq!(field(&report, "NoNewPrivs"), "0");
    assert_eq!(field(&report, "Seccomp"), "2");
    assert_eq!(field(&report, "CapEff"), "0000000000000400");
    assert_eq!(field(&report, "CapBnd"), "0000000000000420");
    assert!(report.contains("write=ok"), "{report}");
}
