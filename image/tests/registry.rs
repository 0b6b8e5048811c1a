#![allow(clippy::unwrap_used)]
//! Push and pull against a real docker-registry on loopback.

mod common;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::tarw::Entry;
use common::{Comp, Scratch, TestRegistry};
use kos_image::manifest::Platform;
use kos_image::progress::Progress;
use kos_image::registry::push::PushOptions;
use kos_image::{
    Error, PullOptions, Registry, Rootfs, RootfsKind, RootfsOptions, RootfsStrategy, Store,
};

struct Mounted<'a> {
    store: &'a Store,
    rootfs: Option<Rootfs>,
}

impl Mounted<'_> {
    fn path(&self) -> &Path {
        &self.rootfs.as_ref().unwrap().path
    }
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        if let Some(r) = self.rootfs.take() {
            let _ = self.store.release_rootfs(&r);
        }
    }
}

fn mount<'a>(store: &'a Store, name: &str, dir: &Path, strategy: RootfsStrategy) -> Mounted<'a> {
    let id = common::unique("ctr");
    let r = store.prepare_rootfs(name, &id, dir, strategy).unwrap();
    Mounted {
        store,
        rootfs: Some(r),
    }
}

fn pull_opts() -> PullOptions {
    PullOptions {
        unpack: true,
        ..Default::default()
    }
}

/// Three layers: busybox base, additions with links, then whiteouts.
fn multi_layers() -> Vec<common::BuiltLayer> {
    let l1 = common::layer(&common::busybox_entries(), Comp::Gzip);
    let l2 = common::layer(
        &[
            Entry::dir("app"),
            Entry::file("app/data", b"payload")
                .mode(0o600)
                .owner(1000, 1000),
            Entry::hardlink("app/data-hl", "app/data"),
            Entry::symlink("app/sh", "/bin/busybox"),
            Entry::file("app/doomed", b"bye"),
            Entry::dir("app/cache"),
            Entry::file("app/cache/old", b"old"),
            Entry::fifo("app/fifo"),
        ],
        Comp::Zstd,
    );
    let l3 = common::layer(
        &[
            Entry::file("app/.wh.doomed", b""),
            Entry::dir("app/cache"),
            Entry::file("app/cache/.wh..wh..opq", b""),
            Entry::file("app/cache/new", b"new"),
            Entry::file("bin/.wh.cat", b""),
        ],
        Comp::None,
    );
    vec![l1, l2, l3]
}

