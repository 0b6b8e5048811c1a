//! Capabilities applied in forked children, observed from inside them.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;

use common::{in_child, say, status_field, unique, Cleanup};
use kos_security::caps::Capabilities;
use oci_spec::runtime::LinuxCapabilities;

const CAP_NET_BIND_SERVICE: u64 = 1 << 10;
const CAP_CHOWN: u64 = 1 << 0;
const CAP_SETUID: u64 = 1 << 7;
const CAP_SETGID: u64 = 1 << 6;

fn spec(json: &str) -> Capabilities {
    Capabilities::from_spec(&serde_json::from_str::<LinuxCapabilities>(json).unwrap()).unwrap()
}

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s, 16).unwrap()
}

/// Find a free privileged port on loopback for this test run.
fn privileged_port() -> u16 {
    for p in (600..1000u16).rev() {
        if TcpListener::bind(("127.0.0.1", p)).is_ok() {
            return p;
        }
    }
    panic!("no free port below 1024");
}

#[test]
fn sets_kept_across_user_switch_and_used() {
    let caps = spec(
        r#"{"bounding":["CAP_NET_BIND_SERVICE","CAP_CHOWN","CAP_SETUID","CAP_SETGID"],
            "effective":["CAP_NET_BIND_SERVICE"],
            "permitted":["CAP_NET_BIND_SERVICE"],
            "inheritable":["CAP_NET_BIND_SERVICE"],
            "ambient":["CAP_NET_BIND_SERVICE"]}"#,
    );
    let port = privileged_port();
    let file = unique("chown");
    let _c = Cleanup(file.clone());
    std::fs::write(&file, b"x").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let report = in_child(|out| {
        caps.drop_bounding().unwrap();
        caps.keep_across_setuid().unwrap();
        unsafe {
            assert_eq!(libc::setgroups(0, std::ptr::null()), 0);
            assert_eq!(libc::setresgid(1000, 1000, 1000), 0);
            assert_eq!(libc::setresuid(1000, 1000, 1000), 0);
        }
        say(out, format!("CapEffAfterSetuid {}", status_field("CapEff")));
        caps.apply_after_setuid().unwrap();
        for k in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"] {
            say(out, format!("{k} {}", status_field(k)));
        }
        let bound = TcpListener::bind(("127.0.0.1", port)).is_ok();
        say(out, format!("bind_privileged {bound}"));
        let c = std::ffi::CString::new(file.to_str().unwrap()).unwrap();
        let r = unsafe { libc::chown(c.as_ptr(), 1000, 1000) };
        say(
            out,
            format!(
                "chown {r} {}",
                std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
            ),
        );
        0
    })
    .ok();
    let field = |k: &str| -> u64 {
        let line = report
            .lines()
            .find(|l| l.starts_with(&format!("{k} ")))
            .unwrap();
        hex(line.split(' ').nth(1).unwrap())
    };
    assert_eq!(
        field("CapEffAfterSetuid"),
        0,
        "no effective privilege in the window"
    );
    assert_eq!(field("CapEff"), CAP_NET_BIND_SERVICE, "{report}");
    assert_eq!(field("CapPrm"), CAP_NET_BIND_SERVICE, "{report}");
    assert_eq!(field("CapInh"), CAP_NET_BIND_SERVICE, "{report}");
    assert_eq!(field("CapAmb"), CAP_NET_BIND_SERVICE, "{report}");
    assert_eq!(
        field("CapBnd"),
        CAP_NET_BIND_SERVICE | CAP_CHOWN | CAP_SETUID | CAP_SETGID,
        "{report}"
    );
    assert!(report.contains("bind_privileged true"), "{report}");
    assert!(
        report.contains(&format!("chown -1 {}", libc::EPERM)),
        "{report}"
    );
}

#[test]
fn ambient_survives_exec_for_non_root() {
    common::require_busybox();
    let caps = spec(
        r#"{"bounding":["CAP_NET_BIND_SERVICE"],"effective":["CAP_NET_BIND_SERVICE"],
            "permitted":["CAP_NET_BIND_SERVICE"],"inheritable":["CAP_NET_BIND_SERVICE"],
            "ambient":["CAP_NET_BIND_SERVICE"]}"#,
    );
    let report = in_child(|out| {
        caps.drop_bounding().unwrap();
        caps.keep_across_setuid().unwrap();
        unsafe {
            libc::setgroups(0, std::ptr::null());
            libc::setresgid(1000, 1000, 1000);
            libc::setresuid(1000, 1000, 1000);
        }
        caps.apply_after_setuid().unwrap();
        use std::os::fd::AsRawFd;
        unsafe { libc::dup2(out.as_raw_fd(), 1) };
        let err = std::os::unix::process::CommandExt::exec(
            std::process::Command::new("/bin/busybox").args(["grep", "^Cap", "/proc/self/status"]),
        );
        say(out, format!("exec failed: {err}"));
        1
    })
    .ok();
    let eff = report.lines().find(|l| l.starts_with("CapEff:")).unwrap();
    assert_eq!(
        hex(eff.split_whitespace().nth(1).unwrap()),
        CAP_NET_BIND_SERVICE,
        "{report}"
    );
}

#[test]
fn root_container_keeps_only_listed_caps() {
    // uid stays 0: the sets still shrink to the spec's.
    let caps = spec(
        r#"{"bounding":["CAP_KILL","CAP_CHOWN"],"effective":["CAP_KILL"],
            "permitted":["CAP_KILL"],"inheritable":[]}"#,
    );
    let file = unique("rootchown");
    let _c = Cleanup(file.clone());
    std::fs::write(&file, b"x").unwrap();
    let report = in_child(|out| {
        caps.drop_bounding().unwrap();
        caps.keep_across_setuid().unwrap();
        caps.apply_after_setuid().unwrap();
        say(out, format!("CapEff {}", status_field("CapEff")));
        say(out, format!("CapBnd {}", status_field("CapBnd")));
        let c = std::ffi::CString::new(file.to_str().unwrap()).unwrap();
        let r = unsafe { libc::chown(c.as_ptr(), 1000, 1000) };
        say(out, format!("chown {r}"));
        0
    })
    .ok();
    assert!(report.contains("CapEff 0000000000000020"), "{report}");
    assert!(report.contains("CapBnd 0000000000000021"), "{report}");
    assert!(
        report.contains("chown -1"),
        "root without CAP_CHOWN cannot chown: {report}"
    );
}
