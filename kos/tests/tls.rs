//! kos to a kosd listening on tcp:// with mutual TLS: docker's flags
//! (`--tls`, `--tlsverify`, `--tlscacert`, `--tlscert`, `--tlskey`) and
//! environment (`DOCKER_HOST`, `DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`), with
//! certificates made here; refused handshakes; attach and logs over TLS.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509NameBuilder, X509};

fn key() -> PKey<Private> {
    let g = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).expect("curve");
    PKey::from_ec_key(EcKey::generate(&g).expect("ec key")).expect("pkey")
}

/// A certificate for `cn`, signed by `issuer` (self-signed CA when None).
fn cert(cn: &str, k: &PKey<Private>, issuer: Option<(&X509, &PKey<Private>)>) -> X509 {
    let mut name = X509NameBuilder::new().expect("name");
    name.append_entry_by_text("CN", cn).expect("cn");
    let name = name.build();
    let mut b = X509::builder().expect("builder");
    b.set_version(2).expect("version");
    let mut serial = BigNum::new().expect("bn");
    serial.rand(64, MsbOption::MAYBE_ZERO, false).expect("rand");
    b.set_serial_number(&serial.to_asn1_integer().expect("serial"))
        .expect("serial");
    b.set_subject_name(&name).expect("subject");
    b.set_issuer_name(issuer.map(|(c, _)| c.subject_name()).unwrap_or(&name))
        .expect("issuer");
    b.set_pubkey(k).expect("pubkey");
    b.set_not_before(&Asn1Time::days_from_now(0).expect("time"))
        .expect("not before");
    b.set_not_after(&Asn1Time::days_from_now(2).expect("time"))
        .expect("not after");
    match issuer {
        None => {
            b.append_extension(BasicConstraints::new().critical().ca().build().expect("bc"))
                .expect("bc");
            b.append_extension(
                KeyUsage::new()
                    .critical()
                    .key_cert_sign()
                    .crl_sign()
                    .build()
                    .expect("ku"),
            )
            .expect("ku");
        }
        Some(_) => {
            b.append_extension(BasicConstraints::new().build().expect("bc"))
                .expect("bc");
            b.append_extension(
                ExtendedKeyUsage::new()
                    .server_auth()
                    .client_auth()
                    .build()
                    .expect("eku"),
            )
            .expect("eku");
            let san = SubjectAlternativeName::new()
                .ip("127.0.0.1")
                .build(&b.x509v3_context(issuer.map(|(c, _)| c.as_ref()), None))
                .expect("san");
            b.append_extension(san).expect("san");
        }
    }
    b.sign(issuer.map(|(_, k)| k).unwrap_or(k), MessageDigest::sha256())
        .expect("sign");
    b.build()
}

fn write_pair(dir: &Path, cert_file: &str, key_file: &str, c: &X509, k: &PKey<Private>) {
    std::fs::write(dir.join(cert_file), c.to_pem().expect("pem")).expect("cert");
    std::fs::write(
        dir.join(key_file),
        k.private_key_to_pem_pkcs8().expect("pem"),
    )
    .expect("key");
}

/// CA, server and client material in `dir`: docker's names for the client
/// (ca.pem, cert.pem, key.pem), a second unrelated CA in other-ca.pem.
fn make_certs(dir: &Path) {
    let ca_key = key();
    let ca = cert("kos-test-ca", &ca_key, None);
    std::fs::write(dir.join("ca.pem"), ca.to_pem().expect("pem")).expect("ca");
    let (sk, ck) = (key(), key());
    write_pair(
        dir,
        "server.pem",
        "server-key.pem",
        &cert("server", &sk, Some((&ca, &ca_key))),
        &sk,
    );
    write_pair(
        dir,
        "cert.pem",
        "key.pem",
        &cert("client", &ck, Some((&ca, &ca_key))),
        &ck,
    );
    let other_key = key();
    let other = cert("another-ca", &other_key, None);
    std::fs::write(dir.join("other-ca.pem"), other.to_pem().expect("pem")).expect("other");
}

/// kos with only the given address and environment (nothing inherited that
/// picks a daemon or TLS).
fn kos(d: &Daemon, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new(bin("kos"));
    for k in [
        "DOCKER_HOST",
        "KOS_HOST",
        "DOCKER_TLS_VERIFY",
        "DOCKER_TLS",
        "DOCKER_CERT_PATH",
        "DOCKER_CONTEXT",
    ] {
        c.env_remove(k);
    }
    c.env("HOME", d.dir.path("home"));
    for (k, v) in env {
        c.env(k, v);
    }
    c.args(args).output().expect("kos")
}