#[test]
fn push_then_pull_gives_identical_rootfs() {
    common::require_root("overlay mounts");
    let reg = TestRegistry::start();
    let work = Scratch::new("roundtrip");
    let src = Arc::new(Store::open(work.join("src")).unwrap());
    let dst = Arc::new(Store::open(work.join("dst")).unwrap());
    let single = common::build_image(
        &src,
        "local/single:1",
        &[common::layer(&common::busybox_entries(), Comp::Gzip)],
        serde_json::json!({}),
    );
    let multi = common::build_image(
        &src,
        "local/multi:1",
        &multi_layers(),
        serde_json::json!({"Cmd": ["/bin/sh"]}),
    );
    let registry = Registry::default();
    let rt = common::rt();
    for (local, remote, rec) in [
        ("local/single:1", "single:1", &single),
        ("local/multi:1", "app/multi:1.2", &multi),
    ] {
        let reference = reg.reference(remote);
        let d = rt
            .block_on(registry.push(src.clone(), local, &reference, &PushOptions::default()))
            .unwrap();
        assert_eq!(d, rec.target);

        let events = Arc::new(Mutex::new(Vec::new()));
        let ev = events.clone();
        let mut opts = pull_opts();
        opts.progress = Some(Arc::new(move |p| ev.lock().unwrap().push(p)));
        let pulled = rt
            .block_on(registry.pull(dst.clone(), &reference, &opts))
            .unwrap();
        assert_eq!(pulled.manifest, rec.manifest);
        assert_eq!(pulled.name, reference);
        let events = events.lock().unwrap();
        assert!(events
            .iter()
            .any(|e| matches!(e, Progress::Resolved { .. })));
        assert!(events
            .iter()
            .any(|e| matches!(e, Progress::Finished { .. })));

        let expected = mount(
            &src,
            local,
            &work.join(&format!("exp-{}", rec.config.hex())),
            RootfsStrategy::Copy,
        );
        let got = mount(
            &dst,
            &reference,
            &work.join(&format!("got-{}", rec.config.hex())),
            RootfsStrategy::Overlay,
        );
        assert_eq!(got.rootfs.as_ref().unwrap().kind, RootfsKind::Overlay);
        common::assert_same_tree(expected.path(), got.path());
        assert_eq!(
            std::fs::read(got.path().join("bin/busybox")).unwrap(),
            std::fs::read("/bin/busybox").unwrap()
        );
    }
    // The layered one: whiteouts, opaque dir and links came through.
    let got = mount(
        &dst,
        &reg.reference("app/multi:1.2"),
        &work.join("check"),
        RootfsStrategy::Overlay,
    );
    let r = got.path();
    assert!(!r.join("app/doomed").exists());
    assert!(!r.join("bin/cat").exists() && r.join("bin/ls").exists());
    assert!(!r.join("app/cache/old").exists());
    assert_eq!(std::fs::read(r.join("app/cache/new")).unwrap(), b"new");
    assert_eq!(std::fs::read(r.join("app/data-hl")).unwrap(), b"payload");
    assert_eq!(
        std::fs::read_link(r.join("app/sh")).unwrap(),
        Path::new("/bin/busybox")
    );

    // Pull by digest, and a digest the registry does not have.
    let by_digest = format!("{}@{}", reg.reference("app/multi"), multi.target);
    let rec = rt
        .block_on(registry.pull(dst.clone(), &by_digest, &pull_opts()))
        .unwrap();
    assert_eq!(rec.manifest, multi.manifest);
    let missing = format!(
        "{}@{}",
        reg.reference("app/multi"),
        kos_image::Digest::of(b"kos")
    );
    assert!(rt
        .block_on(registry.pull(dst.clone(), &missing, &pull_opts()))
        .is_err());

    // A second pull of the same image transfers nothing.
    let skipped = Arc::new(AtomicU64::new(0));
    let s = skipped.clone();
    let mut opts = pull_opts();
    opts.progress = Some(Arc::new(move |p| {
        if matches!(p, Progress::Skipped { .. }) {
            s.fetch_add(1, Ordering::Relaxed);
        }
    }));
    rt.block_on(registry.pull(dst.clone(), &reg.reference("app/multi:1.2"), &opts))
        .unwrap();
    assert_eq!(skipped.load(Ordering::Relaxed), 3);
}

fn arch_layer(arch: &str) -> Vec<common::BuiltLayer> {
    vec![common::layer(
        &[Entry::file("arch", arch.as_bytes())],
        Comp::Gzip,
    )]
}

