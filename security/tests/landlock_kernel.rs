//! Landlock rulesets applied in forked children.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::ErrorKind;
use std::net::{TcpListener, TcpStream};

use common::{in_child, say, set_no_new_privs, unique, Cleanup};
use kos_security::landlock::{kernel_abi, Ruleset};

#[test]
fn denied_write_and_connect() {
    let abi = kernel_abi();
    if abi == 0 {
        common::skip("Landlock is not enabled in this kernel");
        return;
    }
    let allowed_dir = unique("ll-rw");
    let denied_dir = unique("ll-ro");
    let _c1 = Cleanup(allowed_dir.clone());
    let _c2 = Cleanup(denied_dir.clone());
    std::fs::create_dir(&allowed_dir).unwrap();
    std::fs::create_dir(&denied_dir).unwrap();
    std::fs::write(denied_dir.join("existing"), b"readable").unwrap();
    let ok_srv = TcpListener::bind("127.0.0.1:0").unwrap();
    let no_srv = TcpListener::bind("127.0.0.1:0").unwrap();
    let ok_port = ok_srv.local_addr().unwrap().port();
    let no_port = no_srv.local_addr().unwrap().port();
    let json = format!(
        r#"{{"fs":[{{"path":"/","access":["read","execute"]}},
                  {{"path":"{}","access":["read","write"]}}],
            "net":{{"connect":[{ok_port}]}}}}"#,
        allowed_dir.display()
    );
    let rs = Ruleset::parse(&json).unwrap();
    let report = in_child(|out| {
        set_no_new_privs();
        let outcome = rs.apply().unwrap();
        say(out, format!("abi {}", outcome.abi));
        let w_ok = std::fs::write(allowed_dir.join("f"), b"x").is_ok();
        say(out, format!("write_allowed {w_ok}"));
        let e = std::fs::write(denied_dir.join("f"), b"x").unwrap_err();
        say(out, format!("write_denied {:?}", e.kind()));
        let r = std::fs::read_to_string(denied_dir.join("existing")).unwrap_or_default();
        say(out, format!("read {r}"));
        let c_ok = TcpStream::connect(("127.0.0.1", ok_port)).is_ok();
        say(out, format!("connect_allowed {c_ok}"));
        match TcpStream::connect(("127.0.0.1", no_port)) {
            Ok(_) => say(out, "connect_denied no"),
            Err(e) => say(out, format!("connect_denied {:?}", e.raw_os_error())),
        }
        0
    })
    .ok();
    assert!(report.contains("write_allowed true"), "{report}");
    assert!(
        report.contains(&format!("write_denied {:?}", ErrorKind::PermissionDenied)),
        "{report}"
    );
    assert!(report.contains("read readable"), "{report}");
    if abi >= 4 {
        assert!(report.contains("connect_allowed true"), "{report}");
        assert!(
            report.contains(&format!("connect_denied Some({})", libc::EACCES)),
            "{report}"
        );
    }
    assert!(!denied_dir.join("f").exists());
}

#[test]
fn net_only_ruleset_leaves_fs_alone_and_denies_bind() {
    if kernel_abi() < 4 {
        common::skip("Landlock network rules need ABI 4");
        return;
    }
    let dir = unique("ll-net");
    let _c = Cleanup(dir.clone());
    std::fs::create_dir(&dir).unwrap();
    let rs = Ruleset::parse(r#"{"net":{"bind":[],"connect":[]}}"#).unwrap();
    let report = in_child(|out| {
        set_no_new_privs();
        rs.apply().unwrap();
        say(
            out,
            format!("write {}", std::fs::write(dir.join("f"), b"x").is_ok()),
        );
        match TcpListener::bind("127.0.0.1:0") {
            Ok(_) => say(out, "bind ok"),
            Err(e) => say(out, format!("bind {:?}", e.raw_os_error())),
        }
        0
    })
    .ok();
    assert!(report.contains("write true"), "{report}");
    assert!(
        report.contains(&format!("bind Some({})", libc::EACCES)),
        "{report}"
    );
}

#[test]
fn without_no_new_privs_or_sys_admin_apply_is_a_clear_error() {
    if kernel_abi() == 0 {
        common::skip("Landlock is not enabled in this kernel");
        return;
    }
    let rs = Ruleset::parse(r#"{"fs":[{"path":"/","access":["read"]}]}"#).unwrap();
    let report = in_child(|out| {
        // Drop CAP_SYS_ADMIN from the effective set, leave no_new_privs unset.
        caps::drop(
            None,
            caps::CapSet::Effective,
            caps::Capability::CAP_SYS_ADMIN,
        )
        .unwrap();
        match rs.apply() {
            Ok(_) => say(out, "applied"),
            Err(e) => say(out, e.to_string()),
        }
        0
    })
    .ok();
    assert!(report.contains("noNewPrivileges"), "{report}");
}

#[test]
fn missing_path_fails_before_the_container_exists() {
    let root = unique("ll-root");
    let _c = Cleanup(root.clone());
    std::fs::create_dir_all(root.join("etc")).unwrap();
    let rs = Ruleset::parse(
        r#"{"fs":[{"path":"/etc","access":["read"]},{"path":"/proc/self","access":["read"]},
                  {"path":"/data","access":["read","write"]}]}"#,
    )
    .unwrap();
    let e = rs
        .check_paths_in(&root, &["/proc".into()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("/data") && e.contains("org.kos.landlock"), "{e}");
    std::fs::create_dir(root.join("data")).unwrap();
    rs.check_paths_in(&root, &["/proc".into()]).unwrap();
    // apply() also refuses a path missing at apply time, without restricting anything.
    let missing =
        Ruleset::parse(r#"{"fs":[{"path":"/kos-no-such-path","access":["read"]}]}"#).unwrap();
    let report = in_child(|out| {
        set_no_new_privs();
        match missing.apply() {
            Ok(_) => say(out, "applied"),
            Err(e) => say(out, e.to_string()),
        }
        0
    })
    .ok();
    assert!(report.contains("/kos-no-such-path"), "{report}");
}
