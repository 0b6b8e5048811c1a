//! CNI results (spec 0.3.0 to 1.1.0 share this shape; 0.3/0.4 add a `version` to each IP,
//! which is ignored). The raw JSON is kept: it is what the next plugin gets as `prevResult`.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Interface {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub mac: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// The netns path for container interfaces; empty for host-side ones.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sandbox: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub socket_path: String,
    #[serde(default, rename = "pciID", skip_serializing_if = "String::is_empty")]
    pub pci_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IpConfig {
    /// Address with prefix length, e.g. 10.1.2.3/24.
    pub address: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<IpAddr>,
    /// Index into `interfaces`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    pub dst: IpNet,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gw: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Dns {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nameservers: Vec<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub search: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub options: Vec<String>,
}

/// A plugin chain's result as the caller sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct CniResult {
    pub cni_version: String,
    pub interfaces: Vec<Interface>,
    pub ips: Vec<IpConfig>,
    pub routes: Vec<Route>,
    pub dns: Dns,
    /// The result exactly as the plugin printed it (parsed).
    pub raw: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Wire {
    cni_version: String,
    #[serde(default)]
    interfaces: Vec<Interface>,
    #[serde(default)]
    ips: Vec<IpConfig>,
    #[serde(default)]
    routes: Vec<Route>,
    #[serde(default)]
    dns: Dns,
}

impl CniResult {
    /// Parses and checks a plugin's result: known version, interface indexes in range.
    pub fn from_value(raw: Value) -> Result<CniResult, String> {
        let wire: Wire = serde_json::from_value(raw.clone()).map_err(|e| e.to_string())?;
        match crate::version::Version::parse(&wire.cni_version) {
            Some(v) if v.supported() => {}
            _ => {
                return Err(format!(
                    "result cniVersion {:?} is not one of {:?}",
                    wire.cni_version,
                    crate::version::SUPPORTED
                ))
            }
        }
        for ip in &wire.ips {
            if let Some(i) = ip.interface {
                if i >= wire.interfaces.len() {
                    return Err(format!(
                        "ip {} names interface {i}, but there are {}",
                        ip.address,
                        wire.interfaces.len()
                    ));
                }
            }
        }
        Ok(CniResult {
            cni_version: wire.cni_version,
            interfaces: wire.interfaces,
            ips: wire.ips,
            routes: wire.routes,
            dns: wire.dns,
            raw,
        })
    }

    /// The addresses given to interfaces inside the sandbox (`sandbox` set), or to no
    /// particular interface.
    pub fn sandbox_ips(&self) -> Vec<IpNet> {
        self.ips
            .iter()
            .filter(|ip| match ip.interface {
                Some(i) => !self.interfaces[i].sandbox.is_empty(),
                None => true,
            })
            .map(|ip| ip.address)
            .collect()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_bridge_style_result() {
        let raw: Value = serde_json::from_str(
            r#"{"cniVersion":"1.0.0",
                "interfaces":[{"name":"kosb","mac":"aa:bb:cc:dd:ee:ff"},
                              {"name":"veth1","mac":"aa:bb:cc:dd:ee:01"},
                              {"name":"eth0","mac":"aa:bb:cc:dd:ee:02","sandbox":"/run/netns/x"}],
                "ips":[{"address":"10.99.0.2/24","gateway":"10.99.0.1","interface":2}],
                "routes":[{"dst":"0.0.0.0/0"}],"dns":{}}"#,
        )
        .unwrap();
        let r = CniResult::from_value(raw).unwrap();
        assert_eq!(
            r.sandbox_ips(),
            vec!["10.99.0.2/24".parse::<IpNet>().unwrap()]
        );
        assert_eq!(r.routes[0].gw, None);
        // 0.4.0 IPs carry "version": accepted.
        let old: Value = serde_json::from_str(
            r#"{"cniVersion":"0.4.0","ips":[{"version":"4","address":"10.0.0.2/8"}]}"#,
        )
        .unwrap();
        assert_eq!(CniResult::from_value(old).unwrap().ips.len(), 1);
    }

    #[test]
    fn refuses_bad_results() {
        for bad in [
            r#"{"ips":[]}"#,
            r#"{"cniVersion":"0.2.0"}"#,
            r#"{"cniVersion":"1.0.0","ips":[{"address":"banana"}]}"#,
            r#"{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.1/8","interface":3}]}"#,
            r#"[1,2]"#,
        ] {
            let v: Value = serde_json::from_str(bad).unwrap();
            assert!(CniResult::from_value(v).is_err(), "{bad}");
        }
    }
}
