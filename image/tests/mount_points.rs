//! The cached mount-point layer: real overlay mounts of images built in a scratch store.
//! The point is asserted from the container's side: with the targets mounted on, the
//! container's upper directory stays empty, and nothing of a hostile image is shadowed.

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::tarw::Entry;
use common::{Comp, Scratch};
use kos_image::digest::Digest;
use kos_image::{MountPoint, Rootfs, RootfsOptions, RootfsStrategy, Store};

/// A prepared rootfs, released (unmounted, removed, unleased) on drop.
struct Prepared<'a> {
    store: &'a Store,
    rootfs: Option<Rootfs>,
}

impl Prepared<'_> {
    fn root(&self) -> &Path {
        &self.rootfs.as_ref().expect("prepared").path
    }
    fn upper(&self) -> PathBuf {
        self.rootfs.as_ref().expect("prepared").dir.join("upper")
    }
}

impl Drop for Prepared<'_> {
    fn drop(&mut self) {
        if let Some(r) = self.rootfs.take() {
            let _ = self.store.release_rootfs(&r);
        }
    }
}

fn prepare<'a>(store: &'a Store, name: &str, dir: &Path, targets: &[MountPoint]) -> Prepared<'a> {
    let r = store
        .prepare_rootfs_with_mount_points(
            name,
            &common::unique("ctr"),
            dir,
            RootfsStrategy::Overlay,
            RootfsOptions::default(),
            targets,
        )
        .expect("prepare rootfs");
    Prepared {
        store,
        rootfs: Some(r),
    }
}

/// Mounts made on targets, detached on drop (deepest last made first).
struct Mounts(Vec<PathBuf>);

impl Mounts {
    fn tmpfs(&mut self, target: &Path) {
        let (src, t, fs) = (c(Path::new("tmpfs")), c(target), c(Path::new("tmpfs")));
        // SAFETY: valid C strings.
        let r = unsafe { libc::mount(src.as_ptr(), t.as_ptr(), fs.as_ptr(), 0, std::ptr::null()) };
        assert_eq!(
            r,
            0,
            "tmpfs on {}: {}",
            target.display(),
            std::io::Error::last_os_error()
        );
        self.0.push(target.to_path_buf());
    }
    fn bind(&mut self, source: &Path, target: &Path) {
        let (s, t) = (c(source), c(target));
        // SAFETY: valid C strings.
        let r = unsafe {
            libc::mount(
                s.as_ptr(),
                t.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        };
        assert_eq!(
            r,
            0,
            "bind on {}: {}",
            target.display(),
            std::io::Error::last_os_error()
        );
        self.0.push(target.to_path_buf());
    }
}

impl Drop for Mounts {
    fn drop(&mut self) {
        for t in self.0.drain(..).rev() {
            // SAFETY: valid C string.
            unsafe { libc::umount2(c(&t).as_ptr(), libc::MNT_DETACH) };
        }
    }
}

fn c(p: &Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).expect("path")
}

fn defaults() -> Vec<MountPoint> {
    MountPoint::container_defaults()
}

/// The snapshot directories of `name`, top first, and its top chain id.
fn lowers(store: &Store, name: &str) -> (Digest, Vec<PathBuf>) {
    let image = store.image(name).expect("image");
    let chain = store.ensure_snapshots(&image).expect("snapshots");
    let top = chain.last().expect("a layer").clone();
    (
        top,
        chain.iter().rev().map(|c| store.snapshot_dir(c)).collect(),
    )
}

fn layer_of(store: &Store, name: &str, targets: &[MountPoint]) -> Option<PathBuf> {
    let (top, lowers) = lowers(store, name);
    store
        .mount_point_layer(&top, &lowers, targets)
        .expect("mount-point layer")
}

/// A busybox-like image: no /proc, /dev, /sys, and an /etc without the engine's files,
/// whose attributes are not the defaults (0750, 12:34, an old mtime).
fn busybox_like(store: &Store, name: &str) {
    let layers = vec![common::layer(
        &[
            Entry::dir("bin"),
            Entry::file("bin/sh", b"#!").mode(0o755),
            Entry::dir("etc")
                .mode(0o750)
                .owner(12, 34)
                .mtime(1_500_000_000),
            Entry::file("etc/passwd", b"root:x:0:0::/:/bin/sh\n"),
        ],
        Comp::Gzip,
    )];
    common::build_image(store, name, &layers, serde_json::json!({}));
}

