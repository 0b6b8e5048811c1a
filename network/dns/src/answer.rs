//! Deciding what to do with one DNS request: answer it from the table, forward it, refuse it,
//! or drop it.
//!
//! Who gets what:
//! - An asker whose source address is in none of the table's subnets gets REFUSED for every
//!   query, names and forwarding alike: the server listens on addresses the host and possibly
//!   other machines can reach, and must neither reveal container names nor be an open resolver.
//! - An asker on one or more networks sees the names of exactly those networks. A name
//!   registered only on another network is unknown to it, so it is forwarded like any other
//!   unknown name (the asker learns nothing about networks it is not on).
//! - Names under a network's `domain` and reverse names of addresses in a visible subnet are
//!   answered authoritatively (NXDOMAIN when unknown), never leaked upstream.
//! - Everything else is forwarded; responses (QR=1) and packets too short for a header are
//!   dropped; unparsable queries get FORMERR, other opcodes NOTIMP.

use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, PTR};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::index::{AddrLookup, Index, NameLookup};

/// TTL of local answers: containers come and go, so resolvers should not keep them long.
pub const LOCAL_TTL: u32 = 60;
/// Classic DNS over UDP limit when the asker sends no EDNS.
pub const MIN_UDP_PAYLOAD: usize = 512;
/// Largest UDP payload we advertise and send (the DNS flag day 2020 value: no fragmentation).
pub const MAX_UDP_PAYLOAD: usize = 1232;

/// What to do with a request.
#[derive(Debug)]
pub enum Outcome {
    /// Send these bytes back.
    Reply(Vec<u8>),
    /// Forward the request unchanged to the upstream resolvers.
    Forward,
    /// Send nothing (not a query, or not even a header).
    Drop,
}

/// Decides about `request` from `source`. `max_reply` is the transport's limit (UDP: from the
/// asker's EDNS; TCP: 65535); a longer local answer is sent truncated (TC) so the asker retries
/// over TCP.
pub fn decide(index: &Index, source: IpAddr, request: &[u8], transport_max: usize) -> Outcome {
    let msg = match Message::from_vec(request) {
        Ok(m) => m,
        Err(_) => return malformed(request),
    };
    if msg.metadata.message_type != MessageType::Query {
        return Outcome::Drop;
    }
    let max_reply = reply_limit(&msg, transport_max);
    let Some(view) = index.view(source) else {
        return reply(&msg, ResponseCode::Refused, Vec::new(), false, max_reply);
    };
    if msg.metadata.op_code != OpCode::Query {
        return reply(&msg, ResponseCode::NotImp, Vec::new(), false, max_reply);
    }
    let [query] = msg.queries.as_slice() else {
        return reply(&msg, ResponseCode::FormErr, Vec::new(), false, max_reply);
    };
    if query.query_class() != DNSClass::IN {
        return Outcome::Forward;
    }
    let qname = query.name();
    let qtype = query.query_type();

    if qtype == RecordType::PTR || is_reverse_name(qname) {
        if let Some(ip) = reverse_ip(qname) {
            return match view.lookup_addr(ip) {
                AddrLookup::Found(names) if qtype == RecordType::PTR => {
                    let answers = names
                        .iter()
                        .filter_map(|n| Name::from_ascii(format!("{n}.")).ok())
                        .map(|target| {
                            Record::from_rdata(qname.clone(), LOCAL_TTL, RData::PTR(PTR(target)))
                        })
                        .collect();
                    reply(&msg, ResponseCode::NoError, answers, true, max_reply)
                }
                // The address is ours but the type is not PTR: no data of that type.
                AddrLookup::Found(_) => {
                    reply(&msg, ResponseCode::NoError, Vec::new(), true, max_reply)
                }
                AddrLookup::NoSuchAddr => {
                    reply(&msg, ResponseCode::NXDomain, Vec::new(), true, max_reply)
                }
                AddrLookup::NotLocal => Outcome::Forward,
            };
        }
    }

    let key = qname.to_lowercase().to_ascii();
    let key = key.trim_end_matches('.');
    match view.lookup_name(key) {
        NameLookup::Found(addrs) => {
            let answers: Vec<Record> = match qtype {
                RecordType::A => addrs
                    .v4
                    .iter()
                    .map(|ip| Record::from_rdata(qname.clone(), LOCAL_TTL, RData::A(A(*ip))))
                    .collect(),
                RecordType::AAAA => addrs
                    .v6
                    .iter()
                    .map(|ip| Record::from_rdata(qname.clone(), LOCAL_TTL, RData::AAAA(AAAA(*ip))))
                    .collect(),
                RecordType::ANY => addrs
                    .v4
                    .iter()
                    .map(|ip| RData::A(A(*ip)))
                    .chain(addrs.v6.iter().map(|ip| RData::AAAA(AAAA(*ip))))
                    .map(|rd| Record::from_rdata(qname.clone(), LOCAL_TTL, rd))
                    .collect(),
                // A container name has no MX, TXT, ...: NOERROR with no data.
                _ => Vec::new(),
            };
            reply(&msg, ResponseCode::NoError, answers, true, max_reply)
        }
        NameLookup::NoSuchName => reply(&msg, ResponseCode::NXDomain, Vec::new(), true, max_reply),
        NameLookup::NotLocal => Outcome::Forward,
    }
}

