//! kaim's configuration: grants (one socket per client container) and the per-user socket,
//! from the command line or a JSON file.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

pub const DEFAULT_MAX_BODY: usize = 1 << 20;
const MAX_CONFIG: u64 = 1 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub name: String,
    pub container_id: String,
    /// The container's cgroup path as /proc/PID/cgroup shows it.
    #[serde(default)]
    pub cgroup: Option<String>,
    pub policy: PathBuf,
    pub socket: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Users {
    pub socket: PathBuf,
    /// Numeric uid (or "default") to policy file.
    pub policies: BTreeMap<String, PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `unix:///path` or a plain path.
    pub upstream: String,
    pub audit: PathBuf,
    #[serde(default = "default_max_body")]
    pub max_body: usize,
    #[serde(default)]
    pub grants: Vec<Grant>,
    #[serde(default)]
    pub users: Option<Users>,
    /// Mode of the sockets kaim makes (clients are told apart by credentials, not by mode).
    #[serde(default = "default_socket_mode")]
    pub socket_mode: u32,
    /// Where the engine adds and removes grants at run time (root only).
    #[serde(default)]
    pub control_socket: Option<PathBuf>,
    /// Where a grant's policy given by name is found (`NAME.rego`).
    #[serde(default = "default_policy_dir")]
    pub policy_dir: PathBuf,
}

pub const DEFAULT_POLICY_DIR: &str = "/etc/kos/kaim/policies";

fn default_policy_dir() -> PathBuf {
    PathBuf::from(DEFAULT_POLICY_DIR)
}

fn default_max_body() -> usize {
    DEFAULT_MAX_BODY
}

fn default_socket_mode() -> u32 {
    0o666
}

impl Config {
    pub fn from_file(path: &Path) -> Result<Config> {
        use std::io::Read;
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_CONFIG + 1).read_to_string(&mut text))
            .map_err(|source| Error::ConfigRead {
                path: path.to_path_buf(),
                source,
            })?;
        if text.len() as u64 > MAX_CONFIG {
            return Err(Error::Config(format!(
                "{}: larger than {MAX_CONFIG} bytes",
                path.display()
            )));
        }
        let c: Config = serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("{}: {e}", path.display())))?;
        c.validate()?;
        Ok(c)
    }

    pub fn validate(&self) -> Result<()> {
        self.upstream_path()?;
        if self.grants.is_empty() && self.users.is_none() && self.control_socket.is_none() {
            return Err(Error::Config(
                "nothing to serve: give at least one grant, a users socket or a control socket"
                    .into(),
            ));
        }
        let mut sockets = std::collections::HashSet::new();
        let mut names = std::collections::HashSet::new();
        for g in &self.grants {
            if g.name.is_empty() || g.container_id.is_empty() {
                return Err(Error::Config(format!(
                    "grant {:?}: empty name or container id",
                    g.name
                )));
            }
            if !names.insert(&g.name) {
                return Err(Error::Config(format!("grant {:?} given twice", g.name)));
            }
            if !sockets.insert(&g.socket) {
                return Err(Error::Config(format!(
                    "socket {} used twice",
                    g.socket.display()
                )));
            }
        }
        if let Some(c) = &self.control_socket {
            if !sockets.insert(c) {
                return Err(Error::Config(format!("socket {} used twice", c.display())));
            }
        }
        if let Some(u) = &self.users {
            if !sockets.insert(&u.socket) {
                return Err(Error::Config(format!(
                    "socket {} used twice",
                    u.socket.display()
                )));
            }
            for k in u.policies.keys() {
                if k != "default" && k.parse::<u32>().is_err() {
                    return Err(Error::Config(format!(
                        "user policy key {k:?} is not a uid or \"default\""
                    )));
                }
            }
        }
        if self.max_body == 0 {
            return Err(Error::Config("max_body must be positive".into()));
        }
        Ok(())
    }

    pub fn upstream_path(&self) -> Result<PathBuf> {
        parse_upstream(&self.upstream)
    }
}