#[test]
fn targets_exist_and_mounting_on_them_leaves_the_upper_dir_empty() {
    common::require_root("overlay mounts");
    let work = Scratch::new("mp-busybox");
    let store = Store::open(work.join("s")).expect("store");
    busybox_like(&store, "local/bb:1");
    let p = prepare(&store, "local/bb:1", &work.join("c"), &defaults());
    let root = p.root().to_path_buf();
    for d in ["proc", "dev", "sys"] {
        let m = std::fs::symlink_metadata(root.join(d)).expect(d);
        assert!(m.is_dir(), "/{d} is a directory");
        assert_eq!((m.mode() & 0o7777, m.uid(), m.gid()), (0o755, 0, 0), "/{d}");
    }
    for f in ["hostname", "hosts", "resolv.conf"] {
        let m = std::fs::symlink_metadata(root.join("etc").join(f)).expect(f);
        assert!(m.is_file() && m.len() == 0, "/etc/{f} is an empty file");
        assert_eq!(
            (m.mode() & 0o7777, m.uid(), m.gid()),
            (0o755, 0, 0),
            "/etc/{f} as dockerd's init layer makes it"
        );
    }
    // The image's files are all still there.
    assert_eq!(
        std::fs::read(root.join("etc/passwd")).expect("passwd"),
        b"root:x:0:0::/:/bin/sh\n"
    );
    // What a runtime does at start: mount on every target.
    let host_file = work.join("hosts");
    std::fs::write(&host_file, b"127.0.0.1 localhost\n").expect("host file");
    let mut mounts = Mounts(Vec::new());
    for d in ["proc", "dev", "sys"] {
        mounts.tmpfs(&root.join(d));
    }
    for f in ["hostname", "hosts", "resolv.conf"] {
        mounts.bind(&host_file, &root.join("etc").join(f));
    }
    assert_eq!(
        std::fs::read(root.join("etc/hosts")).expect("bound hosts"),
        b"127.0.0.1 localhost\n"
    );
    let upper: Vec<_> = std::fs::read_dir(p.upper())
        .expect("upper dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(upper.is_empty(), "the upper dir holds {upper:?}");
    drop(mounts);
}

#[test]
fn parent_directories_keep_the_images_attributes() {
    common::require_root("overlay mounts");
    let work = Scratch::new("mp-attrs");
    let store = Store::open(work.join("s")).expect("store");
    busybox_like(&store, "local/bb:1");
    // The image's own view, without the layer.
    let plain = prepare(&store, "local/bb:1", &work.join("plain"), &[]);
    let with = prepare(&store, "local/bb:1", &work.join("with"), &defaults());
    let a = std::fs::symlink_metadata(plain.root().join("etc")).expect("etc");
    let b = std::fs::symlink_metadata(with.root().join("etc")).expect("etc");
    assert_eq!(
        (a.mode(), a.uid(), a.gid(), a.mtime(), a.mtime_nsec()),
        (b.mode(), b.uid(), b.gid(), b.mtime(), b.mtime_nsec()),
        "/etc as the image has it"
    );
    assert_eq!(
        (b.mode() & 0o7777, b.uid(), b.gid(), b.mtime()),
        (0o750, 12, 34, 1_500_000_000)
    );
    // The layer really holds /etc (so these are its copy's attributes, not the image's).
    let layer = layer_of(&store, "local/bb:1", &defaults()).expect("a layer");
    assert!(layer.join("etc/hosts").is_file());
    assert_eq!(
        std::fs::symlink_metadata(layer.join("etc"))
            .expect("layer etc")
            .mode()
            & 0o7777,
        0o750
    );
}

#[test]
fn hostile_images_are_never_shadowed() {
    common::require_root("overlay mounts and whiteouts");
    let work = Scratch::new("mp-hostile");
    let store = Store::open(work.join("s")).expect("store");
    // /etc is a symlink into /usr/etc, which has a hosts file.
    let linked = vec![common::layer(
        &[
            Entry::dir("usr"),
            Entry::dir("usr/etc"),
            Entry::file("usr/etc/hosts", b"linked hosts\n"),
            Entry::symlink("etc", "usr/etc"),
        ],
        Comp::Gzip,
    )];
    common::build_image(&store, "local/linked:1", &linked, serde_json::json!({}));
    // /etc/hosts has content, /etc/hostname is a dangling symlink, /proc is a file, and
    // /dev is there in the first layer but whited out in the second.
    let owned = vec![
        common::layer(
            &[
                Entry::dir("etc"),
                Entry::file("etc/hosts", b"image hosts\n"),
                Entry::symlink("etc/hostname", "/nowhere"),
                Entry::file("proc", b"not a dir"),
                Entry::dir("dev"),
                Entry::file("dev/null", b"fake"),
            ],
            Comp::Gzip,
        ),
        common::layer(&[Entry::file(".wh.dev", b"")], Comp::Gzip),
    ];
    common::build_image(&store, "local/owned:1", &owned, serde_json::json!({}));

    let p = prepare(&store, "local/linked:1", &work.join("l"), &defaults());
    let etc = std::fs::read_link(p.root().join("etc")).expect("etc still a symlink");
    assert_eq!(etc, Path::new("usr/etc"));
    assert_eq!(
        std::fs::read(p.root().join("usr/etc/hosts")).expect("hosts"),
        b"linked hosts\n"
    );
    assert!(!p.root().join("usr/etc/hostname").exists());
    let layer = layer_of(&store, "local/linked:1", &defaults()).expect("a layer");
    assert!(
        !layer.join("etc").exists(),
        "no /etc below a symlinked /etc"
    );
    assert!(!layer.join("usr").exists());
    assert!(layer.join("proc").is_dir());

    let q = prepare(&store, "local/owned:1", &work.join("o"), &defaults());
    let root = q.root();
    assert_eq!(
        std::fs::read(root.join("etc/hosts")).expect("hosts"),
        b"image hosts\n"
    );
    assert_eq!(
        std::fs::read_link(root.join("etc/hostname")).expect("hostname link"),
        Path::new("/nowhere")
    );
    assert_eq!(
        std::fs::read(root.join("proc")).expect("proc file"),
        b"not a dir"
    );
    // The whited-out /dev is missing from the image, so the layer provides an empty one.
    assert!(root.join("dev").is_dir());
    assert!(
        !root.join("dev/null").exists(),
        "the whiteout still hides the old /dev"
    );
    let layer = layer_of(&store, "local/owned:1", &defaults()).expect("a layer");
    let mut held: Vec<String> = Vec::new();
    for t in defaults() {
        let rel = t.path().strip_prefix("/").expect("absolute");
        if std::fs::symlink_metadata(layer.join(rel)).is_ok() {
            held.push(t.path().display().to_string());
        }
    }
    held.sort();
    assert_eq!(held, ["/dev", "/etc/resolv.conf", "/sys"]);
    // The hosts file the image has is what a write in the container changes.
    std::fs::write(root.join("etc/hosts"), b"changed\n").expect("write hosts");
    assert_eq!(
        std::fs::read(q.upper().join("etc/hosts")).expect("copied up"),
        b"changed\n"
    );
}

#[test]
fn an_image_lacking_no_target_gets_no_layer() {
    common::require_root("overlay mounts");
    let work = Scratch::new("mp-none");
    let store = Store::open(work.join("s")).expect("store");
    let layers = vec![common::layer(
        &[
            Entry::dir("proc"),
            Entry::dir("dev"),
            Entry::dir("sys"),
            Entry::dir("etc"),
            Entry::file("etc/hostname", b""),
            Entry::file("etc/hosts", b""),
            Entry::file("etc/resolv.conf", b""),
        ],
        Comp::Gzip,
    )];
    common::build_image(&store, "local/full:1", &layers, serde_json::json!({}));
    let p = prepare(&store, "local/full:1", &work.join("c"), &defaults());
    assert!(p.root().join("proc").is_dir());
    assert_eq!(layer_of(&store, "local/full:1", &defaults()), None);
}

#[test]
fn the_layer_is_built_once_and_reused() {
    common::require_root("overlay mounts");
    let work = Scratch::new("mp-reuse");
    let store = Store::open(work.join("s")).expect("store");
    busybox_like(&store, "local/bb:1");
    let first = prepare(&store, "local/bb:1", &work.join("a"), &defaults());
    let layer = layer_of(&store, "local/bb:1", &defaults()).expect("a layer");
    let stamp = |p: &Path| {
        let m = std::fs::symlink_metadata(p).expect("layer entry");
        (m.ino(), m.mtime(), m.mtime_nsec(), m.ctime_nsec())
    };
    let before = (
        stamp(&layer),
        stamp(&layer.join("proc")),
        stamp(&layer.join("etc/hosts")),
    );
    drop(first);
    // The target list in another order is the same layer.
    let mut shuffled = defaults();
    shuffled.reverse();
    let second = prepare(&store, "local/bb:1", &work.join("b"), &shuffled);
    assert!(second.root().join("proc").is_dir());
    let after = (
        stamp(&layer),
        stamp(&layer.join("proc")),
        stamp(&layer.join("etc/hosts")),
    );
    assert_eq!(before, after, "the layer was not rebuilt");
    let names: Vec<_> = std::fs::read_dir(store.root().join("mountpoints"))
        .expect("layers dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names.len(), 1, "one layer and no scratch: {names:?}");
    drop(second);
    // A layer gone missing (removed by hand) is rebuilt by the next start.
    std::fs::remove_dir_all(layer.parent().expect("published dir")).expect("remove layer");
    let third = prepare(&store, "local/bb:1", &work.join("c"), &defaults());
    assert!(third.root().join("proc").is_dir());
    assert!(layer.join("proc").is_dir(), "rebuilt");
}

#[test]
fn racing_builders_publish_one_whole_layer() {
    common::require_root("chown to root");
    let work = Scratch::new("mp-race");
    let store = Store::open(work.join("s")).expect("store");
    busybox_like(&store, "local/bb:1");
    let (top, lowers) = lowers(&store, "local/bb:1");
    let got: Vec<Option<PathBuf>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    store
                        .mount_point_layer(&top, &lowers, &defaults())
                        .expect("layer")
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().expect("builder")).collect()
    });
    let first = got[0].clone().expect("a layer");
    assert!(
        got.iter().all(|g| g.as_deref() == Some(first.as_path())),
        "{got:?}"
    );
    for rel in [
        "proc",
        "dev",
        "sys",
        "etc/hostname",
        "etc/hosts",
        "etc/resolv.conf",
    ] {
        assert!(first.join(rel).exists(), "{rel} in the layer");
    }
    let names: Vec<_> = std::fs::read_dir(store.root().join("mountpoints"))
        .expect("layers dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names.len(), 1, "the losers' scratch is gone: {names:?}");
}

