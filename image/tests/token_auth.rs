#![allow(clippy::unwrap_used)]
//! Bearer-token auth against docker-registry's `auth: token` scheme, with
//! the test's own token server issuing the JWTs the registry verifies.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use common::tarw::Entry;
use common::token::{Account, Outcome, TokenServer};
use common::{Comp, Scratch, TestRegistry};
use kos_image::registry::push::PushOptions;
use kos_image::{Credentials, Error, PullOptions, Registry, Rootfs, RootfsStrategy, Store};

const REPO: &str = "private/app";

/// The token server and the registry trusting it; both stop on drop.
struct Fixture {
    // Field order is drop order: the registry goes before its token server.
    reg: TestRegistry,
    tokens: TokenServer,
}

fn fixture() -> Fixture {
    let dir = Scratch::new("tokreg");
    let accounts = BTreeMap::from([
        (
            "kos".to_string(),
            Account {
                password: "s3cret".into(),
                actions: vec!["pull".into(), "push".into()],
            },
        ),
        (
            "reader".to_string(),
            Account {
                password: "r3ad".into(),
                actions: vec!["pull".into()],
            },
        ),
    ]);
    let tokens = TokenServer::start(dir.path(), accounts);
    let reg = TestRegistry::start_with(dir, None, &tokens.registry_auth_yaml());
    Fixture { reg, tokens }
}

fn basic(user: &str, password: &str) -> Credentials {
    Credentials::Basic {
        username: user.into(),
        password: password.into(),
    }
}

fn pull_opts(credentials: Credentials) -> PullOptions {
    PullOptions {
        credentials,
        unpack: true,
        ..Default::default()
    }
}

fn push_opts(credentials: Credentials) -> PushOptions {
    PushOptions {
        credentials,
        ..Default::default()
    }
}

/// The one-line message of a registry error; panics on any other error.
fn registry_message(e: &Error) -> &str {
    match e {
        Error::Registry { message, .. } => message,
        other => panic!("expected a registry error, got {other}"),
    }
}

fn assert_auth_error(e: &Error, what: &str) {
    let m = registry_message(e);
    assert!(
        m.to_ascii_lowercase().contains("auth"),
        "{what}: error does not say it is about authorization: {m}"
    );
    assert!(!m.contains('\n'), "{what}: error is not one line: {m}");
}

/// A source store holding `local/app:1`: busybox plus a layer of data.
fn source_image(work: &Scratch) -> (Arc<Store>, kos_image::ImageRecord) {
    let src = Arc::new(Store::open(work.join("src")).unwrap());
    let rec = common::build_image(
        &src,
        "local/app:1",
        &[
            common::layer(&common::busybox_entries(), Comp::Gzip),
            common::layer(
                &[
                    Entry::dir("data"),
                    Entry::file("data/secret", b"kos token payload").mode(0o600),
                ],
                Comp::Zstd,
            ),
        ],
        serde_json::json!({"Cmd": ["/bin/sh"]}),
    );
    (src, rec)
}

/// A copied rootfs of a stored image, released on drop.
struct CopiedRootfs<'a> {
    store: &'a Store,
    rootfs: Option<Rootfs>,
}

impl CopiedRootfs<'_> {
    fn path(&self) -> &Path {
        &self.rootfs.as_ref().unwrap().path
    }
}

impl Drop for CopiedRootfs<'_> {
    fn drop(&mut self) {
        if let Some(r) = self.rootfs.take() {
            let _ = self.store.release_rootfs(&r);
        }
    }
}

fn rootfs<'a>(store: &'a Store, name: &str, dir: &Path) -> CopiedRootfs<'a> {
    let r = store
        .prepare_rootfs(name, &common::unique("ctr"), dir, RootfsStrategy::Copy)
        .unwrap();
    CopiedRootfs {
        store,
        rootfs: Some(r),
    }
}

