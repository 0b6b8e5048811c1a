//! The nftables back end: everything in one table (default `inet kos`), driven through the
//! `nftables` crate (JSON to `nft`).
//!
//! The rules never change per container: they match against named sets and maps, and an
//! attachment only adds map elements. So attach and detach cost one `nft` run each, and
//! rules are rewritten only when a network is set up.
//!
//! - `bridges` (ifname): every KOS bridge; `internal` (ifname): bridges of internal networks;
//!   `selfpairs` (ifname . ifname): each bridge paired with itself (hairpin).
//! - `masq4`/`masq6` (intervals): subnets of non-internal networks, masqueraded on the way out.
//! - `a4h`/`p4h` (and `a6h`/`p6h`): host address . protocol . port -> container address, and
//!   -> container port; `a4a`/`p4a` (`a6a`/`p6a`): protocol . port -> the same, for ports
//!   published on every local address. Address and port live in two maps because nft 1.0.6
//!   (Debian 12) cannot create a map with concatenated data from JSON.

use std::borrow::Cow;
use std::collections::HashSet;
use std::io::Write;
use std::net::IpAddr;
use std::process::{Command, Stdio};
use std::str::FromStr;

use nftables::batch::Batch;
use nftables::expr::{
    Expression, Fib, FibFlag, FibResult, Map as MapExpr, Meta, MetaKey, NamedExpression, Payload,
    PayloadField, Prefix, CT,
};
/// nft, found on PATH once per process (an exec through PATH tries every directory).
fn nft_program() -> &'static std::path::Path {
    static NFT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    NFT.get_or_init(|| {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .map(|dir| dir.join("nft"))
            .find(|p| p.is_file())
            .unwrap_or_else(|| "nft".into())
    })
}
use nftables::schema::{
    Chain, Element, FlushObject, Map, NfCmd, NfListObject, Rule, Set, SetFlag, SetType,
    SetTypeValue, Table,
};
use nftables::stmt::{JumpTarget, Match, NATFamily, Operator, Statement, NAT};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use super::{FirewallDriver, NetworkRules, PortRule};
use crate::error::{Error, Result};
use crate::ports::Protocol;

const SET_BRIDGES: &str = "bridges";
const SET_INTERNAL: &str = "internal";
const SET_SELFPAIRS: &str = "selfpairs";
const SET_MASQ4: &str = "masq4";
const SET_MASQ6: &str = "masq6";
/// (address map, port map) per (family, specific host address).
const MAPS_4_HOST: (&str, &str) = ("a4h", "p4h");
const MAPS_4_ANY: (&str, &str) = ("a4a", "p4a");
const MAPS_6_HOST: (&str, &str) = ("a6h", "p6h");
const MAPS_6_ANY: (&str, &str) = ("a6a", "p6a");

/// Output of `nft list table` is bounded by the number of elements KOS made; this bound only
/// protects against garbage.
const MAX_LIST_OUTPUT: usize = 64 * 1024 * 1024;

/// nftables back end for one table of family `inet`.
#[derive(Debug, Clone)]
pub struct Nftables {
    table: String,
}

fn s(v: &str) -> Expression<'static> {
    Expression::String(Cow::Owned(v.to_string()))
}

fn set_ref(name: &str) -> Expression<'static> {
    s(&format!("@{name}"))
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn payload(protocol: &str, field: &str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: Cow::Owned(protocol.to_string()),
            field: Cow::Owned(field.to_string()),
        },
    )))
}

fn ct(key: &str) -> Expression<'static> {
    Expression::Named(NamedExpression::CT(CT {
        key: Cow::Owned(key.to_string()),
        ..CT::default()
    }))
}

fn concat(items: Vec<Expression<'static>>) -> Expression<'static> {
    Expression::Named(NamedExpression::Concat(items))
}

fn matches(
    left: Expression<'static>,
    op: Operator,
    right: Expression<'static>,
) -> Statement<'static> {
    Statement::Match(Match { left, right, op })
}

fn addr_expr(ip: IpAddr) -> Expression<'static> {
    s(&ip.to_string())
}

fn prefix(net: &ipnet::IpNet) -> Expression<'static> {
    Expression::Named(NamedExpression::Prefix(Prefix {
        addr: Box::new(s(&net.network().to_string())),
        len: u32::from(net.prefix_len()),
    }))
}

/// Why an `nft` run failed.
#[derive(Debug)]
enum NftFailure {
    /// nft ran and refused: its stderr.
    Refused(String),
    Other(String),
}

