#![allow(clippy::unwrap_used)]
//! Archives: OCI layouts and docker-save tarballs, round-tripped with skopeo.

mod common;

use std::path::Path;
use std::process::Command;

use common::tarw::Entry;
use std::sync::Arc;

use common::{Comp, Scratch, TestRegistry};
use kos_image::archive::{docker, oci_layout};
use kos_image::registry::push::PushOptions;
use kos_image::{Error, PullOptions, Registry, RootfsStrategy, Store};

fn layers() -> Vec<common::BuiltLayer> {
    vec![
        common::layer(&common::busybox_entries(), Comp::Gzip),
        common::layer(
            &[
                Entry::dir("srv"),
                Entry::file("srv/index.html", b"<h1>kos</h1>").owner(33, 33),
                Entry::hardlink("srv/copy.html", "srv/index.html"),
                Entry::symlink("srv/sh", "/bin/sh"),
                Entry::file("bin/.wh.echo", b""),
            ],
            // skopeo 1.9 cannot turn zstd layers into docker-archive layers.
            Comp::Gzip,
        ),
        common::layer(
            &[Entry::file("etc/motd", b"hello\n").mode(0o600)],
            Comp::None,
        ),
    ]
}

fn skopeo(args: &[&str]) {
    let out = Command::new("skopeo")
        .arg("--insecure-policy")
        .args(args)
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Materialises both images with the copy strategy and compares the trees.
fn assert_same_image(a: &Store, an: &str, b: &Store, bn: &str, work: &Path) {
    let ra = a
        .prepare_rootfs(
            an,
            &common::unique("a"),
            &work.join(common::unique("ra")),
            RootfsStrategy::Copy,
        )
        .unwrap();
    let rb = b
        .prepare_rootfs(
            bn,
            &common::unique("b"),
            &work.join(common::unique("rb")),
            RootfsStrategy::Copy,
        )
        .unwrap();
    common::assert_same_tree(&ra.path, &rb.path);
    assert!(!rb.path.join("bin/echo").exists());
    assert_eq!(
        std::fs::read(rb.path.join("srv/copy.html")).unwrap(),
        b"<h1>kos</h1>"
    );
    a.release_rootfs(&ra).unwrap();
    b.release_rootfs(&rb).unwrap();
}

#[test]
fn oci_and_docker_archives_interchange_with_skopeo() {
    common::require_root("materialising image trees with their owners");
    let work = Scratch::new("archive");
    let src = Store::open(work.join("src")).unwrap();
    let name = "localhost/kos/arch:1";
    common::build_image(
        &src,
        name,
        &layers(),
        serde_json::json!({"Cmd": ["/bin/sh"]}),
    );

    // KOS OCI dir -> skopeo -> docker-archive -> KOS.
    let layout = work.join("layout");
    oci_layout::save_dir(&src, &[name], &layout).unwrap();
    let darch = work.join("d.tar");
    skopeo(&[
        "copy",
        &format!("oci:{}:1", layout.display()),
        &format!("docker-archive:{}:kos/fromoci:1", darch.display()),
    ]);
    let s1 = Store::open(work.join("s1")).unwrap();
    let recs = docker::load(&s1, std::fs::File::open(&darch).unwrap()).unwrap();
    assert_eq!(recs[0].name, "docker.io/kos/fromoci:1");
    assert_same_image(&src, name, &s1, &recs[0].name, work.path());

    // KOS docker-archive -> skopeo -> OCI dir -> KOS (bare tag needs a repository).
    let ksave = work.join("k.tar");
    docker::save(&src, &[name], std::fs::File::create(&ksave).unwrap()).unwrap();
    let layout2 = work.join("layout2");
    skopeo(&[
        "copy",
        &format!("docker-archive:{}", ksave.display()),
        &format!("oci:{}:v2", layout2.display()),
    ]);
    let s2 = Store::open(work.join("s2")).unwrap();
    let e = oci_layout::load_dir(&s2, &layout2, None, None).unwrap_err();
    assert!(matches!(e, Error::InvalidArchive(_)), "{e}");
    let recs = oci_layout::load_dir(&s2, &layout2, Some("localhost/kos/back"), None).unwrap();
    assert_eq!(recs[0].name, "localhost/kos/back:v2");
    assert_same_image(&src, name, &s2, &recs[0].name, work.path());

    // KOS OCI tar -> skopeo oci-archive -> OCI tar -> KOS.
    let otar = work.join("o.tar");
    oci_layout::save_tar(&src, &[name], std::fs::File::create(&otar).unwrap()).unwrap();
    let otar2 = work.join("o2.tar");
    skopeo(&[
        "copy",
        &format!("oci-archive:{}", otar.display()),
        &format!("oci-archive:{}:kos/tar:3", otar2.display()),
    ]);
    let s3 = Store::open(work.join("s3")).unwrap();
    let recs = oci_layout::load_tar(&s3, std::fs::File::open(&otar2).unwrap(), None, None).unwrap();
    assert_eq!(recs[0].name, "docker.io/kos/tar:3");
    assert_same_image(&src, name, &s3, &recs[0].name, work.path());

    // And KOS reads its own outputs back without skopeo in between.
    let s4 = Store::open(work.join("s4")).unwrap();
    let recs = docker::load(&s4, std::fs::File::open(&ksave).unwrap()).unwrap();
    assert_eq!(recs[0].name, name);
    let recs = oci_layout::load_tar(&s4, std::fs::File::open(&otar).unwrap(), None, None).unwrap();
    assert_eq!(recs[0].name, name);

    // A docker-archive load yields Docker schema 2 manifests: they push and
    // pull through a registry like OCI ones.
    let s5 = Arc::new(Store::open(work.join("s5")).unwrap());
    let rec = docker::load(&s5, std::fs::File::open(&darch).unwrap())
        .unwrap()
        .remove(0);
    let (mt, _) = s5.manifest(&rec.manifest).unwrap();
    assert_eq!(mt, kos_image::manifest::DOCKER_MANIFEST);
    let reg = TestRegistry::start();
    let remote = reg.reference("docker/schema2:1");
    let rt = common::rt();
    let registry = Registry::default();
    rt.block_on(registry.push(s5.clone(), &rec.name, &remote, &PushOptions::default()))
        .unwrap();
    let s6 = Arc::new(Store::open(work.join("s6")).unwrap());
    let opts = PullOptions {
        unpack: true,
        ..Default::default()
    };
    let pulled = rt
        .block_on(registry.pull(s6.clone(), &remote, &opts))
        .unwrap();
    assert_eq!(pulled.manifest, rec.manifest);
    assert_same_image(&src, name, &s6, &pulled.name, work.path());
}

fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let entries: Vec<Entry> = files.iter().map(|(p, d)| Entry::file(p, d)).collect();
    common::tarw::build(&entries)
}

