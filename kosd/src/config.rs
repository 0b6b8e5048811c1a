//! Daemon settings: dockerd-style flags merged with the JSON config file.
//!
//! As with dockerd, a setting given both as a flag and in the file is an error
//! rather than a silent override, so an operator never wonders which one won.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::Parser;
use serde::Deserialize;

pub const DEFAULT_HOST: &str = "unix:///run/kos/kos.sock";
pub const DEFAULT_CONFIG_FILE: &str = "/etc/kos/daemon.json";
/// The config file is a few keys; anything bigger is not one.
const MAX_CONFIG_FILE: u64 = 1 << 20;

/// Command-line flags, named as dockerd names them.
#[derive(Debug, Parser, Default)]
#[command(
    name = "kosd",
    version,
    about = "The KOS engine daemon: serves the Docker Engine API"
)]
pub struct Flags {
    /// Address to listen on (unix:///path or tcp://host:port); repeatable.
    #[arg(short = 'H', long = "host", value_name = "ADDR")]
    pub hosts: Vec<String>,
    /// Root of persistent state (database, images, containers, volumes).
    #[arg(long, value_name = "DIR")]
    pub data_root: Option<PathBuf>,
    /// Root of runtime state (sockets, shim state, runtime root).
    #[arg(long, value_name = "DIR")]
    pub exec_root: Option<PathBuf>,
    /// Daemon configuration file (JSON, dockerd's keys).
    #[arg(long, value_name = "FILE")]
    pub config_file: Option<PathBuf>,
    /// Keep containers running while the daemon is down.
    #[arg(long)]
    pub live_restore: bool,
    /// Registry (host[:port]) that may be reached over plain HTTP; repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
    /// Registry mirror URL; repeatable.
    #[arg(long = "registry-mirror", value_name = "URL")]
    pub registry_mirrors: Vec<String>,
    /// Parent cgroup of containers (default "kos"), as dockerd's --cgroup-parent.
    #[arg(long, value_name = "PATH")]
    pub cgroup_parent: Option<String>,
    /// Runtime binary the shim runs containers with.
    #[arg(long, value_name = "NAME")]
    pub default_runtime: Option<String>,
    /// Log level: debug, info, warn, error, fatal.
    #[arg(short = 'l', long, value_name = "LEVEL")]
    pub log_level: Option<String>,
    /// DNS server for containers; repeatable.
    #[arg(long = "dns", value_name = "IP")]
    pub dns: Vec<String>,
    /// Default ulimit for containers (name=soft[:hard]); repeatable.
    #[arg(long = "default-ulimit", value_name = "ULIMIT")]
    pub default_ulimits: Vec<String>,
    /// Bridge device of the default network (dockerd's -b).
    #[arg(short = 'b', long, value_name = "NAME")]
    pub bridge: Option<String>,
    /// KOS: the nftables table (family inet) for NAT and published ports.
    #[arg(long, value_name = "NAME")]
    pub nft_table: Option<String>,
    /// Require mutual TLS on TCP listeners.
    #[arg(long)]
    pub tlsverify: bool,
    /// CA that client certificates must chain to.
    #[arg(long, value_name = "FILE")]
    pub tlscacert: Option<PathBuf>,
    /// Server certificate.
    #[arg(long, value_name = "FILE")]
    pub tlscert: Option<PathBuf>,
    /// Server key.
    #[arg(long, value_name = "FILE")]
    pub tlskey: Option<PathBuf>,
    /// Unix socket of the Kubernetes CRI (default EXEC_ROOT/cri.sock; "" disables it).
    #[arg(long, value_name = "PATH")]
    pub cri_socket: Option<String>,
    /// Address of the CRI's streaming server (Exec/Attach/PortForward URLs; default
    /// 127.0.0.1:0, a free loopback port).
    #[arg(long, value_name = "IP:PORT")]
    pub cri_stream_address: Option<String>,
    /// Directory of CDI specs, lowest priority first; repeatable (default /etc/cdi,
    /// /var/run/cdi).
    #[arg(long = "cdi-spec-dir", value_name = "DIR")]
    pub cdi_spec_dirs: Vec<PathBuf>,
    /// KOS: kaim policy (Rego) judging every device hot-plug; without one any is allowed.
    #[arg(long, value_name = "FILE")]
    pub device_policy: Option<PathBuf>,
    /// KOS: kaim's control socket, where containers labelled kos.kaim.policy get grants.
    #[arg(long, value_name = "PATH")]
    pub kaim_control: Option<PathBuf>,
    /// CNI network configurations of CRI pods.
    #[arg(long, value_name = "DIR")]
    pub cni_conf_dir: Option<PathBuf>,
    /// Directory of CNI plugin binaries; repeatable or comma-separated, searched in order.
    #[arg(long = "cni-bin-dir", value_name = "DIR", value_delimiter = ',')]
    pub cni_bin_dirs: Vec<PathBuf>,
    /// containerd-style `<host>/hosts.toml` registry mirror files of the CRI.
    #[arg(long, value_name = "DIR")]
    pub registry_config_dir: Option<PathBuf>,
    /// KOS: run the unit manager (kos-system.target); `--units=false` disables it.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    pub units: Option<bool>,
    /// KOS: unit directory, lowest priority first; repeatable (default /usr/lib/kos/units,
    /// /etc/kos/units). `enable` links go into the last one.
    #[arg(long = "unit-dir", value_name = "DIR")]
    pub unit_dirs: Vec<PathBuf>,
    /// KOS: OCI archives `NAME.oci.tar` of the units' images, loaded as
    /// kos.local/NAME:latest at start when missing (default /usr/lib/kos/images).
    #[arg(long, value_name = "DIR")]
    pub unit_image_dir: Option<PathBuf>,
}

