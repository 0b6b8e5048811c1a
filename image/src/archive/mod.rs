//! Image archives: OCI image layouts (directory or tar) and `docker save`
//! tarballs, read and written so images move between KOS, skopeo, podman
//! and docker.
//!
//! Archive contents are untrusted. Nothing is extracted to disk by path:
//! every file is streamed into the content store under its digest and looked
//! up by its (normalised) name, and every blob a manifest names is checked
//! against the descriptor's digest and size.

pub mod docker;
pub mod oci_layout;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::ImageRef;
use crate::store::Store;
use crate::unpack::safe_path;

/// Metadata files (index.json, manifest.json, configs) bigger than this are refused.
pub(crate) const MAX_JSON: u64 = 32 << 20;
/// No single archive member may be larger than this.
const MAX_MEMBER: u64 = 64 << 30;

/// Where archive members come from.
pub(crate) enum Source {
    /// An unpacked OCI layout directory.
    Dir(PathBuf),
    /// A tar already streamed into the store: member path -> blob.
    Tar(HashMap<PathBuf, (Digest, u64)>),
}

impl Source {
    /// Streams every regular file of a tar into the store; symlinks (older
    /// `docker save` output links duplicate layers) become aliases.
    pub(crate) fn from_tar(store: &Store, r: impl Read) -> Result<Self> {
        let mut files: HashMap<PathBuf, (Digest, u64)> = HashMap::new();
        let mut links: Vec<(PathBuf, PathBuf)> = Vec::new();
        let mut ar = tar::Archive::new(r);
        let entries = ar
            .entries()
            .map_err(|e| Error::InvalidArchive(e.to_string()))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| Error::InvalidArchive(e.to_string()))?;
            let raw = entry
                .path()
                .map_err(|e| Error::InvalidArchive(e.to_string()))?
                .into_owned();
            let Some(path) = safe_path::normalize(&raw) else {
                continue;
            };
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let (d, n) = store.put_blob_stream(&mut entry, MAX_MEMBER)?;
                    files.insert(path, (d, n));
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    let target = entry
                        .link_name()
                        .map_err(|e| Error::InvalidArchive(e.to_string()))?
                        .ok_or_else(|| {
                            Error::InvalidArchive(format!("{} links nowhere", path.display()))
                        })?
                        .into_owned();
                    let base = if entry.header().entry_type() == tar::EntryType::Symlink {
                        path.parent().unwrap_or(Path::new("")).join(target)
                    } else {
                        target
                    };
                    if let Some(t) = safe_path::normalize(&base) {
                        links.push((path, t));
                    }
                }
                _ => {}
            }
        }
        for (alias, target) in links {
            if let Some(v) = files.get(&target).cloned() {
                files.insert(alias, v);
            }
        }
        Ok(Source::Tar(files))
    }

    /// Ensures the member at `rel` is in the store and returns its digest and size.
    pub(crate) fn blob(&self, store: &Store, rel: &str) -> Result<(Digest, u64)> {
        let key = safe_path::normalize(Path::new(rel))
            .ok_or_else(|| Error::InvalidArchive(format!("bad member name {rel:?}")))?;
        match self {
            Source::Tar(files) => files
                .get(&key)
                .cloned()
                .ok_or_else(|| Error::InvalidArchive(format!("{rel} is missing from the archive"))),
            Source::Dir(root) => {
                let p = root.join(&key);
                let meta = std::fs::symlink_metadata(&p).map_err(|_| {
                    Error::InvalidArchive(format!("{rel} is missing from the layout"))
                })?;
                if !meta.is_file() {
                    return Err(Error::InvalidArchive(format!(
                        "{rel} is not a regular file"
                    )));
                }
                let mut f = std::fs::File::open(&p).map_err(|e| Error::path("opening", &p, e))?;
                store.put_blob_stream(&mut f, MAX_MEMBER)
            }
        }
    }

    /// The blob for descriptor `d`, checked against its digest and size.
    pub(crate) fn blob_by_digest(&self, store: &Store, d: &Digest, size: u64) -> Result<()> {
        let rel = format!("blobs/sha256/{}", d.hex());
        let (got, n) = self.blob(store, &rel)?;
        if got != *d {
            return Err(Error::DigestMismatch {
                what: rel,
                expected: d.to_string(),
                actual: got.to_string(),
            });
        }
        if n != size {
            return Err(Error::SizeMismatch {
                digest: d.to_string(),
                expected: size,
                actual: n,
            });
        }
        Ok(())
    }

    /// Reads a small member (JSON).
    pub(crate) fn read_small(&self, store: &Store, rel: &str) -> Result<Vec<u8>> {
        let (d, n) = self.blob(store, rel)?;
        if n > MAX_JSON {
            return Err(Error::LimitExceeded {
                limit: MAX_JSON,
                unit: "bytes of archive metadata",
            });
        }
        store.read_blob(&d)
    }
}

/// Turns a name found in an archive into a canonical reference, using
/// `repo_hint` for bare tags.
pub(crate) fn canonical_name(name: &str, repo_hint: Option<&str>) -> Result<String> {
    let full = if name.contains('/') || name.contains(':') || name.contains('@') {
        name.to_string()
    } else {
        match repo_hint {
            Some(repo) => format!("{repo}:{name}"),
            None => {
                return Err(Error::InvalidArchive(format!(
                    "image named only {name:?}: give a repository to load it under"
                )))
            }
        }
    };
    Ok(ImageRef::parse(&full)?.to_string())
}

/// Writes tar members.
pub(crate) struct TarOut<W: std::io::Write> {
    pub b: tar::Builder<W>,
}

impl<W: std::io::Write> TarOut<W> {
    pub fn new(w: W) -> Self {
        let mut b = tar::Builder::new(w);
        b.mode(tar::HeaderMode::Deterministic);
        TarOut { b }
    }

    pub fn bytes(&mut self, path: &str, data: &[u8]) -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        self.b
            .append_data(&mut h, path, data)
            .map_err(|e| Error::io(format!("writing {path} to archive"), e))
    }

    pub fn file(&mut self, path: &str, f: &mut std::fs::File) -> Result<()> {
        let len = f
            .metadata()
            .map_err(|e| Error::io(format!("stat for {path}"), e))?
            .len();
        let mut h = tar::Header::new_ustar();
        h.set_size(len);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        self.b
            .append_data(&mut h, path, f)
            .map_err(|e| Error::io(format!("writing {path} to archive"), e))
    }

    pub fn dir(&mut self, path: &str) -> Result<()> {
        let mut h = tar::Header::new_ustar();
        h.set_size(0);
        h.set_mode(0o755);
        h.set_entry_type(tar::EntryType::Directory);
        self.b
            .append_data(&mut h, path, std::io::empty())
            .map_err(|e| Error::io(format!("writing {path} to archive"), e))
    }

    pub fn finish(mut self) -> Result<W> {
        self.b
            .finish()
            .map_err(|e| Error::io("finishing archive", e))?;
        self.b
            .into_inner()
            .map_err(|e| Error::io("finishing archive", e))
    }
}