#[test]
fn index_selects_platform_with_override() {
    let reg = TestRegistry::start();
    let work = Scratch::new("index");
    let src = Arc::new(Store::open(work.join("src")).unwrap());
    let host = Platform::host();
    let other = if host.architecture == "arm64" {
        Platform::parse("linux/amd64").unwrap()
    } else {
        Platform::parse("linux/arm64/v8").unwrap()
    };
    common::build_index(
        &src,
        "local/multiarch:1",
        &[
            (host.clone(), arch_layer("host")),
            (other.clone(), arch_layer("other")),
        ],
        0,
    );
    let registry = Registry::default();
    let rt = common::rt();
    let reference = reg.reference("multiarch:1");
    rt.block_on(registry.push(
        src.clone(),
        "local/multiarch:1",
        &reference,
        &PushOptions::default(),
    ))
    .unwrap();

    for (platform, want) in [(None, "host"), (Some(other.clone()), "other")] {
        let dst = Arc::new(Store::open(work.join(&format!("dst-{want}"))).unwrap());
        let mut opts = pull_opts();
        opts.platform = platform;
        let rec = rt
            .block_on(registry.pull(dst.clone(), &reference, &opts))
            .unwrap();
        let img = dst.image(&rec.name).unwrap();
        assert_ne!(rec.target, rec.manifest, "name points at the index");
        let snap = dst.snapshot_dir(&img.chain_ids()[0]);
        assert_eq!(std::fs::read(snap.join("arch")).unwrap(), want.as_bytes());
    }

    let dst = Arc::new(Store::open(work.join("dst-none")).unwrap());
    let mut opts = pull_opts();
    opts.platform = Some(Platform::parse("linux/s390x").unwrap());
    let e = rt
        .block_on(registry.pull(dst.clone(), &reference, &opts))
        .unwrap_err();
    assert!(matches!(e, Error::NoMatchingPlatform(_)), "{e}");
    assert!(e.to_string().contains("linux/s390x"));
    assert!(dst.images().unwrap().is_empty());

    // A complete index travels whole; a pulled one (one platform) goes up as
    // its platform manifest.
    let full = reg.reference("copy/multiarch:2");
    let d = rt
        .block_on(registry.push(
            src.clone(),
            "local/multiarch:1",
            &full,
            &PushOptions::default(),
        ))
        .unwrap();
    assert_eq!(d, src.image_record("local/multiarch:1").unwrap().target);
    let dst = Arc::new(Store::open(work.join("dst-host")).unwrap());
    let pulled = dst.image_record(&reference).unwrap();
    let partial = reg.reference("copy/host-only:1");
    let d = rt
        .block_on(registry.push(dst.clone(), &reference, &partial, &PushOptions::default()))
        .unwrap();
    assert_eq!(d, pulled.manifest);
    let d2 = Arc::new(Store::open(work.join("dst-again")).unwrap());
    let rec = rt
        .block_on(registry.pull(d2, &partial, &pull_opts()))
        .unwrap();
    assert_eq!(rec.target, pulled.manifest);
}

/// Path of a blob inside docker-registry's filesystem storage.
fn registry_blob(reg: &TestRegistry, d: &kos_image::Digest) -> std::path::PathBuf {
    reg.dir
        .join("storage/docker/registry/v2/blobs/sha256")
        .join(&d.hex()[..2])
        .join(d.hex())
        .join("data")
}

fn assert_store_consistent(store: &Store) {
    let root = store.root();
    for ent in std::fs::read_dir(root.join("blobs/sha256")).unwrap() {
        let ent = ent.unwrap();
        let bytes = std::fs::read(ent.path()).unwrap();
        assert_eq!(
            kos_image::Digest::of(&bytes).hex(),
            ent.file_name().to_str().unwrap(),
            "a blob in the store does not match its name"
        );
    }
    for ent in std::fs::read_dir(root.join("snapshots")).unwrap() {
        let name = ent.unwrap().file_name().into_string().unwrap();
        assert!(
            !name.starts_with("tmp-"),
            "scratch snapshot {name} left behind"
        );
        let d: kos_image::Digest = format!("sha256:{name}").parse().unwrap();
        assert!(
            store.has_snapshot(&d).unwrap(),
            "snapshot dir {name} without a record"
        );
    }
}

