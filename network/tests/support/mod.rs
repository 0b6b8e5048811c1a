//! Test support: a private state root, nft table and names per test; namespaces as
//! "containers" and as a second host; servers and clients run inside namespaces. Everything is
//! removed by Drop guards, also when a test fails.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ipnet::IpNet;
use kos_network::netlink::Netlink;
use kos_network::{Network, NetworkSpec, Networks, Options};

static COUNTER: AtomicU32 = AtomicU32::new(0);
/// Subnet choice and network creation are serialized within the test process, so two tests
/// never pick the same free subnet.
static SUBNETS: Mutex<Vec<IpNet>> = Mutex::new(Vec::new());

/// Short unique suffix: base-36 pid + counter (fits "kos" + suffix + 2 chars in 15 bytes).
pub fn unique() -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut pid = std::process::id() % (36u32.pow(5));
    let mut s = String::new();
    for _ in 0..5 {
        s.insert(0, std::char::from_digit(pid % 36, 36).unwrap_or('0'));
        pid /= 36;
    }
    format!("{s}{}", std::char::from_digit(n % 36, 36).unwrap_or('0'))
}

/// A free /24 in 10.150.0.0-10.199.255.0 that no host route covers and no test took.
pub fn free_subnet() -> String {
    let routes = Netlink::open().unwrap().route_destinations().unwrap();
    let mut taken = SUBNETS.lock().unwrap_or_else(|e| e.into_inner());
    let seed = std::process::id();
    for i in 0..(50 * 256) {
        let k = (seed.wrapping_mul(7919) + i) % (50 * 256);
        let net: IpNet = format!("10.{}.{}.0/24", 150 + k / 256, k % 256)
            .parse()
            .unwrap();
        let clash = routes
            .iter()
            .chain(taken.iter())
            .any(|r| kos_network::netconf::overlaps(r, &net));
        if !clash {
            taken.push(net);
            return net.to_string();
        }
    }
    panic!("no free test subnet");
}

pub struct Env {
    pub root: tempfile::TempDir,
    pub nets: Networks,
    pub sfx: String,
}

impl Env {
    pub fn new() -> Env {
        Self::with(|_, _| {})
    }

    /// An environment whose options `edit` adjusts (paths are under the test's root).
    pub fn with(edit: impl FnOnce(&mut Options, &Path)) -> Env {
        let sfx = unique();
        let root = tempfile::Builder::new()
            .prefix("kosnet")
            .tempdir_in("/run")
            .unwrap();
        let mut opts = Options::under(root.path());
        opts.nft_table = format!("kos_t{sfx}");
        opts.default_network = format!("kos{sfx}d");
        opts.default_bridge = format!("kos{sfx}d");
        // Tests never flip host-wide forwarding; per-bridge forwarding is enough for traffic
        // between the test's own namespaces.
        opts.manage_ip_forward = false;
        edit(&mut opts, root.path());
        Env {
            nets: Networks::new(opts),
            root,
            sfx,
        }
    }

    pub fn table(&self) -> &str {
        &self.nets.options().nft_table
    }

    /// "kos" + suffix + tag: a bridge or link name owned by this test.
    pub fn ifname(&self, tag: &str) -> String {
        let n = format!("kos{}{tag}", self.sfx);
        assert!(n.len() <= 15, "{n}");
        n
    }

    pub fn id(&self, tag: &str) -> String {
        format!("c{}-{tag}", self.sfx)
    }

    /// A bridge network with a free subnet, a bridge named after the test, and `edit` applied.
    pub fn bridge_network(&self, tag: &str, edit: impl FnOnce(&mut NetworkSpec)) -> Network {
        let mut spec =
            NetworkSpec::bridge(&format!("n{}{tag}", self.sfx)).with_subnet(&free_subnet());
        spec.bridge_name = Some(self.ifname(tag));
        edit(&mut spec);
        self.nets.create(&spec).unwrap()
    }

    pub fn pin_path(&self, id: &str) -> PathBuf {
        self.nets.pins().path(id)
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Reconcile with nothing alive undoes every attachment, even half-made or torn ones.
        if let Err(e) = self.nets.reconcile(&|_| false) {
            eprintln!("cleanup: reconcile: {e}");
        }
        if let Ok(recs) = self.nets.attachments() {
            for r in recs {
                let _ = self.nets.release_container(&r.container_id);
            }
        }
        if let Ok(list) = self.nets.list() {
            for n in list {
                if let Err(e) = self.nets.remove(&n.name) {
                    eprintln!("cleanup: remove network {}: {e}", n.name);
                }
            }
        }
        let _ = self.nets.firewall().remove_all();
        if let Ok(pins) = self.nets.pins().list() {
            for p in pins {
                let _ = self.nets.pins().remove(&p);
            }
        }
    }
}

/// Runs `f` on a thread inside the namespace pinned at `pin`.
pub fn in_netns<T: Send>(pin: &Path, f: impl FnOnce() -> T + Send) -> T {
    let fd = kos_network::netns::open(pin).unwrap();
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(fd.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
            f()
        })
        .join()
        .unwrap()
    })
}