#[test]
fn tls_hosts_like_docker() {
    let certs = TempDir::new("certs");
    make_certs(&certs.0);
    let p = |f: &str| certs.path(f).to_string_lossy().into_owned();
    let port = kos_testsupport::free_port();
    let tcp = format!("tcp://127.0.0.1:{port}");
    let d = Daemon::start_with(&[
        "-H".into(),
        tcp.clone(),
        "--tlsverify".into(),
        "--tlscacert".into(),
        p("ca.pem"),
        "--tlscert".into(),
        p("server.pem"),
        "--tlskey".into(),
        p("server-key.pem"),
    ]);
    let r = Registry::start();
    let img = r.name("tlsbox:1");
    push_busybox(&img, &[], serde_json::json!({}));

    // Flags: verified both ways; a pull, a run with stdin, logs and ps over TLS.
    let flags = [
        "-H",
        &tcp,
        "--tlsverify",
        "--tlscacert",
        &p("ca.pem"),
        "--tlscert",
        &p("cert.pem"),
        "--tlskey",
        &p("key.pem"),
    ];
    let with = |rest: &[&str]| -> Vec<String> {
        flags.iter().chain(rest).map(|s| s.to_string()).collect()
    };
    let run = |env: &[(&str, &str)], args: Vec<String>| {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        kos(&d, env, &a)
    };
    let o = run(
        &[],
        with(&["version", "--format", "{{.Server.ApiVersion}}"]),
    );
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o), "1.47\n");
    let o = run(&[], with(&["pull", "-q", &img]));
    assert!(o.status.success(), "{}", err(&o));
    let name = uniq("t");
    let mut c = Command::new(bin("kos"));
    c.env_remove("DOCKER_HOST").env_remove("KOS_HOST");
    c.args(with(&[
        "run",
        "-i",
        "--name",
        &name,
        "--network",
        "none",
        &img,
        "sh",
        "-c",
        "cat; echo done",
    ]));
    let o = piped(&mut c, b"through tls\n");
    assert_eq!(
        (o.status.code(), out(&o)),
        (Some(0), "through tls\ndone\n".to_string()),
        "{}",
        err(&o)
    );
    let o = run(&[], with(&["logs", &name]));
    assert_eq!(out(&o), "through tls\ndone\n", "{}", err(&o));
    let o = run(&[], with(&["ps", "-a", "--format", "{{.Names}}"]));
    assert_eq!(out(&o), format!("{name}\n"));
    // docker with the same flags sees the same daemon.
    let dk = Command::new(DOCKER)
        .args(flags)
        .args(["ps", "-a", "--format", "{{.Names}}"])
        .env("DOCKER_CONFIG", d.dir.path("docker-config"))
        .env_remove("DOCKER_HOST")
        .output()
        .expect("docker");
    assert_eq!(out(&dk), format!("{name}\n"), "{}", err(&dk));

    // The environment alone, as docker reads it.
    let cert_dir = certs.0.to_string_lossy().into_owned();
    let env = [
        ("DOCKER_HOST", tcp.as_str()),
        ("DOCKER_TLS_VERIFY", "1"),
        ("DOCKER_CERT_PATH", cert_dir.as_str()),
    ];
    let o = kos(&d, &env, &["ps", "-aq", "--no-trunc"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o).trim().len(), 64);

    // --tls without verifying the daemon still needs our client certificate.
    let o = kos(
        &d,
        &[],
        &[
            "-H",
            &tcp,
            "--tls",
            "--tlscert",
            &p("cert.pem"),
            "--tlskey",
            &p("key.pem"),
            "version",
            "--format",
            "{{.Server.Version}}",
        ],
    );
    assert!(o.status.success(), "{}", err(&o));

    // Refusals, each a one-line error and a failure exit.
    let fails = |args: &[&str], env: &[(&str, &str)], why: &str| {
        let o = kos(&d, env, args);
        assert!(!o.status.success(), "{args:?} worked");
        let e = err(&o);
        assert!(why.split('|').any(|w| e.contains(w)), "{args:?}: {e}");
        assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    };
    // A daemon certificate from another CA.
    fails(
        &[
            "-H",
            &tcp,
            "--tlsverify",
            "--tlscacert",
            &p("other-ca.pem"),
            "--tlscert",
            &p("cert.pem"),
            "--tlskey",
            &p("key.pem"),
            "version",
        ],
        &[],
        "certificate verify failed",
    );
    // The certificate names 127.0.0.1, not localhost.
    let localhost = format!("tcp://localhost:{port}");
    fails(
        &[
            "-H",
            &localhost,
            "--tlsverify",
            "--tlscacert",
            &p("ca.pem"),
            "--tlscert",
            &p("cert.pem"),
            "--tlskey",
            &p("key.pem"),
            "version",
        ],
        &[],
        "certificate verify failed",
    );
    // No client certificate: kosd refuses the handshake.
    fails(
        &["-H", &tcp, "--tlsverify", "--tlscacert", &p("ca.pem"), "ps"],
        &[],
        // TLS 1.3 refuses after the handshake: the alert, or a reset when
        // the request was still unread.
        "TLS: tlsv13 alert certificate required|Connection reset by peer",
    );
    // Plain HTTP to the TLS port.
    fails(&["-H", &tcp, "ps"], &[], "");
    // Missing files are named.
    fails(
        &["-H", &tcp, "--tlsverify", "ps"],
        &[],
        &format!(
            "could not read CA certificate \"{}/.docker/ca.pem\"",
            d.dir.path("home").display()
        ),
    );
    fails(
        &["-H", &tcp, "--tls", "--tlscert", &p("cert.pem"), "ps"],
        &[],
        "needs a key",
    );
    let o = run(&[], with(&["rm", "-f", &name]));
    assert!(o.status.success(), "{}", err(&o));
}
