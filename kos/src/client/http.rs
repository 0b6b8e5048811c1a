//! A small synchronous HTTP/1.1 client: one connection per request, bodies
//! sent whole or chunked, responses read by length, chunks or until close.
//! Kept to what the Engine API needs so `kos` starts as fast as a static binary can.

use std::io::{self, BufRead, BufReader, Read, Write};

use super::conn::Stream;

/// Response heads larger than this are refused (they are a few hundred bytes).
const MAX_HEAD: usize = 64 * 1024;

pub enum ReqBody<'a> {
    Empty,
    Bytes(Vec<u8>, &'static str),
    /// Sent with chunked transfer encoding.
    Stream(&'a mut dyn Read, &'static str),
}

pub struct Request<'a> {
    pub method: &'static str,
    /// Path with query, already versioned.
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: ReqBody<'a>,
    /// Ask for a connection upgrade (attach, exec start).
    pub upgrade: bool,
}

impl<'a> Request<'a> {
    pub fn new(method: &'static str, target: String) -> Request<'a> {
        Request {
            method,
            target,
            headers: Vec::new(),
            body: ReqBody::Empty,
            upgrade: false,
        }
    }
}

#[derive(Debug)]
enum Framing {
    Length(u64),
    Chunked { left: u64, done: bool },
    Close,
}

/// A response: status, headers, and the body as a reader.
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    reader: BufReader<Stream>,
    framing: Framing,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Reads the whole body, bounded.
    pub fn bytes(mut self, limit: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        (&mut self).take(limit as u64 + 1).read_to_end(&mut out)?;
        if out.len() > limit {
            return Err(io::Error::other(format!(
                "response body is larger than {limit} bytes"
            )));
        }
        Ok(out)
    }

    /// The raw connection after a `101 Switching Protocols`: bytes already
    /// buffered come first in the reader; the second half writes.
    pub fn into_upgraded(self) -> io::Result<(BufReader<Stream>, Stream)> {
        let w = self.reader.get_ref().try_clone()?;
        Ok((self.reader, w))
    }
}

impl Read for Response {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        match &mut self.framing {
            Framing::Length(0) => Ok(0),
            Framing::Length(left) => {
                let n = (*left).min(buf.len() as u64) as usize;
                let got = self.reader.read(&mut buf[..n])?;
                if got == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed before the response body ended",
                    ));
                }
                *left -= got as u64;
                Ok(got)
            }
            Framing::Close => self.reader.read(buf),
            Framing::Chunked { left, done } => loop {
                if *done {
                    return Ok(0);
                }
                if *left == 0 {
                    let mut line = String::new();
                    read_line(&mut self.reader, &mut line)?;
                    let size = line.trim().split(';').next().unwrap_or("").trim();
                    let size = u64::from_str_radix(size, 16).map_err(|_| {
                        io::Error::new(io::ErrorKind::InvalidData, "bad chunk size in response")
                    })?;
                    if size == 0 {
                        // Trailers end with an empty line.
                        loop {
                            let mut t = String::new();
                            if read_line(&mut self.reader, &mut t)? == 0 || t.trim().is_empty() {
                                break;
                            }
                        }
                        *done = true;
                        return Ok(0);
                    }
                    *left = size;
                    continue;
                }
                let n = (*left).min(buf.len() as u64) as usize;
                let got = self.reader.read(&mut buf[..n])?;
                if got == 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "connection closed inside a response chunk",
                    ));
                }
                *left -= got as u64;
                if *left == 0 {
                    let mut crlf = String::new();
                    read_line(&mut self.reader, &mut crlf)?;
                }
                return Ok(got);
            },
        }
    }
}

fn read_line(r: &mut BufReader<Stream>, line: &mut String) -> io::Result<usize> {
    let n = r.by_ref().take(8192).read_line(line)?;
    if n >= 8192 && !line.ends_with('\n') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "response line too long",
        ));
    }
    Ok(n)
}

struct Chunked<'a>(&'a mut Stream);

impl Write for Chunked<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        write!(self.0, "{:x}\r\n", buf.len())?;
        self.0.write_all(buf)?;
        self.0.write_all(b"\r\n")?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// Sends `req` on `stream` and reads the response head.
