//! Running a network config list: ADD through the chain with prevResult, CHECK and DEL with the
//! cached result, GC and STATUS (CNI 1.1), VERSION; an ADD that fails midway is undone by DEL.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::cache::{self, Cache};
use crate::config::{check_name, NetworkConfigList, PluginConfig};
use crate::error::{Error, Result};
use crate::exec::{self, Invocation};
use crate::result::CniResult;
use crate::version::{Version, V0_4_0, V1_1_0};

/// Where plugins are looked for by default: the CNI convention, then Debian's package path.
pub const DEFAULT_PLUGIN_DIRS: &[&str] = &["/opt/cni/bin", "/usr/lib/cni"];

/// What one attachment is called and where it goes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RuntimeConf {
    pub container_id: String,
    /// Path of the network namespace (a pinned bind mount or /proc/PID/ns/net).
    pub netns: PathBuf,
    pub ifname: String,
    /// CNI_ARGS pairs (K8S_POD_NAME=..., IgnoreUnknown=1, ...).
    pub args: Vec<(String, String)>,
    /// Capability arguments (portMappings, bandwidth, ips, mac, ...), passed as
    /// `runtimeConfig` to plugins that declare the capability.
    pub capability_args: Map<String, Value>,
}

impl RuntimeConf {
    fn validate(&self) -> Result<()> {
        let invalid = |what, value: &str, why| Error::InvalidArgument {
            what,
            value: value.to_owned(),
            why,
        };
        check_name(&self.container_id)
            .map_err(|why| invalid("container id", &self.container_id, why))?;
        check_ifname(&self.ifname).map_err(|why| invalid("interface name", &self.ifname, why))?;
        if !self.netns.is_absolute() {
            return Err(invalid(
                "netns path",
                &self.netns.to_string_lossy(),
                "must be absolute",
            ));
        }
        for (k, v) in &self.args {
            let key_ok = !k.is_empty() && k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !key_ok {
                return Err(invalid("CNI_ARGS key", k, "letters, digits and '_' only"));
            }
            if v.bytes().any(|b| b == b';' || b.is_ascii_control()) {
                return Err(invalid(
                    "CNI_ARGS value",
                    v,
                    "holds ';' or a control character",
                ));
            }
        }
        Ok(())
    }

    fn cni_args(&self) -> Option<String> {
        (!self.args.is_empty()).then(|| {
            self.args
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(";")
        })
    }
}

/// Linux interface names: 1..=15 bytes, not `.`/`..`, no `/`, `:` or whitespace (CNI spec).
pub fn check_ifname(name: &str) -> std::result::Result<(), &'static str> {
    if name.is_empty() || name == "." || name == ".." {
        return Err("empty, '.' or '..'");
    }
    if name.len() > 15 {
        return Err("longer than 15 bytes");
    }
    if name
        .chars()
        .any(|c| c == '/' || c == ':' || c.is_whitespace() || c.is_control())
    {
        return Err("holds '/', ':' or whitespace");
    }
    Ok(())
}

/// A plugin's answer to VERSION.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginVersions {
    pub cni_version: String,
    pub supported_versions: Vec<String>,
}

/// The CNI runner.
#[derive(Debug, Clone)]
pub struct Cni {
    pub plugin_dirs: Vec<PathBuf>,
    cache: Cache,
    /// Deadline for one plugin call.
    pub timeout: Duration,
}

impl Default for Cni {
    fn default() -> Self {
        Cni::new(
            DEFAULT_PLUGIN_DIRS.iter().map(PathBuf::from).collect(),
            cache::DEFAULT_CACHE_DIR,
        )
    }
}

impl Cni {
    pub fn new(plugin_dirs: Vec<PathBuf>, cache_dir: impl Into<PathBuf>) -> Cni {
        Cni {
            plugin_dirs,
            cache: Cache::new(cache_dir),
            timeout: Duration::from_secs(60),
        }
    }

    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Attaches the container to the network: every plugin's ADD in order, each given the
    /// previous one's result. On any failure the whole chain's DEL runs (plugins' DEL tolerates
    /// what was never made), so nothing is left half made; the ADD error is returned.
    pub fn add(&self, list: &NetworkConfigList, rt: &RuntimeConf) -> Result<CniResult> {
        rt.validate()?;
        let mut prev: Option<Value> = None;
        let mut outcome: Result<CniResult> = Err(Error::BadOutput {
            plugin: String::new(),
            command: "ADD",
            why: "no plugins".into(),
        });
        for plugin in &list.plugins {
            outcome = self
                .call(list, plugin, "ADD", prev.as_ref(), Some(rt), None)
                .and_then(|out| parse_result(plugin, &out));
            match &outcome {
                Ok(result) => prev = Some(result.raw.clone()),
                Err(_) => break,
            }
        }
        let outcome = outcome.and_then(|result| {
            let entry = cache::Entry::new(rt, &list.name, list.raw.clone(), result.raw.clone());
            self.cache.save(&entry).map(|()| result)
        });
        match outcome {
            Ok(result) => Ok(result),
            Err(add) => {
                tracing::warn!(network = %list.name, container = %rt.container_id, error = %add,
                    "ADD failed; undoing with DEL");
                match self.del_chain(list, rt, prev.as_ref()) {
                    Ok(()) => {
                        let _ = self.cache.remove(&list.name, &rt.container_id, &rt.ifname);
                        Err(add)
                    }
                    Err(del) => Err(Error::AddRollback {
                        network: list.name.clone(),
                        add: Box::new(add),
                        del: Box::new(del),
                    }),
                }
            }
        }
    }

