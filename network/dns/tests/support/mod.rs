//! Test-made network namespaces joined by a veth pair, a kos-dns process inside one of them,
//! a fake upstream resolver on that namespace's loopback, and DNS clients in the other.
//! Everything is removed by Drop guards, also when a test fails.

#![allow(dead_code)]

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{Name, RData, Record, RecordType};

static COUNTER: AtomicU32 = AtomicU32::new(0);

pub fn unique(what: &str) -> String {
    format!(
        "kosdns-{what}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A network namespace made by `ip netns add`, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(what: &str) -> Netns {
        let name = unique(what);
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn ip(&self, args: &[&str]) {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args));
    }

    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    /// A command that runs inside this namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs `f` on a thread that entered this namespace; sockets it makes stay in it.
    pub fn run_in<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = self.path();
        std::thread::spawn(move || {
            let ns = File::open(&path).expect("open netns");
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
        .join()
        .expect("netns thread")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

/// Two namespaces on one veth link: the server side holds the "bridge gateway" addresses, the
/// client side is a container on network 10.77.0.0/24 + fd77::/64, with a second address
/// 10.78.0.2 that is on no network (an outsider asking the same server).
pub struct Link {
    pub server: Netns,
    pub client: Netns,
}

pub const GW4: &str = "10.77.0.1";
pub const GW6: &str = "fd77::1";
pub const CLIENT4: &str = "10.77.0.2";
pub const CLIENT6: &str = "fd77::2";
pub const OUTSIDER4: &str = "10.78.0.2";

impl Link {
    pub fn new() -> Link {
        let server = Netns::new("s");
        let client = Netns::new("c");
        server.ip(&[
            "link",
            "add",
            "eth0",
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &client.name,
        ]);
        server.ip(&["addr", "add", "10.77.0.1/24", "dev", "eth0"]);
        server.ip(&["addr", "add", "fd77::1/64", "dev", "eth0", "nodad"]);
        server.ip(&["link", "set", "eth0", "up"]);
        server.ip(&["route", "add", "10.78.0.0/24", "dev", "eth0"]);
        client.ip(&["addr", "add", "10.77.0.2/24", "dev", "eth0"]);
        client.ip(&["addr", "add", "10.78.0.2/24", "dev", "eth0"]);
        client.ip(&["addr", "add", "fd77::2/64", "dev", "eth0", "nodad"]);
        client.ip(&["link", "set", "eth0", "up"]);
        Link { server, client }
    }
}

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> TempDir {
        let p = std::env::temp_dir().join(unique("dir"));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The table for network "front": gateways 10.77.0.1 and fd77::1, domain dns.kos, containers
/// web (aliases www, api) and db.
pub fn front_table() -> String {
    r#"{"version":1,"networks":{"front":{"name":"front",
        "gateways":["10.77.0.1","fd77::1"],"subnets":["10.77.0.0/24","fd77::/64"],
        "domain":"dns.kos","entries":[
          {"id":"a1b2c3d4e5f60718293a4b5c","name":"web","aliases":["www"],
           "network_aliases":["api"],"ipv4":["10.77.0.10"],"ipv6":["fd77::10"]},
          {"id":"ffeeddccbbaa998877665544","name":"db","ipv4":["10.77.0.11"]}]}}}"#
        .to_owned()
}

/// kos-dns running in a namespace; killed and reaped on drop.
pub struct KosDns {
    pub child: Child,
    pub stderr: PathBuf,
}

