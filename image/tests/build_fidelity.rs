#![allow(clippy::unwrap_used)]
//! Builds that must come out as Docker's do: build containers confined by
//! the default seccomp profile and capability set, extended attributes in
//! layers, ADD of local archives in every compression, FROM --platform and
//! the automatic platform ARGs. Real builds from busybox-static, asserted
//! from inside containers and on the layers.

mod build_support;
mod common;

use std::io::Write;

use build_support::{canonical, opts, stream, Env, BASE};
use common::tarw::Entry;
use common::Comp;
use kos_image::build::{BuildError, NetworkMode};
use kos_image::manifest::Platform;

fn no_net(tag: &str) -> kos_image::build::BuildOptions {
    let mut o = opts(tag);
    o.network = NetworkMode::None;
    o
}

/// Docker's default capability set as /proc/self/status prints it.
const DOCKER_CAPS: &str = "00000000a80425fb";

#[test]
fn build_containers_get_the_default_seccomp_profile_and_capabilities() {
    let env = Env::new();
    let df = format!(
        "FROM {BASE}\n\
         RUN busybox grep -E '^(Seccomp|CapEff|CapBnd|CapPrm|NoNewPrivs):' /proc/self/status > /status\n"
    );
    let (r, ev) = env.build(&df, &[], &no_net("kbt/conf:1"));
    r.unwrap_or_else(|e| panic!("a normal RUN fails: {e}\n{}", stream(&ev)));
    let status = String::from_utf8(env.read("kbt/conf:1", "/status").unwrap()).unwrap();
    for want in [
        "Seccomp:\t2\n".to_string(),
        "NoNewPrivs:\t0\n".to_string(),
        format!("CapEff:\t{DOCKER_CAPS}\n"),
        format!("CapPrm:\t{DOCKER_CAPS}\n"),
        format!("CapBnd:\t{DOCKER_CAPS}\n"),
    ] {
        assert!(status.contains(&want), "{want:?} not in {status:?}");
    }

    // The kernel lets this very command make a user namespace: a refusal
    // in the build comes from the profile (unshare needs CAP_SYS_ADMIN there).
    let host = std::process::Command::new("/bin/busybox")
        .args(["unshare", "-U", "true"])
        .status()
        .unwrap();
    if !host.success() {
        common::skip("the kernel refuses user namespaces (user.max_user_namespaces)");
        return;
    }
    for (cmd, needle) in [
        ("busybox unshare -U true", "Operation not permitted"),
        // mount needs CAP_SYS_ADMIN, which build containers do not hold.
        ("busybox mount -t tmpfs none /mnt", "denied"),
    ] {
        let df = format!("FROM {BASE}\nRUN {cmd}\n");
        let (r, ev) = env.build(&df, &[], &no_net("kbt/conf:2"));
        match r {
            Err(BuildError::RunFailed {
                line, code, output, ..
            }) => {
                assert_eq!(line, 2);
                assert_ne!(code, 0);
                assert!(
                    output.contains(needle) || output.contains("Operation not permitted"),
                    "{cmd}: {output}"
                );
            }
            other => panic!("{cmd} in a RUN step: {other:?}\n{}", stream(&ev)),
        }
    }
    assert!(env.store.image(&canonical("kbt/conf:2")).is_err());
    env.assert_clean();
}

/// vfs_cap_data revision 2, effective, permitted CAP_NET_BIND_SERVICE.
const CAP_V2: &str = "0100000200040000000000000000000000000000";

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn lgetxattr(path: &std::path::Path, name: &str) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let p = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid C strings and buffer.
    let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return None;
    }
    buf.truncate(r as usize);
    Some(buf)
}

