//! `container:<id>`: join another container's network namespace; nothing is made, and the
//! other container's attachments keep owning the interfaces.

use super::{Context, NetworkDriver, Plan};
use crate::error::{Error, Result};
use crate::netconf::Network;
use crate::record::{AttachKind, Attachment};

pub struct ContainerDriver;

impl NetworkDriver for ContainerDriver {
    fn bring_up(&self, _ctx: &Context<'_>, _net: &Network) -> Result<()> {
        Ok(())
    }

    fn bring_down(&self, _ctx: &Context<'_>, _net: &Network) -> Result<()> {
        Ok(())
    }

    fn attach(&self, ctx: &Context<'_>, _plan: &Plan<'_>, rec: &mut Attachment) -> Result<()> {
        let AttachKind::Container(other) = &rec.kind else {
            return Err(Error::InvalidMode(format!("{:?}", rec.kind)));
        };
        // The other container's namespace: from its records, else its pin.
        let from_records = ctx
            .records
            .of_container(other)?
            .into_iter()
            .filter(|r| !matches!(r.kind, AttachKind::Container(_)))
            .find_map(|r| r.netns);
        let pin = ctx.pins.path(other);
        let path = match from_records {
            Some(p) => p,
            None if pin.exists() => pin,
            None => return Err(Error::NoNetnsToJoin(other.clone())),
        };
        rec.netns = Some(path);
        Ok(())
    }

    fn detach(&self, _ctx: &Context<'_>, _rec: &Attachment) -> Result<()> {
        Ok(())
    }
}