#[test]
fn corrupt_blobs_and_unknown_types_leave_nothing() {
    let reg = TestRegistry::start();
    let work = Scratch::new("badinput");
    let src = Arc::new(Store::open(work.join("src")).unwrap());
    let layers = vec![common::layer(&[Entry::file("a", &[1u8; 4096])], Comp::Gzip)];
    let rec = common::build_image(&src, "local/bad:1", &layers, serde_json::json!({}));
    let registry = Registry::default();
    let rt = common::rt();
    let reference = reg.reference("bad:1");
    rt.block_on(registry.push(
        src.clone(),
        "local/bad:1",
        &reference,
        &PushOptions::default(),
    ))
    .unwrap();
    let img = src.image("local/bad:1").unwrap();
    let layer = img.manifest.layers[0].digest.clone();
    let path = registry_blob(&reg, &layer);
    let mut data = std::fs::read(&path).unwrap();
    let n = data.len();
    data[n / 2] ^= 0xff;
    std::fs::write(&path, &data).unwrap();

    let dst = Arc::new(Store::open(work.join("dst")).unwrap());
    let e = rt
        .block_on(registry.pull(dst.clone(), &reference, &pull_opts()))
        .unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("digest") || msg.contains("Digest") || msg.contains("verif"),
        "{msg}"
    );
    assert!(dst.images().unwrap().is_empty());
    assert!(!dst.has_blob(&layer));
    assert!(!dst.has_snapshot(&img.chain_ids()[0]).unwrap());
    assert_store_consistent(&dst);
    let _ = rec;

    // A layer of a media type KOS does not know.
    let mut odd = common::layer(&[Entry::file("b", b"b")], Comp::None);
    odd.media_type = "application/vnd.kos.unknown.layer";
    common::build_image(&src, "local/odd:1", &[odd], serde_json::json!({}));
    let reference = reg.reference("odd:1");
    rt.block_on(registry.push(
        src.clone(),
        "local/odd:1",
        &reference,
        &PushOptions::default(),
    ))
    .unwrap();
    let e = rt
        .block_on(registry.pull(dst.clone(), &reference, &pull_opts()))
        .unwrap_err();
    assert!(matches!(e, Error::UnsupportedMediaType(_)), "{e}");
    assert!(dst.images().unwrap().is_empty());
    assert_store_consistent(&dst);

    // A reference that does not exist.
    let e = rt
        .block_on(registry.pull(dst.clone(), &reg.reference("nothing:here"), &pull_opts()))
        .unwrap_err();
    assert!(matches!(e, Error::Registry { .. }), "{e}");
}

/// Deterministic incompressible bytes.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

#[test]
fn registry_killed_mid_pull_then_retry_resumes() {
    let reg = TestRegistry::start();
    let work = Scratch::new("killed");
    let src = Arc::new(Store::open(work.join("src")).unwrap());
    let layers: Vec<_> = (0..3)
        .map(|i| {
            common::layer(
                &[Entry::file(&format!("blob{i}"), &noise(i, 12 << 20))],
                Comp::None,
            )
        })
        .collect();
    common::build_image(&src, "local/big:1", &layers, serde_json::json!({}));
    let registry = Registry::default();
    let rt = common::rt();
    let reference = reg.reference("big:1");
    rt.block_on(registry.push(
        src.clone(),
        "local/big:1",
        &reference,
        &PushOptions::default(),
    ))
    .unwrap();

    let dst = Arc::new(Store::open(work.join("dst")).unwrap());
    let reg_slot = Arc::new(Mutex::new(Some(reg)));
    let killed = Arc::new(AtomicBool::new(false));
    let (slot, k) = (reg_slot.clone(), killed.clone());
    let stash: Arc<Mutex<Option<(Scratch, u16)>>> = Arc::new(Mutex::new(None));
    let st = stash.clone();
    let mut opts = pull_opts();
    opts.progress = Some(Arc::new(move |p| {
        if let Progress::Advanced { done, .. } = p {
            if k.load(Ordering::SeqCst) {
                return;
            }
            // Slow the transfer so the kill lands in the middle of it.
            std::thread::sleep(std::time::Duration::from_millis(5));
            if done > 4 << 20 {
                if let Some(r) = slot.lock().unwrap().take() {
                    *st.lock().unwrap() = Some(r.kill());
                    k.store(true, Ordering::SeqCst);
                }
            }
        }
    }));
    let e = rt.block_on(registry.pull(dst.clone(), &reference, &opts));
    assert!(
        killed.load(Ordering::SeqCst),
        "the registry was never killed"
    );
    assert!(e.is_err(), "pull survived a dead registry");
    assert!(dst.images().unwrap().is_empty());
    assert_store_consistent(&dst);

    let (dir, port) = stash.lock().unwrap().take().unwrap();
    let reg = TestRegistry::start_in(dir, Some(port));
    let resumed = Arc::new(AtomicU64::new(0));
    let r2 = resumed.clone();
    let mut opts = pull_opts();
    opts.progress = Some(Arc::new(move |p| {
        if let Progress::Started { offset, .. } = p {
            if offset > 0 {
                r2.fetch_add(1, Ordering::Relaxed);
            }
        }
    }));
    let rec = rt
        .block_on(registry.pull(dst.clone(), &reference, &opts))
        .unwrap();
    assert_store_consistent(&dst);
    let img = dst.image(&rec.name).unwrap();
    for (i, c) in img.chain_ids().iter().enumerate() {
        let got = std::fs::read(dst.snapshot_dir(c).join(format!("blob{i}"))).unwrap();
        assert!(
            got == noise(i as u64, 12 << 20),
            "layer {i} content differs"
        );
    }
    assert!(
        resumed.load(Ordering::Relaxed) >= 1,
        "no download resumed from its partial file"
    );
    drop(reg);
}

