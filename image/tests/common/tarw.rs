//! A minimal tar writer for tests: full control over every header byte, so
//! tests can also write the hostile archives a well-behaved builder refuses.

#![allow(dead_code)]

use std::io::Write;

#[derive(Clone, Debug)]
pub struct Entry {
    pub path: Vec<u8>,
    pub kind: u8,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    pub data: Vec<u8>,
    pub link: Vec<u8>,
    pub major: u32,
    pub minor: u32,
    pub xattrs: Vec<(String, Vec<u8>)>,
    /// Declared size when it differs from data.len() (truncation tests).
    pub size_override: Option<u64>,
}

impl Entry {
    fn base(path: &str, kind: u8, mode: u32) -> Self {
        Entry {
            path: path.as_bytes().to_vec(),
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime: 1_600_000_000,
            data: Vec::new(),
            link: Vec::new(),
            major: 0,
            minor: 0,
            xattrs: Vec::new(),
            size_override: None,
        }
    }
    pub fn file(path: &str, data: &[u8]) -> Self {
        let mut e = Self::base(path, b'0', 0o644);
        e.data = data.to_vec();
        e
    }
    pub fn dir(path: &str) -> Self {
        Self::base(path, b'5', 0o755)
    }
    pub fn symlink(path: &str, target: &str) -> Self {
        let mut e = Self::base(path, b'2', 0o777);
        e.link = target.as_bytes().to_vec();
        e
    }
    pub fn hardlink(path: &str, target: &str) -> Self {
        let mut e = Self::base(path, b'1', 0o644);
        e.link = target.as_bytes().to_vec();
        e
    }
    pub fn chardev(path: &str, major: u32, minor: u32) -> Self {
        let mut e = Self::base(path, b'3', 0o666);
        e.major = major;
        e.minor = minor;
        e
    }
    pub fn blockdev(path: &str, major: u32, minor: u32) -> Self {
        let mut e = Self::base(path, b'4', 0o660);
        e.major = major;
        e.minor = minor;
        e
    }
    pub fn fifo(path: &str) -> Self {
        Self::base(path, b'6', 0o644)
    }
    pub fn mode(mut self, m: u32) -> Self {
        self.mode = m;
        self
    }
    pub fn owner(mut self, uid: u64, gid: u64) -> Self {
        self.uid = uid;
        self.gid = gid;
        self
    }
    pub fn mtime(mut self, t: u64) -> Self {
        self.mtime = t;
        self
    }
    pub fn xattr(mut self, k: &str, v: &[u8]) -> Self {
        self.xattrs.push((k.to_string(), v.to_vec()));
        self
    }
}

fn octal(field: &mut [u8], v: u64) {
    let s = format!("{:0width$o}", v, width = field.len() - 1);
    let b = s.as_bytes();
    let start = b.len().saturating_sub(field.len() - 1);
    let last = field.len() - 1;
    field[..last].copy_from_slice(&b[start..]);
    field[last] = 0;
}

fn header(name: &[u8], kind: u8, e: &Entry, size: u64, link: &[u8]) -> [u8; 512] {
    let mut h = [0u8; 512];
    let n = name.len().min(100);
    h[..n].copy_from_slice(&name[..n]);
    octal(&mut h[100..108], e.mode as u64);
    octal(&mut h[108..116], e.uid.min(0o7777777));
    octal(&mut h[116..124], e.gid.min(0o7777777));
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], e.mtime);
    h[156] = kind;
    let l = link.len().min(100);
    h[157..157 + l].copy_from_slice(&link[..l]);
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    octal(&mut h[329..337], e.major as u64);
    octal(&mut h[337..345], e.minor as u64);
    h[148..156].copy_from_slice(b"        ");
    let sum: u64 = h.iter().map(|&b| b as u64).sum();
    let s = format!("{:06o}\0 ", sum);
    h[148..156].copy_from_slice(s.as_bytes());
    h
}

fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    // "<len> key=value\n" where len counts itself.
    let body_len = key.len() + value.len() + 3;
    let mut len = body_len + 1;
    while format!("{len}").len() + body_len != len {
        len = format!("{len}").len() + body_len;
    }
    let mut v = format!("{len} {key}=").into_bytes();
    v.extend_from_slice(value);
    v.push(b'\n');
    v
}

fn pad(out: &mut Vec<u8>) {
    let rem = out.len() % 512;
    if rem != 0 {
        out.extend(std::iter::repeat_n(0u8, 512 - rem));
    }
}

/// Serialises entries into an uncompressed tar (with PAX headers for long
/// names, long link targets and xattrs).
pub fn build(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut pax = Vec::new();
        if e.path.len() > 100 {
            pax.extend(pax_record("path", &e.path));
        }
        if e.link.len() > 100 {
            pax.extend(pax_record("linkpath", &e.link));
        }
        if e.uid > 0o7777777 {
            pax.extend(pax_record("uid", e.uid.to_string().as_bytes()));
        }
        for (k, v) in &e.xattrs {
            pax.extend(pax_record(&format!("SCHILY.xattr.{k}"), v));
        }
        if !pax.is_empty() {
            out.extend_from_slice(&header(b"PaxHeader", b'x', e, pax.len() as u64, b""));
            out.extend_from_slice(&pax);
            pad(&mut out);
        }
        let size = e.size_override.unwrap_or(e.data.len() as u64);
        out.extend_from_slice(&header(&e.path, e.kind, e, size, &e.link));
        out.extend_from_slice(&e.data);
        pad(&mut out);
    }
    out.extend(std::iter::repeat_n(0u8, 1024));
    out
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).expect("gzip");
    enc.finish().expect("gzip")
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).expect("zstd")
}
