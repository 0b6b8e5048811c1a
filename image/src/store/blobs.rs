//! Blob files: verified while written, published by rename only when complete.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use crate::digest::{Digest, Hashing};
use crate::error::{Error, Result};

/// Directory layout of the blob area: `blobs/sha256/<hex>` for complete blobs,
/// `ingest/<hex>` for downloads in progress (resumable), `tmp/` for scratch.
#[derive(Debug, Clone)]
pub struct BlobDirs {
    pub blobs: PathBuf,
    pub ingest: PathBuf,
    pub tmp: PathBuf,
}

impl BlobDirs {
    pub fn new(root: &Path) -> Result<Self> {
        let d = BlobDirs {
            blobs: root.join("blobs").join("sha256"),
            ingest: root.join("ingest"),
            tmp: root.join("tmp"),
        };
        for p in [&d.blobs, &d.ingest, &d.tmp] {
            std::fs::create_dir_all(p)
                .map_err(|e| Error::path("creating store directory", p, e))?;
        }
        Ok(d)
    }

    pub fn path(&self, d: &Digest) -> PathBuf {
        self.blobs.join(d.hex())
    }
}

/// A blob being written. Bytes are hashed as they arrive; `commit` checks the
/// digest and size, fsyncs and renames the file into place, so a blob under
/// `blobs/` is always complete. Dropping an uncommitted writer keeps the
/// partial file (so the download can resume) unless it was found corrupt.
pub struct BlobWriter {
    out: Hashing<File>,
    partial: PathBuf,
    dest: PathBuf,
    blobs_dir: PathBuf,
    expected: Digest,
    size: Option<u64>,
    resumed_from: u64,
    done: bool,
}

impl BlobWriter {
    /// Opens (or continues) the ingest file for `expected`. Existing bytes of
    /// an interrupted download are re-hashed so the final check covers them.
    /// The ingest file is locked, so two pulls of one blob take turns.
    pub(crate) fn open(dirs: &BlobDirs, expected: &Digest, size: Option<u64>) -> Result<Self> {
        let partial = dirs.ingest.join(expected.hex());
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&partial)
            .map_err(|e| Error::path("opening ingest file", &partial, e))?;
        // SAFETY: valid fd; the lock is released when the file is closed.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } < 0 {
            return Err(Error::path(
                "locking ingest file",
                &partial,
                io::Error::last_os_error(),
            ));
        }
        let mut out = Hashing::new(file);
        let mut existing = 0u64;
        {
            let f = out.get_mut();
            let len = f
                .metadata()
                .map_err(|e| Error::path("stat of ingest file", &partial, e))?
                .len();
            if size.is_some_and(|s| len > s) {
                f.set_len(0)
                    .map_err(|e| Error::path("truncating ingest file", &partial, e))?;
            } else if len > 0 {
                existing = len;
            }
        }
        let mut w = BlobWriter {
            out,
            partial: partial.clone(),
            dest: dirs.path(expected),
            blobs_dir: dirs.blobs.clone(),
            expected: expected.clone(),
            size,
            resumed_from: 0,
            done: false,
        };
        if existing > 0 {
            w.rehash_existing()
                .map_err(|e| Error::path("re-reading ingest file", &partial, e))?;
        }
        Ok(w)
    }

    fn rehash_existing(&mut self) -> io::Result<()> {
        let mut f = self.out.get_mut().try_clone()?;
        f.seek(SeekFrom::Start(0))?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let k = f.read(&mut buf)?;
            if k == 0 {
                break;
            }
            self.out.absorb(&buf[..k]);
        }
        self.out.get_mut().seek(SeekFrom::End(0))?;
        self.resumed_from = self.out.count();
        Ok(())
    }

    /// Bytes already present when the writer was opened (resume offset).
    pub fn resumed_from(&self) -> u64 {
        self.resumed_from
    }

    /// Bytes written so far, including resumed ones.
    pub fn written(&self) -> u64 {
        self.out.count()
    }

    /// Drops what was written so far (a registry refused a range request).
    pub fn restart(&mut self) -> Result<()> {
        let f = self.out.get_mut();
        f.set_len(0)
            .map_err(|e| Error::path("truncating ingest file", &self.partial, e))?;
        f.seek(SeekFrom::Start(0))
            .map_err(|e| Error::path("rewinding ingest file", &self.partial, e))?;
        let file = f
            .try_clone()
            .map_err(|e| Error::path("reopening ingest file", &self.partial, e))?;
        self.out = Hashing::new(file);
        self.resumed_from = 0;
        Ok(())
    }

    /// Checks what was written against the expected digest and size without
    /// publishing; a complete but wrong blob is deleted.
    pub fn verify(&mut self) -> Result<()> {
        let (digest, n) = (self.out.digest(), self.out.count());
        if self.size.is_some_and(|s| s != n) {
            return Err(Error::SizeMismatch {
                digest: self.expected.to_string(),
                expected: self.size.unwrap_or(0),
                actual: n,
            });
        }
        if digest != self.expected {
            let _ = std::fs::remove_file(&self.partial);
            self.done = true;
            return Err(Error::DigestMismatch {
                what: "blob".into(),
                expected: self.expected.to_string(),
                actual: digest.to_string(),
            });
        }
        Ok(())
    }

    /// Verifies digest and size, then atomically publishes the blob.
    pub fn commit(mut self) -> Result<Digest> {
        self.done = true;
        let partial = self.partial.clone();
        let file = self.out.get_mut();
        file.flush()
            .map_err(|e| Error::path("flushing blob", &partial, e))?;
        let (digest, n) = (self.out.digest(), self.out.count());
        let file = self.out.get_mut();
        if let Some(size) = self.size {
            if n != size {
                let _ = std::fs::remove_file(&partial);
                return Err(Error::SizeMismatch {
                    digest: self.expected.to_string(),
                    expected: size,
                    actual: n,
                });
            }
        }
        if digest != self.expected {
            let _ = std::fs::remove_file(&partial);
            return Err(Error::DigestMismatch {
                what: "blob".into(),
                expected: self.expected.to_string(),
                actual: digest.to_string(),
            });
        }
        file.sync_all()
            .map_err(|e| Error::path("fsync of blob", &partial, e))?;
        std::fs::rename(&partial, &self.dest)
            .map_err(|e| Error::path("publishing blob", &self.dest, e))?;
        fsync_dir(&self.blobs_dir)?;
        Ok(digest)
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(size) = self.size {
            if self.out.count() + buf.len() as u64 > size {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "blob {} is larger than its declared {size} bytes",
                        self.expected
                    ),
                ));
            }
        }
        self.out.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // An oversize partial can never become valid: discard it. A shorter
        // one is kept for resumption.
        if !self.done && self.size.is_some_and(|s| self.out.count() > s) {
            let _ = std::fs::remove_file(&self.partial);
        }
    }
}