/// A SERVFAIL for `request` (forwarding failed); Drop when it cannot even be parsed.
pub fn servfail(request: &[u8], transport_max: usize) -> Outcome {
    match Message::from_vec(request) {
        Ok(msg) => {
            let max = reply_limit(&msg, transport_max);
            reply(&msg, ResponseCode::ServFail, Vec::new(), false, max)
        }
        Err(_) => malformed(request),
    }
}

/// The largest UDP reply the asker of `request` accepts.
pub fn udp_limit(request: &[u8]) -> usize {
    Message::from_vec(request)
        .map(|m| reply_limit(&m, MAX_UDP_PAYLOAD))
        .unwrap_or(MIN_UDP_PAYLOAD)
}

/// The largest reply the asker accepts over UDP: 512, or its EDNS size up to our maximum.
fn reply_limit(msg: &Message, transport_max: usize) -> usize {
    let udp = msg
        .edns
        .as_ref()
        .map(|e| usize::from(e.max_payload()).clamp(MIN_UDP_PAYLOAD, MAX_UDP_PAYLOAD))
        .unwrap_or(MIN_UDP_PAYLOAD);
    if transport_max > MAX_UDP_PAYLOAD {
        transport_max
    } else {
        udp.min(transport_max)
    }
}

/// A query we cannot parse gets FORMERR when its header says it is a query; anything shorter
/// than a header, or a response, gets nothing (answering responses invites loops).
fn malformed(request: &[u8]) -> Outcome {
    if request.len() < 12 || request[2] & 0x80 != 0 {
        return Outcome::Drop;
    }
    let id = u16::from_be_bytes([request[0], request[1]]);
    let opcode = OpCode::from_u8((request[2] >> 3) & 0x0f);
    let mut msg = Message::error_msg(id, opcode, ResponseCode::FormErr);
    msg.metadata.recursion_desired = request[2] & 0x01 != 0;
    msg.metadata.recursion_available = true;
    match msg.to_vec() {
        Ok(bytes) => Outcome::Reply(bytes),
        Err(_) => Outcome::Drop,
    }
}

fn reply(
    req: &Message,
    code: ResponseCode,
    answers: Vec<Record>,
    authoritative: bool,
    max_reply: usize,
) -> Outcome {
    let mut msg = Message::response(req.metadata.id, req.metadata.op_code);
    msg.metadata.response_code = code;
    msg.metadata.recursion_desired = req.metadata.recursion_desired;
    msg.metadata.recursion_available = true;
    msg.metadata.authoritative = authoritative;
    msg.metadata.checking_disabled = req.metadata.checking_disabled;
    msg.add_queries(req.queries.iter().cloned());
    msg.add_answers(answers);
    if req.edns.is_some() {
        let mut edns = Edns::new();
        edns.set_max_payload(MAX_UDP_PAYLOAD as u16);
        msg.set_edns(edns);
    }
    let Ok(bytes) = msg.to_vec() else {
        return Outcome::Drop;
    };
    if bytes.len() <= max_reply {
        return Outcome::Reply(bytes);
    }
    match msg.truncate().to_vec() {
        Ok(bytes) if bytes.len() <= max_reply => Outcome::Reply(bytes),
        _ => Outcome::Drop,
    }
}

fn is_reverse_name(name: &Name) -> bool {
    let s = name.to_lowercase().to_ascii();
    s.ends_with(".in-addr.arpa.") || s.ends_with(".ip6.arpa.")
}