impl NftFailure {
    fn is_missing(&self) -> bool {
        match self {
            NftFailure::Refused(stderr) => {
                stderr.contains("No such file or directory") || stderr.contains("does not exist")
            }
            NftFailure::Other(_) => false,
        }
    }

    fn into_error(self, step: String) -> Error {
        let detail = match self {
            NftFailure::Refused(s) => s
                .lines()
                .filter(|l| !l.trim().is_empty())
                .collect::<Vec<_>>()
                .join("; "),
            NftFailure::Other(s) => s,
        };
        Error::Nft { step, detail }
    }
}

/// Runs `nft ARGS`, feeding `stdin`; returns stdout (bounded).
fn run_nft(args: &[&str], stdin: Option<&[u8]>) -> std::result::Result<String, NftFailure> {
    let mut child = Command::new(nft_program())
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NftFailure::Other(format!("run {}: {e}", nft_program().display())))?;
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(data)
            .map_err(|e| NftFailure::Other(format!("write to nft: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| NftFailure::Other(format!("wait for nft: {e}")))?;
    if out.stdout.len() > MAX_LIST_OUTPUT {
        return Err(NftFailure::Other("nft output too large".to_string()));
    }
    if !out.status.success() {
        // nft reports some errors on stdout.
        let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stdout));
        if std::env::var_os("KOS_NFT_DEBUG").is_some() {
            if let Some(data) = stdin {
                tracing::error!(payload = %String::from_utf8_lossy(data), "nft refused");
                eprintln!("{}", String::from_utf8_lossy(data));
            }
        }
        return Err(NftFailure::Refused(text));
    }
    String::from_utf8(out.stdout).map_err(|e| NftFailure::Other(format!("nft output: {e}")))
}