/// Makes a rename or create inside `dir` durable.
pub(crate) fn fsync_dir(dir: &Path) -> Result<()> {
    let f = File::open(dir).map_err(|e| Error::path("opening directory", dir, e))?;
    f.sync_all()
        .map_err(|e| Error::path("fsync of directory", dir, e))
}

/// Writes `bytes` as a blob in one go (manifests, configs, small files).
pub(crate) fn write_whole(dirs: &BlobDirs, bytes: &[u8]) -> Result<Digest> {
    let d = Digest::of(bytes);
    if dirs.path(&d).exists() {
        return Ok(d);
    }
    let mut w = BlobWriter::open(dirs, &d, Some(bytes.len() as u64))?;
    if w.written() > 0 {
        w.restart()?;
    }
    w.write_all(bytes)
        .map_err(|e| Error::io(format!("writing blob {d}"), e))?;
    w.commit()
}

/// Streams `r` into a blob named by its own digest (archives whose files are
/// not named by digest). Returns digest and size.
pub(crate) fn write_stream(dirs: &BlobDirs, r: &mut dyn Read, max: u64) -> Result<(Digest, u64)> {
    let tmp = dirs.tmp.join(super::unique_name("ingest"));
    let file = File::create(&tmp).map_err(|e| Error::path("creating temp blob", &tmp, e))?;
    let guard = super::RemoveOnDrop(Some(tmp.clone()));
    let mut out = Hashing::new(file);
    let n = io::copy(&mut r.take(max.saturating_add(1)), &mut out)
        .map_err(|e| Error::path("writing temp blob", &tmp, e))?;
    if n > max {
        return Err(Error::LimitExceeded {
            limit: max,
            unit: "bytes per archive file",
        });
    }
    let (digest, n, file) = out.finish();
    file.sync_all()
        .map_err(|e| Error::path("fsync of blob", &tmp, e))?;
    let dest = dirs.path(&digest);
    if !dest.exists() {
        std::fs::rename(&tmp, &dest).map_err(|e| Error::path("publishing blob", &dest, e))?;
        fsync_dir(&dirs.blobs)?;
    }
    drop(guard);
    Ok((digest, n))
}
