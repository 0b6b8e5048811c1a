//! Helpers of the build tests: a store with a busybox base image, contexts
//! as tars, builds that record their progress, and running a built image
//! with the release kosrun.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use kos_image::build::{BuildError, BuildEvent, BuildOptions, BuildResult, Builder};
use kos_image::config_to_spec::{runtime_config, Overrides};
use kos_image::{ImageRef, RootfsStrategy, Store};

use crate::common::tarw::Entry;
use crate::common::{self, Comp, Scratch};

pub const BASE: &str = "kbt/busybox:1";

/// The release kosrun (`cargo build --release -p kosrun`; `make test` builds it first).
pub fn kosrun() -> PathBuf {
    if let Some(p) = kos_testsupport::kosrun_from_env() {
        return p;
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let p = target.join("release/kosrun");
    assert!(
        p.is_file(),
        "{} is missing: run `cargo build --release -p kosrun` first (make test does)",
        p.display()
    );
    p
}

pub fn canonical(name: &str) -> String {
    ImageRef::parse(name).expect("reference").to_string()
}

/// The cgroup parent of this test binary's build steps (removed when an Env goes).
pub fn cgroup_parent() -> String {
    format!("kos-test-build-{}", std::process::id())
}

/// A store under a scratch dir with the busybox base image tagged `BASE`.
pub struct Env {
    pub dir: Scratch,
    pub store: Arc<Store>,
    pub builder: Builder,
}

impl Env {
    pub fn new() -> Self {
        common::require_root("overlay mounts and kosrun");
        let dir = Scratch::new("build");
        let store = Arc::new(Store::open(dir.join("store")).expect("store"));
        let mut entries = common::busybox_entries();
        for applet in [
            "mkdir", "rm", "touch", "id", "pwd", "env", "test", "wc", "ln", "printf", "stat",
        ] {
            entries.push(Entry::symlink(&format!("bin/{applet}"), "busybox"));
        }
        entries.push(Entry::dir("home"));
        entries.push(Entry::dir("home/app").owner(1000, 1000));
        let layer = common::layer(&entries, Comp::Gzip);
        common::build_image(
            &store,
            &canonical(BASE),
            &[layer],
            serde_json::json!({"Env": ["PATH=/bin", "BASE_ENV=yes"], "Cmd": ["sh"]}),
        );
        let builder = Builder::new(store.clone())
            .with_kosrun(kosrun())
            .with_cgroup_parent(cgroup_parent());
        Env {
            dir,
            store,
            builder,
        }
    }

    /// Builds a context made of `files` (path, content) plus `Dockerfile`.
    pub fn build(
        &self,
        dockerfile: &str,
        files: &[Entry],
        opts: &BuildOptions,
    ) -> (Result<BuildResult, BuildError>, Vec<BuildEvent>) {
        let mut entries = files.to_vec();
        entries.push(Entry::file("Dockerfile", dockerfile.as_bytes()));
        let tar = common::tarw::build(&entries);
        let mut events = Vec::new();
        let r = self.builder.build(&tar[..], opts, &mut |e| events.push(e));
        (r, events)
    }

    pub fn config(&self, tag: &str) -> serde_json::Value {
        let img = self.store.image(&canonical(tag)).expect("built image");
        serde_json::from_slice(&img.config_bytes).expect("config json")
    }

    /// Reads a file of the image through a fresh rootfs of it.
    pub fn read(&self, tag: &str, path: &str) -> Option<Vec<u8>> {
        let dir = self.dir.join(&common::unique("rootfs"));
        let id = common::unique("read");
        let rootfs = self
            .store
            .prepare_rootfs(&canonical(tag), &id, &dir, RootfsStrategy::Overlay)
            .expect("rootfs");
        let out = std::fs::read(rootfs.path.join(path.trim_start_matches('/'))).ok();
        self.store.release_rootfs(&rootfs).expect("release");
        out
    }

    /// Runs the image as it is (its entrypoint/cmd, env, user, cwd) with
    /// kosrun and returns (exit code, stdout).
    pub fn run_image(&self, tag: &str) -> (i32, String) {
        let dir = self.dir.join(&common::unique("run"));
        let id = common::unique("run");
        let rootfs = self
            .store
            .prepare_rootfs(&canonical(tag), &id, &dir, RootfsStrategy::Overlay)
            .expect("rootfs");
        let img = self.store.image(&canonical(tag)).expect("image");
        let rc = runtime_config(&img.config, &rootfs.path, &Overrides::default())
            .expect("runtime config");
        let cfg = serde_json::json!({
            "ociVersion": "1.0.2",
            "process": {"terminal": false, "args": rc.args, "env": rc.env, "cwd": rc.cwd,
                        "user": {"uid": rc.uid, "gid": rc.gid}},
            "root": {"path": rootfs.path, "readonly": false},
            "hostname": "t",
            "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
            "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}]},
        });
        let bundle = dir.join("bundle");
        std::fs::create_dir_all(&bundle).expect("bundle");
        std::fs::write(bundle.join("config.json"), cfg.to_string()).expect("config");
        let state = dir.join("state");
        let out = Command::new(kosrun())
            .arg("--root")
            .arg(&state)
            .args(["run", "--bundle"])
            .arg(&bundle)
            .arg(&id)
            .output()
            .expect("kosrun");
        self.store.release_rootfs(&rootfs).expect("release");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    /// Nothing of a build is left: no mounts below the store, no build dirs.
    pub fn assert_clean(&self) {
        let root = self.store.root().to_path_buf();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        for l in mounts.lines() {
            if let Some(t) = l.split(' ').nth(4) {
                assert!(!Path::new(t).starts_with(&root), "mount left behind: {t}");
            }
        }
        let tmp = root.join("build-tmp");
        if tmp.exists() {
            let left: Vec<_> = std::fs::read_dir(&tmp).expect("build-tmp").collect();
            assert!(left.is_empty(), "build directories left: {left:?}");
        }
    }
}

pub fn opts(tag: &str) -> BuildOptions {
    BuildOptions {
        tags: vec![tag.to_string()],
        ..BuildOptions::default()
    }
}

pub fn stream(events: &[BuildEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            BuildEvent::Stream(s) => Some(s.as_str()),
            BuildEvent::Aux { .. } => None,
        })
        .collect()
}

/// A static helper that sets and prints extended attributes (busybox has no
/// setfattr): `xattr set PATH NAME HEX` and `xattr get PATH NAME` (prints hex).
pub fn xattr_helper(dir: &Path) -> Vec<u8> {
    const SRC: &str = r#"
#include <stdio.h>
#include <string.h>
#include <sys/xattr.h>
static int nib(char c) { return c <= '9' ? c - '0' : (c | 32) - 'a' + 10; }
int main(int argc, char **argv) {
    unsigned char buf[4096];
    if (argc == 5 && !strcmp(argv[1], "set")) {
        size_t n = strlen(argv[4]) / 2;
        if (n > sizeof buf) return 2;
        for (size_t i = 0; i < n; i++) buf[i] = nib(argv[4][2 * i]) << 4 | nib(argv[4][2 * i + 1]);
        if (setxattr(argv[2], argv[3], buf, n, 0)) { perror("setxattr"); return 1; }
        return 0;
    }
    if (argc == 4 && !strcmp(argv[1], "get")) {
        ssize_t n = getxattr(argv[2], argv[3], buf, sizeof buf);
        if (n < 0) { perror("getxattr"); return 1; }
        for (ssize_t i = 0; i < n; i++) printf("%02x", buf[i]);
        printf("\n");
        return 0;
    }
    fprintf(stderr, "usage: xattr set PATH NAME HEX | get PATH NAME\n");
    return 2;
}
"#;
    let src = dir.join("xattr.c");
    let bin = dir.join("xattr");
    std::fs::write(&src, SRC).expect("helper source");
    let out = Command::new("gcc")
        .args(["-static", "-O1", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .expect("gcc (build-essential) is installed");
    assert!(
        out.status.success(),
        "compiling the xattr helper: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read(&bin).expect("helper binary")
}

/// Extended attributes of one entry: (name, value).
pub type Xattrs = Vec<(String, Vec<u8>)>;

/// The entries of a layer blob (any compression): path -> PAX xattrs.
pub fn layer_xattrs(store: &Store, digest: &kos_image::Digest) -> Vec<(String, Xattrs)> {
    let blob = store.open_blob(digest).expect("layer blob");
    let (_, r) = kos_image::unpack::compression::decompress(blob).expect("decompress");
    let mut a = tar::Archive::new(r);
    let mut out = Vec::new();
    for e in a.entries().expect("tar") {
        let mut e = e.expect("entry");
        let path = e.path().expect("path").to_string_lossy().into_owned();
        let mut x = Vec::new();
        if let Some(pax) = e.pax_extensions().expect("pax") {
            for ext in pax {
                let ext = ext.expect("pax record");
                if let Some(k) = ext.key().expect("key").strip_prefix("SCHILY.xattr.") {
                    x.push((k.to_string(), ext.value_bytes().to_vec()));
                }
            }
        }
        out.push((path, x));
    }
    out
}

impl Drop for Env {
    /// The steps' cgroups went with their containers; the shared parent goes once empty
    /// (a step of a test still running keeps it busy: rmdir fails, it is retried later).
    fn drop(&mut self) {
        let parent = cgroup_parent();
        for e in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = std::fs::remove_dir(e.path().join(&parent));
        }
        let _ = std::fs::remove_dir(std::path::Path::new("/sys/fs/cgroup").join(&parent));
    }
}