impl KosDns {
    pub fn start(ns: &Netns, table: &Path, extra: &[&str], env: &[(&str, &str)]) -> KosDns {
        let stderr = table.with_extension("stderr");
        let mut cmd = ns.command(env!("CARGO_BIN_EXE_kos-dns"));
        cmd.arg("--table")
            .arg(table)
            .args(extra)
            .envs(env.iter().copied())
            .env("RUST_LOG", "kos_dns=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(File::create(&stderr).expect("stderr file"));
        let child = cmd.spawn().expect("spawn kos-dns");
        let dns = KosDns { child, stderr };
        dns.wait_log("kos-dns ready");
        dns
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Waits until the log contains `needle` `count` times or more.
    pub fn wait_log_n(&self, needle: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.log().matches(needle).count() < count {
            assert!(
                Instant::now() < deadline,
                "kos-dns never logged {needle:?}:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn wait_log(&self, needle: &str) {
        self.wait_log_n(needle, 1)
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig)
            .expect("signal kos-dns");
    }

    pub fn alive(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }
}

impl Drop for KosDns {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.stderr);
    }
}

/// A UDP+TCP resolver on 127.0.0.1 in a namespace: answers `outside.example` A 192.0.2.77,
/// NXDOMAIN otherwise, counts the queries it saw.
pub struct FakeUpstream {
    pub port: u16,
    pub queries: Arc<AtomicUsize>,
    pub names: Arc<std::sync::Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl FakeUpstream {
    pub fn start(ns: &Netns) -> FakeUpstream {
        Self::start_at(ns, "127.0.0.1:0")
    }

    /// On `addr` (an address of `ns`; port 0 picks one).
    pub fn start_at(ns: &Netns, addr: &str) -> FakeUpstream {
        let addr: SocketAddr = addr.parse().expect("addr");
        let (udp, tcp) = ns.run_in(move || {
            let udp = UdpSocket::bind(addr).expect("bind udp");
            let port = udp.local_addr().expect("addr").port();
            let tcp = TcpListener::bind((addr.ip(), port)).expect("bind tcp");
            (udp, tcp)
        });
        let port = udp.local_addr().expect("addr").port();
        udp.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        tcp.set_nonblocking(true).expect("nonblocking");
        let queries = Arc::new(AtomicUsize::new(0));
        let names = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let t_udp = {
            let (queries, names, stop) = (queries.clone(), names.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::SeqCst) {
                    let Ok((n, peer)) = udp.recv_from(&mut buf) else {
                        continue;
                    };
                    queries.fetch_add(1, Ordering::SeqCst);
                    if let Some((name, reply)) = upstream_reply(&buf[..n]) {
                        names.lock().expect("names").push(name);
                        let _ = udp.send_to(&reply, peer);
                    }
                }
            })
        };
        let t_tcp = {
            let (queries, names, stop) = (queries.clone(), names.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let Ok((mut s, _)) = tcp.accept() else {
                        std::thread::sleep(Duration::from_millis(20));
                        continue;
                    };
                    s.set_nonblocking(false).expect("blocking");
                    s.set_read_timeout(Some(Duration::from_secs(2)))
                        .expect("timeout");
                    let Ok(q) = read_tcp(&mut s) else { continue };
                    queries.fetch_add(1, Ordering::SeqCst);
                    if let Some((name, reply)) = upstream_reply(&q) {
                        names.lock().expect("names").push(name);
                        let _ = write_tcp(&mut s, &reply);
                    }
                }
            })
        };
        FakeUpstream {
            port,
            queries,
            names,
            stop,
            threads: vec![t_udp, t_tcp],
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn upstream_reply(q: &[u8]) -> Option<(String, Vec<u8>)> {
    let req = Message::from_vec(q).ok()?;
    let query = req.queries.first()?.clone();
    let name = query.name().to_ascii();
    let mut resp = Message::response(req.metadata.id, req.metadata.op_code);
    resp.metadata.recursion_desired = req.metadata.recursion_desired;
    resp.metadata.recursion_available = true;
    resp.add_query(query.clone());
    if name.eq_ignore_ascii_case("outside.example.") && query.query_type() == RecordType::A {
        resp.add_answer(Record::from_rdata(
            query.name().clone(),
            30,
            RData::A(A("192.0.2.77".parse().ok()?)),
        ));
    } else if name.eq_ignore_ascii_case("big.example.") {
        // More than 512 bytes of answers: forces truncation for askers without EDNS.
        for i in 0..60u8 {
            resp.add_answer(Record::from_rdata(
                query.name().clone(),
                30,
                RData::A(A(std::net::Ipv4Addr::new(192, 0, 2, i))),
            ));
        }
    } else if !name.eq_ignore_ascii_case("outside.example.") {
        // outside.example exists (NOERROR, no data for other types); nothing else does.
        resp.metadata.response_code = ResponseCode::NXDomain;
    }
    Some((name, resp.to_vec().ok()?))
}

pub fn read_tcp(s: &mut TcpStream) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 2];
    s.read_exact(&mut len)?;
    let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
    s.read_exact(&mut buf)?;
    Ok(buf)
}

pub fn write_tcp(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<()> {
    let mut framed = (msg.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(msg);
    s.write_all(&framed)
}

pub fn query(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(Name::from_ascii(name).expect("name"), qtype));
    msg.to_vec().expect("encode")
}

/// A UDP client socket bound to `source` inside `ns`.
pub fn udp_client(ns: &Netns, source: &str) -> UdpSocket {
    let source: IpAddr = source.parse().expect("ip");
    let sock = ns.run_in(move || UdpSocket::bind(SocketAddr::new(source, 0)).expect("bind client"));
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    sock
}

/// Sends `q` from `sock` to `server`:53 and parses the answer.
pub fn ask_udp(sock: &UdpSocket, server: &str, q: &[u8]) -> Message {
    let server: IpAddr = server.parse().expect("ip");
    sock.send_to(q, SocketAddr::new(server, 53)).expect("send");
    let mut buf = [0u8; 4096];
    let (n, _) = sock.recv_from(&mut buf).expect("no answer");
    Message::from_vec(&buf[..n]).expect("answer parses")
}

/// A TCP connection from `ns` to `server`:53.
pub fn tcp_client(ns: &Netns, server: &str) -> TcpStream {
    let server: IpAddr = server.parse().expect("ip");
    let s = ns.run_in(move || {
        TcpStream::connect_timeout(&SocketAddr::new(server, 53), Duration::from_secs(5))
            .expect("connect")
    });
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s
}

pub fn a_records(msg: &Message) -> Vec<String> {
    msg.answers
        .iter()
        .map(|r| match &r.data {
            RData::A(a) => a.0.to_string(),
            RData::AAAA(a) => a.0.to_string(),
            RData::PTR(p) => p.0.to_ascii(),
            other => format!("{other:?}"),
        })
        .collect()
}

/// busybox nslookup inside `ns`; (success, stdout+stderr).
pub fn nslookup(ns: &Netns, args: &[&str]) -> (bool, String) {
    let out = ns
        .command("busybox")
        .arg("nslookup")
        .args(args)
        .output()
        .expect("busybox nslookup");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}
