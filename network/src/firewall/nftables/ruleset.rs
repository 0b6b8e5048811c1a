//! The table's fixed ruleset and the elements networks and ports add to it.

use std::borrow::Cow;
use std::collections::HashSet;
use std::net::IpAddr;

use nftables::batch::Batch;
use nftables::expr::{
    Expression, Fib, FibFlag, FibResult, Map as MapExpr, Meta, MetaKey, NamedExpression, Payload,
    PayloadField, Prefix, CT,
};
use nftables::schema::{
    Chain, Element, FlushObject, Map, NfCmd, NfListObject, Rule, Set, SetFlag, SetType,
    SetTypeValue, Table,
};
use nftables::stmt::{JumpTarget, Match, NATFamily, Operator, Statement, NAT};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};

use crate::firewall::{NetworkRules, PortRule};

use super::Nftables;

pub(super) const SET_BRIDGES: &str = "bridges";
pub(super) const SET_INTERNAL: &str = "internal";
pub(super) const SET_SELFPAIRS: &str = "selfpairs";
pub(super) const SET_MASQ4: &str = "masq4";
pub(super) const SET_MASQ6: &str = "masq6";
/// (address map, port map) per (family, specific host address).
pub(super) const MAPS_4_HOST: (&str, &str) = ("a4h", "p4h");
pub(super) const MAPS_4_ANY: (&str, &str) = ("a4a", "p4a");
pub(super) const MAPS_6_HOST: (&str, &str) = ("a6h", "p6h");
pub(super) const MAPS_6_ANY: (&str, &str) = ("a6a", "p6a");

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

impl Nftables {
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
    pub(super) fn base(&self, batch: &mut Batch<'static>) {
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

    pub(super) fn network_elements(&self, net: &NetworkRules) -> Vec<NfListObject<'static>> {
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
    pub(super) fn port_elements(&self, r: &PortRule) -> [NfListObject<'static>; 2] {
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
}
