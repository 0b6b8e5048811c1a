//! Layer compression, detected from the stream's first bytes.

use std::io::{self, BufRead, BufReader, Read};

use crate::error::{Error, Result};

/// Compression of a layer stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// Compression named by a layer media type; unknown types are an error.
    pub fn from_media_type(mt: &str) -> Result<Self> {
        let base = mt.trim();
        match base {
            "application/vnd.oci.image.layer.v1.tar"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar" => Ok(Compression::None),
            "application/vnd.oci.image.layer.v1.tar+gzip"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip"
            | "application/vnd.docker.image.rootfs.diff.tar.gzip"
            | "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip" => Ok(Compression::Gzip),
            "application/vnd.oci.image.layer.v1.tar+zstd"
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
                Ok(Compression::Zstd)
            }
            "application/vnd.docker.image.rootfs.diff.tar" => Ok(Compression::None),
            other => Err(Error::UnsupportedMediaType(other.to_string())),
        }
    }

    /// The OCI media type for a layer of this compression.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Compression::None => "application/vnd.oci.image.layer.v1.tar",
            Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
            Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
        }
    }

    fn sniff(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }
}

/// Wraps `input` in the decompressor its magic bytes call for. The stream is
/// trusted for its format only, never for its size: callers bound the output.
pub fn decompress<'a, R: Read + Send + 'a>(
    input: R,
) -> Result<(Compression, Box<dyn Read + Send + 'a>)> {
    let mut buf = BufReader::with_capacity(256 * 1024, input);
    let head = buf
        .fill_buf()
        .map_err(|e| Error::io("reading layer header", e))?;
    let kind = Compression::sniff(head);
    let reader: Box<dyn Read + Send + 'a> = match kind {
        Compression::None => Box::new(buf),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buf)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(buf)
                .map_err(|e| Error::io("starting zstd decoder", e))?,
        ),
    };
    Ok((kind, reader))
}

/// Reads `r` to its end, discarding the bytes; returns how many there were.
pub fn drain(r: &mut dyn Read) -> io::Result<u64> {
    io::copy(r, &mut io::sink())
}
