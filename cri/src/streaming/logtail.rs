//! Following a CRI log file (`<RFC3339Nano> <stream> <P|F> <text>` lines, written by the
//! shim) from its current end: what Attach sends as the container's output. A log that is
//! rotated (ReopenContainerLog) is followed into its new file.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogStream {
    Stdout,
    Stderr,
}

/// Most bytes read per poll, and the longest line kept while waiting for its end (the
/// shim splits longer lines, so anything above is not a CRI log).
const MAX_READ: u64 = 1024 * 1024;
const MAX_LINE: usize = 1024 * 1024;

/// One log line: its stream and the bytes the process wrote (a full line gets its
/// newline back; a partial one does not).
pub fn parse_line(line: &[u8]) -> Option<(LogStream, Vec<u8>)> {
    let mut parts = line.splitn(4, |b| *b == b' ');
    let _time = parts.next()?;
    let stream = match parts.next()? {
        b"stdout" => LogStream::Stdout,
        b"stderr" => LogStream::Stderr,
        _ => return None,
    };
    let tag = parts.next()?;
    let text = parts.next().unwrap_or_default();
    let mut data = text.to_vec();
    // The tag may carry more flags after ':' in later versions; P marks a partial line.
    if tag.split(|b| *b == b':').next() != Some(b"P") {
        data.push(b'\n');
    }
    Some((stream, data))
}

pub struct Follower {
    path: PathBuf,
    file: File,
    ino: (u64, u64),
    partial: Vec<u8>,
}

fn identity(m: &std::fs::Metadata) -> (u64, u64) {
    (m.dev(), m.ino())
}

impl Follower {
    pub fn open_at_end(path: &Path) -> std::io::Result<Follower> {
        let mut file = File::open(path)?;
        let ino = identity(&file.metadata()?);
        file.seek(SeekFrom::End(0))?;
        Ok(Follower {
            path: path.to_path_buf(),
            file,
            ino,
            partial: Vec::new(),
        })
    }

    /// The records appended since the last call.
    pub fn poll(&mut self) -> std::io::Result<Vec<(LogStream, Vec<u8>)>> {
        let mut out = Vec::new();
        self.read_available(&mut out)?;
        // Rotated: the old file is read to its end above, then the new one from its start.
        if let Ok(m) = std::fs::metadata(&self.path) {
            if identity(&m) != self.ino {
                if let Ok(f) = File::open(&self.path) {
                    self.ino = identity(&f.metadata()?);
                    self.file = f;
                    self.partial.clear();
                    self.read_available(&mut out)?;
                }
            }
        }
        Ok(out)
    }

    fn read_available(&mut self, out: &mut Vec<(LogStream, Vec<u8>)>) -> std::io::Result<()> {
        let mut buf = Vec::new();
        (&mut self.file).take(MAX_READ).read_to_end(&mut buf)?;
        if buf.is_empty() {
            return Ok(());
        }
        self.partial.extend_from_slice(&buf);
        let mut start = 0;
        while let Some(n) = self.partial[start..].iter().position(|b| *b == b'\n') {
            if let Some(r) = parse_line(&self.partial[start..start + n]) {
                out.push(r);
            }
            start += n + 1;
        }
        self.partial.drain(..start);
        if self.partial.len() > MAX_LINE {
            self.partial.clear();
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_by_tag() {
        let (s, d) = parse_line(b"2024-01-01T00:00:00.000000001Z stdout F hello world").unwrap();
        assert_eq!(s, LogStream::Stdout);
        assert_eq!(d, b"hello world\n");
        let (s, d) = parse_line(b"2024-01-01T00:00:00Z stderr P part").unwrap();
        assert_eq!(s, LogStream::Stderr);
        assert_eq!(d, b"part");
        let (_, d) = parse_line(b"2024-01-01T00:00:00Z stdout F ").unwrap();
        assert_eq!(d, b"\n");
        assert!(parse_line(b"garbage").is_none());
        assert!(parse_line(b"t other F x").is_none());
    }

    #[test]
    fn follows_from_the_end_and_across_rotation() {
        struct Dir(PathBuf);
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
        let guard =
            Dir(std::env::temp_dir().join(format!("kos-cri-logtail-{}", std::process::id())));
        let dir = guard.0.clone();
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("0.log");
        std::fs::write(&p, "t stdout F before\n").unwrap();
        let mut f = Follower::open_at_end(&p).unwrap();
        assert!(f.poll().unwrap().is_empty());
        use std::io::Write;
        let mut w = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        w.write_all(b"t stdout F one\nt stderr P tw").unwrap();
        let r = f.poll().unwrap();
        assert_eq!(r, vec![(LogStream::Stdout, b"one\n".to_vec())]);
        w.write_all(b"o\n").unwrap();
        std::fs::rename(&p, dir.join("0.log.1")).unwrap();
        std::fs::write(&p, "t stdout F three\n").unwrap();
        let r = f.poll().unwrap();
        assert_eq!(
            r,
            vec![
                (LogStream::Stderr, b"two".to_vec()),
                (LogStream::Stdout, b"three\n".to_vec())
            ]
        );
    }
}