#[test]
fn tag_list_inspect_remove_and_gc() {
    let work = Scratch::new("storeops");
    let store = Store::open(work.join("s")).unwrap();
    let a = common::build_image(
        &store,
        "local/a:1",
        &[common::layer(&[Entry::file("a", b"a")], Comp::Gzip)],
        serde_json::json!({"Env": ["A=1"]}),
    );
    let b = common::build_image(
        &store,
        "local/b:1",
        &[common::layer(&[Entry::file("b", b"b")], Comp::Zstd)],
        serde_json::json!({}),
    );
    store.tag("local/a:1", "local/a:latest").unwrap();
    let names: Vec<String> = store
        .images()
        .unwrap()
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, vec!["local/a:1", "local/a:latest", "local/b:1"]);
    let img = store.image("local/a:latest").unwrap();
    assert_eq!(img.record.manifest, a.manifest);
    assert_eq!(
        img.config.config.unwrap().env.unwrap(),
        vec!["A=1".to_string()]
    );
    let img_b = store.image("local/b:1").unwrap();
    store.ensure_snapshots(&img_b).unwrap();
    store
        .ensure_snapshots(&store.image("local/a:1").unwrap())
        .unwrap();

    // Removing one of two names frees nothing.
    store.remove_image("local/a:1").unwrap();
    assert_eq!(store.gc().unwrap().blobs, 0);
    assert!(matches!(
        store.remove_image("local/a:1"),
        Err(Error::ImageNotFound(_))
    ));

    // A lease keeps b's snapshot alive after b's name is gone.
    store.add_lease("kos-ctr", &img_b.chain_ids()[0]).unwrap();
    store.remove_image("local/b:1").unwrap();
    let rep = store.gc().unwrap();
    assert_eq!(rep.blobs, 2, "b's config and layer go");
    assert_eq!(rep.snapshots, 0);
    assert!(store.has_snapshot(&img_b.chain_ids()[0]).unwrap());
    store.remove_lease("kos-ctr").unwrap();
    store.remove_image("local/a:latest").unwrap();
    let rep = store.gc().unwrap();
    assert_eq!(rep.snapshots, 2);
    assert_eq!(
        std::fs::read_dir(work.join("s/blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        std::fs::read_dir(work.join("s/snapshots")).unwrap().count(),
        0
    );
    let _ = b;
}

#[test]
fn many_layers_mount_and_copy_fallback_agree() {
    common::require_root("overlay mounts");
    let work = Scratch::new("manylayers");
    let store = Store::open(work.join("s")).unwrap();
    // Long lower paths times 90 layers is far past one page of mount options.
    let layers: Vec<_> = (0..90)
        .map(|i| {
            let mut e = vec![
                Entry::file(&format!("l{i}"), format!("{i}").as_bytes()),
                Entry::file("top", format!("{i}").as_bytes()),
            ];
            if i == 50 {
                e.push(Entry::file(".wh.l10", b""));
            }
            common::layer(&e, Comp::Gzip)
        })
        .collect();
    common::build_image(&store, "local/many:1", &layers, serde_json::json!({}));
    let ov = mount(
        &store,
        "local/many:1",
        &work.join("ov"),
        RootfsStrategy::Overlay,
    );
    let cp = mount(
        &store,
        "local/many:1",
        &work.join("cp"),
        RootfsStrategy::Copy,
    );
    assert_eq!(cp.rootfs.as_ref().unwrap().kind, RootfsKind::Copy);
    assert_eq!(std::fs::read(ov.path().join("top")).unwrap(), b"89");
    assert!(!ov.path().join("l10").exists() && ov.path().join("l11").exists());
    common::assert_same_tree(cp.path(), ov.path());
    // Writes go to the container's upper dir, not to the shared snapshots.
    std::fs::write(ov.path().join("l0"), b"changed").unwrap();
    assert!(work.join("ov/upper/l0").exists());
    let img = store.image("local/many:1").unwrap();
    assert_eq!(
        std::fs::read(store.snapshot_dir(&img.chain_ids()[0]).join("l0")).unwrap(),
        b"0"
    );
    let path = ov.path().to_path_buf();
    drop(ov);
    assert!(!path.exists(), "rootfs released");
}

/// The super options of the mount on `path`, from this process's mountinfo.
fn super_options(path: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let want = path.to_string_lossy();
    info.lines().rev().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        (pre.split(' ').nth(4)? == want).then(|| post.split(' ').nth(2).unwrap_or("").to_string())
    })
}

