#![allow(clippy::unwrap_used)]
//! Basic auth against docker-registry's htpasswd scheme.

mod common;

use std::ffi::{CStr, CString};
use std::sync::Arc;

use common::tarw::Entry;
use common::{Comp, Scratch, TestRegistry};
use kos_image::registry::push::PushOptions;
use kos_image::{Credentials, Error, PullOptions, Registry, Store};

#[link(name = "crypt")]
extern "C" {
    fn crypt(key: *const libc::c_char, salt: *const libc::c_char) -> *mut libc::c_char;
}

/// bcrypt hash for an htpasswd line (the only scheme docker-registry accepts).
fn bcrypt(password: &str) -> String {
    let key = CString::new(password).unwrap();
    let salt = CString::new("$2b$05$kosKOSkosKOSkosKOSkosO").unwrap();
    // SAFETY: valid C strings; crypt returns a static buffer we copy at once.
    let out = unsafe { crypt(key.as_ptr(), salt.as_ptr()) };
    assert!(!out.is_null());
    // SAFETY: non-null NUL-terminated string from crypt.
    let s = unsafe { CStr::from_ptr(out) }.to_str().unwrap().to_string();
    assert!(s.starts_with("$2b$"), "libcrypt has no bcrypt: {s}");
    s
}

#[test]
fn basic_auth_push_and_pull() {
    let dir = Scratch::new("authreg");
    let htpasswd = dir.join("htpasswd");
    std::fs::write(&htpasswd, format!("kos:{}\n", bcrypt("s3cret"))).unwrap();
    let extra = format!(
        "auth:\n  htpasswd:\n    realm: kos-realm\n    path: {}\n",
        htpasswd.display()
    );
    let reg = TestRegistry::start_with(dir, None, &extra);
    let work = Scratch::new("auth");
    let src = Arc::new(Store::open(work.join("src")).unwrap());
    common::build_image(
        &src,
        "local/secret:1",
        &[common::layer(&[Entry::file("s", b"s")], Comp::Gzip)],
        serde_json::json!({}),
    );
    let registry = Registry::default();
    let rt = common::rt();
    let reference = reg.reference("private/secret:1");
    let good = Credentials::Basic {
        username: "kos".into(),
        password: "s3cret".into(),
    };
    let bad = Credentials::Basic {
        username: "kos".into(),
        password: "wrong".into(),
    };

    let e = rt
        .block_on(registry.push(
            src.clone(),
            "local/secret:1",
            &reference,
            &PushOptions::default(),
        ))
        .unwrap_err();
    assert!(
        matches!(e, Error::Registry { .. }),
        "anonymous push must fail: {e}"
    );
    let push = PushOptions {
        credentials: good.clone(),
        ..Default::default()
    };
    rt.block_on(registry.push(src.clone(), "local/secret:1", &reference, &push))
        .unwrap();

    let dst = Arc::new(Store::open(work.join("dst")).unwrap());
    for creds in [Credentials::Anonymous, bad] {
        let opts = PullOptions {
            credentials: creds.clone(),
            unpack: true,
            ..Default::default()
        };
        let e = rt
            .block_on(registry.pull(dst.clone(), &reference, &opts))
            .unwrap_err();
        assert!(matches!(e, Error::Registry { .. }), "{creds:?}: {e}");
        assert!(
            !format!("{creds:?}").contains("wrong"),
            "passwords never printed"
        );
    }
    assert!(dst.images().unwrap().is_empty());
    let opts = PullOptions {
        credentials: good,
        unpack: true,
        ..Default::default()
    };
    let rec = rt
        .block_on(registry.pull(dst.clone(), &reference, &opts))
        .unwrap();
    assert_eq!(rec.name, reference);
}
