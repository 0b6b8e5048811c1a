//! Network configurations: single-plugin `.conf` files and `.conflist` lists, found in a
//! directory and ordered as libcni orders them (by file name, byte-wise).

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::version::{self, Version};

/// Where CNI configs live by default.
pub const DEFAULT_CONF_DIR: &str = "/etc/cni/net.d";
/// File name extensions libcni reads.
pub const EXTENSIONS: &[&str] = &["conf", "conflist", "json"];
/// A network config is a few KiB; this bounds a hostile one.
pub const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// One plugin of a list: its `type`, the capabilities it takes from `runtimeConfig`, and its
/// whole object as written (passed to the plugin with `name`, `cniVersion`, `prevResult` and
/// `runtimeConfig` filled in).
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConfig {
    pub plugin_type: String,
    pub capabilities: BTreeSet<String>,
    pub raw: Map<String, Value>,
}

/// A network config list, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct NetworkConfigList {
    pub name: String,
    /// The spec version the list runs with (see [`version::choose`]).
    pub version: Version,
    pub disable_check: bool,
    pub disable_gc: bool,
    pub plugins: Vec<PluginConfig>,
    /// The file it came from, when it came from one.
    pub source: Option<PathBuf>,
    /// The list as JSON, kept in the result cache so DEL works when the file is gone.
    pub raw: Value,
}

impl NetworkConfigList {
    /// Parses a `.conflist` object, or a single-plugin `.conf` object (made a one-plugin list,
    /// as libcni's ConfListFromConf does). `origin` names the source in errors.
    pub fn from_bytes(bytes: &[u8], origin: &Path) -> Result<NetworkConfigList> {
        let bad = |why: String| Error::BadConfig {
            path: origin.to_owned(),
            why,
        };
        let value: Value =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        let Value::Object(obj) = &value else {
            return Err(bad("not a JSON object".into()));
        };
        let name = match obj.get("name") {
            Some(Value::String(s)) => s.clone(),
            Some(_) => return Err(bad("\"name\" is not a string".into())),
            None => return Err(bad("no \"name\"".into())),
        };
        check_name(&name).map_err(|why| bad(format!("network name {name:?}: {why}")))?;
        let cni_version = match obj.get("cniVersion") {
            Some(Value::String(s)) => Some(s.as_str()),
            None => None,
            Some(_) => return Err(bad("\"cniVersion\" is not a string".into())),
        };
        let cni_versions: Vec<String> = match obj.get("cniVersions") {
            None => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .ok_or_else(|| bad("\"cniVersions\" holds a non-string".into()))?,
            Some(_) => return Err(bad("\"cniVersions\" is not a list".into())),
        };
        let version = version::choose(cni_version, &cni_versions).ok_or_else(|| {
            bad(format!(
                "cniVersion {:?} / cniVersions {cni_versions:?}: none of the supported versions {:?}",
                cni_version.unwrap_or(""),
                version::SUPPORTED
            ))
        })?;
        let flag = |key: &str| -> Result<bool> {
            match obj.get(key) {
                None => Ok(false),
                Some(Value::Bool(b)) => Ok(*b),
                // Some writers quote booleans; libcni accepts "true"/"false" strings.
                Some(Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
                Some(_) => Err(bad(format!("{key:?} is not a boolean"))),
            }
        };
        let disable_check = flag("disableCheck")?;
        let disable_gc = flag("disableGC")?;

        let plugin_objs: Vec<&Map<String, Value>> = match obj.get("plugins") {
            Some(Value::Array(list)) => {
                list.iter()
                    .map(|p| p.as_object())
                    .collect::<Option<_>>()
                    .ok_or_else(|| bad("a plugin entry is not an object".into()))?
            }
            Some(_) => return Err(bad("\"plugins\" is not a list".into())),
            None => vec![obj],
        };
        if plugin_objs.is_empty() {
            return Err(bad("\"plugins\" is empty".into()));
        }
        let mut plugins = Vec::with_capacity(plugin_objs.len());
        for (i, p) in plugin_objs.into_iter().enumerate() {
            let plugin_type = match p.get("type") {
                Some(Value::String(t)) => t.clone(),
                _ => return Err(bad(format!("plugin {i} has no \"type\" string"))),
            };
            check_plugin_type(&plugin_type)
                .map_err(|why| bad(format!("plugin {i} type {plugin_type:?}: {why}")))?;
            let capabilities = match p.get("capabilities") {
                None => BTreeSet::new(),
                Some(Value::Object(caps)) => caps
                    .iter()
                    .filter(|(_, on)| on.as_bool() == Some(true))
                    .map(|(k, _)| k.clone())
                    .collect(),
                Some(_) => {
                    return Err(bad(format!(
                        "plugin {i}: \"capabilities\" is not an object"
                    )))
                }
            };
            let mut raw = p.clone();
            if !obj.contains_key("plugins") {
                // A single-plugin file: list-level keys are not the plugin's.
                raw.remove("cniVersions");
                raw.remove("disableCheck");
                raw.remove("disableGC");
            }
            plugins.push(PluginConfig {
                plugin_type,
                capabilities,
                raw,
            });
        }
        Ok(NetworkConfigList {
            name,
            version,
            disable_check,
            disable_gc,
            plugins,
            source: None,
            raw: value,
        })
    }

    /// Reads and parses one file (at most [`MAX_CONFIG_BYTES`]).
    pub fn from_file(path: &Path) -> Result<NetworkConfigList> {
        let read_err = |source| Error::ReadConfig {
            path: path.to_owned(),
            source,
        };
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .map_err(read_err)?
            .take(MAX_CONFIG_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(read_err)?;
        if bytes.len() as u64 > MAX_CONFIG_BYTES {
            return Err(Error::BadConfig {
                path: path.to_owned(),
                why: format!("larger than {MAX_CONFIG_BYTES} bytes"),
            });
        }
        let mut list = Self::from_bytes(&bytes, path)?;
        list.source = Some(path.to_owned());
        Ok(list)
    }
}

/// The config files of `dir` in libcni's order: regular files named `*.conf`, `*.conflist` or
/// `*.json`, sorted by name.
pub fn config_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let read_err = |source| Error::ReadConfig {
        path: dir.to_owned(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let entry = entry.map_err(read_err)?;
        let path = entry.path();
        let ext_ok = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e));
        // Follows symlinks, as libcni does (configs are often links into a package's files).
        let is_file = std::fs::metadata(&path).is_ok_and(|m| m.is_file());
        if ext_ok && is_file {
            files.push(path);
        }
    }
    files.sort_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    Ok(files)
}