impl Nftables {
    /// A back end for table `inet <table>`.
    pub fn new(table: impl Into<String>) -> Self {
        Nftables {
            table: table.into(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn t(&self) -> Cow<'static, str> {
        Cow::Owned(self.table.clone())
    }

    fn apply(&self, step: &str, batch: Batch<'static>) -> Result<()> {
        self.try_apply(batch)
            .map_err(|e| e.into_error(format!("{step} (table inet {})", self.table)))
    }

    /// Runs `nft -j -f -` with the batch. The crate's helper lets nft's stderr go to the
    /// caller's stderr; here it is captured, because it is the only account of what failed.
    fn try_apply(&self, batch: Batch<'static>) -> std::result::Result<(), NftFailure> {
        let payload = serde_json::to_vec(&batch.to_nftables())
            .map_err(|e| NftFailure::Other(e.to_string()))?;
        run_nft(&["-j", "-f", "-"], Some(&payload)).map(drop)
    }

    fn set(&self, name: &str, ty: SetTypeValue<'static>, interval: bool) -> NfListObject<'static> {
        NfListObject::Set(Box::new(Set {
            family: NfFamily::INet,
            table: self.t(),
            name: Cow::Owned(name.to_string()),
            set_type: ty,
            flags: interval.then(|| HashSet::from([SetFlag::Interval])),
            ..Set::default()
        }))
    }

    fn map(&self, name: &str, key: &[SetType], data: SetType) -> NfListObject<'static> {
        NfListObject::Map(Box::new(Map {
            family: NfFamily::INet,
            table: self.t(),
            name: Cow::Owned(name.to_string()),
            set_type: SetTypeValue::Concatenated(Cow::Owned(key.to_vec())),
            map: SetTypeValue::Single(data),
            ..Map::default()
        }))
    }

    fn chain(&self, name: &str, hook: Option<(NfChainType, NfHook, i32)>) -> Chain<'static> {
        let mut chain = Chain {
            family: NfFamily::INet,
            table: self.t(),
            name: Cow::Owned(name.to_string()),
            ..Chain::default()
        };
        if let Some((ty, hook, prio)) = hook {
            chain._type = Some(ty);
            chain.hook = Some(hook);
            chain.prio = Some(prio);
            chain.policy = Some(NfChainPolicy::Accept);
        }
        chain
    }

    fn rule(&self, chain: &str, stmts: Vec<Statement<'static>>) -> NfListObject<'static> {
        NfListObject::Rule(Rule {
            family: NfFamily::INet,
            table: self.t(),
            chain: Cow::Owned(chain.to_string()),
            expr: Cow::Owned(stmts),
            ..Rule::default()
        })
    }

    fn element(&self, set: &str, elems: Vec<Expression<'static>>) -> NfListObject<'static> {
        NfListObject::Element(Element {
            family: NfFamily::INet,
            table: self.t(),
            name: Cow::Owned(set.to_string()),
            elem: Cow::Owned(elems),
        })
    }

    /// The table, its sets, maps and chains, and the fixed rules. Chains are flushed and
    /// refilled in the same transaction, so running this again converges to the same rules
    /// and keeps every set and map element.
    fn base(&self, batch: &mut Batch<'static>) {
        batch.add(NfListObject::Table(Table {
            family: NfFamily::INet,
            name: self.t(),
            ..Table::default()
        }));
        batch.add(self.set(SET_BRIDGES, SetTypeValue::Single(SetType::Ifname), false));
        batch.add(self.set(SET_INTERNAL, SetTypeValue::Single(SetType::Ifname), false));
        batch.add(self.set(
            SET_SELFPAIRS,
            SetTypeValue::Concatenated(Cow::Owned(vec![SetType::Ifname, SetType::Ifname])),
            false,
        ));
        batch.add(self.set(SET_MASQ4, SetTypeValue::Single(SetType::Ipv4Addr), true));
        batch.add(self.set(SET_MASQ6, SetTypeValue::Single(SetType::Ipv6Addr), true));
        use SetType::{InetProto, InetService, Ipv4Addr, Ipv6Addr};
        for ((addr_map, port_map), key, data) in [
            (
                MAPS_4_HOST,
                &[Ipv4Addr, InetProto, InetService][..],
                Ipv4Addr,
            ),
            (MAPS_4_ANY, &[InetProto, InetService][..], Ipv4Addr),
            (
                MAPS_6_HOST,
                &[Ipv6Addr, InetProto, InetService][..],
                Ipv6Addr,
            ),
            (MAPS_6_ANY, &[InetProto, InetService][..], Ipv6Addr),
        ] {
            batch.add(self.map(addr_map, key, data));
            batch.add(self.map(port_map, key, InetService));
        }

        let chains = [
            self.chain("ports", None),
            self.chain(
                "prerouting",
                Some((NfChainType::NAT, NfHook::Prerouting, -100)),
            ),
            self.chain("output", Some((NfChainType::NAT, NfHook::Output, -100))),
            self.chain(
                "postrouting",
                Some((NfChainType::NAT, NfHook::Postrouting, 100)),
            ),
            self.chain("forward", Some((NfChainType::Filter, NfHook::Forward, 0))),
        ];
        for chain in &chains {
            batch.add(NfListObject::Chain(chain.clone()));
            batch.add_cmd(NfCmd::Flush(FlushObject::Chain(chain.clone())));
        }

        // Published ports: only for traffic to one of the host's own addresses (from outside,
        // from containers, and from the host itself through the output hook).
        let local = || {
            matches(
                Expression::Named(NamedExpression::Fib(Fib {
                    result: FibResult::Type,
                    flags: HashSet::from([FibFlag::Daddr]),
                })),
                Operator::EQ,
                s("local"),
            )
        };
        let jump_ports = || {
            Statement::Jump(JumpTarget {
                target: Cow::Borrowed("ports"),
            })
        };
        batch.add(self.rule("prerouting", vec![local(), jump_ports()]));
        batch.add(self.rule("output", vec![local(), jump_ports()]));
        let dnat = |family: NATFamily,
                    key: fn() -> Expression<'static>,
                    (addr_map, port_map): (&str, &str)| {
            let lookup = |map: &str| {
                Expression::Named(NamedExpression::Map(Box::new(MapExpr {
                    key: key(),
                    data: set_ref(map),
                })))
            };
            Statement::DNAT(Some(NAT {
                addr: Some(lookup(addr_map)),
                family: Some(family),
                port: Some(lookup(port_map)),
                flags: None,
            }))
        };
        fn key4h() -> Expression<'static> {
            concat(vec![
                payload("ip", "daddr"),
                meta(MetaKey::L4proto),
                payload("th", "dport"),
            ])
        }
        fn key6h() -> Expression<'static> {
            concat(vec![
                payload("ip6", "daddr"),
                meta(MetaKey::L4proto),
                payload("th", "dport"),
            ])
        }
        fn key_any() -> Expression<'static> {
            concat(vec![meta(MetaKey::L4proto), payload("th", "dport")])
        }
        batch.add(self.rule("ports", vec![dnat(NATFamily::IP, key4h, MAPS_4_HOST)]));
        batch.add(self.rule("ports", vec![dnat(NATFamily::IP, key_any, MAPS_4_ANY)]));
        batch.add(self.rule("ports", vec![dnat(NATFamily::IP6, key6h, MAPS_6_HOST)]));
        batch.add(self.rule("ports", vec![dnat(NATFamily::IP6, key_any, MAPS_6_ANY)]));

        let masquerade = || Statement::Masquerade(None);
        // Hairpin: a container reaching a published port of its own bridge through a host
        // address must see the answer come back through the host.
        batch.add(self.rule(
            "postrouting",
            vec![
                matches(ct("status"), Operator::IN, s("dnat")),
                matches(payload("ip", "saddr"), Operator::EQ, set_ref(SET_MASQ4)),
                masquerade(),
            ],
        ));
        batch.add(self.rule(
            "postrouting",
            vec![
                matches(ct("status"), Operator::IN, s("dnat")),
                matches(payload("ip6", "saddr"), Operator::EQ, set_ref(SET_MASQ6)),
                masquerade(),
            ],
        ));
        // Outbound traffic of non-internal networks.
        batch.add(self.rule(
            "postrouting",
            vec![
                matches(payload("ip", "saddr"), Operator::EQ, set_ref(SET_MASQ4)),
                matches(payload("ip", "daddr"), Operator::NEQ, set_ref(SET_MASQ4)),
                masquerade(),
            ],
        ));
        batch.add(self.rule(
            "postrouting",
            vec![
                matches(payload("ip6", "saddr"), Operator::EQ, set_ref(SET_MASQ6)),
                matches(payload("ip6", "daddr"), Operator::NEQ, set_ref(SET_MASQ6)),
                masquerade(),
            ],
        ));
        // The host reaching a published port through 127.0.0.1: after DNAT the packet leaves
        // through a bridge with a loopback source (allowed by route_localnet on that bridge),
        // which the container could not answer.
        batch.add(self.rule(
            "postrouting",
            vec![
                matches(
                    payload("ip", "saddr"),
                    Operator::EQ,
                    prefix(&ipnet::IpNet::V4(
                        ipnet::Ipv4Net::new([127, 0, 0, 0].into(), 8).unwrap_or_default(),
                    )),
                ),
                matches(meta(MetaKey::Oifname), Operator::EQ, set_ref(SET_BRIDGES)),
                masquerade(),
            ],
        ));

        let accept = || Statement::Accept(None);
        let drop = || Statement::Drop(None);
        let oif_bridges = || matches(meta(MetaKey::Oifname), Operator::EQ, set_ref(SET_BRIDGES));
        batch.add(self.rule(
            "forward",
            vec![
                matches(
                    concat(vec![meta(MetaKey::Iifname), meta(MetaKey::Oifname)]),
                    Operator::EQ,
                    set_ref(SET_SELFPAIRS),
                ),
                accept(),
            ],
        ));
        batch.add(self.rule(
            "forward",
            vec![
                matches(meta(MetaKey::Iifname), Operator::EQ, set_ref(SET_INTERNAL)),
                drop(),
            ],
        ));
        batch.add(self.rule(
            "forward",
            vec![
                matches(meta(MetaKey::Oifname), Operator::EQ, set_ref(SET_INTERNAL)),
                drop(),
            ],
        ));
        // Isolation: nothing goes from one KOS bridge to another.
        batch.add(self.rule(
            "forward",
            vec![
                matches(meta(MetaKey::Iifname), Operator::EQ, set_ref(SET_BRIDGES)),
                oif_bridges(),
                drop(),
            ],
        ));
        batch.add(self.rule(
            "forward",
            vec![
                oif_bridges(),
                matches(
                    ct("state"),
                    Operator::IN,
                    Expression::List(vec![s("established"), s("related")]),
                ),
                accept(),
            ],
        ));
        batch.add(self.rule(
            "forward",
            vec![
                oif_bridges(),
                matches(ct("status"), Operator::IN, s("dnat")),
                accept(),
            ],
        ));
        // Unsolicited traffic into a network only through published ports.
        batch.add(self.rule("forward", vec![oif_bridges(), drop()]));
    }

