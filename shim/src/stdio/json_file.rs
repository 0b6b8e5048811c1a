//! Docker's json-file log format: one JSON object per line,
//! `{"log":"...\n","stream":"stdout","time":"RFC3339Nano"}`, with max-size/max-file rotation
//! (PATH, PATH.1 .. PATH.(max-file - 1)). Both streams of a container may share one file.

use std::cell::RefCell;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use serde::Serialize;

use super::line::{LineSplitter, Record, MAX_LINE};
use super::Sink;
use crate::timefmt::Time;

pub struct JsonFile {
    path: PathBuf,
    file: File,
    size: u64,
    max_size: u64,
    max_file: u32,
}

#[derive(Serialize)]
struct Entry<'a> {
    log: &'a str,
    stream: &'a str,
    time: &'a str,
}

impl JsonFile {
    pub fn open(path: &Path, max_size: u64, max_file: u32) -> io::Result<JsonFile> {
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(JsonFile {
            path: path.to_path_buf(),
            file,
            size,
            max_size,
            max_file: max_file.max(1),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the path again (someone renamed the file away) and writes there from now on,
    /// counting its size afresh. On failure the old file stays in use.
    pub fn reopen(&mut self) -> io::Result<()> {
        let file = open_append(&self.path)?;
        self.size = file.metadata()?.len();
        self.file = file;
        Ok(())
    }

    fn write_record(&mut self, stream: &str, rec: Record<'_>) -> io::Result<()> {
        let mut text = String::from_utf8_lossy(rec.data).into_owned();
        if !rec.partial {
            text.push('\n');
        }
        let time = Time::now().rfc3339_nano();
        let mut line = serde_json::to_vec(&Entry {
            log: &text,
            stream,
            time: &time,
        })
        .map_err(io::Error::other)?;
        line.push(b'\n');
        if self.max_size > 0 && self.size > 0 && self.size + line.len() as u64 > self.max_size {
            self.rotate()?;
        }
        self.file.write_all(&line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    fn rotate(&mut self) -> io::Result<()> {
        if self.max_file > 1 {
            for i in (1..self.max_file).rev() {
                let from = if i == 1 {
                    self.path.clone()
                } else {
                    numbered(&self.path, i - 1)
                };
                match std::fs::rename(&from, numbered(&self.path, i)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
            }
            self.file = open_append(&self.path)?;
        } else {
            self.file.set_len(0)?;
        }
        self.size = 0;
        Ok(())
    }
}

fn numbered(p: &Path, i: u32) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(format!(".{i}"));
    PathBuf::from(s)
}

fn open_append(p: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o640)
        .open(p)
}

/// One stream's view of a (possibly shared) json-file log.
pub struct JsonFileSink {
    file: Rc<RefCell<JsonFile>>,
    stream: &'static str,
    lines: LineSplitter,
    /// A terminal's output is written as it comes, not held until a newline.
    terminal: bool,
    failed: bool,
}

impl JsonFileSink {
    pub fn new(file: Rc<RefCell<JsonFile>>, stream: &'static str) -> JsonFileSink {
        JsonFileSink {
            file,
            stream,
            lines: LineSplitter::new(MAX_LINE),
            terminal: false,
            failed: false,
        }
    }

    /// For a terminal's stream: every read is logged at once, partial lines as partial
    /// entries (no trailing newline), as Docker does.
    pub fn for_terminal(mut self, terminal: bool) -> JsonFileSink {
        self.terminal = terminal;
        self
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
            Some(d) => {
                self.lines.feed(d, &mut f);
                if self.terminal {
                    self.lines.flush(&mut f);
                }
            }
            None => self.lines.finish(&mut f),
        }
        if let Some(e) = err {
            if !self.failed {
                crate::log::warn(&format!("json-file log: {e}"));
                self.failed = true;
            }
        }
    }
}

impl Sink for JsonFileSink {
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
    fn rotates_and_keeps_max_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("c.log");
        let f = Rc::new(RefCell::new(JsonFile::open(&p, 200, 3).expect("open")));
        let mut out = JsonFileSink::new(f.clone(), "stdout");
        for i in 0..20 {
            out.write(format!("line {i}\n").as_bytes()).expect("write");
        }
        out.finish();
        assert!(numbered(&p, 1).exists() && numbered(&p, 2).exists());
        assert!(!numbered(&p, 3).exists());
        for f in [p.clone(), numbered(&p, 1), numbered(&p, 2)] {
            assert!(std::fs::metadata(&f).expect("meta").len() <= 200);
        }
        let last = std::fs::read_to_string(&p).expect("read");
        let v: serde_json::Value =
            serde_json::from_str(last.lines().last().expect("line")).expect("json");
        assert_eq!(v["log"], "line 19\n");
        assert_eq!(v["stream"], "stdout");
    }

    #[test]
    fn terminal_streams_write_partial_entries_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("t.log");
        let f = Rc::new(RefCell::new(JsonFile::open(&p, 0, 1).expect("open")));
        let mut out = JsonFileSink::new(f, "stdout").for_terminal(true);
        out.write(b"/ # ").expect("write");
        let text = std::fs::read_to_string(&p).expect("read");
        let v: serde_json::Value = serde_json::from_str(text.trim_end()).expect("json");
        assert_eq!(v["log"], "/ # ");
    }
}
