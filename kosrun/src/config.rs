//! Loading config.json and refusing what the runtime cannot honour, before anything is made.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

use crate::error::{Error, Result, Stage};
use crate::store::SavedConfig;

/// A parsed and checked bundle.
pub struct Bundle {
    pub dir: PathBuf,
    pub rootfs: PathBuf,
    pub spec: Spec,
    /// config.json as read, for the state (see [`SavedConfig`]).
    pub config: SavedConfig,
}

/// The largest config.json read: far above any real one (1 MiB of annotations fits many
/// times), small enough that a hostile file cannot exhaust memory.
pub const MAX_CONFIG_BYTES: u64 = 16 << 20;

pub fn load_bundle(dir: &Path) -> Result<Bundle> {
    let dir = real_path(dir).map_err(|e| Error::Invalid {
        stage: Stage::LoadConfig,
        field: "bundle".into(),
        message: format!("bundle {}: {e}", dir.display()),
        source: Some(Box::new(e.into())),
    })?;
    let path = dir.join("config.json");
    let data = read_bounded(&path, MAX_CONFIG_BYTES)?;
    let spec = parse_spec(&data).map_err(|e| Error::Invalid {
        stage: Stage::LoadConfig,
        field: e.field,
        message: format!("{} (in {})", e.message, path.display()),
        source: None,
    })?;
    validate(&spec)?;
    check_rlimits_present(&spec, &data)?;
    let root = spec
        .root()
        .as_ref()
        .ok_or_else(|| Error::invalid("root.path", "root.path is required"))?;
    let rootfs = dir.join(root.path());
    let resolved = real_path(&rootfs).map_err(|e| {
        Error::invalid_by(
            Stage::LoadConfig,
            "root.path",
            format!("root.path {}: {e}", rootfs.display()),
            e,
        )
    })?;
    // As runc: the rootfs must be named by its real path. A symlink (or a `..` through
    // one) would make every later check of "inside the rootfs" about another place.
    if resolved != lexical_clean(&rootfs) {
        return Err(Error::invalid(
            "root.path",
            format!(
                "root.path {} is a symlink (to {}): name the directory itself",
                rootfs.display(),
                resolved.display()
            ),
        ));
    }
    if !resolved.is_dir() {
        return Err(Error::invalid(
            "root.path",
            format!("root.path {} is not a directory", resolved.display()),
        ));
    }
    let config = SavedConfig::from_json(&data).map_err(|e| Error::Invalid {
        stage: Stage::LoadConfig,
        field: String::new(),
        message: format!("{e} (in {})", path.display()),
        source: None,
    })?;
    Ok(Bundle {
        dir,
        rootfs: resolved,
        spec,
        config,
    })
}

/// The canonical path of `p` (as `fs::canonicalize`) from the kernel's name for it once
/// opened: three system calls, where resolving by hand reads each component as a link.
fn real_path(p: &Path) -> std::io::Result<PathBuf> {
    use std::os::fd::AsRawFd;
    let fd = nix::fcntl::open(
        p,
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
        nix::sys::stat::Mode::empty(),
    )?;
    match fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())) {
        // Only an absolute name is a path: not "anon_inode:..." or one outside our root.
        Ok(real) if real.is_absolute() && !real.to_string_lossy().ends_with(" (deleted)") => {
            Ok(real)
        }
        // No /proc (or an odd name): resolve by hand.
        _ => fs::canonicalize(p),
    }
}

/// `.` and `..` removed without following anything (the bundle dir is already canonical).
fn lexical_clean(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Read a regular file of at most `max` bytes. Opened non-blocking so a FIFO put in its
/// place cannot hang us before the type check refuses it.
pub fn read_bounded(path: &Path, max: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| read_error(path, e))?;
    let md = f.metadata().map_err(|e| read_error(path, e))?;
    if !md.is_file() {
        return Err(Error::load(
            "config.json",
            format!("{} is not a regular file", path.display()),
        ));
    }
    if md.len() > max {
        return Err(Error::load(
            "config.json",
            format!(
                "{} is {} bytes, more than the {max} kosrun reads",
                path.display(),
                md.len()
            ),
        ));
    }
    let mut data = Vec::with_capacity(md.len() as usize);
    f.take(max + 1)
        .read_to_end(&mut data)
        .map_err(|e| read_error(path, e))?;
    if data.len() as u64 > max {
        return Err(Error::load(
            "config.json",
            format!("{} grew past the {max} bytes kosrun reads", path.display()),
        ));
    }
    Ok(data)
}

