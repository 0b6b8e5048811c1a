//! Reading the json-file logs the shim writes: past lines with since/until/
//! tail filters, following new lines, and Docker's stream framing.

use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A log line longer than this is cut (the shim splits long lines anyway).
const MAX_LINE: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub stream: Stream,
    pub time_nano: i64,
    /// RFC 3339 as written.
    pub time: String,
    pub data: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Deserialize)]
struct Line {
    log: String,
    stream: String,
    time: String,
}

/// Parses one json-file line.
pub fn parse_line(l: &[u8]) -> Option<Entry> {
    let v: Line = serde_json::from_slice(l).ok()?;
    let time_nano = chrono::DateTime::parse_from_rfc3339(&v.time)
        .ok()?
        .timestamp_nanos_opt()?;
    Some(Entry {
        stream: if v.stream == "stderr" {
            Stream::Stderr
        } else {
            Stream::Stdout
        },
        time_nano,
        time: v.time,
        data: v.log.into_bytes(),
    })
}

/// The most rotated files looked for (`<log>.1` newest .. `<log>.100` oldest).
const MAX_ROTATED: u32 = 100;

/// The log file and its rotated predecessors, oldest first: found in one listing of the
/// container's directory, not a lookup per possible suffix.
pub fn files(path: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(u32, PathBuf)> = Vec::new();
    let base = path.file_name().and_then(|n| n.to_str());
    if let (Some(dir), Some(base)) = (path.parent(), base) {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for en in entries.flatten() {
                let name = en.file_name();
                let n = name
                    .to_str()
                    .and_then(|n| n.strip_prefix(base))
                    .and_then(|n| n.strip_prefix('.'))
                    .and_then(|n| n.parse::<u32>().ok().filter(|v| v.to_string() == n));
                if let Some(n) = n.filter(|n| (1..=MAX_ROTATED).contains(n)) {
                    rotated.push((n, en.path()));
                }
            }
        }
    }
    rotated.sort_by_key(|r| std::cmp::Reverse(r.0));
    let mut out: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    out.push(path.to_path_buf());
    out
}

/// The current log file opened at its end, for following what comes next; None while the
/// shim has not made it yet.
pub fn open_at_end(path: &Path) -> std::io::Result<Option<std::fs::File>> {
    match std::fs::File::open(path) {
        Ok(mut f) => {
            f.seek(SeekFrom::End(0))?;
            Ok(Some(f))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Reads lines of `f` from its current position; returns complete entries and
/// leaves the position after the last complete line.
pub fn read_new(f: &mut std::fs::File) -> std::io::Result<Vec<Entry>> {
    let start = f.stream_position()?;
    let mut r = BufReader::new(&mut *f);
    let mut out = Vec::new();
    let mut consumed = 0u64;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let n = (&mut r).take(MAX_LINE as u64).read_until(b'\n', &mut buf)?;
        if n == 0 || buf.last() != Some(&b'\n') {
            break;
        }
        consumed += n as u64;
        if let Some(e) = parse_line(&buf) {
            out.push(e);
        }
    }
    drop(r);
    f.seek(SeekFrom::Start(start + consumed))?;
    Ok(out)
}

/// Docker's multiplexed frame: stream byte, 3 zero bytes, big-endian length.
pub fn frame(stream: u8, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + data.len());
    v.push(stream);
    v.extend_from_slice(&[0, 0, 0]);
    v.extend_from_slice(&(data.len() as u32).to_be_bytes());
    v.extend_from_slice(data);
    v
}

/// What `docker logs` asked for.
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub stdout: bool,
    pub stderr: bool,
    pub since: Option<i64>,
    pub until: Option<i64>,
    pub timestamps: bool,
    pub tail: Option<usize>,
}

impl LogOptions {
    pub fn wants(&self, e: &Entry) -> bool {
        (match e.stream {
            Stream::Stdout => self.stdout,
            Stream::Stderr => self.stderr,
        }) && self.since.is_none_or(|s| e.time_nano >= s)
            && self.until.is_none_or(|u| e.time_nano <= u)
    }

    /// The bytes to send for one entry.
    pub fn render(&self, e: &Entry, tty: bool) -> Vec<u8> {
        let mut data = Vec::new();
        if self.timestamps {
            data.extend_from_slice(crate::timefmt::rfc3339_nanos(e.time_nano).as_bytes());
            data.push(b' ');
        }
        data.extend_from_slice(&e.data);
        if tty {
            data
        } else {
            frame(if e.stream == Stream::Stderr { 2 } else { 1 }, &data)
        }
    }
}

