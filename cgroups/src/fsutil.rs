//! Small file helpers for cgroupfs: one open and one write per value, errors that name the file,
//! and a journal that remembers what a write replaced so a failed update can be undone.

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Writes `value` to an existing cgroup file in a single write(2), as the kernel parses each
/// write on its own. O_TRUNC is a no-op on cgroupfs and keeps a plain-file test tree showing
/// the last value written.
pub(crate) fn write_raw(path: &Path, value: &str) -> io::Result<()> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)?;
    f.write_all(value.as_bytes())
}

/// Reads a small kernel-generated file. Their size reads as 0, so `fs::read_to_string`
/// stats the file and then grows its buffer from 32 bytes read by read; a page-sized buffer
/// takes the usual cgroupfs or /proc file in one read (and one more to see the end).
pub fn read_small(path: &Path) -> io::Result<String> {
    use std::io::Read;
    // Plain reads: read_to_end would first stat the file and ask its position for a size
    // hint that is 0 here anyway.
    let mut f = fs::File::open(path)?;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
        match f.read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    String::from_utf8(buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

pub(crate) fn read_string(path: &Path) -> Result<String> {
    read_small(path).map_err(|source| Error::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Reads a file holding a single number; "max" reads as `u64::MAX`.
pub(crate) fn read_u64(path: &Path) -> Result<u64> {
    let s = read_string(path)?;
    parse_u64(s.trim()).ok_or_else(|| Error::Parse {
        path: path.to_path_buf(),
        reason: format!("expected a number, found {:?}", s.trim()),
    })
}

pub(crate) fn parse_u64(s: &str) -> Option<u64> {
    if s == "max" {
        return Some(u64::MAX);
    }
    s.parse().ok()
}

/// Parses "key value" lines (memory.stat, cpu.stat, ...) into pairs, skipping malformed lines.
pub(crate) fn parse_flat_keyed(s: &str) -> Vec<(&str, u64)> {
    s.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let k = it.next()?;
            let v = parse_u64(it.next()?)?;
            Some((k, v))
        })
        .collect()
}

/// Reads a flat-keyed file and returns the value of one key, if present.
pub(crate) fn read_keyed(path: &Path, key: &str) -> Result<Option<u64>> {
    let s = read_string(path)?;
    Ok(parse_flat_keyed(&s)
        .into_iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v))
}

/// Creates `dir` and any missing parents; returns the directories it made, outermost first,
/// so a caller can undo exactly what it created. The common cases (parent exists, or the
/// directory already exists) cost one mkdir and nothing else.
pub(crate) fn mkdir_all(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut made = Vec::new();
    match mkdir_inner(dir, &mut made) {
        Ok(()) => Ok(made),
        Err(e) => {
            for m in made.iter().rev() {
                let _ = fs::remove_dir(m);
            }
            Err(e)
        }
    }
}

fn mkdir_inner(dir: &Path, made: &mut Vec<PathBuf>) -> Result<()> {
    let err = |source| Error::Dir {
        op: "mkdir",
        path: dir.to_path_buf(),
        source,
    };
    match fs::create_dir(dir) {
        Ok(()) => {
            made.push(dir.to_path_buf());
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let Some(parent) = dir.parent() else {
                return Err(err(e));
            };
            mkdir_inner(parent, made)?;
            match fs::create_dir(dir) {
                Ok(()) => {
                    made.push(dir.to_path_buf());
                    Ok(())
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
                Err(e) => Err(err(e)),
            }
        }
        Err(e) => Err(err(e)),
    }
}

/// A cgroup file opened at its first write and kept open for the next ones: for files the
/// kernel parses one write(2) at a time (devices.allow takes one rule per write), so a list
/// of values costs one open, not one per value.
pub(crate) struct HeldFile {
    path: PathBuf,
    file: Option<fs::File>,
}

impl HeldFile {
    pub fn new(path: PathBuf) -> HeldFile {
        HeldFile { path, file: None }
    }

    fn write(&mut self, value: &str) -> io::Result<()> {
        let f = match self.file.as_mut() {
            Some(f) => f,
            None => self.file.insert(
                fs::OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_CLOEXEC)
                    .open(&self.path)?,
            ),
        };
        // One write(2) for the whole value: a short write would split a rule.
        let n = f.write(value.as_bytes())?;
        if n != value.len() {
            return Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write: {n} of {} bytes", value.len()),
            ));
        }
        Ok(())
    }
}

