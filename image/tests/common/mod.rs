//! Shared test helpers: scratch dirs, a throwaway docker-registry, image
//! builders and tree comparison.

#![allow(dead_code)]

pub mod tarw;
pub mod token;

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use kos_image::digest::Digest;
use kos_image::manifest::{self, Platform};
use kos_image::{ImageRecord, Store};

static COUNTER: AtomicU64 = AtomicU64::new(0);

pub fn unique(tag: &str) -> String {
    format!(
        "kos-image-{tag}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A scratch directory removed on drop (after unmounting anything below it).
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(unique(tag));
        std::fs::create_dir_all(&p).expect("create scratch dir");
        Scratch(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Unmount anything a failed test left mounted below us, deepest first.
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mountinfo") {
            let mut targets: Vec<&str> = mounts
                .lines()
                .filter_map(|l| l.split(' ').nth(4))
                .filter(|t| Path::new(t).starts_with(&self.0))
                .collect();
            targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
            for t in targets {
                let c = std::ffi::CString::new(t).expect("path");
                // SAFETY: valid C string.
                unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
            }
        }
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A docker-registry on a free loopback port, killed on drop.
pub struct TestRegistry {
    process: kos_testsupport::RegistryProcess,
    pub addr: String,
    pub dir: Scratch,
}

impl TestRegistry {
    pub fn start() -> Self {
        Self::start_in(Scratch::new("registry"), None)
    }

    /// Starts on the given storage dir (to restart a killed registry).
    pub fn start_in(dir: Scratch, port: Option<u16>) -> Self {
        Self::start_with(dir, port, "")
    }

    /// Starts with extra top-level YAML (e.g. an `auth:` section).
    pub fn start_with(dir: Scratch, port: Option<u16>, extra: &str) -> Self {
        let storage = dir.join("storage");
        std::fs::create_dir_all(&storage).expect("storage");
        let process =
            kos_testsupport::RegistryProcess::spawn(&dir.join("config.yml"), &storage, port, extra);
        TestRegistry {
            addr: process.addr(),
            process,
            dir,
        }
    }

    pub fn port(&self) -> u16 {
        self.process.port()
    }

    pub fn reference(&self, repo_tag: &str) -> String {
        format!("{}/{}", self.addr, repo_tag)
    }

    /// Kills the registry, keeping its storage; returns the storage dir.
    pub fn kill(self) -> (Scratch, u16) {
        let port = self.port();
        drop(self.process);
        (self.dir, port)
    }
}

/// Compression for built layers.
#[derive(Clone, Copy, Debug)]
pub enum Comp {
    None,
    Gzip,
    Zstd,
}

pub struct BuiltLayer {
    pub blob: Vec<u8>,
    pub media_type: &'static str,
    pub diff_id: Digest,
}

pub fn layer(entries: &[tarw::Entry], comp: Comp) -> BuiltLayer {
    let tar = tarw::build(entries);
    let diff_id = Digest::of(&tar);
    let (blob, media_type) = match comp {
        Comp::None => (tar, "application/vnd.oci.image.layer.v1.tar"),
        Comp::Gzip => (
            tarw::gzip(&tar),
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ),
        Comp::Zstd => (
            tarw::zstd(&tar),
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
    };
    BuiltLayer {
        blob,
        media_type,
        diff_id,
    }
}

/// Config JSON for layers.
pub fn config_json(
    layers: &[BuiltLayer],
    platform: &Platform,
    extra: serde_json::Value,
) -> Vec<u8> {
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.to_string()).collect();
    let mut v = serde_json::json!({
        "architecture": platform.architecture,
        "os": platform.os,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": extra,
    });
    if let Some(var) = &platform.variant {
        v["variant"] = serde_json::Value::String(var.clone());
    }
    serde_json::to_vec(&v).expect("json")
}

/// Writes blobs and the manifest into `store`; returns (manifest digest, size).
pub fn store_manifest(store: &Store, layers: &[BuiltLayer], config: &[u8]) -> (Digest, u64) {
    let cd = store.put_blob(config).expect("config blob");
    let mut ls = Vec::new();
    for l in layers {
        let d = store.put_blob(&l.blob).expect("layer blob");
        ls.push(serde_json::json!({"mediaType": l.media_type, "digest": d.to_string(), "size": l.blob.len()}));
    }
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": manifest::OCI_MANIFEST,
        "config": {"mediaType": manifest::OCI_CONFIG, "digest": cd.to_string(), "size": config.len()},
        "layers": ls,
    });
    let body = serde_json::to_vec(&m).expect("json");
    let md = Digest::of(&body);
    store
        .put_manifest(&md, manifest::OCI_MANIFEST, &body)
        .expect("manifest");
    (md, body.len() as u64)
}

/// Builds a single-platform image named `name` in `store`.
pub fn build_image(
    store: &Store,
    name: &str,
    layers: &[BuiltLayer],
    extra: serde_json::Value,
) -> ImageRecord {
    let cfg = config_json(layers, &Platform::host(), extra);
    let (md, _) = store_manifest(store, layers, &cfg);
    store.tag_image(name, &md, &md).expect("tag")
}