/// Every past entry that passes the filters (tail applied), and the open
/// current file positioned at its end, for following.
pub fn past(path: &Path, o: &LogOptions) -> std::io::Result<(Vec<Entry>, Option<std::fs::File>)> {
    let mut all = Vec::new();
    let mut last = None;
    for p in files(path) {
        match std::fs::File::open(&p) {
            Ok(mut f) => {
                all.extend(read_new(&mut f)?.into_iter().filter(|e| o.wants(e)));
                if p == path {
                    last = Some(f);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    if let Some(t) = o.tail {
        let skip = all.len().saturating_sub(t);
        all.drain(..skip);
    }
    Ok((all, last))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn reads_filters_and_frames() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c-json.log");
        let mut f = std::fs::File::create(&p).unwrap();
        writeln!(
            f,
            r#"{{"log":"a\n","stream":"stdout","time":"2024-01-01T00:00:01.000000001Z"}}"#
        )
        .unwrap();
        writeln!(
            f,
            r#"{{"log":"b\n","stream":"stderr","time":"2024-01-01T00:00:02Z"}}"#
        )
        .unwrap();
        write!(f, r#"{{"log":"partial"#).unwrap();
        let o = LogOptions {
            stdout: true,
            stderr: true,
            ..Default::default()
        };
        let (all, cur) = past(&p, &o).unwrap();
        assert_eq!(all.len(), 2);
        assert!(cur.is_some());
        let o2 = LogOptions {
            stdout: true,
            stderr: false,
            tail: Some(1),
            ..Default::default()
        };
        assert_eq!(past(&p, &o2).unwrap().0[0].data, b"a\n");
        let o3 = LogOptions {
            stdout: true,
            stderr: true,
            since: Some(all[1].time_nano),
            ..Default::default()
        };
        assert_eq!(past(&p, &o3).unwrap().0.len(), 1);
        assert_eq!(&o.render(&all[1], false)[..8], &[2, 0, 0, 0, 0, 0, 0, 2]);
        let ts = LogOptions {
            timestamps: true,
            ..o.clone()
        };
        assert!(String::from_utf8(ts.render(&all[0], true))
            .unwrap()
            .starts_with("2024-01-01T00:00:01.000000001Z a"));
        // The partial line is picked up once complete.
        let mut cur = cur.unwrap();
        writeln!(f, r#"","stream":"stdout","time":"2024-01-01T00:00:03Z"}}"#).unwrap();
        let more = read_new(&mut cur).unwrap();
        assert_eq!(more.len(), 1);
        assert_eq!(more[0].data, b"partial");
    }

    #[test]
    fn rotated_files_oldest_first_and_following_from_the_end() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c-json.log");
        assert_eq!(files(&p), vec![p.clone()]);
        assert!(open_at_end(&p).unwrap().is_none());
        let line = |t: &str| {
            format!(r#"{{"log":"{t}\n","stream":"stdout","time":"2024-01-01T00:00:01Z"}}"#) + "\n"
        };
        for (suffix, text) in [(".2", "old"), (".1", "mid"), ("", "new")] {
            std::fs::write(dir.path().join(format!("c-json.log{suffix}")), line(text)).unwrap();
        }
        // Not rotated files of this log: another log, a non-number, a leading zero, too far.
        for other in [
            "d-json.log.1",
            "c-json.log.x",
            "c-json.log.01",
            "c-json.log.101",
        ] {
            std::fs::write(dir.path().join(other), line("no")).unwrap();
        }
        let want: Vec<_> = [".2", ".1", ""]
            .iter()
            .map(|s| dir.path().join(format!("c-json.log{s}")))
            .collect();
        assert_eq!(files(&p), want);
        let o = LogOptions {
            stdout: true,
            ..Default::default()
        };
        let texts: Vec<_> = past(&p, &o)
            .unwrap()
            .0
            .into_iter()
            .map(|e| e.data)
            .collect();
        assert_eq!(
            texts,
            [b"old\n".to_vec(), b"mid\n".to_vec(), b"new\n".to_vec()]
        );
        // From the end: only what is written after.
        let mut f = open_at_end(&p).unwrap().unwrap();
        assert!(read_new(&mut f).unwrap().is_empty());
        let mut w = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        w.write_all(line("later").as_bytes()).unwrap();
        let new = read_new(&mut f).unwrap();
        assert_eq!(new.len(), 1);
        assert_eq!(new[0].data, b"later\n");
    }
}
