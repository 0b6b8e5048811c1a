//! A build step's overlay upper directory -> an OCI layer: whiteout devices
//! become `.wh.` files, opaque directories get `.wh..wh..opq`, hard links
//! inside the layer stay links, extended attributes travel as PAX
//! `SCHILY.xattr.*` records. The tar is written straight into the store
//! ([`commit_layer`]) or to a scratch file that is compressed into the
//! store later ([`write_tar`], [`store_gzip`]); the upper directory itself
//! becomes the layer's snapshot (it already has the overlay form that
//! snapshots use).

use std::collections::HashMap;
use std::ffi::CString;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, Hashing};
use crate::error::{Error, Result};
use crate::manifest::Descriptor;
use crate::store::{SnapshotRecord, Store};
use crate::unpack::whiteout;

pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";

/// A committed layer.
#[derive(Debug, Clone)]
pub struct Layer {
    pub descriptor: Descriptor,
    pub diff_id: Digest,
    /// Bytes of file content in the layer.
    pub content_bytes: u64,
}

fn is_opaque(path: &Path) -> bool {
    let Ok(p) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    let Ok(name) = CString::new(whiteout::OVERLAY_OPAQUE_XATTR) else {
        return false;
    };
    let mut buf = [0u8; 4];
    // SAFETY: valid C strings and buffer.
    let n = unsafe {
        libc::lgetxattr(
            p.as_ptr(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    n == 1 && buf[0] == b'y'
}

struct TarWriter<'a, W: Write> {
    b: tar::Builder<W>,
    links: HashMap<(u64, u64), PathBuf>,
    bytes: u64,
    /// Paths (relative to the root) left out when they are mount-point stubs.
    stubs: &'a [PathBuf],
}

/// An empty directory or an empty regular file: what a runtime leaves in a container's
/// upper directory as the mount point of /proc or a bind-mounted /etc/hosts.
pub fn is_stub(path: &Path, meta: &std::fs::Metadata) -> bool {
    if meta.is_dir() {
        std::fs::read_dir(path).is_ok_and(|mut d| d.next().is_none())
    } else {
        meta.is_file() && meta.len() == 0
    }
}

impl<W: Write> TarWriter<'_, W> {
    fn header(meta: &std::fs::Metadata, kind: tar::EntryType) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(meta.mode() & 0o7777);
        h.set_uid(meta.uid() as u64);
        h.set_gid(meta.gid() as u64);
        h.set_mtime(meta.mtime().max(0) as u64);
        h.set_size(0);
        h
    }

    /// Precedes the next entry with a PAX header of `path`'s extended attributes.
    fn xattrs(&mut self, path: &Path) -> io::Result<()> {
        let attrs = super::xattrs::read(path)?;
        self.pax_xattrs(attrs)
    }

    fn pax_xattrs(&mut self, attrs: Vec<(String, Vec<u8>)>) -> io::Result<()> {
        if attrs.is_empty() {
            return Ok(());
        }
        let keys: Vec<String> = attrs
            .iter()
            .map(|(k, _)| format!("SCHILY.xattr.{k}"))
            .collect();
        self.b.append_pax_extensions(
            keys.iter()
                .map(String::as_str)
                .zip(attrs.iter().map(|(_, v)| v.as_slice())),
        )
    }

    fn walk(&mut self, root: &Path, rel: &Path) -> io::Result<()> {
        let dir = root.join(rel);
        // The entries' metadata is read relative to the open directory, not
        // by a lookup of each full path.
        let mut entries: Vec<_> = std::fs::read_dir(&dir)?
            .map(|e| e.and_then(|e| Ok((e.file_name(), e.metadata()?))))
            .collect::<io::Result<_>>()?;
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, meta) in entries {
            let path = dir.join(&name);
            let rp = rel.join(&name);
            if self.stubs.contains(&rp) && is_stub(&path, &meta) {
                continue;
            }
            let ft = meta.file_type();
            if ft.is_char_device() && meta.rdev() == 0 {
                let mut h = tar::Header::new_gnu();
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0);
                h.set_size(0);
                h.set_mtime(meta.mtime().max(0) as u64);
                let mut wh = std::ffi::OsString::from(whiteout::PREFIX);
                wh.push(&name);
                self.b.append_data(&mut h, rel.join(wh), io::empty())?;
            } else if ft.is_dir() {
                self.xattrs(&path)?;
                let mut h = Self::header(&meta, tar::EntryType::Directory);
                self.b.append_data(&mut h, &rp, io::empty())?;
                if is_opaque(&path) {
                    let mut o = tar::Header::new_gnu();
                    o.set_entry_type(tar::EntryType::Regular);
                    o.set_mode(0);
                    o.set_size(0);
                    self.b
                        .append_data(&mut o, rp.join(whiteout::OPAQUE), io::empty())?;
                }
                self.walk(root, &rp)?;
            } else if ft.is_file() {
                if meta.nlink() > 1 {
                    let key = (meta.dev(), meta.ino());
                    if let Some(first) = self.links.get(&key) {
                        let mut h = Self::header(&meta, tar::EntryType::Link);
                        self.b.append_link(&mut h, &rp, first)?;
                        continue;
                    }
                    self.links.insert(key, rp.clone());
                }
                let f = std::fs::File::open(&path)?;
                self.pax_xattrs(super::xattrs::read_fd(std::os::fd::AsRawFd::as_raw_fd(&f))?)?;
                let mut h = Self::header(&meta, tar::EntryType::Regular);
                h.set_size(meta.len());
                self.bytes += meta.len();
                // A file that changes size under us must not yield a broken tar.
                let mut limited = io::Read::take(f, meta.len());
                let mut counted = CountReader {
                    inner: &mut limited,
                    n: 0,
                };
                self.b.append_data(&mut h, &rp, &mut counted)?;
                if counted.n != meta.len() {
                    return Err(io::Error::other(format!(
                        "{} changed size while the layer was written",
                        rp.display()
                    )));
                }
            } else if ft.is_symlink() {
                let target = std::fs::read_link(&path)?;
                self.xattrs(&path)?;
                let mut h = Self::header(&meta, tar::EntryType::Symlink);
                self.b.append_link(&mut h, &rp, &target)?;
            } else {
                let kind = if ft.is_char_device() {
                    tar::EntryType::Char
                } else if ft.is_block_device() {
                    tar::EntryType::Block
                } else if ft.is_fifo() {
                    tar::EntryType::Fifo
                } else {
                    // Sockets have no tar form; Docker drops them too.
                    continue;
                };
                self.xattrs(&path)?;
                let mut h = Self::header(&meta, kind);
                let rdev = meta.rdev();
                h.set_device_major(libc::major(rdev))?;
                h.set_device_minor(libc::minor(rdev))?;
                self.b.append_data(&mut h, &rp, io::empty())?;
            }
        }
        Ok(())
    }
}