/// The address a full reverse name stands for (a.b.c.d.in-addr.arpa, 32 nibbles.ip6.arpa).
fn reverse_ip(name: &Name) -> Option<IpAddr> {
    let mut fqdn = name.clone();
    fqdn.set_fqdn(true);
    let net = fqdn.parse_arpa_name().ok()?;
    (net.prefix_len() == net.max_prefix_len()).then(|| net.addr())
}

/// Builds a query message, for tests and the fake upstream in integration tests.
pub fn query_bytes(id: u16, name: &str, qtype: RecordType) -> Option<Vec<u8>> {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(Name::from_ascii(name).ok()?, qtype));
    msg.to_vec().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::table::{Entry, NetworkInfo, Table};

    fn index() -> Index {
        let mut t = Table::new();
        let front = NetworkInfo {
            name: "front".into(),
            gateways: vec!["10.77.0.1".parse().unwrap()],
            subnets: vec![
                "10.77.0.0/24".parse().unwrap(),
                "fd77::/64".parse().unwrap(),
            ],
            domain: Some("dns.kos".into()),
        };
        let back = NetworkInfo {
            name: "back".into(),
            gateways: vec!["10.88.0.1".parse().unwrap()],
            subnets: vec!["10.88.0.0/24".parse().unwrap()],
            domain: None,
        };
        t.upsert(
            &front,
            Entry {
                id: "aaaaaaaaaaaaaaaaaaaa".into(),
                name: "web".into(),
                aliases: vec!["www".into()],
                network_aliases: vec!["shared".into()],
                ipv4: vec!["10.77.0.10".parse().unwrap()],
                ipv6: vec!["fd77::10".parse().unwrap()],
            },
        );
        t.upsert(
            &front,
            Entry {
                id: "bbbbbbbbbbbbbbbbbbbb".into(),
                name: "web2".into(),
                network_aliases: vec!["shared".into()],
                ipv4: vec!["10.77.0.11".parse().unwrap()],
                ..Entry::default()
            },
        );
        t.upsert(
            &back,
            Entry {
                id: "cccccccccccccccccccc".into(),
                name: "secret".into(),
                ipv4: vec!["10.88.0.5".parse().unwrap()],
                ..Entry::default()
            },
        );
        Index::build(&t)
    }

    fn ask(src: &str, name: &str, qtype: RecordType) -> Outcome {
        let q = query_bytes(42, name, qtype).unwrap();
        decide(&index(), src.parse().unwrap(), &q, MAX_UDP_PAYLOAD)
    }

    fn reply_of(o: Outcome) -> Message {
        match o {
            Outcome::Reply(b) => Message::from_vec(&b).unwrap(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    fn data(m: &Message) -> Vec<String> {
        m.answers
            .iter()
            .map(|r| match &r.data {
                RData::A(a) => a.0.to_string(),
                RData::AAAA(a) => a.0.to_string(),
                RData::PTR(p) => p.0.to_ascii(),
                other => format!("{other:?}"),
            })
            .collect()
    }

    #[test]
    fn names_aliases_and_domain_answer_in_network() {
        for name in ["web.", "WWW.", "www.dns.kos.", "aaaaaaaaaaaa."] {
            let m = reply_of(ask("10.77.0.99", name, RecordType::A));
            assert_eq!(m.metadata.id, 42);
            assert_eq!(m.metadata.response_code, ResponseCode::NoError);
            assert!(m.metadata.authoritative && m.metadata.recursion_available);
            assert_eq!(data(&m), vec!["10.77.0.10"], "{name}");
        }
        let m = reply_of(ask("fd77::99", "web.", RecordType::AAAA));
        assert_eq!(data(&m), vec!["fd77::10"]);
        // A shared alias answers with both containers.
        let m = reply_of(ask("10.77.0.99", "shared.", RecordType::A));
        assert_eq!(data(&m), vec!["10.77.0.10", "10.77.0.11"]);
        // Known name, other type: NOERROR without data.
        let m = reply_of(ask("10.77.0.99", "web2.", RecordType::AAAA));
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        let m = reply_of(ask("10.77.0.99", "web.", RecordType::MX));
        assert!(m.answers.is_empty());
    }

    #[test]
    fn reverse_lookups() {
        let m = reply_of(ask(
            "10.77.0.99",
            "10.0.77.10.in-addr.arpa.",
            RecordType::PTR,
        ));
        assert_eq!(data(&m), vec!["web.dns.kos."]);
        let v6 = "0.1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.7.7.d.f.ip6.arpa.";
        let m = reply_of(ask("10.77.0.99", v6, RecordType::PTR));
        assert_eq!(data(&m), vec!["web.dns.kos."]);
        let m = reply_of(ask(
            "10.77.0.99",
            "200.0.77.10.in-addr.arpa.",
            RecordType::PTR,
        ));
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        // Partial reverse names and foreign addresses go upstream.
        assert!(matches!(
            ask("10.77.0.99", "77.10.in-addr.arpa.", RecordType::PTR),
            Outcome::Forward
        ));
        assert!(matches!(
            ask("10.77.0.99", "8.8.8.8.in-addr.arpa.", RecordType::PTR),
            Outcome::Forward
        ));
    }

    #[test]
    fn networks_are_isolated_and_outsiders_refused() {
        // "secret" lives on another network: unknown here, so forwarded like any name.
        assert!(matches!(
            ask("10.77.0.99", "secret.", RecordType::A),
            Outcome::Forward
        ));
        assert!(matches!(
            ask("10.77.0.99", "5.0.88.10.in-addr.arpa.", RecordType::PTR),
            Outcome::Forward
        ));
        let m = reply_of(ask("10.88.0.7", "secret.", RecordType::A));
        assert_eq!(data(&m), vec!["10.88.0.5"]);
        // Unknown name in our domain: NXDOMAIN here, not forwarded.
        let m = reply_of(ask("10.77.0.99", "nope.dns.kos.", RecordType::A));
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert!(matches!(
            ask("10.77.0.99", "example.com.", RecordType::A),
            Outcome::Forward
        ));
        for name in ["web.", "example.com."] {
            let m = reply_of(ask("192.0.2.1", name, RecordType::A));
            assert_eq!(m.metadata.response_code, ResponseCode::Refused);
            assert!(m.answers.is_empty());
        }
        // A v4 asker seen through a v6 socket is still on the network.
        let m = reply_of(ask("::ffff:10.77.0.99", "web.", RecordType::A));
        assert_eq!(data(&m), vec!["10.77.0.10"]);
    }

    #[test]
    fn malformed_and_odd_requests() {
        let idx = index();
        let src = "10.77.0.99".parse().unwrap();
        assert!(matches!(decide(&idx, src, &[], 512), Outcome::Drop));
        assert!(matches!(decide(&idx, src, &[1, 2, 3], 512), Outcome::Drop));
        // Query header, garbage body: FORMERR with the id.
        let m = reply_of(decide(
            &idx,
            src,
            &[0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0],
            512,
        ));
        assert_eq!(
            (m.metadata.id, m.metadata.response_code),
            (7, ResponseCode::FormErr)
        );
        // Responses are never answered.
        let mut resp = query_bytes(1, "web.", RecordType::A).unwrap();
        resp[2] |= 0x80;
        assert!(matches!(decide(&idx, src, &resp, 512), Outcome::Drop));
        // Two questions: FORMERR. Other opcodes: NOTIMP.
        let mut two = Message::new(5, MessageType::Query, OpCode::Query);
        two.add_query(Query::query(
            Name::from_ascii("web.").unwrap(),
            RecordType::A,
        ));
        two.add_query(Query::query(
            Name::from_ascii("www.").unwrap(),
            RecordType::A,
        ));
        let m = reply_of(decide(&idx, src, &two.to_vec().unwrap(), 512));
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        let status = Message::new(6, MessageType::Query, OpCode::Status);
        let m = reply_of(decide(&idx, src, &status.to_vec().unwrap(), 512));
        assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
    }

    #[test]
    fn oversized_local_answers_are_truncated() {
        let mut t = Table::new();
        let net = NetworkInfo {
            name: "n".into(),
            subnets: vec!["10.0.0.0/16".parse().unwrap()],
            ..NetworkInfo::default()
        };
        for i in 0..100u8 {
            t.upsert(
                &net,
                Entry {
                    id: format!("id{i}"),
                    name: format!("c{i}"),
                    aliases: vec!["many".into()],
                    ipv4: vec![std::net::Ipv4Addr::new(10, 0, 1, i)],
                    ..Entry::default()
                },
            );
        }
        let idx = Index::build(&t);
        let q = query_bytes(9, "many.", RecordType::A).unwrap();
        let src = "10.0.0.1".parse().unwrap();
        let m = reply_of(decide(&idx, src, &q, MAX_UDP_PAYLOAD));
        assert!(m.metadata.truncation && m.answers.is_empty());
        let m = reply_of(decide(&idx, src, &q, 65535));
        assert_eq!(m.answers.len(), 100);
    }
}