/// The parsed spec defaults a missing rlimit value to 0, which would silently starve the
/// container (RLIMIT_NOFILE 0 leaves it unable to open its program). Both values are
/// REQUIRED by the spec; a limit of 0/0 is checked against the raw JSON, so the common
/// case costs nothing.
fn check_rlimits_present(spec: &Spec, data: &[u8]) -> Result<()> {
    let limits = spec.process().as_ref().and_then(|p| p.rlimits().as_ref());
    if !limits
        .into_iter()
        .flatten()
        .any(|l| l.soft() == 0 || l.hard() == 0)
    {
        return Ok(());
    }
    let v: serde_json::Value = serde_json::from_slice(data)
        .map_err(|e| Error::invalid_by(Stage::LoadConfig, "process.rlimits", e.to_string(), e))?;
    for (i, l) in v["process"]["rlimits"]
        .as_array()
        .into_iter()
        .flatten()
        .enumerate()
    {
        for field in ["soft", "hard"] {
            if l.get(field).is_none_or(|x| x.is_null()) {
                return Err(Error::invalid(
                    format!("process.rlimits[{i}].{field}"),
                    format!(
                        "process.rlimits[{i}] ({}): {field} is required",
                        l["type"].as_str().unwrap_or("?")
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Parse config.json naming the JSON path of a bad value ("linux.seccomp.syscalls[0].action:
/// unknown variant ..."), with the list of accepted values cut short.
pub fn parse_spec(data: &[u8]) -> std::result::Result<Spec, ParseError> {
    // Tracking the path of every value costs a third of the parse: it is done only to
    // name the field of a config that does not parse.
    if let Ok(spec) = serde_json::from_slice(data) {
        return Ok(spec);
    }
    let de = &mut serde_json::Deserializer::from_slice(data);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            String::new()
        } else {
            path.clone()
        };
        let inner = e.into_inner().to_string();
        let inner = match inner.find(", expected one of") {
            Some(i) => {
                let tail = inner.rfind(" at line").map(|j| &inner[j..]).unwrap_or("");
                format!("{}{tail}", &inner[..i])
            }
            None => inner,
        };
        let message = if path == "." || path.is_empty() {
            inner
        } else {
            format!("{path}: {inner}")
        };
        ParseError { field, message }
    })
}

/// A config.json that does not parse: the JSON path of the bad value (empty when the
/// document itself is malformed) and the one-line message naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ParseError {
    pub field: String,
    pub message: String,
}

fn read_error(path: &Path, e: std::io::Error) -> Error {
    Error::Invalid {
        stage: Stage::LoadConfig,
        field: "config.json".into(),
        message: format!("cannot read {}: {e}", path.display()),
        source: Some(Box::new(e.into())),
    }
}

/// Every 1.x config is accepted: later minors only add optional properties, which are
/// ignored as the spec asks of unknown ones. Another major is another format.
pub fn check_version(v: &str) -> Result<()> {
    let mut parts = v.split(['.', '-', '+']);
    let major: Option<u32> = parts.next().and_then(|s| s.parse().ok());
    let minor: Option<u32> = parts.next().and_then(|s| s.parse().ok());
    match (major, minor) {
        (Some(1), Some(_)) => Ok(()),
        _ => Err(Error::invalid(
            "ociVersion",
            format!("unsupported ociVersion {v:?}: kosrun reads runtime-spec 1.x configs"),
        )),
    }
}

/// The largest id the kernel maps to a user: (uid_t)-1 means "no change" to setresuid,
/// and runc refuses everything above INT32_MAX too.
pub const MAX_ID: u32 = i32::MAX as u32;

/// Refuse uids and gids the kernel cannot make the process's own.
pub fn check_user(u: &oci_spec::runtime::User, field: &str) -> Result<()> {
    let bad = |what: &str, id: u32| {
        Error::invalid(
            format!("{field}.{what}"),
            format!("{field}.{what} {id} is out of range (at most {MAX_ID})"),
        )
    };
    if u.uid() > MAX_ID {
        return Err(bad("uid", u.uid()));
    }
    if u.gid() > MAX_ID {
        return Err(bad("gid", u.gid()));
    }
    for g in u.additional_gids().iter().flatten() {
        if *g > MAX_ID {
            return Err(bad("additionalGids", *g));
        }
    }
    Ok(())
}

pub fn validate(spec: &Spec) -> Result<()> {
    check_version(spec.version())?;
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::invalid("process", "process is required"))?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::invalid(
            "process.args",
            "process.args must name a program",
        ));
    }
    if !process.cwd().is_absolute() {
        return Err(Error::invalid(
            "process.cwd",
            format!(
                "process.cwd {} must be an absolute path",
                process.cwd().display()
            ),
        ));
    }
    check_user(process.user(), "process.user")?;
    let linux = spec.linux().as_ref();
    let namespaces = linux.and_then(|l| l.namespaces().as_ref());
    let mut seen = HashSet::new();
    for ns in namespaces.into_iter().flatten() {
        if !seen.insert(ns.typ()) {
            return Err(Error::invalid(
                "linux.namespaces",
                format!("linux.namespaces: {} is listed twice", ns_name(ns.typ())),
            ));
        }
        if let Some(p) = ns.path() {
            if !p.is_absolute() {
                return Err(Error::invalid(
                    "linux.namespaces",
                    format!(
                        "linux.namespaces: path {} of {} must be absolute",
                        p.display(),
                        ns_name(ns.typ())
                    ),
                ));
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
        return Err(Error::invalid(
            "hostname",
            "hostname is set but the container has no UTS namespace",
        ));
    }
    if spec.domainname().as_ref().is_some_and(|h| !h.is_empty()) && !has_ns(LinuxNamespaceType::Uts)
    {
        return Err(Error::invalid(
            "domainname",
            "domainname is set but the container has no UTS namespace",
        ));
    }
    if let Some(linux) = linux {
        let maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty())
            || linux.gid_mappings().as_ref().is_some_and(|m| !m.is_empty());
        if maps && !has_ns(LinuxNamespaceType::User) {
            return Err(Error::invalid(
                "linux.uidMappings",
                "uid/gid mappings are set but the container has no user namespace",
            ));
        }
        if new_ns(LinuxNamespaceType::User) && !maps {
            return Err(Error::invalid(
                "linux.uidMappings",
                "a new user namespace needs linux.uidMappings and linux.gidMappings",
            ));
        }
        if linux.time_offsets().as_ref().is_some_and(|t| !t.is_empty())
            && !new_ns(LinuxNamespaceType::Time)
        {
            return Err(Error::invalid(
                "linux.timeOffsets",
                "linux.timeOffsets are set but the container has no new time namespace",
            ));
        }
        for key in linux.time_offsets().iter().flat_map(|t| t.keys()) {
            if key != "monotonic" && key != "boottime" {
                return Err(Error::invalid(
                    format!("linux.timeOffsets[{key}]"),
                    format!("linux.timeOffsets: unknown clock {key:?} (monotonic or boottime)"),
                ));
            }
        }
        // A namespace joined by path is the container's own unless it is the runtime's
        // (the host's): runc refuses net.* there, and the same holds for UTS and IPC keys.
        let owns = |t: LinuxNamespaceType| {
            namespaces
                .into_iter()
                .flatten()
                .find(|n| n.typ() == t)
                .is_some_and(|n| match n.path() {
                    None => true,
                    Some(p) => !crate::linux::sysctl::is_runtime_ns(t, p),
                })
        };
        for (key, _) in linux.sysctl().iter().flatten() {
            crate::linux::sysctl::check(key, &owns)?;
        }
        if linux.intel_rdt().is_some() {
            return Err(Error::invalid(
                "linux.intelRdt",
                crate::linux::rdt::unsupported(),
            ));
        }
        if let Some(p) = linux.rootfs_propagation() {
            if crate::linux::rootfs::options::propagation(p).is_none() {
                return Err(Error::invalid(
                    "linux.rootfsPropagation",
                    format!("linux.rootfsPropagation {p:?} is not a propagation mode"),
                ));
            }
        }
    }
    for m in spec.mounts().iter().flatten() {
        if !m.destination().is_absolute() {
            return Err(Error::invalid(
                "mounts.destination",
                format!(
                    "mount destination {} must be absolute",
                    m.destination().display()
                ),
            ));
        }
    }
    for kind in crate::hooks::Kind::ALL {
        for h in crate::hooks::of_kind(crate::hooks::of(spec), kind) {
            if !h.path().is_absolute() {
                return Err(Error::invalid(
                    format!("hooks.{}.path", kind.name()),
                    format!(
                        "hooks.{}: path {} must be absolute",
                        kind.name(),
                        h.path().display()
                    ),
                ));
            }
            if let Some(t) = h.timeout().filter(|t| *t <= 0) {
                return Err(Error::invalid(
                    format!("hooks.{}.timeout", kind.name()),
                    format!(
                        "hooks.{}: timeout {t} of {} must be greater than zero",
                        kind.name(),
                        h.path().display()
                    ),
                ));
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
        let s = parse_spec(json.as_bytes()).map_err(|e| Error::invalid(e.field, e.message))?;
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
            e.message
                .starts_with("linux.seccomp.syscalls[0].action: unknown variant"),
            "{e}"
        );
        assert!(!e.message.contains("expected one of"), "{e}");
        assert_eq!(e.field, "linux.seccomp.syscalls[0].action");
    }

    fn assert_invalid_at(e: &Error, field: &str) {
        assert_eq!(e.kind(), crate::error::Kind::InvalidConfig, "{e}");
        assert_eq!(e.stage(), Some(Stage::Validate), "{e}");
        assert_eq!(e.field(), Some(field), "{e}");
        assert!(e.to_string().starts_with("config.json: "), "{e}");
    }

    #[test]
    fn bad_uid_is_invalid_config_at_process_user_uid() {
        let e = spec(
            r#"{"ociVersion":"1.0.2","process":{"args":["sh"],"cwd":"/",
                "user":{"uid":4294967295,"gid":0}},"root":{"path":"rootfs"}}"#,
        )
        .expect_err("uid out of range");
        assert_invalid_at(&e, "process.user.uid");
        assert!(e.to_string().contains("out of range"), "{e}");
    }

    #[test]
    fn host_sysctl_is_invalid_config_at_its_key() {
        let e = spec(&format!(
            r#"{{"ociVersion":"1.0.2",{BASE},"linux":{{"sysctl":{{"net.ipv4.ip_forward":"1"}}}}}}"#
        ))
        .expect_err("net sysctl without a network namespace");
        assert_invalid_at(&e, "linux.sysctl[net.ipv4.ip_forward]");
    }

    #[test]
    fn relative_hook_path_names_the_hook_kind() {
        let e = spec(&format!(
            r#"{{"ociVersion":"1.0.2",{BASE},"hooks":{{"prestart":[{{"path":"x"}}]}}}}"#
        ))
        .expect_err("relative hook");
        assert_invalid_at(&e, "hooks.prestart.path");
    }

    #[test]
    fn missing_config_is_a_load_error_with_the_io_source() {
        let dir = std::env::temp_dir().join(format!("kosrun-noconf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let e = load_bundle(&dir).err().expect("no config.json");
        std::fs::remove_dir(&dir).expect("rmdir");
        assert_eq!(e.stage(), Some(Stage::LoadConfig));
        assert_eq!(e.kind(), crate::error::Kind::InvalidConfig);
        assert_eq!(e.errno(), Some(libc::ENOENT));
        let src = std::error::Error::source(&e).expect("io source kept");
        assert!(src.to_string().contains("No such file"), "{src}");
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
        assert!(check_version("1.3.0").is_ok());
        assert!(check_version("1.9.0").is_ok());
        assert!(check_version("1").is_err());
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