/// Every config in `dir`, in order, each parsed or with its error.
pub fn load_all(dir: &Path) -> Result<Vec<(PathBuf, Result<NetworkConfigList>)>> {
    Ok(config_files(dir)?
        .into_iter()
        .map(|p| {
            let parsed = NetworkConfigList::from_file(&p);
            (p, parsed)
        })
        .collect())
}

/// The default network: the first config in order that parses (broken ones are logged and
/// skipped, as CRI runtimes do, so one bad file does not take pod networking down).
pub fn load_default(dir: &Path) -> Result<NetworkConfigList> {
    for (path, parsed) in load_all(dir)? {
        match parsed {
            Ok(list) => return Ok(list),
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "skipping CNI config"),
        }
    }
    Err(Error::NoConfig {
        dir: dir.to_owned(),
    })
}

/// The first config in order whose network is called `name`.
pub fn load_by_name(dir: &Path, name: &str) -> Result<NetworkConfigList> {
    for (path, parsed) in load_all(dir)? {
        match parsed {
            Ok(list) if list.name == name => return Ok(list),
            Ok(_) => {}
            Err(e) => tracing::warn!(path = %path.display(), error = %e, "skipping CNI config"),
        }
    }
    Err(Error::NoSuchNetwork {
        dir: dir.to_owned(),
        name: name.to_owned(),
    })
}

/// Network names and container ids (CNI 1.0): an alphanumeric first character, then
/// alphanumerics, `_`, `.`, `-`.
pub fn check_name(s: &str) -> std::result::Result<(), &'static str> {
    let mut bytes = s.bytes();
    match bytes.next() {
        None => return Err("empty"),
        Some(b) if !b.is_ascii_alphanumeric() => return Err("must start with a letter or digit"),
        _ => {}
    }
    if s.len() > 1024 {
        return Err("longer than 1024 characters");
    }
    if !bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-')) {
        return Err("may hold only letters, digits, '_', '.' and '-'");
    }
    Ok(())
}

