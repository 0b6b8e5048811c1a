//! Links: bridges, veth pairs, up/down, deletion, bridge-port isolation.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use netlink_packet_core::{NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL};
use netlink_packet_route::link::{
    InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, LinkAttribute,
    LinkFlags, LinkInfo as NlLinkInfo, LinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;

use super::Netlink;

/// What KOS needs to know about an existing link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkInfo {
    pub index: u32,
    pub name: String,
    /// Index of the bridge this link is a port of.
    pub master: Option<u32>,
    /// "bridge", "veth", ... (None for links without a kind, such as physical NICs).
    pub kind: Option<String>,
}

impl LinkInfo {
    fn from_message(msg: &LinkMessage) -> Self {
        let mut info = LinkInfo {
            index: msg.header.index,
            name: String::new(),
            master: None,
            kind: None,
        };
        for attr in &msg.attributes {
            match attr {
                LinkAttribute::IfName(name) => info.name = name.clone(),
                LinkAttribute::Controller(index) => info.master = Some(*index),
                LinkAttribute::LinkInfo(infos) => {
                    for i in infos {
                        if let NlLinkInfo::Kind(kind) = i {
                            info.kind = Some(kind.to_string());
                        }
                    }
                }
                _ => {}
            }
        }
        info
    }
}

/// The container end of a veth pair: made directly inside the container's namespace under its
/// final name, so it is never visible on the host and never needs a rename.
pub struct PeerSpec<'a> {
    pub name: &'a str,
    pub netns: BorrowedFd<'a>,
    pub mac: [u8; 6],
}

impl Netlink {
    /// The link called `name`, or None.
    pub fn link_by_name(&mut self, name: &str) -> io::Result<Option<LinkInfo>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(answer) => Ok(answer.iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(LinkInfo::from_message(link)),
                _ => None,
            })),
            Err(e) if super::is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every link of this namespace.
    pub fn links(&mut self) -> io::Result<Vec<LinkInfo>> {
        let answer = self.request(
            RouteNetlinkMessage::GetLink(LinkMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(answer
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(LinkInfo::from_message(link)),
                _ => None,
            })
            .collect())
    }

    /// Creates a bridge; fails with EEXIST when a link of that name exists.
    pub fn create_bridge(&mut self, name: &str, mtu: Option<u32>, mac: [u8; 6]) -> io::Result<u32> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        // A fixed address keeps the bridge's MAC from changing as ports come and go.
        msg.attributes.push(LinkAttribute::Address(mac.to_vec()));
        if let Some(mtu) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        msg.attributes
            .push(LinkAttribute::LinkInfo(vec![NlLinkInfo::Kind(
                InfoKind::Bridge,
            )]));
        self.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)?;
        self.link_by_name(name)?
            .map(|l| l.index)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))
    }

    /// Creates a veth pair whose host end `host_name` is a port of bridge `master` and whose
    /// peer is made inside another namespace.
    pub fn create_veth(
        &mut self,
        host_name: &str,
        master: u32,
        mtu: Option<u32>,
        peer: &PeerSpec<'_>,
    ) -> io::Result<()> {
        let mut peer_msg = LinkMessage::default();
        peer_msg
            .attributes
            .push(LinkAttribute::IfName(peer.name.to_string()));
        peer_msg
            .attributes
            .push(LinkAttribute::NetNsFd(peer.netns.as_raw_fd()));
        peer_msg
            .attributes
            .push(LinkAttribute::Address(peer.mac.to_vec()));
        if let Some(mtu) = mtu {
            peer_msg.attributes.push(LinkAttribute::Mtu(mtu));
        }

        let mut msg = LinkMessage::default();
        msg.attributes
            .push(LinkAttribute::IfName(host_name.to_string()));
        msg.attributes.push(LinkAttribute::Controller(master));
        if let Some(mtu) = mtu {
            msg.attributes.push(LinkAttribute::Mtu(mtu));
        }
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            NlLinkInfo::Kind(InfoKind::Veth),
            NlLinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_msg))),
        ]));
        self.request(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)?;
        Ok(())
    }

    /// Sets a link administratively up.
    pub fn set_up(&mut self, index: u32) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        self.request(RouteNetlinkMessage::SetLink(msg), 0)?;
        Ok(())
    }

    /// Sets a link administratively up by name.
    pub fn set_up_by_name(&mut self, name: &str) -> io::Result<u32> {
        let link = self
            .link_by_name(name)?
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENODEV))?;
        self.set_up(link.index)?;
        Ok(link.index)
    }

    /// Sets a link administratively down by name; its index, or None when there is no such
    /// link.
    pub fn set_down_by_name(&mut self, name: &str) -> io::Result<Option<u32>> {
        let Some(link) = self.link_by_name(name)? else {
            return Ok(None);
        };
        let mut msg = LinkMessage::default();
        msg.header.index = link.index;
        msg.header.change_mask = LinkFlags::Up;
        match self.request(RouteNetlinkMessage::SetLink(msg), 0) {
            Ok(_) => Ok(Some(link.index)),
            Err(e) if super::is_not_found(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes the link with index `index`; true if it existed.
    pub fn delete_link(&mut self, index: u32) -> io::Result<bool> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        match self.request(RouteNetlinkMessage::DelLink(msg), 0) {
            Ok(_) => Ok(true),
            Err(e) if super::is_not_found(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Deletes a link by name; true if it existed. Deleting one end of a veth pair deletes the
    /// other end as well, wherever it is.
    pub fn delete_link_by_name(&mut self, name: &str) -> io::Result<bool> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::DelLink(msg), 0) {
            Ok(_) => Ok(true),
            Err(e) if super::is_not_found(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Sets a bridge port's flags. Hairpin lets a frame leave through the port it came in
    /// on: a container reaching its own published port through the host needs it. Isolated
    /// ports cannot talk to each other, only to the bridge itself: this is how
    /// `enable_icc = false` works without br_netfilter.
    pub fn set_port_flags(&mut self, index: u32, hairpin: bool, isolated: bool) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.attributes.push(LinkAttribute::LinkInfo(vec![
            NlLinkInfo::PortKind(InfoPortKind::Bridge),
            NlLinkInfo::PortData(InfoPortData::BridgePort(vec![
                InfoBridgePort::HairpinMode(hairpin),
                InfoBridgePort::Isolated(isolated),
            ])),
        ]));
        self.request(RouteNetlinkMessage::NewLink(msg), 0)?;
        Ok(())
    }
}
