//! SPDY/3.1 frames (the subset Kubernetes' streams use) and their header blocks, which
//! each direction of a connection compresses with one zlib stream primed with the SPDY/3
//! dictionary.

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};
use tokio::io::{AsyncRead, AsyncReadExt};

pub const VERSION: u16 = 3;
pub const FLAG_FIN: u8 = 0x01;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

/// RST_STREAM status codes used here.
pub const RST_PROTOCOL_ERROR: u32 = 1;
pub const RST_REFUSED_STREAM: u32 = 3;

/// Largest decompressed header block accepted.
const MAX_HEADER_BLOCK: usize = 64 * 1024;

pub type Headers = Vec<(String, String)>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        id: u32,
        fin: bool,
        headers: Headers,
    },
    SynReply {
        id: u32,
        fin: bool,
        headers: Headers,
    },
    RstStream {
        id: u32,
        status: u32,
    },
    Settings,
    Ping(u32),
    GoAway {
        last: u32,
        status: u32,
    },
    Headers {
        id: u32,
        headers: Headers,
    },
    WindowUpdate {
        id: u32,
        delta: u32,
    },
    Data {
        id: u32,
        fin: bool,
        data: Bytes,
    },
    /// A control frame of a type not used here (ignored, as the spec asks).
    Unknown,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("reading a frame: {0}")]
    Io(#[from] std::io::Error),
    #[error("SPDY protocol error: {0}")]
    Protocol(String),
}

fn proto(msg: impl Into<String>) -> FrameError {
    FrameError::Protocol(msg.into())
}

fn u32_at(b: &[u8], at: usize) -> Result<u32, FrameError> {
    b.get(at..at + 4)
        .map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]))
        .ok_or_else(|| proto("frame too short"))
}

/// Encodes header blocks (one zlib stream for the connection's outgoing side).
pub struct Encoder {
    z: Compress,
}

impl Encoder {
    pub fn new() -> Result<Encoder, FrameError> {
        let mut z = Compress::new(Compression::default(), true);
        z.set_dictionary(&super::dictionary::dictionary())
            .map_err(|e| proto(format!("zlib dictionary: {e}")))?;
        Ok(Encoder { z })
    }

