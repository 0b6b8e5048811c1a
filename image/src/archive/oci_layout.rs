//! OCI image layouts: `oci-layout`, `index.json` and `blobs/sha256/*`, as a
//! directory or a tar of one.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{canonical_name, Source, TarOut};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::{self, Descriptor, Document, Platform, OCI_INDEX};
use crate::store::{ImageRecord, Store};

const REF_NAME: &str = "org.opencontainers.image.ref.name";
const CONTAINERD_NAME: &str = "io.containerd.image.name";

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Layout {
    image_layout_version: String,
}

/// Loads every named image of an OCI layout directory.
pub fn load_dir(
    store: &Store,
    dir: &Path,
    repo_hint: Option<&str>,
    platform: Option<&Platform>,
) -> Result<Vec<ImageRecord>> {
    load(store, &Source::Dir(dir.to_path_buf()), repo_hint, platform)
}

/// Loads every named image of an OCI layout tar.
pub fn load_tar(
    store: &Store,
    r: impl Read,
    repo_hint: Option<&str>,
    platform: Option<&Platform>,
) -> Result<Vec<ImageRecord>> {
    let _lock = store.lock(false)?;
    let src = Source::from_tar(store, r)?;
    load(store, &src, repo_hint, platform)
}

fn load(
    store: &Store,
    src: &Source,
    repo_hint: Option<&str>,
    platform: Option<&Platform>,
) -> Result<Vec<ImageRecord>> {
    let layout: Layout = serde_json::from_slice(&src.read_small(store, "oci-layout")?)
        .map_err(|e| Error::json("oci-layout", e))?;
    if !layout.image_layout_version.starts_with("1.") {
        return Err(Error::InvalidArchive(format!(
            "unsupported imageLayoutVersion {}",
            layout.image_layout_version
        )));
    }
    let index_bytes = src.read_small(store, "index.json")?;
    let (_, doc) = manifest::parse_document(&index_bytes, Some(OCI_INDEX))?;
    let Document::Index(index) = doc else {
        return Err(Error::InvalidArchive(
            "index.json is not an image index".into(),
        ));
    };
    let want = platform.cloned().unwrap_or_else(Platform::host);
    let mut out = Vec::new();
    for desc in &index.manifests {
        let ann = desc.annotations.clone().unwrap_or_default();
        let Some(name) = ann.get(CONTAINERD_NAME).or(ann.get(REF_NAME)) else {
            continue; // unnamed entries cannot be addressed
        };
        let name = canonical_name(name, repo_hint)?;
        let (top_mt, top_body) = manifest_blob(store, src, desc)?;
        let (manifest_digest, m_mt, m_body) =
            match manifest::parse_document(&top_body, Some(&top_mt))?.1 {
                Document::Image(_) => (desc.digest.clone(), top_mt.clone(), top_body.clone()),
                Document::Index(i) => {
                    // Keep every child the layout carries, name the wanted one.
                    for child in &i.manifests {
                        if child.media_type == manifest::OCI_MANIFEST
                            || child.media_type == manifest::DOCKER_MANIFEST
                        {
                            if let Ok((mt, body)) = manifest_blob(store, src, child) {
                                store.put_manifest(&child.digest, &mt, &body)?;
                                if let Document::Image(m) =
                                    manifest::parse_document(&body, Some(&mt))?.1
                                {
                                    // Children of other platforms are kept only if complete.
                                    if copy_image_blobs(store, src, &m).is_err() {
                                        store.db().delete_manifest(&child.digest)?;
                                    }
                                }
                            }
                        }
                    }
                    let sel = manifest::select_platform(&i, &want)?;
                    let (mt, body) = manifest_blob(store, src, sel)?;
                    (sel.digest.clone(), mt, body)
                }
            };
        let Document::Image(m) = manifest::parse_document(&m_body, Some(&m_mt))?.1 else {
            return Err(Error::UnsupportedMediaType(m_mt));
        };
        m.validate()?;
        copy_image_blobs(store, src, &m)?;
        store.put_manifest(&manifest_digest, &m_mt, &m_body)?;
        store.put_manifest(&desc.digest, &top_mt, &top_body)?;
        out.push(store.tag_image(&name, &desc.digest, &manifest_digest)?);
    }
    if out.is_empty() {
        return Err(Error::InvalidArchive("index.json names no image".into()));
    }
    Ok(out)
}

fn manifest_blob(store: &Store, src: &Source, d: &Descriptor) -> Result<(String, Vec<u8>)> {
    if d.size > super::MAX_JSON {
        return Err(Error::LimitExceeded {
            limit: super::MAX_JSON,
            unit: "manifest bytes",
        });
    }
    src.blob_by_digest(store, &d.digest, d.size)?;
    let body = store.read_blob(&d.digest)?;
    let (mt, _) = manifest::parse_document(&body, Some(&d.media_type))?;
    Ok((mt, body))
}

fn copy_image_blobs(store: &Store, src: &Source, m: &manifest::Manifest) -> Result<()> {
    for d in std::iter::once(&m.config).chain(m.layers.iter()) {
        src.blob_by_digest(store, &d.digest, d.size)?;
    }
    Ok(())
}

