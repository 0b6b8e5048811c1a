//! Forwarding a query to upstream resolvers, unchanged, and relaying the first good answer.
//!
//! Each UDP attempt uses a fresh socket connected to one upstream, so the kernel drops
//! datagrams from anyone else and the source port is random per query (no shared port to spoof
//! answers into). An answer must carry the query's id and question; anything else is ignored
//! until the attempt times out, then the next upstream is tried.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};
use tokio::time::timeout;

/// Longest DNS message over TCP (two-byte length prefix).
pub const MAX_TCP_MESSAGE: usize = 65535;
/// Largest UDP answer read from an upstream.
const MAX_UDP_ANSWER: usize = 4096;

#[derive(Debug, Clone)]
pub struct Upstreams {
    pub servers: Vec<SocketAddr>,
    /// Time allowed to each upstream per query.
    pub attempt_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no upstream resolvers configured")]
    NoUpstreams,
    #[error("no upstream answered (last: {last})")]
    AllFailed { last: String },
}

impl Upstreams {
    /// Forwards over UDP; the raw answer on success.
    pub async fn forward_udp(&self, query: &[u8]) -> Result<Vec<u8>, Error> {
        self.try_each(query, |server, query| Box::pin(udp_attempt(server, query)))
            .await
    }

    /// Forwards over TCP (the asker used TCP, or needs the full answer).
    pub async fn forward_tcp(&self, query: &[u8]) -> Result<Vec<u8>, Error> {
        self.try_each(query, |server, query| Box::pin(tcp_attempt(server, query)))
            .await
    }

    async fn try_each<'a, F>(&self, query: &'a [u8], attempt: F) -> Result<Vec<u8>, Error>
    where
        F: Fn(
            SocketAddr,
            &'a [u8],
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = std::io::Result<Vec<u8>>> + Send + 'a>,
        >,
    {
        if self.servers.is_empty() {
            return Err(Error::NoUpstreams);
        }
        let mut last = String::new();
        for server in &self.servers {
            match timeout(self.attempt_timeout, attempt(*server, query)).await {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(e)) => last = format!("{server}: {e}"),
                Err(_) => last = format!("{server}: timed out"),
            }
            tracing::debug!(%server, error = %last, "upstream attempt failed");
        }
        Err(Error::AllFailed { last })
    }
}

async fn udp_attempt(server: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let local: SocketAddr = match server.ip() {
        IpAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
        IpAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
    };
    let sock = UdpSocket::bind(local).await?;
    sock.connect(server).await?;
    sock.send(query).await?;
    let mut buf = vec![0u8; MAX_UDP_ANSWER];
    loop {
        let n = sock.recv(&mut buf).await?;
        if answers(query, &buf[..n]) {
            buf.truncate(n);
            return Ok(buf);
        }
    }
}

async fn tcp_attempt(server: SocketAddr, query: &[u8]) -> std::io::Result<Vec<u8>> {
    let len = u16::try_from(query.len())
        .map_err(|_| std::io::Error::other("query longer than 65535 bytes"))?;
    let mut stream = TcpStream::connect(server).await?;
    let mut framed = Vec::with_capacity(query.len() + 2);
    framed.extend_from_slice(&len.to_be_bytes());
    framed.extend_from_slice(query);
    stream.write_all(&framed).await?;
    let answer = read_tcp_message(&mut stream).await?;
    if !answers(query, &answer) {
        return Err(std::io::Error::other("answer does not match the query"));
    }
    Ok(answer)
}

/// Reads one length-prefixed DNS message (at most 65535 bytes by construction).
pub async fn read_tcp_message<R: AsyncReadExt + Unpin>(r: &mut R) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    r.read_exact(&mut len).await?;
    let len = usize::from(u16::from_be_bytes(len));
    let mut msg = vec![0u8; len];
    r.read_exact(&mut msg).await?;
    Ok(msg)
}

/// Whether `answer` is a response to `query`: same id, QR set, same question section bytes.
fn answers(query: &[u8], answer: &[u8]) -> bool {
    if query.len() < 12 || answer.len() < 12 {
        return false;
    }
    if query[..2] != answer[..2] || answer[2] & 0x80 == 0 {
        return false;
    }
    // QDCOUNT and the question itself (compression is not used in questions of our askers'
    // queries, and a forwarder copies it verbatim).
    let q_end = question_end(query);
    match q_end {
        Some(end) => query[4..6] == answer[4..6] && answer.get(12..end) == query.get(12..end),
        None => false,
    }
}

/// `answer` cut to its header and question with TC set (the asker must retry over TCP).
pub fn truncated(answer: &[u8]) -> Option<Vec<u8>> {
    if answer.len() < 12 {
        return None;
    }
    let end = question_end(answer)?;
    let mut out = answer[..end].to_vec();
    out[2] |= 0x02;
    out[6..12].fill(0);
    Some(out)
}

/// End offset of the question section of a one-question message, when well formed.
fn question_end(msg: &[u8]) -> Option<usize> {
    if u16::from_be_bytes([msg[4], msg[5]]) != 1 {
        return None;
    }
    let mut i = 12;
    loop {
        let len = usize::from(*msg.get(i)?);
        if len == 0 {
            i += 1;
            break;
        }
        if len & 0xc0 != 0 {
            return None;
        }
        i += 1 + len;
    }
    let end = i + 4;
    (end <= msg.len()).then_some(end)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use hickory_proto::rr::RecordType;

    #[test]
    fn answer_must_match_id_and_question() {
        let q = crate::answer::query_bytes(7, "example.com.", RecordType::A).unwrap();
        let mut a = q.clone();
        a[2] |= 0x80;
        assert!(answers(&q, &a));
        let mut wrong_id = a.clone();
        wrong_id[1] ^= 1;
        assert!(!answers(&q, &wrong_id));
        let other = crate::answer::query_bytes(7, "example.org.", RecordType::A).unwrap();
        let mut other_a = other.clone();
        other_a[2] |= 0x80;
        assert!(!answers(&q, &other_a));
        assert!(!answers(&q, &q), "a query is not an answer");
        assert!(!answers(&q, &a[..11]));
    }
}