    fn network_elements(&self, net: &NetworkRules) -> Vec<NfListObject<'static>> {
        let mut out = vec![
            self.element(SET_BRIDGES, vec![s(&net.bridge)]),
            self.element(
                SET_SELFPAIRS,
                vec![concat(vec![s(&net.bridge), s(&net.bridge)])],
            ),
        ];
        if net.internal {
            out.push(self.element(SET_INTERNAL, vec![s(&net.bridge)]));
        } else {
            let (v4, v6): (Vec<_>, Vec<_>) = net.subnets.iter().partition(|n| n.addr().is_ipv4());
            if !v4.is_empty() {
                out.push(self.element(SET_MASQ4, v4.iter().map(|n| prefix(n)).collect()));
            }
            if !v6.is_empty() {
                out.push(self.element(SET_MASQ6, v6.iter().map(|n| prefix(n)).collect()));
            }
        }
        out
    }

    /// The two elements (address and port) of one published port.
    fn port_elements(&self, r: &PortRule) -> [NfListObject<'static>; 2] {
        let key = || {
            let proto = s(r.protocol.as_str());
            let port = Expression::Number(u32::from(r.host_port));
            match r.host_ip {
                Some(h) => concat(vec![addr_expr(h), proto, port]),
                None => concat(vec![proto, port]),
            }
        };
        let (addr_map, port_map) = match (r.container_ip.is_ipv4(), r.host_ip.is_some()) {
            (true, true) => MAPS_4_HOST,
            (true, false) => MAPS_4_ANY,
            (false, true) => MAPS_6_HOST,
            (false, false) => MAPS_6_ANY,
        };
        [
            self.element(
                addr_map,
                vec![Expression::List(vec![key(), addr_expr(r.container_ip)])],
            ),
            self.element(
                port_map,
                vec![Expression::List(vec![
                    key(),
                    Expression::Number(u32::from(r.container_port)),
                ])],
            ),
        ]
    }

    fn list_table(&self) -> Result<Option<serde_json::Value>> {
        let args = ["-j", "list", "table", "inet", self.table.as_str()];
        match run_nft(&args, None) {
            Ok(out) => serde_json::from_str(&out)
                .map(Some)
                .map_err(|e| Error::Nft {
                    step: format!("parse listing of table inet {}", self.table),
                    detail: e.to_string(),
                }),
            Err(e) if e.is_missing() => Ok(None),
            Err(e) => Err(e.into_error(format!("list table inet {}", self.table))),
        }
    }

    /// Elements of set or map `name` in a table listing.
    fn elements_of<'v>(listing: &'v serde_json::Value, name: &str) -> Vec<&'v serde_json::Value> {
        let mut out = Vec::new();
        let Some(objects) = listing.get("nftables").and_then(|v| v.as_array()) else {
            return out;
        };
        for obj in objects {
            let inner = obj.get("map").or_else(|| obj.get("set"));
            if let Some(inner) = inner {
                if inner.get("name").and_then(|n| n.as_str()) == Some(name) {
                    if let Some(elems) = inner.get("elem").and_then(|e| e.as_array()) {
                        out.extend(elems.iter());
                    }
                }
            }
        }
        out
    }
}

