//! `none`: a network namespace of its own with only loopback, up.

use super::{Context, NetworkDriver, Plan};
use crate::error::{Error, Result};
use crate::netconf::Network;
use crate::netlink::Netlink;
use crate::netns;
use crate::record::Attachment;

pub struct NoneDriver;

impl NetworkDriver for NoneDriver {
    fn bring_up(&self, _ctx: &Context<'_>, _net: &Network) -> Result<()> {
        Ok(())
    }

    fn bring_down(&self, _ctx: &Context<'_>, _net: &Network) -> Result<()> {
        Ok(())
    }

    fn attach(&self, _ctx: &Context<'_>, _plan: &Plan<'_>, rec: &mut Attachment) -> Result<()> {
        let path = rec
            .netns
            .clone()
            .ok_or_else(|| Error::NoNetnsToJoin(rec.container_id.clone()))?;
        let fd = netns::open(&path)?;
        let mut nl = Netlink::open_in(std::os::fd::AsFd::as_fd(&fd))
            .map_err(|e| Error::netlink("open socket in container namespace", e))?;
        nl.set_up_by_name("lo")
            .map_err(|e| Error::netlink("set loopback up", e))?;
        Ok(())
    }

    fn detach(&self, _ctx: &Context<'_>, _rec: &Attachment) -> Result<()> {
        Ok(())
    }
}