/// One undo step: write `value` back to `path`.
#[derive(Debug, Clone)]
pub(crate) struct Undo {
    pub path: PathBuf,
    pub value: String,
}

/// Performs the writes of one apply. With journaling on, each write first records what it
/// replaces; `rollback` replays those records newest first. Journaling is off for a cgroup
/// made moments ago, where undoing means removing the cgroup and costs no reads.
#[derive(Debug, Default)]
pub(crate) struct Writer {
    journal: Option<Vec<Undo>>,
}

impl Writer {
    pub fn new(journal: bool) -> Self {
        Writer {
            journal: journal.then(Vec::new),
        }
    }

    pub fn journaling(&self) -> bool {
        self.journal.is_some()
    }

    /// Records an undo step computed by the caller (for files whose read-back form differs
    /// from their write form).
    pub fn remember(&mut self, path: &Path, value: String) {
        if let Some(j) = self.journal.as_mut() {
            j.push(Undo {
                path: path.to_path_buf(),
                value,
            });
        }
    }

    /// Writes a whole-file value, journaling the previous content when asked to.
    pub fn write(&mut self, field: &str, path: &Path, value: &str) -> Result<()> {
        if self.journal.is_some() {
            if let Ok(old) = fs::read_to_string(path) {
                let old = old.trim().to_string();
                if old == value {
                    return Ok(());
                }
                self.remember(path, old);
            }
        }
        self.write_only(field, path, value)
    }

    /// Writes a line of a keyed file (throttles, io.max, ...). The undo is the old line for
    /// `key` or, when the key had no line, `key` followed by `unset`.
    pub fn write_keyed(
        &mut self,
        field: &str,
        path: &Path,
        key: &str,
        value: &str,
        unset: &str,
    ) -> Result<()> {
        if self.journal.is_some() {
            let old = fs::read_to_string(path).unwrap_or_default();
            let prev = old
                .lines()
                .find(|l| l.split_whitespace().next() == Some(key))
                .map(str::to_string)
                .unwrap_or_else(|| format!("{key} {unset}"));
            self.remember(path, prev);
        }
        self.write_only(field, path, value)
    }

    /// Writes without journaling (write-only files such as devices.allow, whose undo the
    /// caller records itself).
    pub fn write_only(&mut self, field: &str, path: &Path, value: &str) -> Result<()> {
        tracing::trace!(path = %path.display(), value, "cgroup write");
        write_raw(path, value).map_err(|source| Error::Write {
            field: field.to_string(),
            path: path.to_path_buf(),
            value: value.to_string(),
            source,
        })
    }

    /// Writes one value through a file kept open across writes (see [`HeldFile`]), without
    /// journaling, like [`Writer::write_only`].
    pub fn write_held(&mut self, field: &str, file: &mut HeldFile, value: &str) -> Result<()> {
        tracing::trace!(path = %file.path.display(), value, "cgroup write");
        file.write(value).map_err(|source| Error::Write {
            field: field.to_string(),
            path: file.path.clone(),
            value: value.to_string(),
            source,
        })
    }

    /// Undoes every journaled write, newest first. Failures are logged: rollback runs on an
    /// error path and must try every step.
    pub fn rollback(self) {
        for u in self.journal.unwrap_or_default().into_iter().rev() {
            if let Err(e) = write_raw(&u.path, &u.value) {
                tracing::warn!(path = %u.path.display(), value = %u.value, error = %e, "cgroup rollback write failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_small_reads_whole_files_of_any_size() {
        let dir = std::env::temp_dir().join(format!("kos-cg-read-small-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("mkdir");
        for len in [0usize, 1, 4095, 4096, 4097, 20000] {
            let p = dir.join(format!("f{len}"));
            let data: String = (0..len).map(|i| (b'a' + (i % 26) as u8) as char).collect();
            fs::write(&p, &data).expect("write");
            assert_eq!(read_small(&p).expect("read"), data, "{len} bytes");
        }
        let _ = fs::remove_dir_all(&dir);
        // A kernel file whose size reads as 0.
        let own = read_small(Path::new("/proc/self/cgroup")).expect("read /proc/self/cgroup");
        assert!(own.ends_with('\n') && own.contains(':'), "{own}");
        assert!(read_small(Path::new("/nonexistent/kos")).is_err());
    }
}