pub fn send(mut stream: Stream, req: Request<'_>) -> io::Result<Response> {
    let mut head = format!(
        "{} {} HTTP/1.1\r\nHost: api.moby.localhost\r\nUser-Agent: kos/{}\r\n",
        req.method,
        req.target,
        env!("CARGO_PKG_VERSION")
    );
    for (k, v) in &req.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if req.upgrade {
        head.push_str("Connection: Upgrade\r\nUpgrade: tcp\r\n");
    }
    match &req.body {
        ReqBody::Empty => {
            if matches!(req.method, "POST" | "PUT") {
                head.push_str("Content-Length: 0\r\n");
            }
        }
        ReqBody::Bytes(b, ct) => {
            head.push_str(&format!(
                "Content-Type: {ct}\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        ReqBody::Stream(_, ct) => {
            head.push_str(&format!(
                "Content-Type: {ct}\r\nTransfer-Encoding: chunked\r\n"
            ));
        }
    }
    head.push_str("\r\n");
    let is_head = req.method == "HEAD";
    match req.body {
        ReqBody::Empty => stream.write_all(head.as_bytes())?,
        ReqBody::Bytes(b, _) => {
            let mut all = head.into_bytes();
            all.extend_from_slice(&b);
            stream.write_all(&all)?;
        }
        ReqBody::Stream(r, _) => {
            stream.write_all(head.as_bytes())?;
            let mut w = io::BufWriter::with_capacity(64 * 1024, Chunked(&mut stream));
            // The daemon may answer (an error) and close before reading it all;
            // its answer is what matters then, so a failed write falls through to it.
            let copied = io::copy(r, &mut w).and_then(|_| w.flush());
            drop(w);
            if copied.is_ok() {
                stream.write_all(b"0\r\n\r\n")?;
            }
        }
    }
    read_head(stream, is_head)
}

fn read_head(stream: Stream, is_head: bool) -> io::Result<Response> {
    let mut reader = BufReader::with_capacity(64 * 1024, stream);
    let mut total = 0usize;
    let mut status_line = String::new();
    total += read_line(&mut reader, &mut status_line)?;
    if status_line.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the daemon closed the connection without answering",
        ));
    }
    let mut parts = status_line.split_whitespace();
    let proto = parts.next().unwrap_or("");
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|_| proto.starts_with("HTTP/1."))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("not an HTTP response: {:?}", status_line.trim_end()),
            )
        })?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        let n = read_line(&mut reader, &mut line)?;
        total += n;
        if total > MAX_HEAD {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "response head too large",
            ));
        }
        let l = line.trim_end();
        if n == 0 || l.is_empty() {
            break;
        }
        if let Some((k, v)) = l.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _): &&(String, String)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.as_str())
    };
    let framing = if is_head {
        // The answer to HEAD has headers only, whatever Content-Length says.
        Framing::Length(0)
    } else if status == 101 || status == 204 || status == 304 {
        if status == 101 {
            Framing::Close
        } else {
            Framing::Length(0)
        }
    } else if get("Transfer-Encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        Framing::Chunked {
            left: 0,
            done: false,
        }
    } else if let Some(l) = get("Content-Length") {
        Framing::Length(l.parse().map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidData, "bad Content-Length in response")
        })?)
    } else {
        Framing::Close
    };
    Ok(Response {
        status,
        headers,
        reader,
        framing,
    })
}

/// Percent-encodes a query value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A query string from pairs (empty values kept out).
pub fn query(pairs: &[(&str, String)]) -> String {
    let q: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", encode(v)))
        .collect();
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    fn respond(raw: &'static [u8]) -> Response {
        let (a, mut b) = UnixStream::pair().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let _ = b.read(&mut buf);
            b.write_all(raw).unwrap();
        });
        send(Stream::Unix(a), Request::new("GET", "/x".into())).unwrap()
    }

    #[test]
    fn chunked_and_length_bodies() {
        let r = respond(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n",
        );
        assert_eq!(r.status, 200);
        assert_eq!(r.bytes(100).unwrap(), b"abcde");
        let r = respond(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\nApi-Version: 1.47\r\n\r\nnopeEXTRA",
        );
        assert_eq!(r.status, 404);
        assert_eq!(r.header("api-version"), Some("1.47"));
        assert_eq!(r.bytes(100).unwrap(), b"nope");
        assert!(respond(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            .bytes(100)
            .is_err());
    }

    #[test]
    fn not_http_is_an_error() {
        let (a, mut b) = UnixStream::pair().unwrap();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let _ = b.read(&mut buf);
            b.write_all(b"SSH-2.0-OpenSSH\r\n").unwrap();
        });
        let e = send(Stream::Unix(a), Request::new("GET", "/x".into()))
            .err()
            .unwrap();
        assert!(e.to_string().contains("not an HTTP response"), "{e}");
    }

    #[test]
    fn bounded_body() {
        let r = respond(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789");
        assert!(r.bytes(5).is_err());
    }

    #[test]
    fn query_encoding() {
        assert_eq!(
            query(&[
                ("a", "x y".into()),
                ("b", String::new()),
                ("c", "{\"k\":1}".into())
            ]),
            "?a=x%20y&c=%7B%22k%22%3A1%7D"
        );
        assert_eq!(query(&[]), "");
    }
}