pub fn parse_upstream(s: &str) -> Result<PathBuf> {
    let p = s.strip_prefix("unix://").unwrap_or(s);
    if !p.starts_with('/') {
        return Err(Error::Config(format!(
            "upstream {s:?}: only unix sockets (unix:///path) are supported"
        )));
    }
    Ok(PathBuf::from(p))
}

/// `NAME=CONTAINER_ID:POLICY_FILE:SOCKET_PATH[:CGROUP_PATH]`.
pub fn parse_grant(s: &str) -> Result<Grant> {
    let bad = |why: &str| {
        Error::Config(format!(
            "grant {s:?}: {why} (NAME=CONTAINER_ID:POLICY_FILE:SOCKET_PATH[:CGROUP_PATH])"
        ))
    };
    let (name, rest) = s.split_once('=').ok_or_else(|| bad("no '='"))?;
    let parts: Vec<&str> = rest.splitn(4, ':').collect();
    if parts.len() < 3 || parts[..3].iter().any(|p| p.is_empty()) || name.is_empty() {
        return Err(bad("missing field"));
    }
    Ok(Grant {
        name: name.to_string(),
        container_id: parts[0].to_string(),
        policy: PathBuf::from(parts[1]),
        socket: PathBuf::from(parts[2]),
        cgroup: parts
            .get(3)
            .filter(|c| !c.is_empty())
            .map(|c| c.to_string()),
    })
}

/// `UID=POLICY_FILE` or `default=POLICY_FILE`.
pub fn parse_user_policy(s: &str) -> Result<(String, PathBuf)> {
    let (k, v) = s
        .split_once('=')
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
        .ok_or_else(|| Error::Config(format!("user policy {s:?}: expected UID=POLICY_FILE")))?;
    Ok((k.to_string(), PathBuf::from(v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_forms() {
        let g = parse_grant("ci=abc:/p.rego:/run/kaim/ci.sock").expect("grant");
        assert_eq!(g.name, "ci");
        assert_eq!(g.container_id, "abc");
        assert_eq!(g.cgroup, None);
        let g = parse_grant("ci=abc:/p.rego:/s.sock:/kos/abc").expect("grant");
        assert_eq!(g.cgroup.as_deref(), Some("/kos/abc"));
        for bad in ["ci", "=a:b:c", "ci=a:b", "ci=a::c"] {
            assert!(parse_grant(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn upstream_forms() {
        assert_eq!(
            parse_upstream("unix:///run/kos/kos.sock").expect("u"),
            PathBuf::from("/run/kos/kos.sock")
        );
        assert_eq!(
            parse_upstream("/x.sock").expect("u"),
            PathBuf::from("/x.sock")
        );
        assert!(parse_upstream("tcp://1.2.3.4:2375").is_err());
    }

    #[test]
    fn file_validation() {
        let ok = r#"{"upstream":"unix:///u.sock","audit":"/a.log","grants":[{"name":"a","container_id":"c","policy":"/p","socket":"/s"}]}"#;
        let c: Config = serde_json::from_str(ok).expect("parse");
        c.validate().expect("valid");
        assert_eq!(c.max_body, DEFAULT_MAX_BODY);
        let dup = r#"{"upstream":"/u","audit":"/a","grants":[{"name":"a","container_id":"c","policy":"/p","socket":"/s"},{"name":"b","container_id":"c","policy":"/p","socket":"/s"}]}"#;
        let c: Config = serde_json::from_str(dup).expect("parse");
        assert!(c.validate().is_err());
        let none = r#"{"upstream":"/u","audit":"/a"}"#;
        let c: Config = serde_json::from_str(none).expect("parse");
        assert!(c.validate().is_err());
        assert!(
            serde_json::from_str::<Config>(r#"{"upstream":"/u","audit":"/a","bogus":1}"#).is_err()
        );
    }
}