/// Builds an index over one image per platform; `name` selects `select`.
pub fn build_index(
    store: &Store,
    name: &str,
    per_platform: &[(Platform, Vec<BuiltLayer>)],
    select: usize,
) -> ImageRecord {
    let mut descs = Vec::new();
    let mut digests = Vec::new();
    for (p, layers) in per_platform {
        let cfg = config_json(layers, p, serde_json::json!({}));
        let (md, size) = store_manifest(store, layers, &cfg);
        let mut plat = serde_json::json!({"architecture": p.architecture, "os": p.os});
        if let Some(v) = &p.variant {
            plat["variant"] = serde_json::Value::String(v.clone());
        }
        descs.push(serde_json::json!({"mediaType": manifest::OCI_MANIFEST, "digest": md.to_string(), "size": size, "platform": plat}));
        digests.push(md);
    }
    let idx = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": manifest::OCI_INDEX, "manifests": descs})).expect("json");
    let id = Digest::of(&idx);
    store
        .put_manifest(&id, manifest::OCI_INDEX, &idx)
        .expect("index");
    store.tag_image(name, &id, &digests[select]).expect("tag")
}

/// The busybox-static binary and a few applet links, as layer entries.
pub fn busybox_entries() -> Vec<tarw::Entry> {
    let bb = std::fs::read("/bin/busybox").expect("busybox-static is installed");
    let mut v = vec![
        tarw::Entry::dir("bin"),
        tarw::Entry::file("bin/busybox", &bb).mode(0o755),
        tarw::Entry::dir("etc"),
        tarw::Entry::file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000::/home/app:/bin/sh\n"),
        tarw::Entry::file("etc/group", b"root:x:0:\nnogroup:x:65534:\napp:x:1000:\nwheel:x:10:app\n"),
        tarw::Entry::dir("tmp").mode(0o1777),
    ];
    for applet in ["sh", "ls", "cat", "echo"] {
        v.push(tarw::Entry::symlink(&format!("bin/{applet}"), "busybox"));
    }
    v
}

/// One node of a tree listing.
#[derive(Debug, PartialEq, Eq, Clone)]
pub struct Node {
    pub kind: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub mtime: i64,
    pub content: Option<Vec<u8>>,
    pub link: Option<PathBuf>,
}

/// Lists a tree (path -> metadata and content) without following symlinks.
pub fn tree(root: &Path) -> BTreeMap<PathBuf, Node> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Node>) {
    let mut ents: Vec<_> = std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry"))
        .collect();
    ents.sort_by_key(|e| e.file_name());
    for e in ents {
        let p = e.path();
        let m = std::fs::symlink_metadata(&p).expect("lstat");
        let kind = m.mode() & libc::S_IFMT;
        let node = Node {
            kind,
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            rdev: m.rdev(),
            mtime: if kind == libc::S_IFDIR { 0 } else { m.mtime() },
            content: (kind == libc::S_IFREG).then(|| std::fs::read(&p).expect("read")),
            link: (kind == libc::S_IFLNK).then(|| std::fs::read_link(&p).expect("readlink")),
        };
        out.insert(p.strip_prefix(root).expect("prefix").to_path_buf(), node);
        if kind == libc::S_IFDIR {
            walk(root, &p, out);
        }
    }
}

/// Asserts two trees are identical, naming the first difference.
pub fn assert_same_tree(a: &Path, b: &Path) {
    let ta = tree(a);
    let tb = tree(b);
    for (p, n) in &ta {
        match tb.get(p) {
            None => panic!("{} missing from {}", p.display(), b.display()),
            Some(m) => assert_eq!(n, m, "{} differs", p.display()),
        }
    }
    for p in tb.keys() {
        assert!(
            ta.contains_key(p),
            "{} only in {}",
            p.display(),
            b.display()
        );
    }
}

pub fn is_root() -> bool {
    // SAFETY: no arguments.
    unsafe { libc::geteuid() == 0 }
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Records that the calling test cannot run here because the machine lacks a kernel feature
/// (`reason` names it). A missing tool is never a skip: scripts/deps.sh installs it. `make
/// test` points KOS_TEST_SKIPS at a directory and counts the lines written there.
pub fn skip(reason: &str) {
    let test = std::thread::current()
        .name()
        .unwrap_or("unnamed")
        .to_string();
    let line = format!("{} {test}: {reason}\n", env!("CARGO_PKG_NAME"));
    eprint!("KOS-SKIP {line}");
    if let Some(dir) = std::env::var_os("KOS_TEST_SKIPS") {
        let p = std::path::Path::new(&dir).join("skips.log");
        // One O_APPEND write per line: concurrent tests never interleave.
        let res = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
        if let Err(e) = res {
            panic!("recording the skip in {}: {e}", p.display());
        }
    }
}

/// Fails the test unless it runs as root (`make test` does): `why` says what needs it.
pub fn require_root(why: &str) {
    assert!(
        is_root(),
        "this test needs root ({why}): run it as root, as make test does"
    );
}
