//! The serving loop: UDP and TCP listeners on every gateway address in the table, reloads on
//! SIGHUP and when the table file changes, and the service manager's readiness and watchdog.
//!
//! Listener sockets are bound with IP_FREEBIND, so a gateway whose bridge is not up yet (or is
//! being recreated) still gets its listener; it starts receiving once the address appears.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::answer::{self, Outcome, MAX_UDP_PAYLOAD};
use crate::forward::{self, Upstreams, MAX_TCP_MESSAGE};
use crate::index::Index;
use crate::table::{self, Table};
use kos_sdnotify::Notifier;

/// Largest UDP datagram read from an asker; a longer one is cut and fails to parse (FORMERR).
const MAX_UDP_QUERY: usize = 4096;
/// Receive buffer asked for each UDP listener.
const UDP_RECV_BUFFER: usize = 1 << 20;
/// Forwarded queries in flight at once; past this, askers get SERVFAIL rather than queueing.
const MAX_INFLIGHT_FORWARDS: usize = 512;
/// Open TCP connections at once; past this, new ones are closed at once.
const MAX_TCP_CONNECTIONS: usize = 256;
/// A TCP asker idle this long is disconnected (RFC 7766 suggests seconds, not minutes).
const TCP_IDLE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct Config {
    pub table: PathBuf,
    pub port: u16,
    pub upstreams: Upstreams,
    /// When the upstreams came from a resolv.conf: re-read it on every reload, so a host whose
    /// resolvers change (DHCP, VPN) needs only a SIGHUP.
    pub upstreams_from: Option<PathBuf>,
    /// How often the table file is checked for changes (and failed binds retried).
    pub poll_interval: Duration,
    /// Written with our pid once serving (writers of the table send SIGHUP to it), removed on
    /// exit.
    pub pid_file: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Table(#[from] table::Error),
    #[error("installing signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("notifying the service manager: {0}")]
    Notify(std::io::Error),
    #[error("writing pid file {path}: {step}: {source}")]
    PidFile {
        path: PathBuf,
        step: &'static str,
        source: std::io::Error,
    },
}

/// The table file's identity: a rename over it or a rewrite changes one of these.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
struct Stamp {
    dev: u64,
    ino: u64,
    mtime_ns: i128,
    size: u64,
}

fn stamp(path: &std::path::Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        size: m.size(),
    })
}

/// What one query is answered with; replaced as a whole on reload.
struct State {
    index: Index,
    upstreams: Upstreams,
}

type Shared = Arc<RwLock<Arc<State>>>;

struct Listener {
    udp: JoinHandle<()>,
    tcp: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.udp.abort();
        self.tcp.abort();
    }
}

struct Server {
    config: Config,
    state: Shared,
    listeners: HashMap<IpAddr, Listener>,
    forwards: Arc<Semaphore>,
    tcp_conns: Arc<Semaphore>,
    stamp: Option<Stamp>,
}