/// daemon.json, with dockerd's key names.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileConfig {
    hosts: Option<Vec<String>>,
    data_root: Option<PathBuf>,
    exec_root: Option<PathBuf>,
    live_restore: Option<bool>,
    insecure_registries: Option<Vec<String>>,
    registry_mirrors: Option<Vec<String>>,
    cgroup_parent: Option<String>,
    default_runtime: Option<String>,
    log_level: Option<String>,
    dns: Option<Vec<String>>,
    default_ulimits: Option<std::collections::BTreeMap<String, FileUlimit>>,
    bridge: Option<String>,
    nft_table: Option<String>,
    tlsverify: Option<bool>,
    tlscacert: Option<PathBuf>,
    tlscert: Option<PathBuf>,
    tlskey: Option<PathBuf>,
    cri_socket: Option<String>,
    cri_stream_address: Option<String>,
    cdi_spec_dirs: Option<Vec<PathBuf>>,
    device_policy: Option<PathBuf>,
    kaim_control: Option<PathBuf>,
    cni_conf_dir: Option<PathBuf>,
    cni_bin_dir: Option<Vec<PathBuf>>,
    registry_config_dir: Option<PathBuf>,
    units: Option<bool>,
    unit_dirs: Option<Vec<PathBuf>>,
    unit_image_dir: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FileUlimit {
    name: String,
    soft: i64,
    hard: i64,
}

/// A resource limit applied to containers that set none of their own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// Paths of the mutual-TLS material.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The merged, validated settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub hosts: Vec<String>,
    pub data_root: PathBuf,
    pub exec_root: PathBuf,
    pub live_restore: bool,
    pub insecure_registries: Vec<String>,
    pub registry_mirrors: Vec<String>,
    /// Parent cgroup of containers, without slashes at either end.
    pub cgroup_parent: String,
    pub default_runtime: String,
    pub log_level: String,
    pub dns: Vec<IpAddr>,
    pub default_ulimits: Vec<Ulimit>,
    pub tls: Option<TlsFiles>,
    pub bridge: String,
    pub nft_table: String,
    /// Where the CRI is served; `None` when disabled.
    pub cri_socket: Option<PathBuf>,
    /// Where the CRI's streaming server listens.
    pub cri_stream_address: std::net::SocketAddr,
    /// CDI spec directories, lowest priority first.
    pub cdi_spec_dirs: Vec<PathBuf>,
    pub device_policy: Option<PathBuf>,
    pub kaim_control: Option<PathBuf>,
    pub cni_conf_dir: PathBuf,
    pub cni_bin_dirs: Vec<PathBuf>,
    pub registry_config_dir: PathBuf,
    /// Whether kosd hosts the unit manager.
    pub units: bool,
    pub unit_dirs: Vec<PathBuf>,
    pub unit_image_dir: PathBuf,
}