struct CountReader<'a, R: io::Read> {
    inner: &'a mut R,
    n: u64,
}

impl<R: io::Read> io::Read for CountReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.n += n as u64;
        Ok(n)
    }
}

/// Writes the tar of `root` to `w`; returns its diff id and the bytes of
/// file content in it.
fn write_tree<W: Write>(root: &Path, stubs: &[PathBuf], w: W) -> io::Result<(Digest, u64, W)> {
    let mut diff = Hashing::new(w);
    let bytes;
    {
        let mut tw = TarWriter {
            b: tar::Builder::new(&mut diff),
            links: HashMap::new(),
            bytes: 0,
            stubs,
        };
        tw.walk(root, Path::new(""))?;
        tw.b.finish()?;
        bytes = tw.bytes;
    }
    let (diff_id, _, w) = diff.finish();
    Ok((diff_id, bytes, w))
}

/// Writes the layer tar of `upper` into the store as a blob; returns its
/// descriptor and diff id. `gzip` compresses it (fast level).
pub fn commit_layer(store: &Store, upper: &Path, gzip: bool) -> Result<Layer> {
    commit_layer_without(store, upper, gzip, &[])
}

/// [`commit_layer`] leaving out `stubs` (paths relative to `upper`) where they are empty
/// directories or empty files: the mount points a runtime made in a container's upper
/// directory (`proc`, `etc/hosts`), which `docker commit` keeps out of the image as well.
pub fn commit_layer_without(
    store: &Store,
    upper: &Path,
    gzip: bool,
    stubs: &[PathBuf],
) -> Result<Layer> {
    let (reader, writer) = io::pipe().map_err(|e| Error::io("creating layer pipe", e))?;
    let root = upper.to_path_buf();
    let stubs = stubs.to_vec();
    // Two threads share the work: this one walks the tree and writes the tar
    // (hashing it for the diff id); the caller's compresses, hashes and stores.
    let producer = std::thread::spawn(move || -> io::Result<(Digest, u64)> {
        let (diff_id, bytes, mut out) = write_tree(
            &root,
            &stubs,
            io::BufWriter::with_capacity(256 * 1024, writer),
        )?;
        out.flush()?;
        drop(out);
        Ok((diff_id, bytes))
    });
    let reader = io::BufReader::with_capacity(256 * 1024, reader);
    let stored = if gzip {
        let mut enc = flate2::read::GzEncoder::new(reader, flate2::Compression::fast());
        store.put_blob_stream(&mut enc, u64::MAX)
    } else {
        let mut reader = reader;
        store.put_blob_stream(&mut reader, u64::MAX)
    };
    let (diff_id, content_bytes) = producer
        .join()
        .map_err(|_| Error::io("writing layer", io::Error::other("layer writer panicked")))?
        .map_err(|e| Error::path("writing layer from", upper, e))?;
    let (digest, size) = stored?;
    Ok(Layer {
        descriptor: Descriptor {
            media_type: if gzip { LAYER_GZIP } else { LAYER_TAR }.to_string(),
            digest,
            size,
            platform: None,
            annotations: None,
        },
        diff_id,
        content_bytes,
    })
}

