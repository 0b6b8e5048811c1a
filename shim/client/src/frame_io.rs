//! The shim connection's byte stream, shaped so each ttrpc message costs the two ends one
//! write and one read.
//!
//! The ttrpc crate writes a message as five writes: the header's four fields one by one
//! (4, 4, 1 and 1 bytes), a flush, then the payload. Unbuffered, each is a `sendto` that
//! wakes the shim, which reads and polls again: five rounds per request. [`WholeFrames`]
//! keeps the header until the payload's first write and sends both with one vectored
//! write. Reads go through a `BufReader`, so a reply's header and payload (which the shim
//! sends together) take one `recvfrom`, not two.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A ttrpc message header: length (u32), stream id (u32), type (u8), flags (u8).
const HEADER: usize = 10;

/// Holds each message's header until its payload is written (module doc).
pub struct WholeFrames<S> {
    inner: S,
    header: [u8; HEADER],
    /// Header bytes collected from the writer.
    held: usize,
    /// Header bytes written to `inner`.
    sent: usize,
    /// Payload bytes of the current message not yet written.
    payload_left: usize,
}

impl<S> WholeFrames<S> {
    pub fn new(inner: S) -> Self {
        WholeFrames {
            inner,
            header: [0; HEADER],
            held: 0,
            sent: 0,
            payload_left: 0,
        }
    }

    fn payload_len(&self) -> usize {
        u32::from_be_bytes([
            self.header[0],
            self.header[1],
            self.header[2],
            self.header[3],
        ]) as usize
    }

    /// The message is out: the next write starts a header.
    fn message_done(&mut self) {
        self.held = 0;
        self.sent = 0;
        self.payload_left = 0;
    }
}