pub const DEFAULT_CNI_CONF_DIR: &str = "/etc/cni/net.d";
pub const DEFAULT_CNI_BIN_DIRS: &[&str] = &["/opt/cni/bin", "/usr/lib/cni"];
pub const DEFAULT_REGISTRY_CONFIG_DIR: &str = "/etc/kos/certs.d";
pub const DEFAULT_UNIT_DIRS: &[&str] = &["/usr/lib/kos/units", "/etc/kos/units"];
pub const DEFAULT_UNIT_IMAGE_DIR: &str = "/usr/lib/kos/images";

fn pick<T: std::fmt::Debug>(
    key: &str,
    flag: Option<T>,
    file: Option<T>,
    clashes: &mut Vec<String>,
) -> Option<T> {
    match (flag, file) {
        (Some(a), Some(b)) => {
            clashes.push(format!("{key}: (from flag: {a:?}, from file: {b:?})"));
            None
        }
        (a, b) => a.or(b),
    }
}

fn non_empty<T>(v: Vec<T>) -> Option<Vec<T>> {
    (!v.is_empty()).then_some(v)
}

/// Parses `nofile=1024:2048` (hard defaults to soft).
pub fn parse_ulimit(s: &str) -> anyhow::Result<Ulimit> {
    let (name, vals) = s
        .split_once('=')
        .with_context(|| format!("invalid ulimit {s:?}: expected name=soft[:hard]"))?;
    let (soft, hard) = vals.split_once(':').unwrap_or((vals, vals));
    let soft: i64 = soft
        .parse()
        .with_context(|| format!("invalid ulimit {s:?}: soft limit is not a number"))?;
    let hard: i64 = hard
        .parse()
        .with_context(|| format!("invalid ulimit {s:?}: hard limit is not a number"))?;
    if soft > hard && hard >= 0 {
        bail!("invalid ulimit {s:?}: soft limit {soft} is above hard limit {hard}");
    }
    const NAMES: &[&str] = &[
        "core",
        "cpu",
        "data",
        "fsize",
        "locks",
        "memlock",
        "msgqueue",
        "nice",
        "nofile",
        "nproc",
        "rss",
        "rtprio",
        "rttime",
        "sigpending",
        "stack",
        "as",
    ];
    if !NAMES.contains(&name) {
        bail!("invalid ulimit {s:?}: unknown resource {name:?}");
    }
    Ok(Ulimit {
        name: name.to_string(),
        soft,
        hard,
    })
}

/// A cgroup parent as dockerd's cgroupfs driver takes it (`/a/b` or `a/b`), without slashes
/// at either end; `..`, `.`, empty components and odd characters are refused.
pub fn normalize_cgroup_parent(s: &str) -> anyhow::Result<String> {
    let t = s.trim_matches('/');
    if t.is_empty() || t.len() > 255 {
        bail!("expected a cgroup path such as kos or /a/b");
    }
    for part in t.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            bail!("the path has an empty, . or .. component");
        }
        if !part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.:@".contains(c))
        {
            bail!("{part:?} has characters a cgroup name may not have here");
        }
    }
    Ok(t.to_string())
}