#[test]
fn extended_attributes_are_recorded_in_layers_and_restored() {
    let env = Env::new();
    let helper = build_support::xattr_helper(env.dir.path());
    // A base whose file carries attributes: a RUN that touches it copies it
    // up, and the copy must keep them.
    let mut entries = common::busybox_entries();
    entries.push(Entry::symlink("bin/touch", "busybox"));
    entries.push(Entry::symlink("bin/mkdir", "busybox"));
    entries.push(
        Entry::file("bin/capped", b"capped")
            .mode(0o755)
            .xattr("user.origin", b"base")
            .xattr("security.capability", &unhex(CAP_V2)),
    );
    common::build_image(
        &env.store,
        &canonical("kbt/xbase:1"),
        &[common::layer(&entries, Comp::Gzip)],
        serde_json::json!({"Env": ["PATH=/bin:/usr/local/bin"]}),
    );
    let df = format!(
        "FROM kbt/xbase:1\n\
         COPY --chmod=755 xattr /usr/local/bin/xattr\n\
         RUN touch /bin/capped && echo made > /made && mkdir /d \\\n\
          && xattr set /made user.step 6869 \\\n\
          && xattr set /made security.capability {CAP_V2} \\\n\
          && xattr set /d user.dir 6464\n\
         CMD [\"/bin/sh\", \"-c\", \"xattr get /made user.step; xattr get /made security.capability; xattr get /bin/capped user.origin\"]\n"
    );
    let files = [Entry::file("xattr", &helper).mode(0o755)];
    let (r, ev) = env.build(&df, &files, &no_net("kbt/xattr:1"));
    r.unwrap_or_else(|e| panic!("build: {e}\n{}", stream(&ev)));

    // From inside a container of the image.
    let (code, out) = env.run_image("kbt/xattr:1");
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, format!("6869\n{CAP_V2}\n{}\n", "62617365"));

    // In the RUN step's layer tar, as PAX SCHILY.xattr records.
    let img = env.store.image(&canonical("kbt/xattr:1")).unwrap();
    let run_layer = img.manifest.layers.last().unwrap().digest.clone();
    let entries = build_support::layer_xattrs(&env.store, &run_layer);
    let get = |p: &str| {
        entries
            .iter()
            .find(|(path, _)| path.trim_end_matches('/') == p)
            .unwrap_or_else(|| panic!("{p} not in the layer: {entries:?}"))
            .1
            .clone()
    };
    let made = get("made");
    assert!(
        made.contains(&("user.step".into(), b"hi".to_vec())),
        "{made:?}"
    );
    assert!(
        made.contains(&("security.capability".into(), unhex(CAP_V2))),
        "{made:?}"
    );
    let capped = get("bin/capped");
    assert!(
        capped.contains(&("user.origin".into(), b"base".to_vec())),
        "{capped:?}"
    );
    assert!(
        capped.contains(&("security.capability".into(), unhex(CAP_V2))),
        "{capped:?}"
    );
    assert!(get("d").contains(&("user.dir".into(), b"dd".to_vec())));
    // overlayfs's own bookkeeping never leaks into a layer.
    for l in &img.manifest.layers {
        for (p, x) in build_support::layer_xattrs(&env.store, &l.digest) {
            assert!(x.iter().all(|(k, _)| !k.contains("overlay.")), "{p}: {x:?}");
        }
    }

    // Extracting the layer elsewhere restores them.
    let dest = env.dir.join("extract");
    std::fs::create_dir_all(&dest).unwrap();
    kos_image::unpack::unpack_layer(
        env.store.open_blob(&run_layer).unwrap(),
        &dest,
        &kos_image::unpack::UnpackOptions {
            mode: kos_image::unpack::Mode::Apply,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(lgetxattr(&dest.join("made"), "user.step").unwrap(), b"hi");
    assert_eq!(
        lgetxattr(&dest.join("made"), "security.capability").unwrap(),
        unhex(CAP_V2)
    );
    assert_eq!(lgetxattr(&dest.join("d"), "user.dir").unwrap(), b"dd");
    env.assert_clean();
}

fn bzip2(data: &[u8]) -> Vec<u8> {
    let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn xz(data: &[u8]) -> Vec<u8> {
    let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn add_unpacks_local_archives_by_their_magic_not_their_name() {
    let env = Env::new();
    let tar_of = |content: &str| {
        common::tarw::build(&[Entry::dir("sub"), Entry::file("sub/f", content.as_bytes())])
    };
    let gz_text = common::tarw::gzip(b"just text, not a tar\n");
    let files = [
        Entry::file("plain.tar", &tar_of("plain\n")),
        // Compressed archives under names that do not say so.
        Entry::file("gz.bin", &common::tarw::gzip(&tar_of("gzip\n"))),
        Entry::file("b.data", &bzip2(&tar_of("bzip2\n"))),
        Entry::file("x", &xz(&tar_of("xz\n"))),
        Entry::file("z.tar.zst", &common::tarw::zstd(&tar_of("zstd\n"))),
        // Names that claim archives but are not: copied as they are.
        Entry::file("fake.tar.gz", b"not an archive\n"),
        Entry::file("text.gz", &gz_text),
    ];
    let df = format!(
        "FROM {BASE}\n\
         ADD plain.tar /out/plain/\n\
         ADD gz.bin /out/gz\n\
         ADD b.data /out/bz2/\n\
         ADD x /out/xz/\n\
         ADD z.tar.zst /out/zst/\n\
         ADD fake.tar.gz text.gz /out/files/\n\
         RUN cat /out/plain/sub/f /out/gz/sub/f /out/bz2/sub/f /out/xz/sub/f /out/zst/sub/f > /out/all \\\n\
          && ls /out/files > /out/list\n"
    );
    let (r, ev) = env.build(&df, &files, &no_net("kbt/add:1"));
    r.unwrap_or_else(|e| panic!("build: {e}\n{}", stream(&ev)));
    let read = |p: &str| {
        env.read("kbt/add:1", p)
            .unwrap_or_else(|| panic!("{p} missing"))
    };
    assert_eq!(read("/out/all"), b"plain\ngzip\nbzip2\nxz\nzstd\n");
    assert_eq!(read("/out/list"), b"fake.tar.gz\ntext.gz\n");
    assert_eq!(read("/out/files/text.gz"), gz_text);
    assert_eq!(read("/out/files/fake.tar.gz"), b"not an archive\n");

    // A corrupt compressed archive is a file too, and a URL stays refused.
    let mut broken = common::tarw::gzip(&tar_of("x\n"));
    broken.truncate(12);
    let (r, ev) = env.build(
        &format!("FROM {BASE}\nADD broken.tgz /b/\n"),
        &[Entry::file("broken.tgz", &broken)],
        &no_net("kbt/add:2"),
    );
    r.unwrap_or_else(|e| panic!("build: {e}\n{}", stream(&ev)));
    assert_eq!(env.read("kbt/add:2", "/b/broken.tgz").unwrap(), broken);
    let (r, _) = env.build(
        &format!("FROM {BASE}\nADD http://127.0.0.1:9/x /x\n"),
        &[],
        &no_net("kbt/add:3"),
    );
    let e = r.unwrap_err().to_string();
    assert!(e.contains("line 2") && e.contains("remote URL"), "{e}");
    env.assert_clean();
}

#[test]
fn from_platform_selects_the_manifest_and_sets_the_automatic_args() {
    let env = Env::new();
    let host = Platform::host();
    let other = Platform {
        os: "linux".into(),
        architecture: if host.architecture == "arm64" {
            "amd64"
        } else {
            "arm64"
        }
        .into(),
        variant: None,
    };
    let layer_for = |p: &Platform| {
        let mut e = common::busybox_entries();
        e.push(Entry::file("arch", p.architecture.as_bytes()));
        common::layer(&e, Comp::Gzip)
    };
    common::build_index(
        &env.store,
        &canonical("kbt/multi:1"),
        &[
            (host.clone(), vec![layer_for(&host)]),
            (other.clone(), vec![layer_for(&other)]),
        ],
        0,
    );
    let o = &other;
    let df = format!(
        "ARG TARGETARCH\n\
         FROM --platform={o} kbt/multi:1 AS other\n\
         RUN cat /arch > /seen\n\
         FROM --platform=$BUILDPLATFORM kbt/multi:1\n\
         ARG TARGETPLATFORM\n\
         ARG TARGETOS\n\
         ARG TARGETARCH\n\
         ARG BUILDPLATFORM\n\
         COPY --from=other /seen /other-arch\n\
         RUN echo \"$BUILDPLATFORM $TARGETPLATFORM $TARGETOS $TARGETARCH [$BUILDARCH]\" > /args && cat /arch > /mine\n"
    );
    let (r, ev) = env.build(&df, &[], &no_net("kbt/plat:1"));
    r.unwrap_or_else(|e| panic!("build: {e}\n{}", stream(&ev)));
    let read = |t: &str, p: &str| String::from_utf8(env.read(t, p).unwrap()).unwrap();
    let hp = format!("{}/{}", host.os, host.architecture);
    assert_eq!(
        read("kbt/plat:1", "/args"),
        format!("{hp} {hp} linux {} []\n", host.architecture),
        "an ARG not declared in the stage stays out of RUN"
    );
    assert_eq!(read("kbt/plat:1", "/mine"), host.architecture);
    assert_eq!(read("kbt/plat:1", "/other-arch"), other.architecture);
    assert_eq!(env.config("kbt/plat:1")["architecture"], host.architecture);

    // The other stage as the target: its config is the other platform's.
    let mut t = no_net("kbt/plat:2");
    t.target = Some("other".into());
    let (r, ev) = env.build(&df, &[], &t);
    r.unwrap_or_else(|e| panic!("build: {e}\n{}", stream(&ev)));
    assert_eq!(env.config("kbt/plat:2")["architecture"], other.architecture);

    // `--platform` of the build: the target platform of every stage.
    let mut p = no_net("kbt/plat:3");
    p.platform = Some(other.clone());
    let (r, ev) = env.build(
        "FROM kbt/multi:1\nARG TARGETARCH\nRUN echo $TARGETARCH > /t && cat /arch > /mine\n",
        &[],
        &p,
    );
    r.unwrap_or_else(|e| panic!("build: {e}\n{}", stream(&ev)));
    assert_eq!(
        read("kbt/plat:3", "/t"),
        format!("{}\n", other.architecture)
    );
    assert_eq!(read("kbt/plat:3", "/mine"), other.architecture);

    // Platforms the image does not have: one clear error naming it.
    for (df, line) in [
        (
            "FROM --platform=linux/s390x kbt/multi:1\nRUN true\n".to_string(),
            1,
        ),
        (
            format!("FROM scratch\nFROM --platform={o} {BASE}\nRUN true\n"),
            2,
        ),
    ] {
        let (r, _) = env.build(&df, &[], &no_net("kbt/plat:bad"));
        let e = r.unwrap_err();
        let msg = e.to_string();
        assert_eq!(e.line(), Some(line), "{msg}");
        let named = if line == 1 {
            "linux/s390x".to_string()
        } else {
            o.to_string()
        };
        assert!(msg.contains(&named), "{msg}");
    }
    assert!(env.store.image(&canonical("kbt/plat:bad")).is_err());
    env.assert_clean();
}

#[test]
fn moved_tags_leave_dangling_images_and_prune_takes_their_cache() {
    use kos_image::build::{cache, dangling};
    let env = Env::new();
    let df = |v: &str| format!("FROM {BASE}\nRUN echo {v} > /v\nCMD [\"cat\", \"/v\"]\n");
    let build = |v: &str, tags: &[&str]| {
        let mut o = no_net("unused");
        o.tags = tags.iter().map(|t| t.to_string()).collect();
        let (r, ev) = env.build(&df(v), &[], &o);
        let r = r.unwrap_or_else(|e| panic!("build: {e}\n{}", stream(&ev)));
        (r, stream(&ev))
    };
    let names = || -> Vec<(String, String)> {
        let mut v: Vec<_> = env
            .store
            .images()
            .unwrap()
            .into_iter()
            .map(|r| (r.name, r.config.to_string()))
            .collect();
        v.sort();
        v
    };
    let tag = canonical("kbt/dang:1");
    let (one, _) = build("one", &["kbt/dang:1"]);
    assert!(names().iter().all(|(n, _)| !dangling::is_dangling(n)));
    // The tag moves: the old image stays, dangling, runnable by its id.
    let (two, _) = build("two", &["kbt/dang:1"]);
    assert_ne!(one.image_id, two.image_id);
    let old = dangling::name(&one.image_id);
    let n = names();
    assert!(
        n.contains(&(tag.clone(), two.image_id.to_string())),
        "{n:?}"
    );
    assert!(
        n.contains(&(old.clone(), one.image_id.to_string())),
        "{n:?}"
    );
    let dir = env.dir.join("old-rootfs");
    let rootfs = env
        .store
        .prepare_rootfs(&old, "dang-old", &dir, kos_image::RootfsStrategy::Overlay)
        .unwrap();
    assert_eq!(std::fs::read(rootfs.path.join("v")).unwrap(), b"one\n");
    env.store.release_rootfs(&rootfs).unwrap();
    // A rebuild giving the same image moves nothing.
    let (again, out) = build("two", &["kbt/dang:1"]);
    assert_eq!(again.image_id, two.image_id, "{out}");
    assert_eq!(names(), n);

    // An untagged build is kept as dangling; tagging it by a build ends that.
    let (three, _) = build("three", &[]);
    let own = dangling::name(&three.image_id);
    assert!(names().iter().any(|(name, _)| name == &own));
    let (three_tagged, _) = build("three", &["kbt/dang:3"]);
    assert_eq!(three_tagged.image_id, three.image_id);
    assert!(!names().iter().any(|(name, _)| name == &own));

    // The store's gc keeps dangling images; once pruned (the name removed),
    // gc takes their layers and the cache prune their entries, so the next
    // build of the same Dockerfile runs its steps again.
    let report = env.store.gc().unwrap();
    assert_eq!(report.snapshots, 0, "{report:?}");
    assert_eq!(cache::prune(&env.store, false).unwrap().entries, 0);
    env.store.remove_image(&old).unwrap();
    let report = env.store.gc().unwrap();
    assert!(
        report.blobs >= 2,
        "the RUN layer and the config: {report:?}"
    );
    let pruned = cache::prune(&env.store, false).unwrap();
    assert_eq!(
        pruned.entries, 2,
        "RUN and CMD of the pruned image: {pruned:?}"
    );
    let (rebuilt, out) = build("one", &["kbt/dang:1"]);
    assert!(out.contains("Running in"), "{out}");
    assert_eq!(rebuilt.cached_steps, 0, "{out}");
    // Its own tag moved again: the previous image is the dangling one now.
    assert!(names().contains(&(dangling::name(&two.image_id), two.image_id.to_string())));
    // `all` empties the cache.
    let all = cache::prune(&env.store, true).unwrap();
    assert!(all.entries >= 4, "{all:?}");
    let (_, out) = build("one", &["kbt/dang:1"]);
    assert!(out.contains("Running in"), "{out}");
    env.assert_clean();
}

#[test]
fn layers_compressed_behind_later_steps_are_cached_even_when_a_later_step_fails() {
    let env = Env::new();
    let files = [Entry::file("a.txt", b"a\n")];
    let failing = format!("FROM {BASE}\nCOPY a.txt /a.txt\nRUN echo hi > /b\nRUN exit 3\n");
    let (r, ev) = env.build(&failing, &files, &no_net("kbt/defer:1"));
    assert!(
        matches!(r, Err(BuildError::RunFailed { code: 3, .. })),
        "{r:?}\n{}",
        stream(&ev)
    );
    // The COPY and the first RUN were stored and cached before the failure.
    let ok = format!("FROM {BASE}\nCOPY a.txt /a.txt\nRUN echo hi > /b\nRUN true\n");
    let (r, ev) = env.build(&ok, &files, &no_net("kbt/defer:1"));
    let r = r.unwrap_or_else(|e| panic!("build: {e}\n{}", stream(&ev)));
    let out = stream(&ev);
    assert_eq!(r.cached_steps, 2, "{out}");
    // The last step's ID is the image ID, and the manifest names stored
    // gzip blobs only.
    let short = &r.image_id.hex()[..12];
    assert!(
        out.contains(&format!(" ---> {short}\nSuccessfully built {short}\n")),
        "{out}"
    );
    let img = env.store.image(&canonical("kbt/defer:1")).unwrap();
    for l in &img.manifest.layers {
        assert!(
            l.media_type.ends_with("tar+gzip") || l.media_type.ends_with("tar"),
            "{l:?}"
        );
        assert!(env.store.has_blob(&l.digest) && l.size > 0, "{l:?}");
    }
    assert_eq!(env.read("kbt/defer:1", "/b").unwrap(), b"hi\n");
    env.assert_clean();
}

#[test]
fn context_names_given_twice_and_copies_over_existing_trees() {
    let env = Env::new();
    let files = [
        Entry::file("dup.txt", b"first\n"),
        Entry::file("dup.txt", b"second\n"),
        Entry::dir("etc"),
        Entry::file("etc/passwd", b"root:x:0:0::/:/bin/sh\n"),
        Entry::dir("tree"),
        Entry::dir("tree/sub"),
        Entry::file("tree/sub/f", b"f\n"),
    ];
    let df = format!(
        "FROM {BASE}\nCOPY dup.txt /dup.txt\nCOPY etc/ /etc/\nCOPY tree /tree\nCOPY tree /tree\n"
    );
    let (r, ev) = env.build(&df, &files, &no_net("kbt/twice:1"));
    r.unwrap_or_else(|e| panic!("build: {e}\n{}", stream(&ev)));
    let read = |p: &str| {
        env.read("kbt/twice:1", p)
            .unwrap_or_else(|| panic!("{p} missing"))
    };
    assert_eq!(read("/dup.txt"), b"second\n", "the later tar entry wins");
    assert_eq!(read("/etc/passwd"), b"root:x:0:0::/:/bin/sh\n");
    assert!(
        read("/etc/group").starts_with(b"root:x:0:"),
        "the base's file stays"
    );
    assert_eq!(read("/tree/sub/f"), b"f\n");
    env.assert_clean();
}

#[test]
fn from_platform_pulls_the_asked_platform_from_a_registry() {
    let env = Env::new();
    let host = Platform::host();
    let other = Platform {
        os: "linux".into(),
        architecture: if host.architecture == "arm64" {
            "amd64"
        } else {
            "arm64"
        }
        .into(),
        variant: None,
    };
    let layer_for = |p: &Platform| {
        let mut e = common::busybox_entries();
        e.push(Entry::file("arch", p.architecture.as_bytes()));
        common::layer(&e, Comp::Gzip)
    };
    common::build_index(
        &env.store,
        &canonical("kbt/multi:1"),
        &[
            (host.clone(), vec![layer_for(&host)]),
            (other.clone(), vec![layer_for(&other)]),
        ],
        0,
    );
    let reg = common::TestRegistry::start();
    let remote = reg.reference("kbt/multi:1");
    let rt = common::rt();
    rt.block_on(kos_image::Registry::default().push(
        env.store.clone(),
        &canonical("kbt/multi:1"),
        &remote,
        &kos_image::registry::push::PushOptions::default(),
    ))
    .unwrap();
    drop(rt);
    // A fresh store that has never seen the image.
    let store = std::sync::Arc::new(kos_image::Store::open(env.dir.join("fresh")).unwrap());
    let builder = kos_image::build::Builder::new(store.clone())
        .with_kosrun(build_support::kosrun())
        .with_cgroup_parent(build_support::cgroup_parent())
        .with_puller(std::sync::Arc::new(kos_image::build::RegistryPuller {
            registry: kos_image::Registry::default(),
            options: kos_image::PullOptions::default(),
        }));
    let build = |df: &str, tag: &str| {
        let tar = common::tarw::build(&[Entry::file("Dockerfile", df.as_bytes())]);
        let mut events = Vec::new();
        let r = builder.build(&tar[..], &no_net(tag), &mut |e| events.push(e));
        (r, stream(&events))
    };
    let (r, out) = build(
        &format!("FROM --platform={other} {remote}\nRUN cat /arch\n"),
        "kbt/pulled-plat:1",
    );
    r.unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert!(out.contains(&format!("Pulling {remote}")), "{out}");
    assert!(
        out.contains(&format!("\n{}\n", other.architecture)),
        "{out}"
    );
    let cfg: serde_json::Value = serde_json::from_slice(
        &store
            .image(&canonical("kbt/pulled-plat:1"))
            .unwrap()
            .config_bytes,
    )
    .unwrap();
    assert_eq!(cfg["architecture"], other.architecture);
    // The host's platform next: its manifest is not in the store yet, so it
    // is pulled too.
    let (r, out) = build(
        &format!("FROM {remote}\nRUN cat /arch\n"),
        "kbt/pulled-plat:2",
    );
    r.unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert!(out.contains(&format!("Pulling {remote}")), "{out}");
    assert!(out.contains(&format!("\n{}\n", host.architecture)), "{out}");
    // A platform the registry's index does not have.
    let (r, out) = build(
        &format!("FROM --platform=linux/s390x {remote}\nRUN true\n"),
        "kbt/pulled-plat:3",
    );
    let e = r.expect_err(&out);
    assert_eq!(e.line(), Some(1), "{e}");
    assert!(e.to_string().contains("linux/s390x"), "{e}");
    assert!(store.image(&canonical("kbt/pulled-plat:3")).is_err());
}