    /// Checks the attachment against its cached ADD result (CNI 0.4.0 and later). A list with
    /// `disableCheck` passes without running plugins, as libcni does.
    pub fn check(&self, list: &NetworkConfigList, rt: &RuntimeConf) -> Result<()> {
        rt.validate()?;
        if list.version < V0_4_0 {
            return Err(unsupported(list, "CHECK"));
        }
        if list.disable_check {
            return Ok(());
        }
        let cached = self
            .cache
            .load(&list.name, &rt.container_id, &rt.ifname)?
            .ok_or_else(|| Error::NotCached {
                network: list.name.clone(),
                container_id: rt.container_id.clone(),
                ifname: rt.ifname.clone(),
            })?;
        for plugin in &list.plugins {
            self.call(list, plugin, "CHECK", Some(&cached.result), Some(rt), None)?;
        }
        Ok(())
    }

    /// Detaches: every plugin's DEL in reverse order with the cached result as prevResult.
    /// All plugins run even when one fails (to free as much as possible); the first error is
    /// returned and the cache entry kept so DEL can be retried.
    pub fn del(&self, list: &NetworkConfigList, rt: &RuntimeConf) -> Result<()> {
        rt.validate()?;
        let cached = self.cache.load(&list.name, &rt.container_id, &rt.ifname)?;
        let prev = cached.as_ref().map(|c| &c.result);
        self.del_chain(list, rt, prev)?;
        self.cache.remove(&list.name, &rt.container_id, &rt.ifname)
    }

    /// DEL from the cache alone: the config and arguments the ADD ran with (after a restart,
    /// or when the config file has gone). Ok when nothing is cached.
    pub fn del_cached(&self, network: &str, container_id: &str, ifname: &str) -> Result<()> {
        let Some(entry) = self.cache.load(network, container_id, ifname)? else {
            return Ok(());
        };
        self.del_entry(&entry)
    }

    fn del_entry(&self, entry: &cache::Entry) -> Result<()> {
        let bytes = serde_json::to_vec(&entry.config).map_err(|e| Error::BadConfig {
            path: PathBuf::from("<cache>"),
            why: e.to_string(),
        })?;
        let list = NetworkConfigList::from_bytes(&bytes, Path::new("<cached config>"))?;
        let rt = RuntimeConf {
            container_id: entry.container_id.clone(),
            netns: entry.netns.clone(),
            ifname: entry.if_name.clone(),
            args: entry.cni_args.clone(),
            capability_args: entry.capability_args.clone(),
        };
        rt.validate()?;
        self.del_chain(&list, &rt, Some(&entry.result))?;
        self.cache
            .remove(&entry.network_name, &entry.container_id, &entry.if_name)
    }

