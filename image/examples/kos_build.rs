//! Dockerfile builds through kos-image's build API (used by `bench/build.sh`).
//!
//!   kos_build base <store> <name> <archive.tar>   busybox image into the store, plus a docker-save archive of it
//!   kos_build build <store> <context-dir> <tag> [--no-cache] [--kosrun PATH] [--network none|host] [--uncompressed] [-q]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use kos_image::build::{BuildEvent, BuildOptions, Builder, NetworkMode};
use kos_image::digest::Digest;
use kos_image::manifest::{self, Platform};
use kos_image::{ImageRef, Store};

fn busybox_layer() -> Result<Vec<u8>> {
    let bb = std::fs::read("/bin/busybox")
        .context("reading /bin/busybox (apt-get install busybox-static)")?;
    let mut b = tar::Builder::new(Vec::new());
    let dir = |b: &mut tar::Builder<Vec<u8>>, p: &str, mode: u32| -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(mode);
        h.set_size(0);
        b.append_data(&mut h, p, std::io::empty())?;
        Ok(())
    };
    dir(&mut b, "bin", 0o755)?;
    dir(&mut b, "etc", 0o755)?;
    dir(&mut b, "tmp", 0o1777)?;
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o755);
    h.set_size(bb.len() as u64);
    b.append_data(&mut h, "bin/busybox", &bb[..])?;
    let passwd = b"root:x:0:0:root:/root:/bin/sh\n";
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(passwd.len() as u64);
    b.append_data(&mut h, "etc/passwd", &passwd[..])?;
    for applet in ["sh", "ls", "cat", "echo", "wc", "mkdir", "cp", "true"] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        b.append_link(&mut h, format!("bin/{applet}"), "busybox")?;
    }
    Ok(b.into_inner()?)
}

fn base(store: &Path, name: &str, archive: &Path) -> Result<()> {
    let store = Store::open(store)?;
    let layer = busybox_layer()?;
    let diff_id = Digest::of(&layer);
    let ld = store.put_blob(&layer)?;
    let p = Platform::host();
    let cfg = serde_json::to_vec(&serde_json::json!({
        "architecture": p.architecture, "os": p.os,
        "config": {"Env": ["PATH=/bin"], "Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))?;
    let cd = store.put_blob(&cfg)?;
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": manifest::OCI_MANIFEST,
        "config": {"mediaType": manifest::OCI_CONFIG, "digest": cd, "size": cfg.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": ld, "size": layer.len()}],
    }))?;
    let md = Digest::of(&m);
    store.put_manifest(&md, manifest::OCI_MANIFEST, &m)?;
    let name = ImageRef::parse(name)?.to_string();
    store.tag_image(&name, &md, &md)?;
    let f = std::fs::File::create(archive)
        .with_context(|| format!("creating {}", archive.display()))?;
    kos_image::archive::docker::save(&store, &[&name], f)?;
    Ok(())
}

fn build(store: &Path, ctx: &Path, tag: &str, rest: &[String]) -> Result<()> {
    let mut opts = BuildOptions {
        tags: vec![tag.to_string()],
        ..BuildOptions::default()
    };
    let mut kosrun = PathBuf::from("kosrun");
    let mut it = rest.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--no-cache" => opts.no_cache = true,
            "-q" => opts.quiet = true,
            "--uncompressed" => opts.compress_layers = false,
            "--kosrun" => kosrun = it.next().context("--kosrun needs a path")?.into(),
            "--network" => {
                opts.network = NetworkMode::parse(it.next().context("--network needs a mode")?)?
            }
            other => bail!("unknown option {other}"),
        }
    }
    let store = Arc::new(Store::open(store)?);
    let builder = Builder::new(store).with_kosrun(kosrun);
    // The context goes over a pipe as a tar stream, as a client would send it.
    let (reader, writer) = std::io::pipe()?;
    let dir = ctx.to_path_buf();
    let sender = std::thread::spawn(move || -> Result<()> {
        let mut b = tar::Builder::new(writer);
        b.follow_symlinks(false);
        b.append_dir_all(".", &dir)?;
        b.finish()?;
        Ok(())
    });
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let res = builder.build(reader, &opts, &mut |e| {
        let _ = match e {
            BuildEvent::Stream(s) => out.write_all(s.as_bytes()),
            BuildEvent::Aux { .. } => Ok(()),
        };
    });
    let sent = sender
        .join()
        .map_err(|_| anyhow::anyhow!("context sender panicked"))?;
    let r = res?;
    sent?;
    if opts.quiet {
        writeln!(out, "{}", r.image_id)?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("base") if args.len() == 5 => base(Path::new(&args[2]), &args[3], Path::new(&args[4])),
        Some("build") if args.len() >= 5 => build(Path::new(&args[2]), Path::new(&args[3]), &args[4], &args[5..]),
        _ => bail!("usage: kos_build base <store> <name> <archive.tar> | build <store> <context-dir> <tag> [--no-cache] [--kosrun PATH] [--network MODE] [-q]"),
    }
}