/// A layer's uncompressed tar in a scratch file: enough for the build to go
/// on (the diff id names the snapshot) while the blob is compressed.
#[derive(Debug)]
pub struct TarFile {
    pub path: PathBuf,
    pub diff_id: Digest,
    /// Bytes of file content in the layer.
    pub content_bytes: u64,
}

/// Writes the layer tar of `upper` to the new file `out`.
pub fn write_tar(upper: &Path, out: &Path) -> Result<TarFile> {
    let f = std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(out)
        .map_err(|e| Error::path("creating layer tar", out, e))?;
    let (diff_id, content_bytes, w) =
        write_tree(upper, &[], io::BufWriter::with_capacity(256 * 1024, f))
            .map_err(|e| Error::path("writing layer from", upper, e))?;
    w.into_inner()
        .map_err(|e| Error::path("writing layer tar", out, e.into_error()))?;
    Ok(TarFile {
        path: out.to_path_buf(),
        diff_id,
        content_bytes,
    })
}

/// Compresses a [`write_tar`] file into the store as a gzip layer blob (fast
/// level) and removes the file.
pub fn store_gzip(store: &Store, tar: &TarFile) -> Result<Descriptor> {
    let f = std::fs::File::open(&tar.path)
        .map_err(|e| Error::path("opening layer tar", &tar.path, e))?;
    let mut enc = flate2::read::GzEncoder::new(
        io::BufReader::with_capacity(256 * 1024, f),
        flate2::Compression::fast(),
    );
    let stored = store.put_blob_stream(&mut enc, u64::MAX);
    let _ = std::fs::remove_file(&tar.path);
    let (digest, size) = stored?;
    Ok(Descriptor {
        media_type: LAYER_GZIP.to_string(),
        digest,
        size,
        platform: None,
        annotations: None,
    })
}

impl Store {
    /// Makes `upper` (an overlay upper dir on the store's filesystem) the
    /// snapshot for `chain_id`, unless that snapshot exists already.
    pub(crate) fn adopt_snapshot(
        &self,
        upper: &Path,
        chain_id: &Digest,
        parent: Option<&Digest>,
        diff_id: &Digest,
        size: u64,
    ) -> Result<()> {
        if self.has_snapshot(chain_id)? {
            return Ok(());
        }
        let scratch = self.snapshots_dir().join(crate::store::unique_name("tmp"));
        std::fs::create_dir(&scratch)
            .map_err(|e| Error::path("creating snapshot scratch", &scratch, e))?;
        let guard = crate::store::RemoveOnDrop(Some(scratch.clone()));
        std::fs::rename(upper, scratch.join("fs"))
            .map_err(|e| Error::path("moving layer into the snapshots", upper, e))?;
        let dest = self.snapshots_dir().join(chain_id.hex());
        match std::fs::rename(&scratch, &dest) {
            Ok(()) => {}
            Err(_) if dest.is_dir() => {}
            Err(e) => return Err(Error::path("publishing snapshot", &dest, e)),
        }
        drop(guard);
        self.db().put_snapshot(&SnapshotRecord {
            chain_id: chain_id.clone(),
            diff_id: diff_id.clone(),
            parent: parent.cloned(),
            size,
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn entries(store: &Store, l: &Layer) -> Vec<String> {
        let f = store.open_blob(&l.descriptor.digest).unwrap();
        let mut a = tar::Archive::new(f);
        a.entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect()
    }

    #[test]
    fn mount_point_stubs_are_left_out_only_while_empty() {
        let tmp = std::env::temp_dir().join(crate::store::unique_name("kos-layer-stubs"));
        let store = Store::open(tmp.join("store")).unwrap();
        let upper = tmp.join("upper");
        for d in ["proc", "sys", "etc", "data"] {
            std::fs::create_dir_all(upper.join(d)).unwrap();
        }
        std::fs::write(upper.join("etc/hosts"), b"").unwrap();
        std::fs::write(upper.join("etc/hostname"), b"written").unwrap();
        std::fs::write(upper.join("sys/kept"), b"x").unwrap();
        let stubs: Vec<PathBuf> = ["proc", "sys", "etc/hosts", "etc/hostname"]
            .iter()
            .map(PathBuf::from)
            .collect();
        let l = commit_layer_without(&store, &upper, false, &stubs).unwrap();
        let names = entries(&store, &l);
        for gone in ["proc", "etc/hosts"] {
            assert!(
                !names.iter().any(|n| n.trim_end_matches('/') == gone),
                "{gone}: {names:?}"
            );
        }
        for kept in ["sys", "sys/kept", "etc", "etc/hostname", "data"] {
            assert!(
                names.iter().any(|n| n.trim_end_matches('/') == kept),
                "{kept}: {names:?}"
            );
        }
        let all = commit_layer(&store, &upper, false).unwrap();
        assert!(entries(&store, &all)
            .iter()
            .any(|n| n.trim_end_matches('/') == "proc"));
        std::fs::remove_dir_all(&tmp).unwrap();
    }
}