/// Runs until SIGTERM or SIGINT. The table must be valid at start (a missing file is an empty
/// table); later a bad table is logged and the last good one kept, so a writer's mistake does
/// not take DNS away from running containers.
pub async fn run(config: Config) -> Result<(), Error> {
    let notifier = Notifier::from_env().map_err(Error::Notify)?;
    let mut hup = signal(SignalKind::hangup()).map_err(Error::Signals)?;
    let mut term = signal(SignalKind::terminate()).map_err(Error::Signals)?;
    let mut int = signal(SignalKind::interrupt()).map_err(Error::Signals)?;

    let stamp0 = stamp(&config.table);
    let table = Table::load_or_empty(&config.table)?;
    let mut server = Server {
        state: Arc::new(RwLock::new(Arc::new(State {
            index: Index::build(&table),
            upstreams: config.upstreams.clone(),
        }))),
        config,
        listeners: HashMap::new(),
        forwards: Arc::new(Semaphore::new(MAX_INFLIGHT_FORWARDS)),
        tcp_conns: Arc::new(Semaphore::new(MAX_TCP_CONNECTIONS)),
        stamp: stamp0,
    };
    server.sync_listeners().await;
    let _pid_file = match &server.config.pid_file {
        Some(path) => Some(PidFile::write(path)?),
        None => None,
    };
    if let Some(n) = &notifier {
        n.notify(&format!(
            "READY=1\nSTATUS=serving {} network(s)",
            table.networks.len()
        ))
        .map_err(Error::Notify)?;
    }
    tracing::info!(
        networks = table.networks.len(),
        listeners = server.listeners.len(),
        "kos-dns ready"
    );

    let mut tick_every = server.config.poll_interval;
    if let Some(w) = notifier.as_ref().and_then(|n| n.watchdog_interval()) {
        tick_every = tick_every.min(w);
    }
    let mut tick = tokio::time::interval(tick_every.max(Duration::from_millis(10)));
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading the table");
                server.reload().await;
            }
            _ = tick.tick() => {
                let now = stamp(&server.config.table);
                if now != server.stamp {
                    tracing::info!("table file changed: reloading");
                    server.reload().await;
                } else {
                    // Retry gateways whose bind failed.
                    server.sync_listeners().await;
                }
                if let Some(n) = &notifier {
                    if n.watchdog_interval().is_some() {
                        if let Err(e) = n.notify("WATCHDOG=1") {
                            tracing::warn!(error = %e, "watchdog notification failed");
                        }
                    }
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    if let Some(n) = &notifier {
        let _ = n.notify("STOPPING=1");
    }
    tracing::info!("kos-dns stopping");
    Ok(())
}

/// Our pid in a file for as long as we serve; removed on drop unless someone else's pid has
/// replaced it meanwhile.
struct PidFile {
    path: PathBuf,
    pid: String,
}

impl PidFile {
    fn write(path: &std::path::Path) -> Result<PidFile, Error> {
        let pid = format!("{}\n", std::process::id());
        kos_statefile::replace(path, pid.as_bytes(), 0o644).map_err(|e| Error::PidFile {
            path: path.to_owned(),
            step: e.step,
            source: e.source,
        })?;
        Ok(PidFile {
            path: path.to_owned(),
            pid,
        })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        if std::fs::read_to_string(&self.path).is_ok_and(|p| p == self.pid) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

impl Server {
    async fn reload(&mut self) {
        self.stamp = stamp(&self.config.table);
        let mut upstreams = current(&self.state).upstreams.clone();
        if let Some(path) = &self.config.upstreams_from {
            match crate::resolvconf::host_upstreams(path) {
                Ok(ips) => {
                    upstreams.servers = ips.into_iter().map(|ip| SocketAddr::new(ip, 53)).collect();
                }
                Err(e) => tracing::warn!(error = %e, "keeping the previous upstreams"),
            }
        }
        match Table::load_or_empty(&self.config.table) {
            Ok(table) => {
                let state = Arc::new(State {
                    index: Index::build(&table),
                    upstreams,
                });
                if let Ok(mut slot) = self.state.write() {
                    *slot = state;
                }
                tracing::info!(networks = table.networks.len(), "table loaded");
                self.sync_listeners().await;
            }
            Err(e) => tracing::error!(error = %e, "keeping the previous table"),
        }
    }

    /// Opens listeners for new gateways and closes those of gateways no longer in the table.
    async fn sync_listeners(&mut self) {
        let wanted: Vec<IpAddr> = current(&self.state).index.gateways().to_vec();
        self.listeners.retain(|ip, _| {
            let keep = wanted.contains(ip);
            if !keep {
                tracing::info!(address = %ip, "closing listener");
            }
            keep
        });
        for ip in wanted {
            if self.listeners.contains_key(&ip) {
                continue;
            }
            let addr = SocketAddr::new(ip, self.config.port);
            match bind_pair(addr) {
                Ok((udp, tcp)) => {
                    tracing::info!(%addr, "listening (udp, tcp)");
                    let udp =
                        tokio::spawn(serve_udp(udp, self.state.clone(), self.forwards.clone()));
                    let tcp =
                        tokio::spawn(serve_tcp(tcp, self.state.clone(), self.tcp_conns.clone()));
                    self.listeners.insert(ip, Listener { udp, tcp });
                }
                Err(e) => tracing::warn!(%addr, error = %e, "cannot listen yet; will retry"),
            }
        }
    }
}

fn current(state: &Shared) -> Arc<State> {
    match state.read() {
        Ok(g) => g.clone(),
        Err(poisoned) => poisoned.into_inner().clone(),
    }
}

fn bind_pair(addr: SocketAddr) -> std::io::Result<(UdpSocket, TcpListener)> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let domain = Domain::for_address(addr);
    let prepare = |ty: Type, proto: Protocol| -> std::io::Result<Socket> {
        let s = Socket::new(domain, ty.cloexec(), Some(proto))?;
        if addr.is_ipv6() {
            s.set_only_v6(true)?;
            s.set_freebind_v6(true)?;
        } else {
            s.set_freebind_v4(true)?;
        }
        s.set_reuse_address(true)?;
        s.set_nonblocking(true)?;
        s.bind(&SockAddr::from(addr))?;
        Ok(s)
    };
    let udp = prepare(Type::DGRAM, Protocol::UDP)?;
    // Queries arrive in bursts (a container starting resolves many names at once); the default
    // buffer holds a couple of hundred datagrams. With CAP_NET_ADMIN the size is forced past
    // net.core.rmem_max; without it the kernel caps it there.
    let forced = nix::sys::socket::setsockopt(
        &udp,
        nix::sys::socket::sockopt::RcvBufForce,
        &UDP_RECV_BUFFER,
    );
    if forced.is_err() {
        if let Err(e) = udp.set_recv_buffer_size(UDP_RECV_BUFFER) {
            tracing::debug!(%addr, error = %e, "cannot enlarge the receive buffer");
        }
    }
    let tcp = prepare(Type::STREAM, Protocol::TCP)?;
    tcp.listen(128)?;
    Ok((
        UdpSocket::from_std(std::net::UdpSocket::from(udp))?,
        TcpListener::from_std(std::net::TcpListener::from(tcp))?,
    ))
}

async fn serve_udp(sock: UdpSocket, shared: Shared, forwards: Arc<Semaphore>) {
    let sock = Arc::new(sock);
    let mut buf = vec![0u8; MAX_UDP_QUERY];
    loop {
        let (n, peer) = match sock.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                // ICMP errors from earlier sends surface here; they concern one peer only.
                tracing::debug!(error = %e, "udp receive");
                continue;
            }
        };
        let request = &buf[..n];
        let state = current(&shared);
        match answer::decide(&state.index, peer.ip(), request, MAX_UDP_PAYLOAD) {
            Outcome::Reply(bytes) => {
                let _ = sock.send_to(&bytes, peer).await;
            }
            Outcome::Drop => {}
            Outcome::Forward => {
                let Ok(permit) = forwards.clone().try_acquire_owned() else {
                    tracing::warn!(%peer, "too many queries in flight: SERVFAIL");
                    if let Outcome::Reply(b) = answer::servfail(request, MAX_UDP_PAYLOAD) {
                        let _ = sock.send_to(&b, peer).await;
                    }
                    continue;
                };
                let request = request.to_vec();
                let sock = sock.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let reply = match state.upstreams.forward_udp(&request).await {
                        Ok(answer) => Some(fit_udp(&request, answer)),
                        Err(e) => {
                            tracing::warn!(%peer, error = %e, "forwarding failed: SERVFAIL");
                            match answer::servfail(&request, MAX_UDP_PAYLOAD) {
                                Outcome::Reply(b) => Some(b),
                                _ => None,
                            }
                        }
                    };
                    if let Some(reply) = reply {
                        let _ = sock.send_to(&reply, peer).await;
                    }
                });
            }
        }
    }
}

