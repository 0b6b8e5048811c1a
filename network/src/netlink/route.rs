//! Routes.

use std::io;
use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};

use super::Netlink;

impl Netlink {
    /// Adds a route to `dst` through `gateway` out of link `index`. Returns false when an equal
    /// route already exists (a second network of a container keeps the first one's default
    /// route, as Docker does).
    pub fn add_route(
        &mut self,
        dst: IpNet,
        gateway: Option<IpAddr>,
        index: u32,
    ) -> io::Result<bool> {
        let mut msg = RouteMessage::default();
        msg.header.address_family = match dst {
            IpNet::V4(_) => AddressFamily::Inet,
            IpNet::V6(_) => AddressFamily::Inet6,
        };
        msg.header.destination_prefix_length = dst.prefix_len();
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Static;
        msg.header.kind = RouteType::Unicast;
        msg.header.scope = if gateway.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        if dst.prefix_len() > 0 {
            msg.attributes
                .push(RouteAttribute::Destination(RouteAddress::from(
                    dst.network(),
                )));
        }
        if let Some(gw) = gateway {
            msg.attributes
                .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
        }
        msg.attributes.push(RouteAttribute::Oif(index));
        match self.request(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_EXCL,
        ) {
            Ok(_) => Ok(true),
            Err(e) if super::is_exists(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Destinations of the main routing table (both families), used to choose a default subnet
    /// that does not overlap anything the host already routes.
    pub fn route_destinations(&mut self) -> io::Result<Vec<IpNet>> {
        let mut out = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut msg = RouteMessage::default();
            msg.header.address_family = family;
            let answer = self.request(RouteNetlinkMessage::GetRoute(msg), NLM_F_DUMP)?;
            for m in answer {
                let RouteNetlinkMessage::NewRoute(route) = m else {
                    continue;
                };
                if route.header.table != RouteHeader::RT_TABLE_MAIN
                    || route.header.kind != RouteType::Unicast
                {
                    continue;
                }
                let len = route.header.destination_prefix_length;
                // The default route covers everything; it says nothing about local subnets.
                if len == 0 {
                    continue;
                }
                for attr in &route.attributes {
                    if let RouteAttribute::Destination(addr) = attr {
                        let net = match addr {
                            RouteAddress::Inet(a) => IpNet::new(IpAddr::V4(*a), len).ok(),
                            RouteAddress::Inet6(a) => IpNet::new(IpAddr::V6(*a), len).ok(),
                            _ => None,
                        };
                        out.extend(net);
                    }
                }
            }
        }
        Ok(out)
    }
}