#[test]
fn a_layer_that_cannot_be_built_does_not_fail_the_start() {
    common::require_root("overlay mounts");
    let work = Scratch::new("mp-fail");
    let store = Store::open(work.join("s")).expect("store");
    busybox_like(&store, "local/bb:1");
    // A file where the layers directory should be: every build fails.
    std::fs::write(store.root().join("mountpoints"), b"in the way").expect("blocker");
    let p = prepare(&store, "local/bb:1", &work.join("c"), &defaults());
    assert!(p.root().join("bin/sh").is_file(), "the image is mounted");
    assert!(!p.root().join("proc").exists(), "without the layer");
}

#[test]
fn gc_removes_the_layer_with_the_image_but_not_while_a_container_holds_it() {
    common::require_root("overlay mounts");
    let work = Scratch::new("mp-gc");
    let store = Store::open(work.join("s")).expect("store");
    busybox_like(&store, "local/bb:1");
    let p = prepare(&store, "local/bb:1", &work.join("c"), &defaults());
    let layer = layer_of(&store, "local/bb:1", &defaults()).expect("a layer");
    let published = layer.parent().expect("published dir").to_path_buf();
    // A stopped container: its rootfs is unmounted but it keeps its lease.
    let rootfs = p.rootfs.clone().expect("rootfs");
    kos_image::snapshot::overlay::unmount(&rootfs.path).expect("unmount");
    // Crash leftovers of a build go at the next gc.
    let scratch = store.root().join("mountpoints/tmp-1-2-3");
    std::fs::create_dir(&scratch).expect("scratch");
    store.remove_image("local/bb:1").expect("rmi");
    store.gc().expect("gc");
    assert!(published.is_dir(), "a leased chain keeps its layer");
    assert!(!scratch.exists(), "scratch removed");
    drop(p);
    store.gc().expect("gc");
    assert!(!published.exists(), "the layer went with the image");
    assert_eq!(
        std::fs::read_dir(store.root().join("mountpoints"))
            .expect("layers dir")
            .count(),
        0
    );
    // The permissions of the layers' directory itself do not matter to anyone else.
    let m = std::fs::metadata(store.root().join("mountpoints")).expect("dir");
    assert!(m.permissions().mode() & 0o002 == 0, "not world-writable");
}
