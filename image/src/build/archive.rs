//! Local archives that `ADD` unpacks, recognised as Docker recognises them:
//! the compression by its magic bytes (never by the file's name), then the
//! (decompressed) start must be a tar header with a valid checksum. Anything
//! else is copied as a plain file.

use std::io::{self, BufReader, Read};
use std::path::Path;

/// How an archive is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Bzip2,
    Xz,
    Zstd,
}

impl Compression {
    fn sniff(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b, 0x08]) {
            Compression::Gzip
        } else if head.starts_with(b"BZh") {
            Compression::Bzip2
        } else if head.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
            Compression::Xz
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// The decompressed stream of `r`, compressed as `kind`.
fn decoder<'a>(
    kind: Compression,
    r: impl Read + Send + 'a,
) -> io::Result<Box<dyn Read + Send + 'a>> {
    let r = BufReader::with_capacity(128 * 1024, r);
    Ok(match kind {
        Compression::None => Box::new(r),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(r)),
        Compression::Bzip2 => Box::new(bzip2::bufread::MultiBzDecoder::new(r)),
        Compression::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(r)),
        Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(r)?),
    })
}

fn read_head(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Whether `block` is a tar header: a name and a checksum that adds up
/// (unsigned, or signed as some old tars wrote it).
pub fn is_tar_header(block: &[u8]) -> bool {
    if block.len() < 512 || block[0] == 0 {
        return false;
    }
    let field = &block[148..156];
    let digits: String = field
        .iter()
        .map(|&b| b as char)
        .take_while(|c| *c != '\0')
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let Ok(want) = u64::from_str_radix(&digits, 8) else {
        return false;
    };
    let (mut unsigned, mut signed) = (0u64, 0i64);
    for (i, &b) in block[..512].iter().enumerate() {
        let b = if (148..156).contains(&i) { b' ' } else { b };
        unsigned += b as u64;
        signed += b as i8 as i64;
    }
    want == unsigned || want as i64 == signed
}

/// The compression of `path` when it is a tar archive, `None` when it is a
/// file to copy. A compressed stream that is broken or holds no tar is a
/// file, as with Docker.
pub fn detect(path: &Path) -> io::Result<Option<Compression>> {
    let mut f = std::fs::File::open(path)?;
    let mut magic = [0u8; 6];
    let n = read_head(&mut f, &mut magic)?;
    let kind = Compression::sniff(&magic[..n]);
    let mut d = match decoder(kind, std::fs::File::open(path)?) {
        Ok(d) => d,
        Err(_) => return Ok(None),
    };
    let mut block = [0u8; 512];
    let n = match read_head(&mut d, &mut block) {
        Ok(n) => n,
        Err(_) => return Ok(None),
    };
    Ok((n == 512 && is_tar_header(&block)).then_some(kind))
}

/// The tar stream of an archive [`detect`] recognised.
pub fn open(path: &Path, kind: Compression) -> io::Result<Box<dyn Read + Send>> {
    decoder(kind, std::fs::File::open(path)?)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn header(name: &str) -> Vec<u8> {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_size(0);
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    #[test]
    fn tar_headers() {
        assert!(is_tar_header(&header("a")));
        let mut old = tar::Header::new_old();
        old.set_path("v7").unwrap();
        old.set_size(0);
        old.set_cksum();
        assert!(is_tar_header(old.as_bytes()));
        let mut bad = header("a");
        bad[0] = b'b';
        assert!(!is_tar_header(&bad));
        assert!(!is_tar_header(&[0u8; 512]));
        assert!(!is_tar_header(&[b'x'; 512]));
    }

    #[test]
    fn magic() {
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8, 0]), Compression::Gzip);
        assert_eq!(Compression::sniff(b"BZh91AY"), Compression::Bzip2);
        assert_eq!(
            Compression::sniff(&[0xfd, b'7', b'z', b'X', b'Z', 0]),
            Compression::Xz
        );
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::sniff(b"hello"), Compression::None);
    }
}
