//! Loading config.json and refusing what the runtime cannot honour, before anything is made.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{Error, Result};

/// A parsed and checked bundle.
pub struct Bundle {
    pub dir: PathBuf,
    pub rootfs: PathBuf,
    pub spec: Spec,
}

pub fn load_bundle(dir: &Path) -> Result<Bundle> {
    let dir = fs::canonicalize(dir)
        .map_err(|e| Error::Config(format!("bundle {}: {e}", dir.display())))?;
    let path = dir.join("config.json");
    let data = fs::read(&path)
        .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
    let spec =
        parse_spec(&data).map_err(|e| Error::Config(format!("{e} (in {})", path.display())))?;
    validate(&spec)?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| Error::Config("root.path is required".into()))?;
    let rootfs = dir.join(root.path());
    let rootfs = fs::canonicalize(&rootfs)
        .map_err(|e| Error::Config(format!("root.path {}: {e}", rootfs.display())))?;
    if !rootfs.is_dir() {
        return Err(Error::Config(format!(
            "root.path {} is not a directory",
            rootfs.display()
        )));
    }
    Ok(Bundle { dir, rootfs, spec })
}

/// Parse config.json naming the JSON path of a bad value ("linux.seccomp.syscalls[0].action:
/// unknown variant ..."), with the list of accepted values cut short.
pub fn parse_spec(data: &[u8]) -> std::result::Result<Spec, String> {
    let de = &mut serde_json::Deserializer::from_slice(data);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        let inner = match inner.find(", expected one of") {
            Some(i) => {
                let tail = inner.rfind(" at line").map(|j| &inner[j..]).unwrap_or("");
                format!("{}{tail}", &inner[..i])
            }
            None => inner,
        };
        if path == "." || path.is_empty() {
            inner
        } else {
            format!("{path}: {inner}")
        }
    })
}

/// The runtime spec versions this runtime implements: 1.0.0 up to 1.2.x.
pub fn check_version(v: &str) -> Result<()> {
    let mut parts = v.split(['.', '-', '+']);
    let major: Option<u32> = parts.next().and_then(|s| s.parse().ok());
    let minor: Option<u32> = parts.next().and_then(|s| s.parse().ok());
    match (major, minor) {
        (Some(1), Some(m)) if m <= 2 => Ok(()),
        _ => Err(Error::Config(format!(
            "unsupported ociVersion {v:?}: kosrun implements 1.0.0 to 1.2.x"
        ))),
    }
}

pub fn validate(spec: &Spec) -> Result<()> {
    check_version(spec.version())?;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::Config("process is required".into()))?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::Config("process.args must name a program".into()));
    }
    if !process.cwd().is_absolute() {
        return Err(Error::Config(format!(
            "process.cwd {} must be an absolute path",
            process.cwd().display()
        )));
    }
    let linux = spec.linux().as_ref();
    let namespaces = linux.and_then(|l| l.namespaces().as_ref());
    let mut seen = HashSet::new();
    for ns in namespaces.into_iter().flatten() {
        if !seen.insert(ns.typ()) {
            return Err(Error::Config(format!(
                "linux.namespaces: {} is listed twice",
                ns_name(ns.typ())
            )));
        }
        if let Some(p) = ns.path() {
            if !p.is_absolute() {
                return Err(Error::Config(format!(
                    "linux.namespaces: path {} of {} must be absolute",
                    p.display(),
                    ns_name(ns.typ())
                )));
            }
        }
    }
    let new_ns = |t: LinuxNamespaceType| {
        namespaces
            .into_iter()
            .flatten()
            .any(|n| n.typ() == t && n.path().is_none())
    };
    let has_ns = |t: LinuxNamespaceType| seen.contains(&t);
    if spec.hostname().as_ref().is_some_and(|h| !h.is_empty()) && !has_ns(LinuxNamespaceType::Uts) {
        return Err(Error::Config(
            "hostname is set but the container has no UTS namespace".into(),
        ));
    }
    if spec.domainname().as_ref().is_some_and(|h| !h.is_empty()) && !has_ns(LinuxNamespaceType::Uts)
    {
        return Err(Error::Config(
            "domainname is set but the container has no UTS namespace".into(),
        ));
    }
    if let Some(linux) = linux {
        let maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
            || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
        if maps && !has_ns(LinuxNamespaceType::User) {
            return Err(Error::Config(
                "uid/gid mappings are set but the container has no user namespace".into(),
            ));
        }
        if new_ns(LinuxNamespaceType::User) && !maps {
            return Err(Error::Config(
                "a new user namespace needs linux.uidMappings and linux.gidMappings".into(),
            ));
        }
        if linux.time_offsets().as_ref().is_some_and(|t| !t.is_empty())
            && !new_ns(LinuxNamespaceType::Time)
        {
            return Err(Error::Config(
                "linux.timeOffsets are set but the container has no new time namespace".into(),
            ));
        }
        for key in linux.time_offsets().iter().flat_map(|t| t.keys()) {
            if key != "monotonic" && key != "boottime" {
                return Err(Error::Config(format!(
                    "linux.timeOffsets: unknown clock {key:?} (monotonic or boottime)"
                )));
            }
        }
        for (key, _) in linux.sysctl().iter().flatten() {
            crate::linux::sysctl::check(key, &|t| has_ns(t))?;
        }
        if let Some(p) = linux.rootfs_propagation() {
            if crate::linux::rootfs::options::propagation(p).is_none() {
                return Err(Error::Config(format!(
                    "linux.rootfsPropagation {p:?} is not a propagation mode"
                )));
            }
        }
    }
    for m in spec.mounts().iter().flatten() {
        if !m.destination().is_absolute() {
            return Err(Error::Config(format!(
                "mount destination {} must be absolute",
                m.destination().display()
            )));
        }
    }
    for kind in crate::hooks::Kind::ALL {
        for h in crate::hooks::of_kind(spec, kind) {
            if !h.path().is_absolute() {
                return Err(Error::Config(format!(
                    "hooks.{}: path {} must be absolute",
                    kind.name(),
                    h.path().display()
                )));
            }
        }
    }
    Ok(())
}

