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

mod listing;
mod ruleset;
mod run;

use std::borrow::Cow;
use std::collections::HashSet;

use nftables::batch::Batch;
use nftables::schema::{NfListObject, Table};
use nftables::types::NfFamily;

use crate::error::{Error, Result};
use crate::firewall::{FirewallDriver, NetworkRules, PortRule};

use self::ruleset::{MAPS_4_ANY, MAPS_4_HOST, MAPS_6_ANY, MAPS_6_HOST, SET_BRIDGES};

use self::run::{run_nft, NftFailure};

/// nftables back end for one table of family `inet`.
#[derive(Debug, Clone)]
pub struct Nftables {
    table: String,
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
        let Some(dump) = self.list_table()? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        for ((addr_map, port_map), with_host) in [
            (MAPS_4_HOST, true),
            (MAPS_4_ANY, false),
            (MAPS_6_HOST, true),
            (MAPS_6_ANY, false),
        ] {
            let addrs = listing::elements_of(&dump, addr_map);
            let ports = listing::elements_of(&dump, port_map);
            out.extend(listing::parse_ports(&addrs, &ports, with_host));
        }
        Ok(out)
    }

    fn list_bridges(&self) -> Result<Vec<String>> {
        let Some(dump) = self.list_table()? else {
            return Ok(Vec::new());
        };
        Ok(listing::elements_of(&dump, SET_BRIDGES)
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