/// Nothing named, no blob, no download in progress, no snapshot.
fn assert_store_empty(store: &Store) {
    assert!(store.images().unwrap().is_empty(), "an image was named");
    for sub in ["blobs/sha256", "ingest", "snapshots"] {
        let dir = store.root().join(sub);
        let left: Vec<_> = std::fs::read_dir(&dir)
            .map(|d| d.map(|e| e.unwrap().file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{} not empty: {left:?}", dir.display());
    }
}

#[test]
fn libtrust_key_id_encoding() {
    assert_eq!(common::token::base32(b"foobar"), "MZXW6YTBOI");
    assert_eq!(common::token::base32(b"f"), "MY");
    let kid = common::token::libtrust_key_id(b"kos");
    let groups: Vec<&str> = kid.split(':').collect();
    assert_eq!(groups.len(), 12, "{kid}");
    assert!(groups.iter().all(|g| g.len() == 4), "{kid}");
    assert_eq!(
        common::token::percent_decode("repository%3Aprivate%2Fapp%3Apull%2Cpush"),
        "repository:private/app:pull,push"
    );
}

#[test]
fn token_push_then_pull_gives_the_same_rootfs() {
    let fx = fixture();
    let work = Scratch::new("tokrt");
    let (src, rec) = source_image(&work);
    let registry = Registry::default();
    let rt = common::rt();
    let reference = fx.reg.reference(&format!("{REPO}:1"));

    let e = rt
        .block_on(registry.push(
            src.clone(),
            "local/app:1",
            &reference,
            &push_opts(Credentials::Anonymous),
        ))
        .unwrap_err();
    assert_auth_error(&e, "anonymous push");

    let pushed = rt
        .block_on(registry.push(
            src.clone(),
            "local/app:1",
            &reference,
            &push_opts(basic("kos", "s3cret")),
        ))
        .unwrap();
    assert_eq!(pushed, rec.target);
    let log = fx.tokens.outcomes();
    assert!(
        log.contains(&Outcome::Issued {
            subject: "kos".into(),
            granted: vec![(REPO.into(), vec!["pull".into(), "push".into()])],
        }),
        "the client never exchanged its password for a push token: {log:?}"
    );

    // Anonymous callers get a token with no access; the registry refuses it.
    let anon = Arc::new(Store::open(work.join("anon")).unwrap());
    let e = rt
        .block_on(registry.pull(anon.clone(), &reference, &pull_opts(Credentials::Anonymous)))
        .unwrap_err();
    assert_auth_error(&e, "anonymous pull");
    assert_store_empty(&anon);
    assert!(
        fx.tokens.outcomes().iter().any(|o| matches!(
            o,
            Outcome::Issued { subject, granted } if subject.is_empty() && granted.is_empty()
        )),
        "the anonymous pull never asked the token server"
    );

    // Basic credentials exchanged for a token by the client.
    let dst = Arc::new(Store::open(work.join("dst")).unwrap());
    let pulled = rt
        .block_on(registry.pull(dst.clone(), &reference, &pull_opts(basic("kos", "s3cret"))))
        .unwrap();
    assert_eq!(pulled.manifest, rec.manifest);
    let expected = rootfs(&src, "local/app:1", &work.join("expected"));
    let got = rootfs(&dst, &reference, &work.join("got"));
    common::assert_same_tree(expected.path(), got.path());
    assert_eq!(
        std::fs::read(got.path().join("data/secret")).unwrap(),
        b"kos token payload"
    );

    // A bearer token fetched beforehand, handed to the client as is.
    let (status, token) = fx
        .tokens
        .fetch(Some(("kos", "s3cret")), &format!("repository:{REPO}:pull"));
    assert_eq!(status, 200);
    let bearer = Arc::new(Store::open(work.join("bearer")).unwrap());
    let pulled = rt
        .block_on(registry.pull(
            bearer.clone(),
            &reference,
            &pull_opts(Credentials::Bearer(token.unwrap())),
        ))
        .unwrap();
    assert_eq!(pulled.manifest, rec.manifest);
    let got = rootfs(&bearer, &reference, &work.join("got-bearer"));
    common::assert_same_tree(expected.path(), got.path());
}

#[test]
fn wrong_password_is_refused_and_leaves_nothing() {
    let fx = fixture();
    let work = Scratch::new("tokbad");
    let (src, _) = source_image(&work);
    let registry = Registry::default();
    let rt = common::rt();
    let reference = fx.reg.reference(&format!("{REPO}:1"));
    rt.block_on(registry.push(
        src.clone(),
        "local/app:1",
        &reference,
        &push_opts(basic("kos", "s3cret")),
    ))
    .unwrap();

    let dst = Arc::new(Store::open(work.join("dst")).unwrap());
    let e = rt
        .block_on(registry.pull(
            dst.clone(),
            &reference,
            &pull_opts(basic("kos", "wrong-kos-pw")),
        ))
        .unwrap_err();
    assert_auth_error(&e, "wrong password");
    let m = registry_message(&e);
    assert!(
        m.contains("invalid username or password"),
        "the token server's reason is lost: {m}"
    );
    assert!(!m.contains("wrong-kos-pw"), "password leaked into: {m}");
    assert!(!format!("{e:?}").contains("wrong-kos-pw"));
    assert_store_empty(&dst);
    assert!(fx
        .tokens
        .outcomes()
        .contains(&Outcome::Refused { user: "kos".into() }));

    let e = rt
        .block_on(registry.push(
            src.clone(),
            "local/app:1",
            &fx.reg.reference(&format!("{REPO}:2")),
            &push_opts(basic("kos", "wrong-kos-pw")),
        ))
        .unwrap_err();
    assert_auth_error(&e, "wrong password push");

    // The right password still works afterwards: nothing was poisoned.
    let (status, token) = fx
        .tokens
        .fetch(Some(("kos", "nope")), &format!("repository:{REPO}:pull"));
    assert_eq!((status, token), (401, None));
    rt.block_on(registry.pull(dst.clone(), &reference, &pull_opts(basic("kos", "s3cret"))))
        .unwrap();
}

#[test]
fn pull_scoped_token_cannot_push() {
    let fx = fixture();
    let work = Scratch::new("tokscope");
    let (src, rec) = source_image(&work);
    let registry = Registry::default();
    let rt = common::rt();
    let reference = fx.reg.reference(&format!("{REPO}:1"));
    rt.block_on(registry.push(
        src.clone(),
        "local/app:1",
        &reference,
        &push_opts(basic("kos", "s3cret")),
    ))
    .unwrap();

    // The pull-only account can pull...
    let dst = Arc::new(Store::open(work.join("dst")).unwrap());
    let pulled = rt
        .block_on(registry.pull(dst.clone(), &reference, &pull_opts(basic("reader", "r3ad"))))
        .unwrap();
    assert_eq!(pulled.manifest, rec.manifest);

    // ...but asking for push gets it a pull-only token, which cannot push.
    let other_repo = "private/other";
    let other = fx.reg.reference(&format!("{other_repo}:1"));
    let e = rt
        .block_on(registry.push(
            src.clone(),
            "local/app:1",
            &other,
            &push_opts(basic("reader", "r3ad")),
        ))
        .unwrap_err();
    assert_auth_error(&e, "reader push");
    let log = fx.tokens.outcomes();
    assert!(
        log.contains(&Outcome::Issued {
            subject: "reader".into(),
            granted: vec![(other_repo.into(), vec!["pull".into()])],
        }),
        "reader was not granted pull only: {log:?}"
    );

    // A bearer token scoped to pull is refused for push too...
    let pull_only = fx
        .tokens
        .issue("kos", &[(other_repo.into(), vec!["pull".into()])]);
    let e = rt
        .block_on(registry.push(
            src.clone(),
            "local/app:1",
            &other,
            &push_opts(Credentials::Bearer(pull_only)),
        ))
        .unwrap_err();
    assert_auth_error(&e, "pull-only bearer push");

    // ...and the refused pushes left no tag behind.
    let e = rt
        .block_on(registry.pull(
            Arc::new(Store::open(work.join("probe")).unwrap()),
            &other,
            &pull_opts(basic("kos", "s3cret")),
        ))
        .unwrap_err();
    assert!(
        registry_message(&e)
            .to_ascii_lowercase()
            .contains("unknown"),
        "a refused push left {other} behind: {e}"
    );

    // The same bearer path with push in scope succeeds, so the refusals
    // above came from the scope and nothing else.
    let push_ok = fx.tokens.issue(
        "kos",
        &[(other_repo.into(), vec!["pull".into(), "push".into()])],
    );
    let d = rt
        .block_on(registry.push(
            src.clone(),
            "local/app:1",
            &other,
            &push_opts(Credentials::Bearer(push_ok)),
        ))
        .unwrap();
    assert_eq!(d, rec.target);
}
