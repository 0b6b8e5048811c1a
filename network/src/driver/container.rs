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
        // The other container's namespace: from its records (the host's when it uses the
        // host network), else its pin.
        let theirs: Vec<Attachment> = ctx
            .records
            .of_container(other)?
            .into_iter()
            .filter(|r| !matches!(r.kind, AttachKind::Container(_)))
            .collect();
        if theirs.iter().any(|r| r.kind == AttachKind::Host) {
            rec.netns = None;
            return Ok(());
        }
        let pin = ctx.pins.path(other);
        rec.netns = match theirs.into_iter().find_map(|r| r.netns) {
            Some(p) => Some(p),
            None if pin.exists() => Some(pin),
            None => return Err(Error::NoNetnsToJoin(other.clone())),
        };
        Ok(())
    }

    fn detach(&self, _ctx: &Context<'_>, _rec: &Attachment) -> Result<()> {
        Ok(())
    }
}