/// Whether super options say volatile (`fsync=volatile` on kernels with the fsync option).
fn is_volatile(opts: &str) -> bool {
    opts.split(',')
        .any(|o| o == "volatile" || o == "fsync=volatile")
}

#[test]
fn volatile_rootfs_is_mounted_volatile_and_released() {
    common::require_root("overlay mounts");
    let work = Scratch::new("volatile");
    let store = Store::open(work.join("s")).unwrap();
    let layers = vec![common::layer(&[Entry::file("f", b"lower")], Comp::Gzip)];
    common::build_image(&store, "local/vol:1", &layers, serde_json::json!({}));
    let id = common::unique("ctr");
    let dir = work.join("v");
    let r = store
        .prepare_rootfs_with(
            "local/vol:1",
            &id,
            &dir,
            RootfsStrategy::Overlay,
            RootfsOptions { volatile: true },
        )
        .unwrap();
    let m = Mounted {
        store: &store,
        rootfs: Some(r),
    };
    let opts = super_options(m.path()).expect("rootfs mounted");
    assert!(is_volatile(&opts), "{opts}");
    assert_eq!(std::fs::read(m.path().join("f")).unwrap(), b"lower");
    std::fs::write(m.path().join("f"), b"upper").unwrap();
    assert_eq!(std::fs::read(dir.join("upper/f")).unwrap(), b"upper");
    // The default stays a normal, synced overlay.
    let plain = mount(
        &store,
        "local/vol:1",
        &work.join("p"),
        RootfsStrategy::Overlay,
    );
    let opts = super_options(plain.path()).expect("rootfs mounted");
    assert!(!is_volatile(&opts), "{opts}");
    let path = m.path().to_path_buf();
    drop(m);
    assert!(super_options(&path).is_none(), "volatile rootfs unmounted");
    assert!(
        !path.exists() && !dir.join("upper").exists(),
        "volatile rootfs removed"
    );
}
