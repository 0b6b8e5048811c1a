//! The CRI log format: `<RFC3339Nano> <stream> <F|P> <line>`, P marking a piece of a line
//! longer than the bound, F its last piece or a whole line.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use super::line::{LineSplitter, Record, MAX_LINE};
use super::Sink;
use crate::timefmt::Time;

pub struct CriFile {
    path: PathBuf,
    file: File,
}

fn open_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(path)
}

impl CriFile {
    pub fn open(path: &Path) -> io::Result<CriFile> {
        Ok(CriFile {
            path: path.to_path_buf(),
            file: open_append(path)?,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the path again (kubelet renamed the file to rotate it) and writes there from
    /// now on. On failure the old file stays in use.
    pub fn reopen(&mut self) -> io::Result<()> {
        self.file = open_append(&self.path)?;
        Ok(())
    }

    fn write_record(&mut self, stream: &str, rec: Record<'_>) -> io::Result<()> {
        let tag = if rec.partial { "P" } else { "F" };
        let mut line = Vec::with_capacity(rec.data.len() + 48);
        line.extend_from_slice(Time::now().rfc3339_nano().as_bytes());
        line.push(b' ');
        line.extend_from_slice(stream.as_bytes());
        line.push(b' ');
        line.extend_from_slice(tag.as_bytes());
        line.push(b' ');
        line.extend_from_slice(rec.data);
        line.push(b'\n');
        // One write per record: lines from stdout and stderr never interleave mid-line.
        self.file.write_all(&line)
    }
}

pub struct CriSink {
    file: Rc<RefCell<CriFile>>,
    stream: &'static str,
    lines: LineSplitter,
    failed: bool,
}

impl CriSink {
    pub fn new(file: Rc<RefCell<CriFile>>, stream: &'static str) -> CriSink {
        CriSink {
            file,
            stream,
            lines: LineSplitter::new(MAX_LINE),
            failed: false,
        }
    }

    fn emit(&mut self, data: Option<&[u8]>) {
        let file = &self.file;
        let stream = self.stream;
        let mut err = None;
        let mut f = |rec: Record<'_>| {
            if let Err(e) = file.borrow_mut().write_record(stream, rec) {
                err = Some(e);
            }
        };
        match data {
            Some(d) => self.lines.feed(d, &mut f),
            None => self.lines.finish(&mut f),
        }
        if let Some(e) = err {
            if !self.failed {
                crate::log::warn(&format!("cri log: {e}"));
                self.failed = true;
            }
        }
    }
}

impl Sink for CriSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.emit(Some(buf));
        Ok(buf.len())
    }
    fn finish(&mut self) {
        self.emit(None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_partial_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("0.log");
        let f = Rc::new(RefCell::new(CriFile::open(&p).expect("open")));
        let mut out = CriSink::new(f.clone(), "stdout");
        let mut err = CriSink::new(f, "stderr");
        out.write(b"hello\n").expect("w");
        let long = "x".repeat(MAX_LINE + 10) + "\n";
        err.write(long.as_bytes()).expect("w");
        out.write(b"tail").expect("w");
        out.finish();
        err.finish();
        let text = std::fs::read_to_string(&p).expect("read");
        let rows: Vec<Vec<&str>> = text.lines().map(|l| l.splitn(4, ' ').collect()).collect();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0][1..], ["stdout", "F", "hello"]);
        assert_eq!(rows[1][1..3], ["stderr", "P"]);
        assert_eq!(rows[1][3].len(), MAX_LINE);
        assert_eq!(rows[2][1..], ["stderr", "F", "xxxxxxxxxx"]);
        assert_eq!(rows[3][1..], ["stdout", "F", "tail"]);
        assert!(rows[0][0].ends_with('Z'));
    }
}
