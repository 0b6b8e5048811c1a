//! `docker save` / `docker load` tarballs: `manifest.json` naming a config
//! file and layer tars per image.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use super::{canonical_name, Source, TarOut};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::{Descriptor, ImageConfig, Manifest, DOCKER_CONFIG, DOCKER_MANIFEST};
use crate::store::{unique_name, ImageRecord, RemoveOnDrop, Store};
use crate::unpack::compression::{self, Compression};

#[derive(Serialize, Deserialize)]
struct Entry {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

fn sniff(store: &Store, d: &Digest) -> Result<Compression> {
    let mut head = [0u8; 4];
    let mut f = store.open_blob(d)?;
    let n = f
        .read(&mut head)
        .map_err(|e| Error::io(format!("reading layer {d}"), e))?;
    Ok(if head[..n].starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if head[..n].starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    })
}

/// Loads a `docker save` tarball; returns one record per tag it names.
pub fn load(store: &Store, r: impl Read) -> Result<Vec<ImageRecord>> {
    let _lock = store.lock(false)?;
    let src = Source::from_tar(store, r)?;
    let entries: Vec<Entry> = serde_json::from_slice(&src.read_small(store, "manifest.json")?)
        .map_err(|e| Error::json("manifest.json", e))?;
    let mut out = Vec::new();
    for e in entries {
        let (config_digest, config_size) = src.blob(store, &e.config)?;
        let config = ImageConfig::parse(&store.read_blob(&config_digest)?)?;
        if config.rootfs.diff_ids.len() != e.layers.len() {
            return Err(Error::InvalidArchive(format!(
                "{} names {} layers but its config has {} diff ids",
                e.config,
                e.layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        for (i, path) in e.layers.iter().enumerate() {
            let (d, n) = src.blob(store, path)?;
            let comp = sniff(store, &d)?;
            // An uncompressed layer is its own diff id: check it now.
            // Compressed ones are checked against the diff id when unpacked.
            if comp == Compression::None && d != config.rootfs.diff_ids[i] {
                return Err(Error::DigestMismatch {
                    what: format!("layer {path}"),
                    expected: config.rootfs.diff_ids[i].to_string(),
                    actual: d.to_string(),
                });
            }
            let media_type = match comp {
                Compression::None => "application/vnd.docker.image.rootfs.diff.tar",
                Compression::Gzip => "application/vnd.docker.image.rootfs.diff.tar.gzip",
                Compression::Zstd => Compression::Zstd.oci_media_type(),
            };
            layers.push(Descriptor {
                media_type: media_type.to_string(),
                digest: d,
                size: n,
                platform: None,
                annotations: None,
            });
        }
        let m = Manifest {
            schema_version: 2,
            media_type: Some(DOCKER_MANIFEST.to_string()),
            config: Descriptor {
                media_type: DOCKER_CONFIG.to_string(),
                digest: config_digest,
                size: config_size,
                platform: None,
                annotations: None,
            },
            layers,
            annotations: None,
        };
        let body = serde_json::to_vec(&m).map_err(|e| Error::json("manifest", e))?;
        let md = Digest::of(&body);
        store.put_manifest(&md, DOCKER_MANIFEST, &body)?;
        for tag in e.repo_tags.unwrap_or_default() {
            let name = canonical_name(&tag, None)?;
            out.push(store.tag_image(&name, &md, &md)?);
        }
    }
    if out.is_empty() {
        return Err(Error::InvalidArchive(
            "manifest.json names no tagged image".into(),
        ));
    }
    Ok(out)
}

/// Writes the named images as a `docker save` tarball (uncompressed layers,
/// as `docker load` and skopeo's docker-archive expect).
pub fn save<W: Write>(store: &Store, names: &[&str], w: W) -> Result<W> {
    let mut t = TarOut::new(w);
    let mut entries: Vec<Entry> = Vec::new();
    let mut written: Vec<String> = Vec::new();
    for name in names {
        let img = store.image(name)?;
        let config_path = format!("{}.json", img.record.config.hex());
        if !written.contains(&config_path) {
            t.bytes(&config_path, &img.config_bytes)?;
            written.push(config_path.clone());
        }
        let mut layer_paths = Vec::new();
        for (i, l) in img.manifest.layers.iter().enumerate() {
            let diff_id = img.config.rootfs.diff_ids.get(i).ok_or_else(|| {
                Error::InvalidArchive(format!("{name}: fewer diff ids than layers"))
            })?;
            let path = format!("{}/layer.tar", diff_id.hex());
            if !written.contains(&path) {
                write_uncompressed(store, &mut t, &path, &l.digest, diff_id, &l.media_type)?;
                written.push(path.clone());
            }
            layer_paths.push(path);
        }
        match entries.iter_mut().find(|e| e.config == config_path) {
            Some(e) => e
                .repo_tags
                .get_or_insert_with(Vec::new)
                .push(name.to_string()),
            None => entries.push(Entry {
                config: config_path,
                repo_tags: Some(vec![name.to_string()]),
                layers: layer_paths,
            }),
        }
    }
    let mj = serde_json::to_vec(&entries).map_err(|e| Error::json("manifest.json", e))?;
    t.bytes("manifest.json", &mj)?;
    t.finish()
}

fn write_uncompressed<W: Write>(
    store: &Store,
    t: &mut TarOut<W>,
    path: &str,
    blob: &Digest,
    diff_id: &Digest,
    media_type: &str,
) -> Result<()> {
    if Compression::from_media_type(media_type)? == Compression::None {
        let mut f = store.open_blob(blob)?;
        return t.file(path, &mut f);
    }
    // The tar header needs the size first: decompress to a scratch file.
    let tmp = store.root().join("tmp").join(unique_name("save"));
    let _guard = RemoveOnDrop(Some(tmp.clone()));
    let mut out = crate::digest::Hashing::new(
        std::fs::File::create(&tmp).map_err(|e| Error::path("creating", &tmp, e))?,
    );
    let (_, mut r) = compression::decompress(std::io::BufReader::new(store.open_blob(blob)?))?;
    std::io::copy(&mut r, &mut out).map_err(|e| Error::io(format!("decompressing {blob}"), e))?;
    let (got, _, mut file) = out.finish();
    if got != *diff_id {
        return Err(Error::DigestMismatch {
            what: "layer diff id".into(),
            expected: diff_id.to_string(),
            actual: got.to_string(),
        });
    }
    file.flush()
        .map_err(|e| Error::io("flushing scratch layer", e))?;
    let mut f = std::fs::File::open(&tmp).map_err(|e| Error::path("opening", &tmp, e))?;
    t.file(path, &mut f)
}