/// A TCP server answering every connection with `tag` and a newline, listening inside a
/// namespace (or on the host when `pin` is None). Stopped on drop.
pub struct Server {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    pub addr: SocketAddr,
}

impl Server {
    pub fn tcp(pin: Option<&Path>, addr: SocketAddr, tag: &str) -> Server {
        let bind = move || TcpListener::bind(addr).unwrap();
        let listener = match pin {
            Some(p) => in_netns(p, bind),
            None => bind(),
        };
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let tag = format!("{tag}\n");
        let thread = std::thread::spawn(move || {
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let _ = s.write_all(tag.as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Server {
            stop,
            thread: Some(thread),
            addr,
        }
    }

    /// A UDP server answering each datagram with `tag`.
    pub fn udp(pin: &Path, addr: SocketAddr, tag: &str) -> Server {
        let sock = in_netns(pin, move || UdpSocket::bind(addr).unwrap());
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        let addr = sock.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let tag = tag.to_string();
        let thread = std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !stop2.load(Ordering::Relaxed) {
                if let Ok((_, from)) = sock.recv_from(&mut buf) {
                    let _ = sock.send_to(tag.as_bytes(), from);
                }
            }
        });
        Server {
            stop,
            thread: Some(thread),
            addr,
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Connects to `addr` from inside `pin` (or the host) and returns what the server says.
pub fn fetch(pin: Option<&Path>, addr: SocketAddr) -> std::io::Result<String> {
    let go = move || -> std::io::Result<String> {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(1500))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        Ok(out.trim().to_string())
    };
    match pin {
        Some(p) => in_netns(p, go),
        None => go(),
    }
}

/// Sends one UDP datagram from inside `pin` and returns the answer.
pub fn fetch_udp(pin: &Path, addr: SocketAddr) -> std::io::Result<String> {
    in_netns(pin, move || {
        let bind: SocketAddr = if addr.is_ipv4() {
            "0.0.0.0:0"
        } else {
            "[::]:0"
        }
        .parse()
        .unwrap();
        let s = UdpSocket::bind(bind)?;
        s.set_read_timeout(Some(Duration::from_millis(1500)))?;
        s.send_to(b"ping", addr)?;
        let mut buf = [0u8; 512];
        let (n, _) = s.recv_from(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).trim().to_string())
    })
}

pub fn sock(ip: IpAddr, port: u16) -> SocketAddr {
    SocketAddr::new(ip, port)
}

/// Runs a command and returns its stdout; panics with stderr on failure.
pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs busybox inside a namespace.
pub fn busybox_in(pin: &Path, args: &[&str]) -> std::process::Output {
    let net = format!("--net={}", pin.display());
    let mut full = vec![net.as_str(), "--", "/bin/busybox"];
    full.extend_from_slice(args);
    Command::new("nsenter").args(&full).output().unwrap()
}

/// A second host: its own namespace, linked to the host by a veth pair whose host end is
/// `kos<sfx>u` with `198.18.<k>.1/24`, the far end `198.18.<k>.2`. Removed on drop.
pub struct SecondHost {
    pub pin: PathBuf,
    pub host_if: String,
    pub host_ip: IpAddr,
    pub ip: IpAddr,
    pins: kos_network::netns::NetnsDir,
}

impl SecondHost {
    pub fn new(env: &Env) -> SecondHost {
        let pins = kos_network::netns::NetnsDir::new(env.root.path().join("hosts"));
        let pin = pins.create("host2").unwrap();
        let host_if = env.ifname("u");
        let k = (std::process::id() + COUNTER.fetch_add(1, Ordering::Relaxed)) % 250 + 1;
        let host_ip: IpAddr = format!("198.18.{k}.1").parse().unwrap();
        let ip: IpAddr = format!("198.18.{k}.2").parse().unwrap();
        let guard = SecondHost {
            pin: pin.clone(),
            host_if: host_if.clone(),
            host_ip,
            ip,
            pins,
        };
        let net = format!("--net={}", pin.display());
        run(
            "nsenter",
            &[
                &net, "--", "ip", "link", "add", "eth0", "type", "veth", "peer", "name", &host_if,
                "netns", "1",
            ],
        );
        run(
            "ip",
            &["addr", "add", &format!("{host_ip}/24"), "dev", &host_if],
        );
        run("ip", &["link", "set", &host_if, "up"]);
        // Its own interface: packets from the second host may be routed to the bridges.
        std::fs::write(format!("/proc/sys/net/ipv4/conf/{host_if}/forwarding"), "1").unwrap();
        run(
            "nsenter",
            &[
                &net,
                "--",
                "ip",
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                "eth0",
            ],
        );
        run("nsenter", &[&net, "--", "ip", "link", "set", "eth0", "up"]);
        run("nsenter", &[&net, "--", "ip", "link", "set", "lo", "up"]);
        run(
            "nsenter",
            &[
                &net,
                "--",
                "ip",
                "route",
                "add",
                "default",
                "via",
                &host_ip.to_string(),
            ],
        );
        guard
    }
}

impl Drop for SecondHost {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.host_if])
            .output();
        let _ = self.pins.remove("host2");
    }
}

/// Every link name on the host.
pub fn host_links() -> Vec<String> {
    Netlink::open()
        .unwrap()
        .links()
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect()
}
