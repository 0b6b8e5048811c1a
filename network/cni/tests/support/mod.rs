//! Test-made network namespaces, a per-test bridge name, temp dirs, fake plugins, and a guard
//! that removes whatever the real plugins could leave on the host (bridge, IPAM files,
//! portmap's iptables chains, ip_forward) even when a test fails.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Debian's containernetworking-plugins.
pub const DEBIAN_PLUGINS: &str = "/usr/lib/cni";

/// A short suffix unique to this test in this run: `<pid hex><n>`.
pub fn suffix() -> String {
    format!(
        "{:x}{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn stdout(cmd: &mut Command) -> String {
    String::from_utf8_lossy(&run(cmd).stdout).into_owned()
}

pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(sfx: &str, what: &str) -> Netns {
        let name = format!("koscni-{sfx}-{what}");
        run(Command::new("ip").args(["netns", "add", &name]));
        Netns { name }
    }

    pub fn path(&self) -> PathBuf {
        Path::new("/run/netns").join(&self.name)
    }

    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .expect("ip netns exec")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(sfx: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("koscni-{sfx}"));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Lines of `iptables-save`-style rules of one table, via the `iptables` the plugins use.
pub fn nat_rules(iptables: &str) -> Vec<String> {
    Command::new(iptables)
        .args(["-w", "-t", "nat", "-S"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn nft_table_exists(family: &str) -> bool {
    Command::new("nft")
        .args(["list", "table", family, "nat"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

const HOSTPORT_CHAINS: &[&str] = &[
    "CNI-HOSTPORT-DNAT",
    "CNI-HOSTPORT-SETMARK",
    "CNI-HOSTPORT-MASQ",
];

/// Undoes what bridge/host-local/portmap may leave behind for one test: its bridge, rules
/// mentioning its network name, portmap's shared chains when this test created them and they
/// are empty, the nat tables when this test created them and they are empty, and ip_forward.
pub struct HostGuard {
    pub bridge: String,
    pub network: String,
    /// Only guards of tests that run portmap touch iptables: a guard of another test running
    /// at the same time must not take portmap's shared chains from under it.
    iptables: bool,
    ip_forward: String,
    chains_before: Vec<(String, bool)>,
    dn_chains_before: Vec<String>,
    tables_before: Vec<(&'static str, bool)>,
}

impl HostGuard {
    /// For tests that run bridge and host-local only.
    pub fn new(bridge: &str, network: &str) -> HostGuard {
        let mut guard = Self::with_portmap(bridge, network);
        guard.iptables = false;
        guard
    }

    /// For a test that also runs portmap (one at a time per test binary).
    pub fn with_portmap(bridge: &str, network: &str) -> HostGuard {
        let mut chains_before = Vec::new();
        let mut dn_chains_before = Vec::new();
        for ipt in ["iptables", "ip6tables"] {
            let rules = nat_rules(ipt);
            dn_chains_before.extend(
                rules
                    .iter()
                    .filter_map(|l| l.strip_prefix("-N CNI-DN-"))
                    .map(|c| format!("{ipt} CNI-DN-{c}")),
            );
            for chain in HOSTPORT_CHAINS {
                let existed = rules.iter().any(|l| l == &format!("-N {chain}"));
                chains_before.push((format!("{ipt} {chain}"), existed));
            }
        }
        HostGuard {
            bridge: bridge.to_owned(),
            network: network.to_owned(),
            iptables: true,
            ip_forward: std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
                .unwrap_or_default(),
            chains_before,
            dn_chains_before,
            tables_before: vec![
                ("ip", nft_table_exists("ip")),
                ("ip6", nft_table_exists("ip6")),
            ],
        }
    }

    /// Rules still mentioning this test's network (portmap tags its rules with it).
    pub fn leftover_rules(&self) -> Vec<String> {
        ["iptables", "ip6tables"]
            .iter()
            .flat_map(|ipt| nat_rules(ipt))
            .filter(|l| l.contains(&self.network))
            .collect()
    }
}

impl Drop for HostGuard {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .stderr(Stdio::null())
            .status();
        let now = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap_or_default();
        if !self.ip_forward.is_empty() && now != self.ip_forward {
            let _ = std::fs::write("/proc/sys/net/ipv4/ip_forward", &self.ip_forward);
        }
        if !self.iptables {
            return;
        }
        for ipt in ["iptables", "ip6tables"] {
            // Our per-container rules (tagged with the network name) and the chains they jump
            // to, if a DEL did not remove them.
            for line in nat_rules(ipt).iter().filter(|l| l.contains(&self.network)) {
                let Some(rest) = line.strip_prefix("-A ") else {
                    continue;
                };
                let args = shell_words(rest);
                ipt_nat(ipt, "-D", &args);
                if let Some(pos) = args.iter().position(|a| a == "-j") {
                    if let Some(target) = args.get(pos + 1).filter(|t| t.starts_with("CNI-DN-")) {
                        ipt_nat(ipt, "-F", std::slice::from_ref(target));
                        ipt_nat(ipt, "-X", std::slice::from_ref(target));
                    }
                }
            }
            // Per-container chains made during the test that nothing jumps to any more (a DEL
            // that died between its steps).
            let rules = nat_rules(ipt);
            for chain in rules.iter().filter_map(|l| l.strip_prefix("-N ")) {
                let new_here = chain.starts_with("CNI-DN-")
                    && !self.dn_chains_before.contains(&format!("{ipt} {chain}"));
                let referenced = rules.iter().any(|l| l.ends_with(&format!("-j {chain}")));
                if new_here && !referenced {
                    ipt_nat(ipt, "-F", &[chain.to_owned()]);
                    ipt_nat(ipt, "-X", &[chain.to_owned()]);
                }
            }
            // portmap's shared chains, only when this test made them and no container's
            // mapping is left in CNI-HOSTPORT-DNAT (SETMARK and MASQ hold portmap's own rules).
            let made_here = HOSTPORT_CHAINS.iter().all(|chain| {
                !self
                    .chains_before
                    .iter()
                    .any(|(k, e)| *e && k == &format!("{ipt} {chain}"))
            });
            let rules = nat_rules(ipt);
            let dnat_used = rules.iter().any(|l| l.starts_with("-A CNI-HOSTPORT-DNAT "));
            if made_here && !dnat_used {
                for line in rules.iter().filter(|l| {
                    HOSTPORT_CHAINS
                        .iter()
                        .any(|c| l.ends_with(&format!("-j {c}")))
                }) {
                    if let Some(rest) = line.strip_prefix("-A ") {
                        ipt_nat(ipt, "-D", &shell_words(rest));
                    }
                }
                for chain in HOSTPORT_CHAINS {
                    ipt_nat(ipt, "-F", &[chain.to_string()]);
                }
                for chain in HOSTPORT_CHAINS {
                    ipt_nat(ipt, "-X", &[chain.to_string()]);
                }
            }
        }
        // The nat tables iptables-nft made for portmap, when they did not exist and are empty.
        for (family, existed) in &self.tables_before {
            let ipt = if *family == "ip" {
                "iptables"
            } else {
                "ip6tables"
            };
            let empty = nat_rules(ipt).iter().all(|l| l.starts_with("-P "));
            if !existed && empty && nft_table_exists(family) {
                let _ = Command::new("nft")
                    .args(["delete", "table", family, "nat"])
                    .status();
            }
        }
    }
}

fn ipt_nat(ipt: &str, op: &str, args: &[String]) {
    let _ = Command::new(ipt)
        .args(["-w", "-t", "nat", op])
        .args(args)
        .stderr(Stdio::null())
        .status();
}

/// Splits an `iptables -S` line into arguments: double quotes group, `\"` inside them is a
/// literal quote (portmap's comments hold quoted names).
fn shell_words(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut quoted = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            ' ' if !quoted => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            c => {
                cur.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(cur);
    }
    out
}

/// Writes an executable `/bin/sh` plugin called `name` into `dir`.
pub fn fake_plugin(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    kos_testsupport::write_executable(&path, format!("#!/bin/sh\n{body}\n").as_bytes());
}

/// Interfaces enslaved to `bridge` on the host.
pub fn bridge_ports(bridge: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["-o", "link", "show", "master", bridge])
        .output()
        .expect("ip link");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_owned())
        .collect()
}

/// host-local's allocation files (one per address) under `data_dir/<network>`.
pub fn ipam_allocations(data_dir: &Path, network: &str) -> Vec<String> {
    std::fs::read_dir(data_dir.join(network))
        .map(|it| {
            it.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default()
}