pub fn ns_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mount",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "network",
        LinuxNamespaceType::Time => "time",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Result<()> {
        let s = parse_spec(json.as_bytes()).map_err(Error::Config)?;
        validate(&s)
    }

    #[test]
    fn parse_errors_name_the_field() {
        let e = parse_spec(
            br#"{"ociVersion":"1.0.2","linux":{"seccomp":{"defaultAction":"SCMP_ACT_ALLOW",
                "syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_BOGUS"}]}}}"#,
        )
        .expect_err("bad action");
        assert!(
            e.starts_with("linux.seccomp.syscalls[0].action: unknown variant"),
            "{e}"
        );
        assert!(!e.contains("expected one of"), "{e}");
    }

    const BASE: &str =
        r#""process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}},"root":{"path":"rootfs"}"#;

    #[test]
    fn versions() {
        assert!(check_version("1.0.0").is_ok());
        assert!(check_version("1.2.1").is_ok());
        assert!(check_version("1.0.2-dev").is_ok());
        assert!(check_version("0.1.0").is_err());
        assert!(check_version("2.0.0").is_err());
        assert!(check_version("").is_err());
        assert!(check_version("1.9.0").is_err());
    }

    #[test]
    fn accepts_minimal() {
        spec(&format!(r#"{{"ociVersion":"1.0.2",{BASE}}}"#)).expect("valid");
    }

    #[test]
    fn refuses_duplicate_namespace() {
        let e = spec(&format!(
            r#"{{"ociVersion":"1.0.2",{BASE},"linux":{{"namespaces":[{{"type":"pid"}},{{"type":"pid"}}]}}}}"#
        ))
        .expect_err("dup");
        assert!(e.to_string().contains("twice"), "{e}");
    }

    #[test]
    fn refuses_unknown_namespace() {
        let e = spec(&format!(
            r#"{{"ociVersion":"1.0.2",{BASE},"linux":{{"namespaces":[{{"type":"bogus"}}]}}}}"#
        ))
        .expect_err("unknown");
        assert!(e.to_string().contains("bogus"), "{e}");
    }

    #[test]
    fn refuses_hostname_without_uts() {
        let e = spec(&format!(
            r#"{{"ociVersion":"1.0.2",{BASE},"hostname":"x"}}"#
        ))
        .expect_err("hostname");
        assert!(e.to_string().contains("UTS"), "{e}");
    }

    #[test]
    fn refuses_missing_args() {
        let e = spec(r#"{"ociVersion":"1.0.2","process":{"cwd":"/","user":{"uid":0,"gid":0}}}"#)
            .expect_err("args");
        assert!(e.to_string().contains("args"), "{e}");
    }
}
