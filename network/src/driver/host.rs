//! `host`: the container uses the host's network namespace; nothing is made.

use super::{Context, NetworkDriver, Plan};
use crate::error::Result;
use crate::netconf::Network;
use crate::record::Attachment;

pub struct HostDriver;

impl NetworkDriver for HostDriver {
    fn bring_up(&self, _ctx: &Context<'_>, _net: &Network) -> Result<()> {
        Ok(())
    }

    fn bring_down(&self, _ctx: &Context<'_>, _net: &Network) -> Result<()> {
        Ok(())
    }

    fn attach(&self, _ctx: &Context<'_>, _plan: &Plan<'_>, rec: &mut Attachment) -> Result<()> {
        rec.netns = None;
        Ok(())
    }

    fn detach(&self, _ctx: &Context<'_>, _rec: &Attachment) -> Result<()> {
        Ok(())
    }
}