    fn del_chain(
        &self,
        list: &NetworkConfigList,
        rt: &RuntimeConf,
        prev: Option<&Value>,
    ) -> Result<()> {
        // prevResult on DEL arrived with 0.4.0.
        let prev = prev.filter(|_| list.version >= V0_4_0);
        let mut first_err = None;
        for plugin in list.plugins.iter().rev() {
            if let Err(e) = self.call(list, plugin, "DEL", prev, Some(rt), None) {
                tracing::warn!(network = %list.name, plugin = %plugin.plugin_type, error = %e, "DEL failed");
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Garbage collection (CNI 1.1): DEL for every cached attachment of this network that is
    /// not in `valid` (container id, ifname), then GC on each plugin with the valid list, so
    /// plugins free what they hold for attachments nobody knows any more.
    pub fn gc(&self, list: &NetworkConfigList, valid: &[(String, String)]) -> Result<()> {
        let mut errors = Vec::new();
        for entry in self.cache.list(&list.name)? {
            let keep = valid
                .iter()
                .any(|(c, i)| *c == entry.container_id && *i == entry.if_name);
            if !keep {
                tracing::info!(network = %list.name, container = %entry.container_id,
                    ifname = %entry.if_name, "GC: removing stale attachment");
                if let Err(e) = self.del_entry(&entry) {
                    errors.push(e);
                }
            }
        }
        if list.version >= V1_1_0 && !list.disable_gc {
            let attachments: Vec<Value> = valid
                .iter()
                .map(|(c, i)| json!({"containerID": c, "ifname": i}))
                .collect();
            let mut extra = Map::new();
            extra.insert(
                "cni.dev/valid-attachments".into(),
                Value::Array(attachments.clone()),
            );
            // libcni also sends the name an earlier draft of the spec used.
            extra.insert("cni.dev/attachments".into(), Value::Array(attachments));
            for plugin in &list.plugins {
                if let Err(e) = self.call(list, plugin, "GC", None, None, Some(&extra)) {
                    errors.push(e);
                }
            }
        }
        let count = errors.len();
        match errors.into_iter().next() {
            None => Ok(()),
            Some(first) => Err(Error::Gc {
                network: list.name.clone(),
                count,
                first: Box::new(first),
            }),
        }
    }

    /// Whether the network's plugins are ready for ADDs (CNI 1.1; earlier lists are always
    /// ready). A plugin's code 50 or 51 comes back as [`Error::Plugin`].
    pub fn status(&self, list: &NetworkConfigList) -> Result<()> {
        if list.version < V1_1_0 {
            return Ok(());
        }
        for plugin in &list.plugins {
            self.call(list, plugin, "STATUS", None, None, None)?;
        }
        Ok(())
    }

    /// Asks one plugin which spec versions it speaks.
    pub fn version(&self, plugin_type: &str, cni_version: Version) -> Result<PluginVersions> {
        let exe = exec::find_plugin(plugin_type, &self.plugin_dirs)?;
        let inv = Invocation {
            command: "VERSION",
            path: &self.plugin_dirs,
            ..Invocation::default()
        };
        let stdin = json!({"cniVersion": cni_version.to_string()}).to_string();
        let out = exec::run(&exe, plugin_type, &inv, stdin.as_bytes(), self.timeout)?;
        let bad = |why: String| Error::BadOutput {
            plugin: plugin_type.to_owned(),
            command: "VERSION",
            why,
        };
        let v: Value = serde_json::from_slice(&out).map_err(|e| bad(e.to_string()))?;
        let cni_version = v
            .get("cniVersion")
            .and_then(Value::as_str)
            .ok_or_else(|| bad("no cniVersion".into()))?
            .to_owned();
        let supported_versions = v
            .get("supportedVersions")
            .and_then(Value::as_array)
            .and_then(|a| a.iter().map(|s| s.as_str().map(str::to_owned)).collect())
            .ok_or_else(|| bad("no supportedVersions list of strings".into()))?;
        Ok(PluginVersions {
            cni_version,
            supported_versions,
        })
    }

    /// The cached ADD result of an attachment, if any.
    pub fn cached_result(
        &self,
        network: &str,
        container_id: &str,
        ifname: &str,
    ) -> Result<Option<CniResult>> {
        let Some(entry) = self.cache.load(network, container_id, ifname)? else {
            return Ok(None);
        };
        CniResult::from_value(entry.result)
            .map(Some)
            .map_err(|why| Error::BadOutput {
                plugin: "<cache>".into(),
                command: "ADD",
                why,
            })
    }

    /// Runs one plugin with its config completed for this call.
    fn call(
        &self,
        list: &NetworkConfigList,
        plugin: &PluginConfig,
        command: &'static str,
        prev: Option<&Value>,
        rt: Option<&RuntimeConf>,
        extra: Option<&Map<String, Value>>,
    ) -> Result<Vec<u8>> {
        let exe = exec::find_plugin(&plugin.plugin_type, &self.plugin_dirs)?;
        let stdin = plugin_stdin(list, plugin, prev, rt, extra);
        let args = rt.and_then(RuntimeConf::cni_args);
        let inv = Invocation {
            command,
            container_id: rt.map(|r| r.container_id.as_str()),
            netns: rt.map(|r| r.netns.as_path()),
            ifname: rt.map(|r| r.ifname.as_str()),
            args: args.as_deref(),
            path: &self.plugin_dirs,
        };
        tracing::debug!(network = %list.name, plugin = %plugin.plugin_type, command, "running CNI plugin");
        exec::run(&exe, &plugin.plugin_type, &inv, &stdin, self.timeout)
    }
}

fn unsupported(list: &NetworkConfigList, command: &'static str) -> Error {
    Error::Unsupported {
        network: list.name.clone(),
        command,
        version: list.version.to_string(),
    }
}

/// The plugin's own object plus `name`, `cniVersion`, `prevResult`, and `runtimeConfig` made of
/// the capability arguments it declared (and only those).
fn plugin_stdin(
    list: &NetworkConfigList,
    plugin: &PluginConfig,
    prev: Option<&Value>,
    rt: Option<&RuntimeConf>,
    extra: Option<&Map<String, Value>>,
) -> Vec<u8> {
    let mut obj = plugin.raw.clone();
    obj.insert("name".into(), Value::String(list.name.clone()));
    obj.insert("cniVersion".into(), Value::String(list.version.to_string()));
    match prev {
        Some(p) => {
            obj.insert("prevResult".into(), p.clone());
        }
        None => {
            obj.remove("prevResult");
        }
    }
    if let Some(rt) = rt {
        let runtime: Map<String, Value> = plugin
            .capabilities
            .iter()
            .filter_map(|cap| {
                rt.capability_args
                    .get(cap)
                    .map(|v| (cap.clone(), v.clone()))
            })
            .collect();
        if !runtime.is_empty() {
            obj.insert("runtimeConfig".into(), Value::Object(runtime));
        }
    }
    if let Some(extra) = extra {
        for (k, v) in extra {
            obj.insert(k.clone(), v.clone());
        }
    }
    // Serialising a Map of Values cannot fail.
    serde_json::to_vec(&Value::Object(obj)).unwrap_or_default()
}

fn parse_result(plugin: &PluginConfig, out: &[u8]) -> Result<CniResult> {
    let bad = |why: String| Error::BadOutput {
        plugin: plugin.plugin_type.clone(),
        command: "ADD",
        why,
    };
    let value: Value = serde_json::from_slice(out).map_err(|e| {
        let start: String = String::from_utf8_lossy(&out[..out.len().min(80)])
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        bad(format!("not JSON ({e}): {start:?}"))
    })?;
    CniResult::from_value(value).map_err(bad)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn stdin_has_name_version_prev_and_only_declared_capabilities() {
        let list = NetworkConfigList::from_bytes(
            br#"{"cniVersion":"1.0.0","name":"n","plugins":[
                {"type":"portmap","capabilities":{"portMappings":true},"runtimeConfig":{"stale":1}},
                {"type":"bridge"}]}"#,
            Path::new("x"),
        )
        .unwrap();
        let mut caps = Map::new();
        caps.insert(
            "portMappings".into(),
            json!([{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]),
        );
        caps.insert("bandwidth".into(), json!({"ingressRate": 1}));
        let rt = RuntimeConf {
            container_id: "c1".into(),
            netns: "/run/netns/x".into(),
            ifname: "eth0".into(),
            capability_args: caps,
            ..RuntimeConf::default()
        };
        let prev = json!({"cniVersion": "1.0.0"});
        let v: Value = serde_json::from_slice(&plugin_stdin(
            &list,
            &list.plugins[0],
            Some(&prev),
            Some(&rt),
            None,
        ))
        .unwrap();
        assert_eq!(v["name"], "n");
        assert_eq!(v["cniVersion"], "1.0.0");
        assert_eq!(v["prevResult"], prev);
        assert_eq!(v["runtimeConfig"]["portMappings"][0]["hostPort"], 8080);
        assert!(v["runtimeConfig"].get("bandwidth").is_none());
        let v: Value = serde_json::from_slice(&plugin_stdin(
            &list,
            &list.plugins[1],
            None,
            Some(&rt),
            None,
        ))
        .unwrap();
        assert!(v.get("runtimeConfig").is_none() && v.get("prevResult").is_none());
    }

    #[test]
    fn runtime_conf_is_validated() {
        let ok = RuntimeConf {
            container_id: "abc_1.2-3".into(),
            netns: "/run/netns/x".into(),
            ifname: "eth0".into(),
            args: vec![("K8S_POD_NAME".into(), "web-0".into())],
            ..RuntimeConf::default()
        };
        ok.validate().unwrap();
        assert_eq!(ok.cni_args().unwrap(), "K8S_POD_NAME=web-0");
        let bad = [
            RuntimeConf {
                container_id: "-x".into(),
                ..ok.clone()
            },
            RuntimeConf {
                ifname: "0123456789abcdef".into(),
                ..ok.clone()
            },
            RuntimeConf {
                ifname: "eth:0".into(),
                ..ok.clone()
            },
            RuntimeConf {
                netns: "relative".into(),
                ..ok.clone()
            },
            RuntimeConf {
                args: vec![("A;B".into(), "1".into())],
                ..ok.clone()
            },
            RuntimeConf {
                args: vec![("A".into(), "1;B=2".into())],
                ..ok.clone()
            },
        ];
        for rt in bad {
            assert!(
                matches!(rt.validate(), Err(Error::InvalidArgument { .. })),
                "{rt:?}"
            );
        }
    }
}
