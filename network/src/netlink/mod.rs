//! A small synchronous rtnetlink client: one socket, one request at a time, answers collected
//! until the kernel's ACK or end of dump. Synchronous on purpose: attach is a short sequence of
//! dependent requests, and a blocking socket costs less than an async runtime.

mod addr;
mod link;
mod route;

use std::io;
use std::os::fd::BorrowedFd;

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_DUMP, NLM_F_REQUEST,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

pub use link::{LinkInfo, PeerSpec};

/// Answers are bounded: a dump bigger than this is not something KOS asked for.
const MAX_ANSWER_MESSAGES: usize = 1 << 16;

pub struct Netlink {
    socket: Socket,
    seq: u32,
    recv_buf: Vec<u8>,
}

impl Netlink {
    /// A socket in the caller's network namespace.
    pub fn open() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        // Extended ACKs make the kernel's errors carry a reason; failure to enable is harmless.
        let _ = socket.set_ext_ack(true);
        Ok(Netlink {
            socket,
            seq: 0,
            recv_buf: vec![0; 64 * 1024],
        })
    }

    /// A socket bound inside the network namespace `netns`. A netlink socket stays in the
    /// namespace it was created in, so a short-lived thread enters the namespace, creates it and
    /// exits; the caller's threads never change namespace.
    pub fn open_in(netns: BorrowedFd<'_>) -> io::Result<Self> {
        std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    nix::sched::setns(netns, nix::sched::CloneFlags::CLONE_NEWNET)
                        .map_err(io::Error::from)?;
                    Netlink::open()
                })
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("netlink: namespace thread panicked")))
        })
    }

    /// Sends one request and returns the messages of the answer. Requests that change state ask
    /// for an ACK so that errors are reported synchronously.
    fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut packet =
            NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::from(message));
        packet.header.flags = NLM_F_REQUEST | flags | if dump { 0 } else { NLM_F_ACK };
        self.seq = self.seq.wrapping_add(1);
        packet.header.sequence_number = self.seq;
        packet.finalize();
        let mut buf = vec![0; packet.buffer_len()];
        packet.serialize(&mut buf[..]);
        self.socket.send(&buf, 0)?;

        let mut answer = Vec::new();
        loop {
            let size = {
                let mut slice = &mut self.recv_buf[..];
                self.socket.recv(&mut slice, 0)?
            };
            let mut offset = 0;
            while offset < size {
                let bytes = &self.recv_buf[offset..size];
                let msg: NetlinkMessage<RouteNetlinkMessage> = NetlinkMessage::deserialize(bytes)
                    .map_err(|e| {
                    io::Error::new(io::ErrorKind::InvalidData, format!("bad answer: {e}"))
                })?;
                let len = msg.header.length as usize;
                if len == 0 {
                    break;
                }
                offset += (len + 3) & !3;
                if msg.header.sequence_number != self.seq {
                    continue;
                }
                match msg.payload {
                    NetlinkPayload::Done(_) => return Ok(answer),
                    NetlinkPayload::Error(err) => {
                        return match err.code {
                            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                            None => Ok(answer),
                        };
                    }
                    NetlinkPayload::InnerMessage(inner) => {
                        if answer.len() >= MAX_ANSWER_MESSAGES {
                            return Err(io::Error::other("netlink answer too long"));
                        }
                        answer.push(inner);
                    }
                    _ => {}
                }
            }
        }
    }
}

/// Whether an error means "no such object" (link, address or route already gone).
pub fn is_not_found(err: &io::Error) -> bool {
    matches!(
        err.raw_os_error(),
        Some(libc::ENODEV) | Some(libc::ENOENT) | Some(libc::ESRCH) | Some(libc::EADDRNOTAVAIL)
    )
}

/// Whether an error means "already exists".
pub fn is_exists(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::EEXIST)
}