#[test]
fn hostile_archives_are_refused_and_name_nothing() {
    let work = Scratch::new("badarchive");
    let store = Store::open(work.join("s")).unwrap();
    // manifest.json pointing outside the archive.
    let t = tar_of(&[(
        "manifest.json",
        br#"[{"Config":"../../../etc/passwd","RepoTags":["x:1"],"Layers":[]}]"#,
    )]);
    let e = docker::load(&store, &t[..]).unwrap_err();
    assert!(matches!(e, Error::InvalidArchive(_)), "{e}");

    // A layout whose blob is not what its name says.
    let fake = kos_image::Digest::of(b"something else");
    let index = format!(
        r#"{{"schemaVersion":2,"manifests":[{{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"{fake}","size":5,"annotations":{{"org.opencontainers.image.ref.name":"kos/x:1"}}}}]}}"#
    );
    let t = tar_of(&[
        ("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#),
        ("index.json", index.as_bytes()),
        (&format!("blobs/sha256/{}", fake.hex()), b"hello"),
    ]);
    let e = oci_layout::load_tar(&store, &t[..], None, None).unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");

    // An uncompressed docker layer that is not the diff id its config claims.
    let cfg = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}"#;
    let layer = tar_of(&[("a", b"a")]);
    let t = tar_of(&[
        ("c.json", cfg),
        ("l/layer.tar", &layer),
        (
            "manifest.json",
            br#"[{"Config":"c.json","RepoTags":["kos/y:1"],"Layers":["l/layer.tar"]}]"#,
        ),
    ]);
    let e = docker::load(&store, &t[..]).unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
    assert!(store.images().unwrap().is_empty());
    // Whatever was streamed in is unreferenced and goes at the next gc.
    store.gc().unwrap();
    assert_eq!(
        std::fs::read_dir(work.join("s/blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
}