/// An upstream answer larger than the asker takes over UDP goes back as header and question
/// with TC set, so the asker retries over TCP.
fn fit_udp(request: &[u8], answer: Vec<u8>) -> Vec<u8> {
    let limit = answer::udp_limit(request);
    if answer.len() <= limit {
        return answer;
    }
    forward::truncated(&answer).unwrap_or_default()
}

async fn serve_tcp(listener: TcpListener, shared: Shared, conns: Arc<Semaphore>) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(x) => x,
            Err(e) => {
                tracing::debug!(error = %e, "tcp accept");
                // EMFILE and friends: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = conns.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "too many TCP connections: closing");
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let _permit = permit;
            if let Err(e) = tcp_connection(stream, peer, shared).await {
                tracing::debug!(%peer, error = %e, "tcp connection ended");
            }
        });
    }
}

async fn tcp_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    shared: Shared,
) -> std::io::Result<()> {
    loop {
        let request =
            match tokio::time::timeout(TCP_IDLE, forward::read_tcp_message(&mut stream)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Ok(Err(e)) => return Err(e),
                Err(_) => return Ok(()),
            };
        let state = current(&shared);
        let reply = match answer::decide(&state.index, peer.ip(), &request, MAX_TCP_MESSAGE) {
            Outcome::Reply(b) => b,
            Outcome::Drop => return Ok(()),
            Outcome::Forward => match state.upstreams.forward_tcp(&request).await {
                Ok(answer) => answer,
                Err(e) => {
                    tracing::warn!(%peer, error = %e, "forwarding failed: SERVFAIL");
                    match answer::servfail(&request, MAX_TCP_MESSAGE) {
                        Outcome::Reply(b) => b,
                        _ => return Ok(()),
                    }
                }
            },
        };
        let Ok(len) = u16::try_from(reply.len()) else {
            return Ok(());
        };
        let mut framed = Vec::with_capacity(reply.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&reply);
        stream.write_all(&framed).await?;
    }
}