fn concat_items(v: &serde_json::Value) -> Option<&Vec<serde_json::Value>> {
    v.get("concat").and_then(|c| c.as_array())
}

fn json_ip(v: &serde_json::Value) -> Option<IpAddr> {
    v.as_str().and_then(|s| IpAddr::from_str(s).ok())
}

fn json_port(v: &serde_json::Value) -> Option<u16> {
    v.as_u64().and_then(|p| u16::try_from(p).ok())
}

fn json_proto(v: &serde_json::Value) -> Option<Protocol> {
    match v {
        serde_json::Value::String(s) => Protocol::from_str(s).ok(),
        serde_json::Value::Number(n) => match n.as_u64() {
            Some(6) => Some(Protocol::Tcp),
            Some(17) => Some(Protocol::Udp),
            Some(132) => Some(Protocol::Sctp),
            _ => None,
        },
        _ => None,
    }
}

/// (key items, value) of one map element `[{"concat": [...]}, value]`.
fn split_element(v: &serde_json::Value) -> Option<(&Vec<serde_json::Value>, &serde_json::Value)> {
    let pair = v.as_array()?;
    Some((concat_items(pair.first()?)?, pair.get(1)?))
}

/// Joins the address and port maps of one kind into port rules.
fn parse_ports(
    addrs: &[&serde_json::Value],
    ports: &[&serde_json::Value],
    with_host: bool,
) -> Vec<PortRule> {
    let mut out = Vec::new();
    for a in addrs {
        let Some((key, addr)) = split_element(a) else {
            continue;
        };
        let Some(port) = ports
            .iter()
            .filter_map(|p| split_element(p))
            .find(|(k, _)| *k == key)
            .and_then(|(_, v)| json_port(v))
        else {
            continue;
        };
        let (host_ip, rest) = if with_host {
            match key.first().and_then(json_ip) {
                Some(ip) => (Some(ip), &key[1..]),
                None => continue,
            }
        } else {
            (None, &key[..])
        };
        let parsed = (|| {
            Some(PortRule {
                host_ip,
                protocol: json_proto(rest.first()?)?,
                host_port: json_port(rest.get(1)?)?,
                container_ip: json_ip(addr)?,
                container_port: port,
            })
        })();
        out.extend(parsed);
    }
    out
}

