#![allow(clippy::unwrap_used)]
//! Layer unpack preserves what images carry, in both whiteout modes.

mod common;

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use common::tarw::{self, Entry};
use common::{Comp, Scratch};
use kos_image::unpack::{unpack_layer, Compression, Mode, UnpackOptions};
use kos_image::{Digest, Error};

fn opts(mode: Mode) -> UnpackOptions {
    UnpackOptions {
        mode,
        ..Default::default()
    }
}

fn rich_entries() -> Vec<Entry> {
    vec![
        Entry::dir("etc").mtime(1_500_000_000),
        Entry::file("etc/conf", b"hello")
            .mode(0o640)
            .owner(1000, 1001)
            .mtime(1_400_000_000),
        Entry::hardlink("etc/conf-link", "etc/conf"),
        Entry::symlink("etc/abs", "/etc/conf"),
        Entry::symlink("rel", "etc/conf"),
        Entry::fifo("pipe").mode(0o600),
        Entry::chardev("null", 1, 3).mode(0o666),
        Entry::blockdev("loop9", 7, 9),
        Entry::file("bin/suid", b"#!").mode(0o4755),
        Entry::file("xa", b"x").xattr("user.kos", b"v1"),
        Entry::dir("deep/er/est"),
    ]
}

#[test]
fn preserves_metadata_in_every_compression() {
    common::require_root("devices and ownership");
    for comp in [Comp::None, Comp::Gzip, Comp::Zstd] {
        let dir = Scratch::new("features");
        let l = common::layer(&rich_entries(), comp);
        let mut o = opts(Mode::Overlay);
        o.expected_diff_id = Some(l.diff_id.clone());
        let stats = unpack_layer(&l.blob[..], dir.path(), &o).unwrap();
        assert_eq!(stats.diff_id, l.diff_id);
        assert_eq!(
            stats.compression,
            match comp {
                Comp::None => Compression::None,
                Comp::Gzip => Compression::Gzip,
                Comp::Zstd => Compression::Zstd,
            }
        );
        let r = dir.path();
        let conf = std::fs::metadata(r.join("etc/conf")).unwrap();
        assert_eq!(
            (conf.mode() & 0o7777, conf.uid(), conf.gid()),
            (0o640, 1000, 1001)
        );
        assert_eq!(conf.mtime(), 1_400_000_000);
        assert_eq!(conf.nlink(), 2);
        assert_eq!(
            std::fs::metadata(r.join("etc/conf-link")).unwrap().ino(),
            conf.ino()
        );
        assert_eq!(
            std::fs::read_link(r.join("etc/abs")).unwrap().to_str(),
            Some("/etc/conf")
        );
        assert_eq!(
            std::fs::read_link(r.join("rel")).unwrap().to_str(),
            Some("etc/conf")
        );
        assert!(std::fs::symlink_metadata(r.join("pipe"))
            .unwrap()
            .file_type()
            .is_fifo());
        let null = std::fs::symlink_metadata(r.join("null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), libc::makedev(1, 3));
        assert!(std::fs::symlink_metadata(r.join("loop9"))
            .unwrap()
            .file_type()
            .is_block_device());
        assert_eq!(
            std::fs::metadata(r.join("bin/suid")).unwrap().mode() & 0o7777,
            0o4755
        );
        // Directory mtimes survive the children created after them.
        assert_eq!(
            std::fs::metadata(r.join("etc")).unwrap().mtime(),
            1_500_000_000
        );
        assert!(r.join("deep/er/est").is_dir());
        let mut buf = [0u8; 8];
        let p = std::ffi::CString::new(r.join("xa").to_str().unwrap()).unwrap();
        let name = std::ffi::CString::new("user.kos").unwrap();
        // SAFETY: valid C strings and buffer.
        let n = unsafe {
            libc::getxattr(
                p.as_ptr(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        assert_eq!(n, 2, "user xattr kept");
        assert_eq!(&buf[..2], b"v1");
    }
}

fn xattr(path: &std::path::Path, name: &str) -> Option<Vec<u8>> {
    let p = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = [0u8; 64];
    // SAFETY: valid C strings and buffer.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (r >= 0).then(|| buf[..r as usize].to_vec())
}

#[test]
fn whiteouts_in_overlay_and_apply_modes() {
    common::require_root("whiteout devices and trusted xattrs");
    let lower = vec![
        Entry::dir("keep"),
        Entry::file("keep/a", b"a"),
        Entry::file("gone", b"g"),
        Entry::dir("opq"),
        Entry::file("opq/old", b"o"),
    ];
    let upper = vec![
        Entry::file(".wh.gone", b""),
        Entry::dir("opq"),
        Entry::file("opq/.wh..wh..opq", b""),
        Entry::file("opq/new", b"n"),
        Entry::file(".wh..wh.plnk", b""),
    ];
    // Overlay mode: markers for overlayfs.
    let dir = Scratch::new("wh-overlay");
    unpack_layer(&tarw::build(&upper)[..], dir.path(), &opts(Mode::Overlay)).unwrap();
    let wh = std::fs::symlink_metadata(dir.join("gone")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert_eq!(
        xattr(&dir.join("opq"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(dir.join("opq/new").exists());
    assert!(!dir.join(".wh.gone").exists() && !dir.join(".wh..wh.plnk").exists());

    // Apply mode: deletions on the merged tree.
    let dir = Scratch::new("wh-apply");
    unpack_layer(&tarw::build(&lower)[..], dir.path(), &opts(Mode::Apply)).unwrap();
    unpack_layer(&tarw::build(&upper)[..], dir.path(), &opts(Mode::Apply)).unwrap();
    assert!(!dir.join("gone").exists());
    assert!(!dir.join("opq/old").exists());
    assert_eq!(std::fs::read(dir.join("opq/new")).unwrap(), b"n");
    assert_eq!(std::fs::read(dir.join("keep/a")).unwrap(), b"a");
}

#[test]
fn replaces_entries_like_later_layers_do() {
    let dir = Scratch::new("replace");
    let l1 = vec![
        Entry::dir("d"),
        Entry::file("d/x", b"1"),
        Entry::file("f", b"file"),
        Entry::symlink("s", "f"),
    ];
    let l2 = vec![
        Entry::file("d", b"now a file"),
        Entry::dir("f"),
        Entry::file("s", b"was a link"),
    ];
    unpack_layer(&tarw::build(&l1)[..], dir.path(), &opts(Mode::Apply)).unwrap();
    unpack_layer(&tarw::build(&l2)[..], dir.path(), &opts(Mode::Apply)).unwrap();
    assert_eq!(std::fs::read(dir.join("d")).unwrap(), b"now a file");
    assert!(dir.join("f").is_dir());
    assert!(std::fs::symlink_metadata(dir.join("s")).unwrap().is_file());
}

#[test]
fn diff_id_mismatch_is_reported() {
    let dir = Scratch::new("diffid");
    let tar = tarw::build(&[Entry::file("a", b"a")]);
    let o = UnpackOptions {
        expected_diff_id: Some(Digest::of(b"something else")),
        ..Default::default()
    };
    let e = unpack_layer(&tar[..], dir.path(), &o).unwrap_err();
    assert!(matches!(e, Error::DigestMismatch { .. }), "{e}");
    assert!(e.to_string().contains("diff id"));
}