fn read_file(path: &Path, explicit: bool) -> anyhow::Result<FileConfig> {
    use std::io::Read;
    let f = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            return Ok(FileConfig::default())
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut s = String::new();
    f.take(MAX_CONFIG_FILE + 1)
        .read_to_string(&mut s)
        .with_context(|| format!("reading {}", path.display()))?;
    if s.len() as u64 > MAX_CONFIG_FILE {
        bail!("{} is larger than {MAX_CONFIG_FILE} bytes", path.display());
    }
    if s.trim().is_empty() {
        return Ok(FileConfig::default());
    }
    serde_json::from_str(&s).with_context(|| format!("invalid config file {}", path.display()))
}

impl Config {
    pub fn from_flags(flags: Flags) -> anyhow::Result<Config> {
        let explicit = flags.config_file.is_some();
        let path = flags
            .config_file
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE));
        let file = read_file(&path, explicit)?;
        Self::merge(flags, file)
    }

    fn merge(flags: Flags, file: FileConfig) -> anyhow::Result<Config> {
        let mut clashes = Vec::new();
        let hosts = pick("hosts", non_empty(flags.hosts), file.hosts, &mut clashes)
            .unwrap_or_else(|| vec![DEFAULT_HOST.to_string()]);
        let data_root = pick("data-root", flags.data_root, file.data_root, &mut clashes)
            .unwrap_or_else(|| PathBuf::from("/var/lib/kos"));
        let exec_root = pick("exec-root", flags.exec_root, file.exec_root, &mut clashes)
            .unwrap_or_else(|| PathBuf::from("/run/kos"));
        let live_restore = pick(
            "live-restore",
            flags.live_restore.then_some(true),
            file.live_restore,
            &mut clashes,
        )
        .unwrap_or(false);
        let insecure_registries = pick(
            "insecure-registries",
            non_empty(flags.insecure_registries),
            file.insecure_registries,
            &mut clashes,
        )
        .unwrap_or_default();
        let registry_mirrors = pick(
            "registry-mirrors",
            non_empty(flags.registry_mirrors),
            file.registry_mirrors,
            &mut clashes,
        )
        .unwrap_or_default();
        let cgroup_parent = pick(
            "cgroup-parent",
            flags.cgroup_parent,
            file.cgroup_parent,
            &mut clashes,
        )
        .unwrap_or_else(|| "kos".to_string());
        let default_runtime = pick(
            "default-runtime",
            flags.default_runtime,
            file.default_runtime,
            &mut clashes,
        )
        .unwrap_or_else(|| "kosrun".to_string());
        let log_level = pick("log-level", flags.log_level, file.log_level, &mut clashes)
            .unwrap_or_else(|| "info".to_string());
        let dns = pick("dns", non_empty(flags.dns), file.dns, &mut clashes).unwrap_or_default();
        let ulimits_flag = non_empty(flags.default_ulimits);
        let ulimits_file = file.default_ulimits.map(|m| {
            m.into_values()
                .map(|u| format!("{}={}:{}", u.name, u.soft, u.hard))
                .collect::<Vec<_>>()
        });
        let ulimits =
            pick("default-ulimits", ulimits_flag, ulimits_file, &mut clashes).unwrap_or_default();
        let bridge = pick("bridge", flags.bridge, file.bridge, &mut clashes)
            .unwrap_or_else(|| "kos0".to_string());
        let nft_table = pick("nft-table", flags.nft_table, file.nft_table, &mut clashes)
            .unwrap_or_else(|| "kos".to_string());
        let tlsverify = pick(
            "tlsverify",
            flags.tlsverify.then_some(true),
            file.tlsverify,
            &mut clashes,
        )
        .unwrap_or(false);
        let ca = pick("tlscacert", flags.tlscacert, file.tlscacert, &mut clashes);
        let cert = pick("tlscert", flags.tlscert, file.tlscert, &mut clashes);
        let key = pick("tlskey", flags.tlskey, file.tlskey, &mut clashes);
        let cri_socket = pick(
            "cri-socket",
            flags.cri_socket,
            file.cri_socket,
            &mut clashes,
        );
        let cdi_spec_dirs = pick(
            "cdi-spec-dirs",
            non_empty(flags.cdi_spec_dirs),
            file.cdi_spec_dirs,
            &mut clashes,
        )
        .unwrap_or_else(kadcm::cdi::default_dirs);
        let device_policy = pick(
            "device-policy",
            flags.device_policy,
            file.device_policy,
            &mut clashes,
        );
        let kaim_control = pick(
            "kaim-control",
            flags.kaim_control,
            file.kaim_control,
            &mut clashes,
        );
        let cni_conf_dir = pick(
            "cni-conf-dir",
            flags.cni_conf_dir,
            file.cni_conf_dir,
            &mut clashes,
        )
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CNI_CONF_DIR));
        let cni_bin_dirs = pick(
            "cni-bin-dir",
            non_empty(flags.cni_bin_dirs),
            file.cni_bin_dir,
            &mut clashes,
        )
        .unwrap_or_else(|| DEFAULT_CNI_BIN_DIRS.iter().map(PathBuf::from).collect());
        let registry_config_dir = pick(
            "registry-config-dir",
            flags.registry_config_dir,
            file.registry_config_dir,
            &mut clashes,
        )
        .unwrap_or_else(|| PathBuf::from(DEFAULT_REGISTRY_CONFIG_DIR));
        let units = pick("units", flags.units, file.units, &mut clashes).unwrap_or(true);
        let unit_dirs = pick(
            "unit-dirs",
            non_empty(flags.unit_dirs),
            file.unit_dirs,
            &mut clashes,
        )
        .unwrap_or_else(|| DEFAULT_UNIT_DIRS.iter().map(PathBuf::from).collect());
        let unit_image_dir = pick(
            "unit-image-dir",
            flags.unit_image_dir,
            file.unit_image_dir,
            &mut clashes,
        )
        .unwrap_or_else(|| PathBuf::from(DEFAULT_UNIT_IMAGE_DIR));
        if !clashes.is_empty() {
            bail!(
                "the following directives are specified both as a flag and in the configuration file: {}",
                clashes.join(", ")
            );
        }
        if !matches!(
            log_level.as_str(),
            "debug" | "info" | "warn" | "error" | "fatal" | "trace"
        ) {
            bail!("invalid log level {log_level:?}: expected debug, info, warn, error or fatal");
        }
        let dns = dns
            .iter()
            .map(|d| {
                d.parse::<IpAddr>()
                    .with_context(|| format!("invalid --dns {d:?}: not an IP address"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let default_ulimits = ulimits
            .iter()
            .map(|u| parse_ulimit(u))
            .collect::<anyhow::Result<Vec<_>>>()?;
        for r in &insecure_registries {
            if r.is_empty() || (r.contains('/') && r.parse::<ipnet_like::Cidr>().is_err()) {
                bail!("invalid --insecure-registry {r:?}: expected host[:port] or a CIDR");
            }
        }
        let tls = if tlsverify {
            match (ca, cert, key) {
                (Some(ca), Some(cert), Some(key)) => Some(TlsFiles { ca, cert, key }),
                _ => bail!("--tlsverify needs --tlscacert, --tlscert and --tlskey"),
            }
        } else {
            None
        };
        for h in &hosts {
            crate::listen::Address::parse(h)?;
        }
        if bridge.is_empty() || bridge.len() > 15 || !bridge.starts_with("kos") {
            bail!("invalid --bridge {bridge:?}: KOS bridges are named kos*, at most 15 characters");
        }
        if nft_table.is_empty()
            || !nft_table
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            bail!("invalid --nft-table {nft_table:?}");
        }
        let cgroup_parent = normalize_cgroup_parent(&cgroup_parent)
            .with_context(|| format!("invalid --cgroup-parent {cgroup_parent:?}"))?;
        for m in &registry_mirrors {
            kos_image::mirrors::Endpoint::registry_mirror(m)
                .with_context(|| "invalid --registry-mirror".to_string())?;
        }
        if !data_root.is_absolute() || !exec_root.is_absolute() {
            bail!("--data-root and --exec-root must be absolute paths");
        }
        let cri_stream_address = match pick(
            "cri-stream-address",
            flags.cri_stream_address,
            file.cri_stream_address,
            &mut clashes,
        ) {
            None => std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
            Some(a) => a
                .parse()
                .with_context(|| format!("invalid --cri-stream-address {a:?}: expected IP:PORT"))?,
        };
        let cri_socket = match cri_socket {
            None => Some(exec_root.join("cri.sock")),
            Some(s) if s.is_empty() => None,
            Some(s) if Path::new(&s).is_absolute() => Some(PathBuf::from(s)),
            Some(s) => bail!("invalid --cri-socket {s:?}: expected an absolute path or \"\""),
        };
        if let Some(d) = cdi_spec_dirs.iter().find(|d| !d.is_absolute()) {
            bail!(
                "invalid --cdi-spec-dir {}: must be an absolute path",
                d.display()
            );
        }
        let cni_dirs = std::iter::once(&cni_conf_dir)
            .chain(&cni_bin_dirs)
            .chain(std::iter::once(&registry_config_dir));
        for d in cni_dirs {
            if !d.is_absolute() {
                bail!(
                    "invalid directory {}: --cni-conf-dir, --cni-bin-dir and --registry-config-dir must be absolute paths",
                    d.display()
                );
            }
        }
        for d in unit_dirs.iter().chain(std::iter::once(&unit_image_dir)) {
            if !d.is_absolute() {
                bail!(
                    "invalid directory {}: --unit-dir and --unit-image-dir must be absolute paths",
                    d.display()
                );
            }
        }
        Ok(Config {
            hosts,
            data_root,
            exec_root,
            live_restore,
            insecure_registries,
            registry_mirrors,
            cgroup_parent,
            default_runtime,
            log_level,
            dns,
            default_ulimits,
            tls,
            bridge,
            nft_table,
            cri_socket,
            cri_stream_address,
            cdi_spec_dirs,
            device_policy,
            kaim_control,
            cni_conf_dir,
            cni_bin_dirs,
            registry_config_dir,
            units,
            unit_dirs,
            unit_image_dir,
        })
    }
}

/// Just enough CIDR syntax to accept `10.0.0.0/8` as an insecure-registry entry.
mod ipnet_like {
    pub struct Cidr;
    impl std::str::FromStr for Cidr {
        type Err = ();
        fn from_str(s: &str) -> Result<Self, ()> {
            let (ip, len) = s.split_once('/').ok_or(())?;
            let ip: std::net::IpAddr = ip.parse().map_err(|_| ())?;
            let len: u8 = len.parse().map_err(|_| ())?;
            let max = if ip.is_ipv4() { 32 } else { 128 };
            if len > max {
                return Err(());
            }
            Ok(Cidr)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn flag_and_file_clash_is_an_error() {
        let flags = Flags {
            data_root: Some("/a".into()),
            ..Default::default()
        };
        let file = FileConfig {
            data_root: Some("/b".into()),
            ..Default::default()
        };
        let e = Config::merge(flags, file).unwrap_err().to_string();
        assert!(
            e.contains("data-root") && e.contains("both as a flag"),
            "{e}"
        );
    }

    #[test]
    fn defaults_and_file_values() {
        let file: FileConfig = serde_json::from_str(
            r#"{"live-restore": true, "dns": ["10.0.0.1"], "default-ulimits": {"nofile": {"Name": "nofile", "Soft": 10, "Hard": 20}}}"#,
        )
        .unwrap();
        let c = Config::merge(Flags::default(), file).unwrap();
        assert_eq!(c.hosts, vec![DEFAULT_HOST.to_string()]);
        assert_eq!(c.data_root, PathBuf::from("/var/lib/kos"));
        assert!(c.live_restore);
        assert_eq!(c.default_ulimits[0].hard, 20);
        assert!(serde_json::from_str::<FileConfig>(r#"{"bogus": 1}"#).is_err());
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(parse_ulimit("nofile=10:5").is_err());
        assert!(parse_ulimit("bogus=1").is_err());
        assert_eq!(parse_ulimit("nproc=7").unwrap().hard, 7);
        let f = |flags| Config::merge(flags, FileConfig::default());
        assert!(f(Flags {
            dns: vec!["not-ip".into()],
            ..Default::default()
        })
        .is_err());
        assert!(f(Flags {
            tlsverify: true,
            ..Default::default()
        })
        .is_err());
        assert!(f(Flags {
            log_level: Some("loud".into()),
            ..Default::default()
        })
        .is_err());
        assert!(f(Flags {
            insecure_registries: vec!["10.0.0.0/8".into(), "127.0.0.1:5000".into()],
            ..Default::default()
        })
        .is_ok());
        assert!(f(Flags {
            cri_socket: Some("relative.sock".into()),
            ..Default::default()
        })
        .is_err());
        assert!(f(Flags {
            cni_bin_dirs: vec!["opt/cni".into()],
            ..Default::default()
        })
        .is_err());
    }

    #[test]
    fn registry_mirrors_are_validated() {
        let f = |m: &str| {
            Config::merge(
                Flags {
                    registry_mirrors: vec![m.into()],
                    ..Default::default()
                },
                FileConfig::default(),
            )
        };
        assert!(f("http://127.0.0.1:5000").is_ok());
        let e = format!("{:#}", f("127.0.0.1:5000").unwrap_err());
        assert!(e.contains("registry-mirror"), "{e}");
    }

    #[test]
    fn cgroup_parent_default_flag_and_bad_values() {
        let f = |flags| Config::merge(flags, FileConfig::default());
        assert_eq!(f(Flags::default()).unwrap().cgroup_parent, "kos");
        let c = f(Flags {
            cgroup_parent: Some("/test/k1/".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.cgroup_parent, "test/k1");
        for bad in ["", "/", "a/../b", "a//b", "a b", "./x"] {
            assert!(normalize_cgroup_parent(bad).is_err(), "{bad:?}");
        }
        let file: FileConfig = serde_json::from_str(r#"{"cgroup-parent": "kp"}"#).unwrap();
        assert_eq!(
            Config::merge(Flags::default(), file).unwrap().cgroup_parent,
            "kp"
        );
    }

    #[test]
    fn cri_socket_defaults_under_exec_root_and_empty_disables() {
        let f = |flags| Config::merge(flags, FileConfig::default()).unwrap();
        let c = f(Flags::default());
        assert_eq!(c.cri_socket, Some(PathBuf::from("/run/kos/cri.sock")));
        assert_eq!(c.cni_conf_dir, PathBuf::from("/etc/cni/net.d"));
        assert_eq!(
            c.cni_bin_dirs,
            vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")]
        );
        assert_eq!(c.registry_config_dir, PathBuf::from("/etc/kos/certs.d"));
        let c = f(Flags {
            exec_root: Some("/x".into()),
            ..Default::default()
        });
        assert_eq!(c.cri_socket, Some(PathBuf::from("/x/cri.sock")));
        let c = f(Flags {
            cri_socket: Some(String::new()),
            ..Default::default()
        });
        assert_eq!(c.cri_socket, None);
        let file: FileConfig = serde_json::from_str(
            r#"{"cri-socket": "/y/cri.sock", "cni-bin-dir": ["/a", "/b"], "cni-conf-dir": "/c"}"#,
        )
        .unwrap();
        let c = Config::merge(Flags::default(), file).unwrap();
        assert_eq!(c.cri_socket, Some(PathBuf::from("/y/cri.sock")));
        assert_eq!(
            c.cni_bin_dirs,
            vec![PathBuf::from("/a"), PathBuf::from("/b")]
        );
        assert_eq!(c.cni_conf_dir, PathBuf::from("/c"));
        let flags =
            Flags::try_parse_from(["kosd", "--cni-bin-dir", "/p,/q", "--cri-socket", ""]).unwrap();
        let c = f(flags);
        assert_eq!(
            c.cni_bin_dirs,
            vec![PathBuf::from("/p"), PathBuf::from("/q")]
        );
        assert_eq!(c.cri_socket, None);
    }
}