impl FirewallDriver for Nftables {
    fn setup_network(&self, net: &NetworkRules) -> Result<()> {
        let mut batch = Batch::new();
        self.base(&mut batch);
        for e in self.network_elements(net) {
            batch.add(e);
        }
        self.apply(&format!("set up network on bridge {}", net.bridge), batch)?;
        tracing::debug!(table = %self.table, bridge = %net.bridge, "firewall rules for network in place");
        Ok(())
    }

    fn teardown_network(&self, net: &NetworkRules) -> Result<()> {
        let elements = self.network_elements(net);
        let mut batch = Batch::new();
        for e in &elements {
            batch.delete(e.clone());
        }
        match self.try_apply(batch) {
            Ok(()) => Ok(()),
            // Some are already gone: remove the rest one by one.
            Err(_) => {
                for e in elements {
                    let mut one = Batch::new();
                    one.delete(e);
                    match self.try_apply(one) {
                        Ok(()) => {}
                        Err(e) if e.is_missing() => {}
                        Err(e) => {
                            return Err(
                                e.into_error(format!("remove network on bridge {}", net.bridge))
                            )
                        }
                    }
                }
                Ok(())
            }
        }
    }

    fn add_ports(&self, rules: &[PortRule]) -> Result<()> {
        if rules.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::new();
        for r in rules {
            for e in self.port_elements(r) {
                batch.add(e);
            }
        }
        self.apply("publish ports", batch)
    }

    fn remove_ports(&self, rules: &[PortRule]) -> Result<()> {
        if rules.is_empty() {
            return Ok(());
        }
        let mut batch = Batch::new();
        for r in rules {
            for e in self.port_elements(r) {
                batch.delete(e);
            }
        }
        match self.try_apply(batch) {
            Ok(()) => Ok(()),
            Err(first) => {
                // Some entries are already gone (a crash between steps): delete those present.
                let present: HashSet<PortRule> = self.list_ports()?.into_iter().collect();
                let left: Vec<&PortRule> = rules.iter().filter(|r| present.contains(r)).collect();
                if left.is_empty() {
                    return Ok(());
                }
                let mut batch = Batch::new();
                for r in left {
                    for e in self.port_elements(r) {
                        batch.delete(e);
                    }
                }
                self.try_apply(batch).map_err(|_| {
                    first.into_error(format!("unpublish ports (table inet {})", self.table))
                })
            }
        }
    }

    fn list_ports(&self) -> Result<Vec<PortRule>> {
        let Some(listing) = self.list_table()? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for ((addr_map, port_map), with_host) in [
            (MAPS_4_HOST, true),
            (MAPS_4_ANY, false),
            (MAPS_6_HOST, true),
            (MAPS_6_ANY, false),
        ] {
            let addrs = Self::elements_of(&listing, addr_map);
            let ports = Self::elements_of(&listing, port_map);
            out.extend(parse_ports(&addrs, &ports, with_host));
        }
        Ok(out)
    }

    fn list_bridges(&self) -> Result<Vec<String>> {
        let Some(listing) = self.list_table()? else {
            return Ok(Vec::new());
        };
        Ok(Self::elements_of(&listing, SET_BRIDGES)
            .into_iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect())
    }

    fn remove_all(&self) -> Result<()> {
        let mut batch = Batch::new();
        batch.delete(NfListObject::Table(Table {
            family: NfFamily::INet,
            name: self.t(),
            ..Table::default()
        }));
        match self.try_apply(batch) {
            Ok(()) => Ok(()),
            Err(e) if e.is_missing() => Ok(()),
            Err(e) => Err(e.into_error(format!("delete table inet {}", self.table))),
        }
    }
}
