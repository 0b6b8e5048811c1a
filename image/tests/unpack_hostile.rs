#![allow(clippy::unwrap_used)]
//! A corpus of hostile layers: whatever each does, nothing outside the
//! unpack root may be created, changed or removed.

mod common;

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::tarw::{self, Entry};
use common::Scratch;
use kos_image::unpack::{unpack_layer, Limits, Mode, UnpackOptions};
use kos_image::Error;

struct Sandbox {
    dir: Scratch,
}

impl Sandbox {
    fn new() -> Self {
        let dir = Scratch::new("hostile");
        std::fs::create_dir(dir.join("root")).unwrap();
        std::fs::create_dir(dir.join("outside")).unwrap();
        std::fs::write(dir.join("outside/secret"), b"keep").unwrap();
        Sandbox { dir }
    }
    fn root(&self) -> std::path::PathBuf {
        self.dir.join("root")
    }
    fn outside(&self) -> String {
        self.dir.join("outside").display().to_string()
    }
    /// Nothing but root/ and the untouched outside/ may exist.
    fn check(&self, case: &str) {
        let mut top: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        top.sort();
        assert_eq!(
            top,
            vec!["outside", "root"],
            "{case}: something appeared next to the root"
        );
        let out: Vec<_> = std::fs::read_dir(self.dir.join("outside"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(out, vec!["secret"], "{case}: outside/ was changed");
        let m = std::fs::symlink_metadata(self.dir.join("outside/secret")).unwrap();
        assert!(m.is_file(), "{case}: secret replaced");
        assert_eq!(m.mode() & 0o7777, 0o644, "{case}: secret's mode changed");
        assert_eq!(m.nlink(), 1, "{case}: secret got a hard link");
        assert_eq!(
            std::fs::read(self.dir.join("outside/secret")).unwrap(),
            b"keep",
            "{case}: secret rewritten"
        );
        let parent = self.dir.path().parent().unwrap();
        for name in ["escape", "pwn", "kos-escape"] {
            assert!(
                !parent.join(name).exists(),
                "{case}: {name} created above the sandbox"
            );
        }
        assert!(
            !Path::new("/kos-escape").exists(),
            "{case}: /kos-escape created"
        );
    }
}

fn limits() -> Limits {
    Limits {
        max_bytes: 8 << 20,
        max_entries: 5000,
    }
}

fn run(case: &str, mode: Mode, entries: Vec<Entry>) -> Result<(), Error> {
    run_raw(case, mode, tarw::build(&entries))
}

fn run_raw(case: &str, mode: Mode, tar: Vec<u8>) -> Result<(), Error> {
    let sb = Sandbox::new();
    let opts = UnpackOptions {
        mode,
        limits: limits(),
        expected_diff_id: None,
    };
    let res = unpack_layer(&tar[..], &sb.root(), &opts).map(|_| ());
    sb.check(case);
    res
}

fn cases(out: &str) -> Vec<(&'static str, Vec<Entry>)> {
    let f = |p: &str| Entry::file(p, b"pwned");
    let o = |s: &str| format!("{out}{s}");
    vec![
        ("dotdot file", vec![f("../escape")]),
        ("double dotdot", vec![f("../../escape")]),
        ("inner dotdot", vec![f("a/../../escape")]),
        (
            "deep dotdot to outside",
            vec![f("a/b/../../../outside/pwn")],
        ),
        ("absolute path", vec![f("/kos-escape")]),
        ("absolute path to outside", vec![f(&o("/pwn"))]),
        (
            "abs symlink parent",
            vec![Entry::symlink("link", out), f("link/pwn")],
        ),
        (
            "rel symlink parent",
            vec![Entry::symlink("link", "../outside"), f("link/pwn")],
        ),
        (
            "many dotdot symlink",
            vec![
                Entry::symlink("link", &format!("../../../../../../..{out}")),
                f("link/pwn"),
            ],
        ),
        (
            "symlink chain",
            vec![
                Entry::symlink("a", "b"),
                Entry::symlink("b", "../outside"),
                f("a/pwn"),
            ],
        ),
        (
            "symlink to dir in subdir",
            vec![
                Entry::dir("d"),
                Entry::symlink("d/up", "../../outside"),
                f("d/up/pwn"),
            ],
        ),
        (
            "overwrite through final symlink",
            vec![Entry::symlink("link", &o("/secret")), f("link")],
        ),
        (
            "hardlink to symlink then write",
            vec![
                Entry::symlink("link", &o("/secret")),
                Entry::hardlink("hl", "link"),
                f("hl"),
            ],
        ),
        (
            "hardlink dotdot",
            vec![Entry::hardlink("hl", "../outside/secret")],
        ),
        (
            "hardlink absolute",
            vec![Entry::hardlink("hl", &o("/secret"))],
        ),
        (
            "hardlink via symlinked dir",
            vec![Entry::symlink("d", out), Entry::hardlink("hl", "d/secret")],
        ),
        (
            "hardlink created in symlinked dir",
            vec![
                f("x"),
                Entry::symlink("d", out),
                Entry::hardlink("d/pwn", "x"),
            ],
        ),
        (
            "mkdir through symlink",
            vec![Entry::symlink("link", out), Entry::dir("link/sub")],
        ),
        (
            "symlink through symlink",
            vec![
                Entry::symlink("link", out),
                Entry::symlink("link/pwn", "/etc/passwd"),
            ],
        ),
        (
            "fifo through symlink",
            vec![Entry::symlink("link", out), Entry::fifo("link/pwn")],
        ),
        (
            "device through symlink",
            vec![
                Entry::symlink("link", out),
                Entry::chardev("link/pwn", 1, 3),
            ],
        ),
        (
            "whiteout through symlink",
            vec![
                Entry::symlink("link", out),
                Entry::file("link/.wh.secret", b""),
            ],
        ),
        (
            "opaque through symlink",
            vec![
                Entry::symlink("link", out),
                Entry::file("link/.wh..wh..opq", b""),
            ],
        ),
        (
            "whiteout dotdot",
            vec![Entry::file("../outside/.wh.secret", b"")],
        ),
        ("whiteout of dotdot", vec![Entry::file(".wh...", b"")]),
        (
            "setuid through final symlink",
            vec![Entry::symlink("x", &o("/secret")), f("x").mode(0o4755)],
        ),
        (
            "chmod dir entry over symlink",
            vec![Entry::symlink("s", out), Entry::dir("s").mode(0o777)],
        ),
        (
            "chown via symlink dir entry",
            vec![
                Entry::symlink("s", &o("/secret")),
                Entry::dir("s").owner(1234, 1234),
            ],
        ),
        (
            "magic link",
            vec![
                Entry::symlink("p", &format!("/proc/self/root{out}")),
                f("p/pwn"),
            ],
        ),
        (
            "proc fd",
            vec![Entry::symlink("p", "/proc/self/cwd"), f("p/pwn")],
        ),
        (
            "device nodes stay inside",
            vec![Entry::chardev("mem", 1, 1), Entry::blockdev("disk", 8, 0)],
        ),
        ("setuid file stays inside", vec![f("suid").mode(0o6755)]),
        (
            "overlay xattr injection",
            vec![f("x").xattr("trusted.overlay.redirect", b"/../outside")],
        ),
        (
            "hardlink to directory",
            vec![Entry::dir("d"), Entry::hardlink("hl", "d")],
        ),
        (
            "hardlink to missing",
            vec![Entry::hardlink("hl", "nothing")],
        ),
        (
            "root entries",
            vec![
                Entry::dir("."),
                Entry::dir("./"),
                Entry::dir("/"),
                Entry::dir(".."),
            ],
        ),
        (
            "replace dir by symlink then write",
            vec![
                Entry::dir("d"),
                f("d/a"),
                Entry::symlink("d", out),
                f("d/pwn"),
            ],
        ),
    ]
}

#[test]
fn hostile_corpus_stays_inside_root() {
    common::require_root("device nodes and ownership");
    // The sandbox path is only known once created; build cases per sandbox.
    let probe = Sandbox::new();
    let out = probe.outside();
    let n = cases(&out).len();
    assert!(n >= 30, "corpus has {n} cases");
    drop(probe);
    let mut count = 0;
    for mode in [Mode::Overlay, Mode::Apply] {
        for i in 0..n {
            let sb = Sandbox::new();
            let out = sb.outside();
            let (name, entries) = cases(&out).swap_remove(i);
            let opts = UnpackOptions {
                mode,
                limits: limits(),
                expected_diff_id: None,
            };
            let res = unpack_layer(&tarw::build(&entries)[..], &sb.root(), &opts);
            sb.check(&format!("{name} ({mode:?})"));
            if let Err(e) = &res {
                // Errors must say what is wrong in one line.
                let msg = e.to_string();
                assert!(
                    !msg.is_empty() && !msg.contains('\n'),
                    "{name}: bad error text {msg:?}"
                );
            }
            count += 1;
        }
    }
    assert!(count >= 60);
}

#[test]
fn inside_effects_of_hostile_entries() {
    common::require_root("ownership and device entries");
    let sb = Sandbox::new();
    let out = sb.outside();
    let entries = vec![
        Entry::file("../escape", b"a"),
        Entry::file(&format!("{out}/pwn"), b"b"),
        Entry::symlink("link", &out),
        Entry::file("link/pwn2", b"c"),
        Entry::file("suid", b"s").mode(0o4755),
        Entry::chardev("mem", 1, 1),
    ];
    let opts = UnpackOptions {
        mode: Mode::Overlay,
        limits: limits(),
        expected_diff_id: None,
    };
    unpack_layer(&tarw::build(&entries)[..], &sb.root(), &opts).unwrap();
    sb.check("inside effects");
    let root = sb.root();
    // `..` is clamped at the root, absolute paths are rooted in it, and a
    // symlinked parent is followed as if the root were `/`.
    assert_eq!(std::fs::read(root.join("escape")).unwrap(), b"a");
    assert_eq!(
        std::fs::read(root.join(format!(".{out}/pwn"))).unwrap(),
        b"b"
    );
    assert_eq!(
        std::fs::read(root.join(format!(".{out}/pwn2"))).unwrap(),
        b"c"
    );
    assert_eq!(
        std::fs::symlink_metadata(root.join("suid")).unwrap().mode() & 0o7777,
        0o4755
    );
    let m = std::fs::symlink_metadata(root.join("mem")).unwrap();
    assert_eq!(m.mode() & libc::S_IFMT, libc::S_IFCHR);
}

#[test]
fn bombs_hit_limits() {
    // Size bomb: 64 MiB of zeros compress to almost nothing.
    let big = vec![0u8; 64 << 20];
    let tar = tarw::build(&[Entry::file("zeros", &big)]);
    let gz = tarw::gzip(&tar);
    assert!(gz.len() < 1 << 20);
    let e = run_raw("gzip bomb", Mode::Overlay, gz).unwrap_err();
    assert!(
        matches!(e, Error::LimitExceeded { unit: "bytes", .. }),
        "{e}"
    );

    // Declared size far beyond the limit, without the data.
    let mut huge = Entry::file("huge", b"");
    huge.size_override = Some(1 << 32);
    let e = run("declared size bomb", Mode::Overlay, vec![huge]).unwrap_err();
    assert!(matches!(e, Error::LimitExceeded { .. }), "{e}");

    // Entry-count bomb.
    let many: Vec<Entry> = (0..6000)
        .map(|i| Entry::file(&format!("f{i}"), b""))
        .collect();
    let e = run("entry bomb", Mode::Overlay, many).unwrap_err();
    assert!(
        matches!(
            e,
            Error::LimitExceeded {
                unit: "entries",
                ..
            }
        ),
        "{e}"
    );

    // Path bomb: a name longer than PATH_MAX, and a very deep tree.
    let long = "a/".repeat(3000) + "f";
    let e = run("path bomb", Mode::Overlay, vec![Entry::file(&long, b"x")]);
    assert!(e.is_err());
    let long_target = "t".repeat(5000);
    let e = run(
        "long symlink target",
        Mode::Overlay,
        vec![Entry::symlink("l", &long_target)],
    );
    assert!(e.is_err());
}

#[test]
fn truncated_layers_fail_cleanly() {
    let tar = tarw::build(&[Entry::file("a", &[7u8; 10000]), Entry::file("b", b"x")]);
    for cut in [100, 700, 5000, tar.len() - 1030] {
        let e = run_raw("truncated tar", Mode::Overlay, tar[..cut].to_vec()).unwrap_err();
        assert!(matches!(e, Error::MalformedLayer(_)), "cut {cut}: {e}");
    }
    let gz = tarw::gzip(&tar);
    let e = run_raw("truncated gzip", Mode::Overlay, gz[..gz.len() / 2].to_vec()).unwrap_err();
    assert!(matches!(e, Error::MalformedLayer(_)), "{e}");
    let zs = tarw::zstd(&tar);
    assert!(run_raw("truncated zstd", Mode::Overlay, zs[..zs.len() - 4].to_vec()).is_err());
    let mut lying = Entry::file("short", b"abc");
    lying.size_override = Some(4000);
    assert!(run("short data", Mode::Overlay, vec![lying]).is_err());
}
