//! v1 devices controller: rules written one per write to devices.allow / devices.deny.

use std::path::Path;

use oci_spec::runtime::LinuxResources;

use crate::error::Result;
use crate::fsutil::{self, HeldFile, Writer};
use crate::validate;

pub(crate) fn apply(d: &Path, r: &LinuxResources, w: &mut Writer) -> Result<()> {
    let rules = validate::device_rules(r)?;
    if w.journaling() {
        // devices.allow and devices.deny cannot be read back; the undo is "deny all, then
        // allow each line devices.list shows now", queued so it replays in that order.
        let list = fsutil::read_string(&d.join("devices.list"))?;
        for line in list.lines().rev().filter(|l| !l.trim().is_empty()) {
            w.remember(&d.join("devices.allow"), line.trim().to_string());
        }
        w.remember(&d.join("devices.deny"), "a".to_string());
    }
    // Both files stay open for the whole list: each write(2) is one rule the kernel applies
    // at once, so interleaved allows and denies keep their order.
    let mut allow = HeldFile::new(d.join("devices.allow"));
    let mut deny = HeldFile::new(d.join("devices.deny"));
    for (i, rule) in rules.iter().enumerate() {
        let file = if rule.allow { &mut allow } else { &mut deny };
        w.write_held(
            &format!("linux.resources.devices[{i}]"),
            file,
            &rule.v1_line(),
        )?;
    }
    Ok(())
}