    fn header_block(&mut self, headers: &Headers) -> Result<Vec<u8>, FrameError> {
        let mut raw = Vec::new();
        raw.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (k, v) in headers {
            let k = k.to_ascii_lowercase();
            raw.extend_from_slice(&(k.len() as u32).to_be_bytes());
            raw.extend_from_slice(k.as_bytes());
            raw.extend_from_slice(&(v.len() as u32).to_be_bytes());
            raw.extend_from_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let mut input = &raw[..];
        loop {
            out.reserve(256);
            let before = self.z.total_in();
            self.z
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| proto(format!("compressing headers: {e}")))?;
            let used = (self.z.total_in() - before) as usize;
            input = &input[used..];
            // Done when all input is in and the flush did not fill the buffer.
            if input.is_empty() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }

    fn control(kind: u16, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::with_capacity(8 + payload.len());
        f.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
        f.extend_from_slice(&kind.to_be_bytes());
        f.push(flags);
        f.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        f.extend_from_slice(payload);
        f
    }

    /// The frame's bytes on the wire.
    pub fn encode(&mut self, frame: &Frame) -> Result<Vec<u8>, FrameError> {
        let fin = |f: bool| if f { FLAG_FIN } else { 0 };
        Ok(match frame {
            Frame::SynStream {
                id,
                fin: f,
                headers,
            } => {
                let mut p = Vec::new();
                p.extend_from_slice(&id.to_be_bytes());
                p.extend_from_slice(&0u32.to_be_bytes());
                p.extend_from_slice(&[0, 0]);
                p.extend_from_slice(&self.header_block(headers)?);
                Self::control(SYN_STREAM, fin(*f), &p)
            }
            Frame::SynReply {
                id,
                fin: f,
                headers,
            } => {
                let mut p = id.to_be_bytes().to_vec();
                p.extend_from_slice(&self.header_block(headers)?);
                Self::control(SYN_REPLY, fin(*f), &p)
            }
            Frame::Headers { id, headers } => {
                let mut p = id.to_be_bytes().to_vec();
                p.extend_from_slice(&self.header_block(headers)?);
                Self::control(HEADERS, 0, &p)
            }
            Frame::RstStream { id, status } => {
                let mut p = id.to_be_bytes().to_vec();
                p.extend_from_slice(&status.to_be_bytes());
                Self::control(RST_STREAM, 0, &p)
            }
            Frame::Settings => Self::control(SETTINGS, 0, &0u32.to_be_bytes()),
            Frame::Ping(id) => Self::control(PING, 0, &id.to_be_bytes()),
            Frame::GoAway { last, status } => {
                let mut p = last.to_be_bytes().to_vec();
                p.extend_from_slice(&status.to_be_bytes());
                Self::control(GOAWAY, 0, &p)
            }
            Frame::WindowUpdate { id, delta } => {
                let mut p = id.to_be_bytes().to_vec();
                p.extend_from_slice(&delta.to_be_bytes());
                Self::control(WINDOW_UPDATE, 0, &p)
            }
            Frame::Data { id, fin: f, data } => {
                let mut v = Vec::with_capacity(8 + data.len());
                v.extend_from_slice(&(id & 0x7fff_ffff).to_be_bytes());
                v.push(fin(*f));
                v.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
                v.extend_from_slice(data);
                v
            }
            Frame::Unknown => Vec::new(),
        })
    }
}

/// Decodes frames (one zlib stream for the connection's incoming side).
pub struct Decoder {
    z: Decompress,
    dictionary: Vec<u8>,
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder {
            z: Decompress::new(true),
            dictionary: super::dictionary::dictionary(),
        }
    }

    fn header_block(&mut self, mut input: &[u8]) -> Result<Headers, FrameError> {
        let mut raw: Vec<u8> = Vec::with_capacity(1024);
        loop {
            if raw.len() >= MAX_HEADER_BLOCK {
                return Err(proto("header block too large"));
            }
            raw.reserve(4096.min(MAX_HEADER_BLOCK - raw.len()));
            let before = self.z.total_in();
            let r = self
                .z
                .decompress_vec(input, &mut raw, FlushDecompress::Sync);
            let used = (self.z.total_in() - before) as usize;
            input = &input[used..];
            match r {
                Ok(Status::Ok) | Ok(Status::BufError) | Ok(Status::StreamEnd) => {
                    if input.is_empty() && raw.len() < raw.capacity() {
                        break;
                    }
                }
                Err(e) if e.needs_dictionary().is_some() => {
                    self.z
                        .set_dictionary(&self.dictionary)
                        .map_err(|e| proto(format!("zlib dictionary: {e}")))?;
                }
                Err(e) => return Err(proto(format!("decompressing headers: {e}"))),
            }
        }
        parse_header_block(&raw)
    }