/// A plugin type names an executable in the plugin path: never a path itself.
fn check_plugin_type(t: &str) -> std::result::Result<(), &'static str> {
    if t.is_empty() || t == "." || t == ".." {
        return Err("empty, '.' or '..'");
    }
    if t.contains('/') || t.contains('\0') {
        return Err("must be a file name, not a path");
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn conflist_and_conf() {
        let list = NetworkConfigList::from_bytes(
            br#"{"cniVersion":"1.0.0","name":"kosnet","disableCheck":true,
                "plugins":[{"type":"bridge","bridge":"kos1"},
                           {"type":"portmap","capabilities":{"portMappings":true,"bandwidth":false}}]}"#,
            Path::new("x"),
        )
        .unwrap();
        assert_eq!(list.name, "kosnet");
        assert_eq!(list.version, Version(1, 0, 0));
        assert!(list.disable_check && !list.disable_gc);
        assert_eq!(list.plugins.len(), 2);
        assert_eq!(list.plugins[1].plugin_type, "portmap");
        assert_eq!(
            list.plugins[1].capabilities.iter().collect::<Vec<_>>(),
            vec!["portMappings"]
        );

        let single = NetworkConfigList::from_bytes(
            br#"{"cniVersion":"0.4.0","name":"one","type":"loopback","cniVersions":["1.1.0"]}"#,
            Path::new("y"),
        )
        .unwrap();
        assert_eq!(single.version, Version(1, 1, 0));
        assert_eq!(single.plugins.len(), 1);
        assert!(!single.plugins[0].raw.contains_key("cniVersions"));
    }

    #[test]
    fn hostile_configs_are_refused_with_the_reason() {
        for (json, needle) in [
            (&b"[]"[..], "not a JSON object"),
            (b"{", "not valid JSON"),
            (br#"{"cniVersion":"1.0.0","plugins":[]}"#, "no \"name\""),
            (
                br#"{"cniVersion":"1.0.0","name":"-x","type":"a"}"#,
                "must start",
            ),
            (
                br#"{"cniVersion":"1.0.0","name":"a b","type":"a"}"#,
                "may hold only",
            ),
            (
                br#"{"cniVersion":"0.2.0","name":"a","type":"a"}"#,
                "supported versions",
            ),
            (
                br#"{"cniVersion":"1.0.0","name":"a","plugins":[]}"#,
                "empty",
            ),
            (
                br#"{"cniVersion":"1.0.0","name":"a","plugins":[{"type":"../../bin/sh"}]}"#,
                "not a path",
            ),
            (
                br#"{"cniVersion":"1.0.0","name":"a","plugins":[{"bridge":"x"}]}"#,
                "no \"type\"",
            ),
            (
                br#"{"cniVersion":"1.0.0","name":"a","plugins":[7]}"#,
                "not an object",
            ),
            (
                br#"{"cniVersion":"1.0.0","name":"a","disableCheck":3,"plugins":[{"type":"x"}]}"#,
                "boolean",
            ),
        ] {
            let err = NetworkConfigList::from_bytes(json, Path::new("f.conflist")).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(needle) && msg.contains("f.conflist"), "{msg}");
        }
    }

    #[test]
    fn directory_order_default_and_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let w = |name: &str, body: &str| std::fs::write(dir.path().join(name), body).unwrap();
        w(
            "99-last.conflist",
            r#"{"cniVersion":"1.0.0","name":"last","plugins":[{"type":"x"}]}"#,
        );
        w("10-broken.conf", "{ nope");
        w(
            "20-second.conf",
            r#"{"cniVersion":"0.4.0","name":"second","type":"x"}"#,
        );
        w(
            "15-ignored.txt",
            r#"{"cniVersion":"0.4.0","name":"txt","type":"x"}"#,
        );
        std::fs::create_dir(dir.path().join("05-dir.conf")).unwrap();
        let files: Vec<String> = config_files(dir.path())
            .unwrap()
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            files,
            vec!["10-broken.conf", "20-second.conf", "99-last.conflist"]
        );
        assert_eq!(load_default(dir.path()).unwrap().name, "second");
        let last = load_by_name(dir.path(), "last").unwrap();
        assert_eq!(last.source.unwrap(), dir.path().join("99-last.conflist"));
        assert!(matches!(
            load_by_name(dir.path(), "nope"),
            Err(Error::NoSuchNetwork { .. })
        ));
        let empty = tempfile::tempdir().unwrap();
        assert!(matches!(
            load_default(empty.path()),
            Err(Error::NoConfig { .. })
        ));
    }
}