impl<S: AsyncWrite + Unpin> WholeFrames<S> {
    /// Writes the rest of a complete header with no payload after it (an empty message,
    /// or a flush or shutdown with no payload coming).
    fn poll_header_out(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.held == HEADER && self.sent < HEADER {
            let n = match Pin::new(&mut self.inner).poll_write(cx, &self.header[self.sent..]) {
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.sent += n;
        }
        if self.held == HEADER && self.sent == HEADER && self.payload_left == 0 {
            self.message_done();
        }
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WholeFrames<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if data.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.held < HEADER {
            let n = (HEADER - this.held).min(data.len());
            this.header[this.held..this.held + n].copy_from_slice(&data[..n]);
            this.held += n;
            if this.held == HEADER {
                this.payload_left = this.payload_len();
            }
            return Poll::Ready(Ok(n));
        }
        if this.payload_left == 0 {
            // An empty message whose header is still held: out first, then this write
            // starts the next message.
            return match this.poll_header_out(cx) {
                Poll::Ready(Ok(())) => Pin::new(this).poll_write(cx, data),
                Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
                Poll::Pending => Poll::Pending,
            };
        }
        let data = &data[..data.len().min(this.payload_left)];
        loop {
            let header_left = HEADER - this.sent;
            let r = if header_left == 0 {
                Pin::new(&mut this.inner).poll_write(cx, data)
            } else {
                let bufs = [IoSlice::new(&this.header[this.sent..]), IoSlice::new(data)];
                Pin::new(&mut this.inner).poll_write_vectored(cx, &bufs)
            };
            let n = match r {
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                // Nothing of `data` taken yet: the caller retries with it.
                Poll::Pending => return Poll::Pending,
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            if n <= header_left {
                this.sent += n;
                continue;
            }
            let taken = n - header_left;
            this.sent = HEADER;
            this.payload_left -= taken;
            if this.payload_left == 0 {
                this.message_done();
            }
            return Poll::Ready(Ok(taken));
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // ttrpc flushes between a header and its payload: a header with a payload to
        // come stays held (that payload's write sends it).
        if this.held == HEADER && this.payload_left == 0 {
            match this.poll_header_out(cx) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if this.held == HEADER {
            match this.poll_header_out(cx) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
        }
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WholeFrames<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A message written as the ttrpc crate writes it.
    async fn write_like_ttrpc<W: AsyncWrite + Unpin>(w: &mut W, stream: u32, payload: &[u8]) {
        w.write_u32(payload.len() as u32).await.expect("length");
        w.write_u32(stream).await.expect("stream");
        w.write_u8(1).await.expect("type");
        w.write_u8(0).await.expect("flags");
        w.flush().await.expect("flush");
        w.write_all(payload).await.expect("payload");
    }

    fn frame(stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = (payload.len() as u32).to_be_bytes().to_vec();
        v.extend(stream.to_be_bytes());
        v.extend([1, 0]);
        v.extend(payload);
        v
    }

    /// A writer over one end of a socket pair, counting the writes that reach it; the
    /// other end, to read what arrived.
    fn counted_pair() -> (
        WholeFrames<CountingStream>,
        std::sync::Arc<std::sync::atomic::AtomicUsize>,
        tokio::net::UnixStream,
    ) {
        let (a, peer) = tokio::net::UnixStream::pair().expect("socketpair");
        let writes = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let w = WholeFrames::new(CountingStream {
            inner: a,
            writes: writes.clone(),
        });
        (w, writes, peer)
    }

    async fn read_n(peer: &mut tokio::net::UnixStream, n: usize) -> Vec<u8> {
        let mut got = vec![0u8; n];
        peer.read_exact(&mut got).await.expect("read");
        got
    }

    #[tokio::test]
    async fn one_write_per_message_and_the_bytes_unchanged() {
        let (mut w, writes, mut peer) = counted_pair();
        write_like_ttrpc(&mut w, 1, b"first").await;
        write_like_ttrpc(&mut w, 3, &[7u8; 3000]).await;
        assert_eq!(writes.load(std::sync::atomic::Ordering::SeqCst), 2);
        let mut want = frame(1, b"first");
        want.extend(frame(3, &[7u8; 3000]));
        assert_eq!(read_n(&mut peer, want.len()).await, want);
    }

    #[tokio::test]
    async fn an_empty_message_goes_out_at_its_flush() {
        let (mut w, _, mut peer) = counted_pair();
        write_like_ttrpc(&mut w, 5, b"").await;
        assert_eq!(read_n(&mut peer, HEADER).await, frame(5, b""));
        write_like_ttrpc(&mut w, 7, b"next").await;
        assert_eq!(read_n(&mut peer, HEADER + 4).await, frame(7, b"next"));
    }

    /// Through a real socket pair whose buffer is smaller than a message: partial and
    /// blocked writes still deliver every byte in order.
    #[tokio::test]
    async fn large_messages_through_a_small_socket_buffer_arrive_whole() {
        let (a, mut b) = tokio::net::UnixStream::pair().expect("socketpair");
        let sock = small_send_buffer(a, 4096);
        let payloads: Vec<Vec<u8>> = (0..4u8).map(|i| vec![i; 100_000]).collect();
        let expected: Vec<u8> = payloads
            .iter()
            .enumerate()
            .flat_map(|(i, p)| frame(i as u32, p))
            .collect();
        let writer = tokio::spawn(async move {
            let mut w = WholeFrames::new(sock);
            for (i, p) in payloads.iter().enumerate() {
                write_like_ttrpc(&mut w, i as u32, p).await;
            }
        });
        let mut got = vec![0u8; expected.len()];
        b.read_exact(&mut got).await.expect("read");
        writer.await.expect("writer");
        assert!(got == expected, "bytes differ");
    }

    /// A real stream that counts the writes reaching it.
    struct CountingStream {
        inner: tokio::net::UnixStream,
        writes: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    }

    impl CountingStream {
        fn counted(&self, r: &Poll<io::Result<usize>>) {
            if matches!(r, Poll::Ready(Ok(_))) {
                self.writes
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
    }

    impl AsyncWrite for CountingStream {
        fn poll_write(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            let r = Pin::new(&mut self.inner).poll_write(cx, data);
            self.counted(&r);
            r
        }
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
            self.counted(&r);
            r
        }
        fn is_write_vectored(&self) -> bool {
            self.inner.is_write_vectored()
        }
        fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_flush(cx)
        }
        fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_shutdown(cx)
        }
    }

    impl AsyncRead for CountingStream {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<io::Result<()>> {
            Pin::new(&mut self.inner).poll_read(cx, buf)
        }
    }

    /// The ttrpc client itself, as `ShimClient::connect` sets it up: a request reaches the
    /// socket as one write, and the peer reads a well-formed message.
    #[tokio::test]
    async fn a_ttrpc_request_is_one_write() {
        use containerd_shim_protos::ttrpc::r#async::transport::Socket;
        use containerd_shim_protos::ttrpc::r#async::Client;
        let (w, writes, mut peer) = counted_pair();
        let client = Client::new(Socket::new(tokio::io::BufReader::new(w)));
        let req = containerd_shim_protos::ttrpc::Request {
            service: "containerd.task.v2.Task".into(),
            method: "State".into(),
            payload: vec![10, 2, b'i', b'd'],
            ..Default::default()
        };
        let call = tokio::spawn(async move { client.request(req).await });
        let mut header = [0u8; HEADER];
        peer.read_exact(&mut header).await.expect("header");
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let mut payload = vec![0u8; len];
        peer.read_exact(&mut payload).await.expect("payload");
        assert!(
            payload.windows(5).any(|w| w == b"State"),
            "the request's method in its payload"
        );
        assert_eq!(writes.load(std::sync::atomic::Ordering::SeqCst), 1);
        call.abort();
    }

    fn small_send_buffer(s: tokio::net::UnixStream, size: libc::c_int) -> tokio::net::UnixStream {
        use std::os::fd::AsRawFd;
        // SAFETY: setsockopt on an open socket with a pointer to a live int.
        let r = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_SNDBUF,
                (&size as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(r, 0, "SO_SNDBUF");
        s
    }
}
