//! The ttrpc wire format: a 10-byte header (payload length, stream id, message type, flags,
//! all big-endian) followed by a protobuf `Request` or `Response`. Only what the shim needs:
//! framing for the server loop and a blocking unary client for event publishing.

use std::io::{self, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use containerd_shim_protos::ttrpc::{Code, Request, Response, Status};
use protobuf::Message;

pub const HEADER_LEN: usize = 10;
/// ttrpc's own limit on one message; anything larger is a broken or hostile peer.
pub const MAX_MESSAGE: usize = 4 << 20;
pub const TYPE_REQUEST: u8 = 1;
pub const TYPE_RESPONSE: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub length: u32,
    pub stream_id: u32,
    pub kind: u8,
    pub flags: u8,
}

impl Header {
    pub fn parse(b: &[u8]) -> Option<Header> {
        if b.len() < HEADER_LEN {
            return None;
        }
        Some(Header {
            length: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            stream_id: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            kind: b[8],
            flags: b[9],
        })
    }

    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.length.to_be_bytes());
        out.extend_from_slice(&self.stream_id.to_be_bytes());
        out.push(self.kind);
        out.push(self.flags);
    }
}

/// One complete frame split off the front of `buf`, if `buf` holds one.
/// Err when the peer announces a message over the limit.
pub fn take_frame(buf: &mut Vec<u8>) -> io::Result<Option<(Header, Vec<u8>)>> {
    let Some(h) = Header::parse(buf) else {
        return Ok(None);
    };
    let len = h.length as usize;
    if len > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("ttrpc message of {len} bytes exceeds the {MAX_MESSAGE} byte limit"),
        ));
    }
    if buf.len() < HEADER_LEN + len {
        return Ok(None);
    }
    let payload = buf[HEADER_LEN..HEADER_LEN + len].to_vec();
    buf.drain(..HEADER_LEN + len);
    Ok(Some((h, payload)))
}

/// An RPC failure as ttrpc carries it: a gRPC status code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    pub code: Code,
    pub message: String,
}

impl RpcError {
    pub fn new(code: Code, message: impl Into<String>) -> RpcError {
        RpcError {
            code,
            message: message.into(),
        }
    }
    pub fn not_found(m: impl Into<String>) -> RpcError {
        RpcError::new(Code::NOT_FOUND, m)
    }
    pub fn invalid(m: impl Into<String>) -> RpcError {
        RpcError::new(Code::INVALID_ARGUMENT, m)
    }
    pub fn precondition(m: impl Into<String>) -> RpcError {
        RpcError::new(Code::FAILED_PRECONDITION, m)
    }
    pub fn exists(m: impl Into<String>) -> RpcError {
        RpcError::new(Code::ALREADY_EXISTS, m)
    }
    pub fn internal(m: impl Into<String>) -> RpcError {
        RpcError::new(Code::UNKNOWN, m)
    }
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message)
    }
}

/// A complete response frame for `stream_id`.
pub fn response_frame(stream_id: u32, result: Result<Vec<u8>, RpcError>) -> Vec<u8> {
    let mut resp = Response::new();
    let mut status = Status::new();
    match result {
        Ok(payload) => {
            status.code = Code::OK.into();
            resp.payload = payload;
        }
        Err(e) => {
            status.code = e.code.into();
            status.message = e.message;
        }
    }
    resp.status = protobuf::MessageField::some(status);
    let body = resp.write_to_bytes().unwrap_or_default();
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    Header {
        length: body.len() as u32,
        stream_id,
        kind: TYPE_RESPONSE,
        flags: 0,
    }
    .encode(&mut out);
    out.extend_from_slice(&body);
    out
}

pub fn request_frame(stream_id: u32, service: &str, method: &str, payload: Vec<u8>) -> Vec<u8> {
    let mut req = Request::new();
    req.service = service.to_string();
    req.method = method.to_string();
    req.payload = payload;
    let body = req.write_to_bytes().unwrap_or_default();
    let mut out = Vec::with_capacity(HEADER_LEN + body.len());
    Header {
        length: body.len() as u32,
        stream_id,
        kind: TYPE_REQUEST,
        flags: 0,
    }
    .encode(&mut out);
    out.extend_from_slice(&body);
    out
}

/// One blocking unary call on a fresh connection to `socket`: for publishing events, where
/// the peer may be gone (then the caller keeps the event and retries).
pub fn call(
    socket: &str,
    service: &str,
    method: &str,
    payload: Vec<u8>,
    timeout: Duration,
) -> io::Result<Vec<u8>> {
    let path = socket.strip_prefix("unix://").unwrap_or(socket);
    let mut s = UnixStream::connect(path)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.write_all(&request_frame(1, service, method, payload))?;
    let mut head = [0u8; HEADER_LEN];
    s.read_exact(&mut head)?;
    let h = Header::parse(&head).ok_or_else(|| io::Error::other("short ttrpc header"))?;
    if h.length as usize > MAX_MESSAGE {
        return Err(io::Error::other("oversized ttrpc frame"));
    }
    let mut body = vec![0u8; h.length as usize];
    s.read_exact(&mut body)?;
    parse_response(&h, &body, 1)
        .map_err(|e| io::Error::new(e.kind(), format!("{service}/{method}: {e}")))
}

/// The payload of a response frame to call `stream_id`, or its error status.
pub fn parse_response(h: &Header, body: &[u8], stream_id: u32) -> io::Result<Vec<u8>> {
    if h.kind != TYPE_RESPONSE || h.stream_id != stream_id {
        return Err(io::Error::other("unexpected ttrpc frame"));
    }
    let resp = Response::parse_from_bytes(body).map_err(io::Error::other)?;
    if let Some(st) = resp.status.as_ref() {
        if st.code.value() != 0 {
            return Err(io::Error::other(format!("failed: {}", st.message)));
        }
    }
    Ok(resp.payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_split() {
        let f = request_frame(3, "svc", "M", vec![1, 2, 3]);
        let mut buf = f.clone();
        buf.extend_from_slice(&f[..5]);
        let (h, body) = take_frame(&mut buf).expect("ok").expect("frame");
        assert_eq!(h.stream_id, 3);
        assert_eq!(h.kind, TYPE_REQUEST);
        let req = Request::parse_from_bytes(&body).expect("parse");
        assert_eq!((req.service.as_str(), req.method.as_str()), ("svc", "M"));
        assert_eq!(req.payload, vec![1, 2, 3]);
        assert_eq!(buf.len(), 5);
        assert!(take_frame(&mut buf).expect("ok").is_none());
    }

    #[test]
    fn oversized_frames_are_refused() {
        let mut buf = Vec::new();
        Header {
            length: (MAX_MESSAGE + 1) as u32,
            stream_id: 1,
            kind: TYPE_REQUEST,
            flags: 0,
        }
        .encode(&mut buf);
        assert!(take_frame(&mut buf).is_err());
    }

    #[test]
    fn error_responses_carry_code_and_message() {
        let f = response_frame(7, Err(RpcError::not_found("exec x not found")));
        let mut buf = f;
        let (h, body) = take_frame(&mut buf).expect("ok").expect("frame");
        assert_eq!((h.stream_id, h.kind), (7, TYPE_RESPONSE));
        let r = Response::parse_from_bytes(&body).expect("parse");
        assert_eq!(r.status.code.value(), Code::NOT_FOUND as i32);
        assert_eq!(r.status.message, "exec x not found");
    }
}
