//! Benchmark helper for `image/bench/run.sh` (not part of the library API).
//!
//!   kos_image_bench gen <ref> <layer-dir>      build and push the bench image, keep its layer blobs
//!   kos_image_bench pull <store-dir> <ref>     pull and unpack into a fresh store
//!   kos_image_bench unpack <dest> <layer>...   unpack layer files concurrently, one dir per layer

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use kos_image::digest::Digest;
use kos_image::manifest::{self, Platform};
use kos_image::registry::push::PushOptions;
use kos_image::unpack::{unpack_layer, UnpackOptions};
use kos_image::{PullOptions, Registry, Store};

const LAYERS: usize = 8;
const FILES_PER_LAYER: usize = 3000;

/// Deterministic text-like bytes (compresses roughly like source code).
fn content(seed: u64, len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "kos",
        "layer",
        "image",
        "container",
        "overlay",
        "fn",
        "let",
        "mut",
        "return",
        "struct",
        "impl",
        "pub",
        "0x7f3a",
        "{",
        "}",
        "(",
        ")",
        ";",
        "\n",
        "    ",
        "if",
        "else",
        "match",
        "Result",
        "Error",
        "digest",
    ];
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(len + 16);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if x.is_multiple_of(7) {
            v.extend_from_slice(&x.to_le_bytes());
        } else {
            v.extend_from_slice(WORDS[(x % WORDS.len() as u64) as usize].as_bytes());
            v.push(b' ');
        }
    }
    v.truncate(len);
    v
}

fn layer_tar(i: usize) -> Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    b.mode(tar::HeaderMode::Deterministic);
    let mut x = (i as u64 + 1) * 7919;
    for f in 0..FILES_PER_LAYER {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        // Mostly small files, some large: about 30 MB per layer.
        let size = match x % 100 {
            0..=59 => 200 + (x >> 20) as usize % 2000,
            60..=94 => 4000 + (x >> 20) as usize % 12000,
            _ => 100_000 + (x >> 20) as usize % 400_000,
        };
        let path = format!("l{i}/d{}/f{f}.txt", f % 40);
        let data = content(x, size);
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, &path, &data[..])?;
        if f % 500 == 0 {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            h.set_mode(0o777);
            b.append_link(
                &mut h,
                format!("l{i}/link{f}"),
                format!("d{}/f{f}.txt", f % 40),
            )?;
        }
    }
    Ok(b.into_inner()?)
}

fn gen(reference: &str, layer_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(layer_dir)?;
    let scratch = layer_dir.join("genstore");
    let store = Arc::new(Store::open(&scratch)?);
    let mut diff_ids = Vec::new();
    let mut descs = Vec::new();
    let mut expanded = 0u64;
    for i in 0..LAYERS {
        let tar = layer_tar(i)?;
        expanded += tar.len() as u64;
        diff_ids.push(Digest::of(&tar).to_string());
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(&tar)?;
        let gz = enc.finish()?;
        std::fs::write(layer_dir.join(format!("layer-{i}.tar.gz")), &gz)?;
        let d = store.put_blob(&gz)?;
        descs.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d.to_string(), "size": gz.len()}));
    }
    let p = Platform::host();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": p.architecture, "os": p.os,
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "config": {"Cmd": ["/bin/sh"]},
    }))?;
    let cd = store.put_blob(&config)?;
    let m = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": manifest::OCI_MANIFEST,
        "config": {"mediaType": manifest::OCI_CONFIG, "digest": cd.to_string(), "size": config.len()},
        "layers": descs,
    }))?;
    let md = Digest::of(&m);
    store.put_manifest(&md, manifest::OCI_MANIFEST, &m)?;
    store.tag_image("bench/local:1", &md, &md)?;
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(Registry::default().push(
        store.clone(),
        "bench/local:1",
        reference,
        &PushOptions::default(),
    ))?;
    drop(store);
    std::fs::remove_dir_all(&scratch)?;
    println!(
        "pushed {reference}: {LAYERS} layers, {} MB expanded, {} files",
        expanded >> 20,
        LAYERS * FILES_PER_LAYER
    );
    Ok(())
}

fn pull(store_dir: &Path, reference: &str) -> Result<()> {
    let store = Arc::new(Store::open(store_dir)?);
    let rt = tokio::runtime::Runtime::new()?;
    let opts = PullOptions {
        unpack: true,
        ..Default::default()
    };
    rt.block_on(Registry::default().pull(store, reference, &opts))
        .with_context(|| format!("pulling {reference}"))?;
    Ok(())
}

fn unpack(dest: &Path, layers: &[PathBuf]) -> Result<()> {
    std::thread::scope(|s| -> Result<()> {
        let handles: Vec<_> = layers
            .iter()
            .enumerate()
            .map(|(i, l)| {
                let d = dest.join(format!("{i}"));
                s.spawn(move || -> Result<()> {
                    std::fs::create_dir_all(&d)?;
                    let f = std::io::BufReader::new(std::fs::File::open(l)?);
                    unpack_layer(f, &d, &UnpackOptions::default())?;
                    Ok(())
                })
            })
            .collect();
        for h in handles {
            match h.join() {
                Ok(r) => r?,
                Err(_) => bail!("unpack thread panicked"),
            }
        }
        Ok(())
    })
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("gen") if args.len() == 4 => gen(&args[2], Path::new(&args[3])),
        Some("pull") if args.len() == 4 => pull(Path::new(&args[2]), &args[3]),
        Some("unpack") if args.len() >= 4 => {
            let layers: Vec<PathBuf> = args[3..].iter().map(PathBuf::from).collect();
            unpack(Path::new(&args[2]), &layers)
        }
        _ => bail!("usage: kos_image_bench gen <ref> <layer-dir> | pull <store> <ref> | unpack <dest> <layer>..."),
    }
}
