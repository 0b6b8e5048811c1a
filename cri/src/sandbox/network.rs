//! A pod's network through CNI (kos-cni): ADD with Kubernetes' CNI_ARGS and the
//! portMappings and bandwidth capability arguments, DEL from the result cache.

use std::path::{Path, PathBuf};

use k8s_cri::v1 as cri;
use kos_cni::config::{self, NetworkConfigList};
use kos_cni::runner::{Cni, RuntimeConf};
use serde_json::{json, Map, Value};

use crate::error::{Error, Result};

pub const IFNAME: &str = "eth0";

#[derive(Debug, Clone)]
pub struct PodNetwork {
    pub cni: Cni,
    pub conf_dir: PathBuf,
}

fn cni_err(step: &str, e: kos_cni::Error) -> Error {
    Error::Cni {
        step: step.to_string(),
        source: e,
    }
}

/// A Kubernetes quantity (`10M`, `1Gi`, `500k`, `100`) in bits per second.
pub fn parse_bandwidth(q: &str) -> Result<u64> {
    let q = q.trim();
    let split = q.find(|c: char| !c.is_ascii_digit()).unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| Error::InvalidArgument(format!("bandwidth {q:?} is not a quantity")))?;
    let mult: u64 = match suffix {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => {
            return Err(Error::InvalidArgument(format!(
                "bandwidth {q:?} has an unknown suffix"
            )))
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| Error::InvalidArgument(format!("bandwidth {q:?} is too large")))
}

/// The capability arguments of a pod: portMappings and bandwidth.
pub fn capability_args(config: &cri::PodSandboxConfig) -> Result<Map<String, Value>> {
    let mut caps = Map::new();
    let ports: Vec<Value> = config
        .port_mappings
        .iter()
        .filter(|p| p.host_port > 0)
        .map(|p| {
            let proto = match cri::Protocol::try_from(p.protocol).unwrap_or(cri::Protocol::Tcp) {
                cri::Protocol::Tcp => "tcp",
                cri::Protocol::Udp => "udp",
                cri::Protocol::Sctp => "sctp",
            };
            let mut m = json!({
                "hostPort": p.host_port,
                "containerPort": p.container_port,
                "protocol": proto,
            });
            if !p.host_ip.is_empty() {
                m["hostIP"] = json!(p.host_ip);
            }
            m
        })
        .collect();
    if !ports.is_empty() {
        caps.insert("portMappings".into(), Value::Array(ports));
    }
    let ingress = config.annotations.get("kubernetes.io/ingress-bandwidth");
    let egress = config.annotations.get("kubernetes.io/egress-bandwidth");
    if ingress.is_some() || egress.is_some() {
        let mut bw = Map::new();
        // As containerd: the rate is the limit, the burst unbounded.
        if let Some(i) = ingress {
            bw.insert("ingressRate".into(), json!(parse_bandwidth(i)?));
            bw.insert("ingressBurst".into(), json!(i32::MAX));
        }
        if let Some(e) = egress {
            bw.insert("egressRate".into(), json!(parse_bandwidth(e)?));
            bw.insert("egressBurst".into(), json!(i32::MAX));
        }
        caps.insert("bandwidth".into(), Value::Object(bw));
    }
    Ok(caps)
}

fn runtime_conf(id: &str, netns: &Path, config: &cri::PodSandboxConfig) -> Result<RuntimeConf> {
    let md = config.metadata.clone().unwrap_or_default();
    Ok(RuntimeConf {
        container_id: id.to_string(),
        netns: netns.to_path_buf(),
        ifname: IFNAME.into(),
        args: vec![
            ("IgnoreUnknown".into(), "1".into()),
            ("K8S_POD_NAMESPACE".into(), md.namespace),
            ("K8S_POD_NAME".into(), md.name),
            ("K8S_POD_INFRA_CONTAINER_ID".into(), id.to_string()),
            ("K8S_POD_UID".into(), md.uid),
        ],
        capability_args: capability_args(config)?,
    })
}

impl PodNetwork {
    pub fn load(&self) -> Result<NetworkConfigList> {
        config::load_default(&self.conf_dir).map_err(|e| {
            cni_err(
                &format!(
                    "loading the CNI network config from {}",
                    self.conf_dir.display()
                ),
                e,
            )
        })
    }

    /// Whether a network config is there (Status' NetworkReady).
    pub fn ready(&self) -> std::result::Result<(), String> {
        self.load().map(|_| ()).map_err(|e| e.to_string())
    }

    /// ADD; returns the network's name and the pod's addresses. A failed ADD has already
    /// run DEL for the whole chain (kos-cni), so nothing is left attached.
    pub fn attach(
        &self,
        id: &str,
        netns: &Path,
        config: &cri::PodSandboxConfig,
    ) -> Result<(String, Vec<String>)> {
        let list = self.load()?;
        let rt = runtime_conf(id, netns, config)?;
        let result = self
            .cni
            .add(&list, &rt)
            .map_err(|e| cni_err(&format!("CNI ADD on network {}", list.name), e))?;
        let ips = result
            .sandbox_ips()
            .iter()
            .map(|n| n.addr().to_string())
            .collect();
        Ok((list.name, ips))
    }

    /// DEL from what the ADD cached (works when the config file changed or went away).
    pub fn detach(&self, id: &str, network: &str) -> Result<()> {
        self.cni
            .del_cached(network, id, IFNAME)
            .map_err(|e| cni_err(&format!("CNI DEL on network {network}"), e))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn quantities_and_capabilities() {
        assert_eq!(parse_bandwidth("10M").unwrap(), 10_000_000);
        assert_eq!(parse_bandwidth("1Mi").unwrap(), 1 << 20);
        assert!(parse_bandwidth("ten").is_err());
        assert!(parse_bandwidth("1X").is_err());
        let mut c = cri::PodSandboxConfig {
            port_mappings: vec![
                cri::PortMapping {
                    protocol: cri::Protocol::Udp as i32,
                    container_port: 53,
                    host_port: 5353,
                    host_ip: "127.0.0.1".into(),
                },
                cri::PortMapping {
                    container_port: 80,
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        c.annotations
            .insert("kubernetes.io/ingress-bandwidth".into(), "1M".into());
        let caps = capability_args(&c).unwrap();
        assert_eq!(
            caps["portMappings"],
            json!([{"hostPort": 5353, "containerPort": 53, "protocol": "udp", "hostIP": "127.0.0.1"}])
        );
        assert_eq!(caps["bandwidth"]["ingressRate"], json!(1_000_000));
        assert!(caps["bandwidth"].get("egressRate").is_none());
    }
}