    /// Reads one frame.
    pub async fn read<R: AsyncRead + Unpin>(&mut self, r: &mut R) -> Result<Frame, FrameError> {
        let mut head = [0u8; 8];
        r.read_exact(&mut head).await?;
        let flags = head[4];
        let len = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
        let mut body = vec![0u8; len];
        r.read_exact(&mut body).await?;
        if head[0] & 0x80 == 0 {
            let id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]);
            return Ok(Frame::Data {
                id,
                fin: flags & FLAG_FIN != 0,
                data: Bytes::from(body),
            });
        }
        let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
        if version != VERSION {
            return Err(proto(format!("version {version}, expected {VERSION}")));
        }
        let kind = u16::from_be_bytes([head[2], head[3]]);
        let fin = flags & FLAG_FIN != 0;
        let id = |b: &[u8]| u32_at(b, 0).map(|v| v & 0x7fff_ffff);
        Ok(match kind {
            SYN_STREAM => {
                if body.len() < 10 {
                    return Err(proto("SYN_STREAM too short"));
                }
                Frame::SynStream {
                    id: id(&body)?,
                    fin,
                    headers: self.header_block(&body[10..])?,
                }
            }
            SYN_REPLY => Frame::SynReply {
                id: id(&body)?,
                fin,
                headers: self.header_block(body.get(4..).unwrap_or_default())?,
            },
            HEADERS => Frame::Headers {
                id: id(&body)?,
                headers: self.header_block(body.get(4..).unwrap_or_default())?,
            },
            RST_STREAM => Frame::RstStream {
                id: id(&body)?,
                status: u32_at(&body, 4)?,
            },
            SETTINGS => Frame::Settings,
            PING => Frame::Ping(u32_at(&body, 0)?),
            GOAWAY => Frame::GoAway {
                last: id(&body)?,
                status: u32_at(&body, 4).unwrap_or(0),
            },
            WINDOW_UPDATE => Frame::WindowUpdate {
                id: id(&body)?,
                delta: u32_at(&body, 4)? & 0x7fff_ffff,
            },
            _ => Frame::Unknown,
        })
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

fn parse_header_block(b: &[u8]) -> Result<Headers, FrameError> {
    let n = u32_at(b, 0)? as usize;
    let mut at = 4;
    let mut out = Vec::with_capacity(n.min(64));
    let take = |at: &mut usize| -> Result<String, FrameError> {
        let len = u32_at(b, *at)? as usize;
        *at += 4;
        let s = b
            .get(*at..*at + len)
            .ok_or_else(|| proto("header block truncated"))?;
        *at += len;
        Ok(String::from_utf8_lossy(s).into_owned())
    };
    for _ in 0..n {
        let k = take(&mut at)?;
        let v = take(&mut at)?;
        out.push((k.to_ascii_lowercase(), v));
    }
    Ok(out)
}

/// The first value of header `name` (values of one name are NUL-separated).
pub fn header<'a>(h: &'a Headers, name: &str) -> Option<&'a str> {
    h.iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.split('\0').next().unwrap_or(""))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn frames_round_trip_through_both_zlib_streams() {
        let mut enc = Encoder::new().unwrap();
        let mut dec = Decoder::new();
        let frames = vec![
            Frame::SynStream {
                id: 1,
                fin: false,
                headers: vec![("streamtype".into(), "error".into())],
            },
            Frame::SynStream {
                id: 3,
                fin: false,
                headers: vec![
                    ("streamtype".into(), "data".into()),
                    ("port".into(), "8080".into()),
                    ("requestid".into(), "0".into()),
                ],
            },
            Frame::SynReply {
                id: 3,
                fin: true,
                headers: vec![],
            },
            Frame::Data {
                id: 3,
                fin: true,
                data: Bytes::from_static(b"hello"),
            },
            Frame::Ping(7),
            Frame::RstStream { id: 5, status: 3 },
            Frame::WindowUpdate { id: 3, delta: 100 },
            Frame::GoAway { last: 3, status: 0 },
        ];
        let mut wire = Vec::new();
        for f in &frames {
            wire.extend(enc.encode(f).unwrap());
        }
        let mut r = &wire[..];
        for f in &frames {
            assert_eq!(&dec.read(&mut r).await.unwrap(), f);
        }
        assert!(r.is_empty());
    }

    #[test]
    fn headers_are_found_by_name() {
        let h = vec![
            ("streamtype".into(), "stdin".into()),
            ("port".into(), "80\0x".into()),
        ];
        assert_eq!(header(&h, "streamType"), Some("stdin"));
        assert_eq!(header(&h, "port"), Some("80"));
        assert_eq!(header(&h, "none"), None);
    }
}