/// What goes into an OCI layout.
struct LayoutParts {
    index: Vec<u8>,
    blobs: Vec<Digest>,
    manifests: Vec<(Digest, Vec<u8>)>,
}

/// What to put in an OCI layout: the stored images and their names.
fn layout_parts(store: &Store, names: &[&str]) -> Result<LayoutParts> {
    let mut descs = Vec::new();
    let mut blobs: Vec<Digest> = Vec::new();
    let mut manifests: Vec<(Digest, Vec<u8>)> = Vec::new();
    for name in names {
        let rec = store.image_record(name)?;
        let (top_mt, top_body) = store.manifest(&rec.target)?;
        let (top_digest, top_mt, top_body, images) =
            match manifest::parse_document(&top_body, Some(&top_mt))?.1 {
                Document::Index(i)
                    if i.manifests
                        .iter()
                        .all(|c| store.manifest(&c.digest).is_ok()) =>
                {
                    (
                        rec.target.clone(),
                        top_mt,
                        top_body,
                        i.manifests.iter().map(|c| c.digest.clone()).collect(),
                    )
                }
                Document::Index(_) => {
                    let (mt, body) = store.manifest(&rec.manifest)?;
                    (rec.manifest.clone(), mt, body, vec![rec.manifest.clone()])
                }
                Document::Image(_) => (
                    rec.target.clone(),
                    top_mt,
                    top_body,
                    vec![rec.target.clone()],
                ),
            };
        for d in &images {
            let (mt, body) = store.manifest(d)?;
            if let Document::Image(m) = manifest::parse_document(&body, Some(&mt))?.1 {
                for b in std::iter::once(&m.config).chain(m.layers.iter()) {
                    if !blobs.contains(&b.digest) {
                        blobs.push(b.digest.clone());
                    }
                }
            }
            manifests.push((d.clone(), body));
        }
        manifests.push((top_digest.clone(), top_body.clone()));
        let tag = crate::reference::ImageRef::parse(name)?
            .tag()
            .unwrap_or("latest")
            .to_string();
        let mut ann = BTreeMap::new();
        ann.insert(CONTAINERD_NAME.to_string(), rec.name.clone());
        ann.insert(REF_NAME.to_string(), tag);
        descs.push(Descriptor {
            media_type: top_mt,
            digest: top_digest,
            size: top_body.len() as u64,
            platform: None,
            annotations: Some(ann),
        });
    }
    let index = manifest::Index {
        schema_version: 2,
        media_type: Some(OCI_INDEX.to_string()),
        manifests: descs,
        annotations: None,
    };
    let bytes = serde_json::to_vec(&index).map_err(|e| Error::json("index.json", e))?;
    manifests.sort();
    manifests.dedup();
    Ok(LayoutParts {
        index: bytes,
        blobs,
        manifests,
    })
}

const LAYOUT_FILE: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// Writes the named images as an OCI layout directory (created if missing).
pub fn save_dir(store: &Store, names: &[&str], dir: &Path) -> Result<()> {
    let LayoutParts {
        index,
        blobs,
        manifests,
    } = layout_parts(store, names)?;
    let bdir = dir.join("blobs").join("sha256");
    std::fs::create_dir_all(&bdir).map_err(|e| Error::path("creating", &bdir, e))?;
    for (d, body) in &manifests {
        write_file(&bdir.join(d.hex()), body)?;
    }
    for d in &blobs {
        let dest = bdir.join(d.hex());
        if !dest.exists() {
            // Hard links cost nothing when the layout is on the store's filesystem.
            if std::fs::hard_link(store.blob_path(d), &dest).is_err() {
                std::fs::copy(store.blob_path(d), &dest)
                    .map_err(|e| Error::path("copying blob to", &dest, e))?;
            }
        }
    }
    write_file(&dir.join("oci-layout"), LAYOUT_FILE)?;
    // index.json last: a layout is only usable once it is complete.
    write_file(&dir.join("index.json"), &index)
}

/// Writes the named images as an OCI layout tar.
pub fn save_tar<W: Write>(store: &Store, names: &[&str], w: W) -> Result<W> {
    let LayoutParts {
        index,
        blobs,
        manifests,
    } = layout_parts(store, names)?;
    let mut t = TarOut::new(w);
    t.bytes("oci-layout", LAYOUT_FILE)?;
    t.dir("blobs/")?;
    t.dir("blobs/sha256/")?;
    for (d, body) in &manifests {
        t.bytes(&format!("blobs/sha256/{}", d.hex()), body)?;
    }
    for d in &blobs {
        let mut f = store.open_blob(d)?;
        t.file(&format!("blobs/sha256/{}", d.hex()), &mut f)?;
    }
    t.bytes("index.json", &index)?;
    t.finish()
}

fn write_file(p: &Path, data: &[u8]) -> Result<()> {
    std::fs::write(p, data).map_err(|e| Error::path("writing", p, e))
}
