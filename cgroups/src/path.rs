//! Turning a runtime spec's `cgroupsPath` into one absolute cgroup path.
//!
//! An absolute cgroupsPath names the same cgroup under every hierarchy root, as in runc's
//! cgroupfs driver. A relative one is taken relative to the caller's own cgroup. Where runc
//! looks up the caller's cgroup per v1 controller, KOS uses the caller's cgroup in the v2
//! hierarchy (the `0::` line of /proc/self/cgroup, which every kernel with cgroup2 support
//! shows even when v2 holds no controllers): that makes the result a single absolute path,
//! which a later process (`kosrun delete`) can hand back to `Manager::new` and reach the
//! same directories without knowing the cgroups of the process that created them.

use crate::error::{Error, Result};

/// Validates a container id for use as a cgroup directory name.
fn check_id(path: &str, id: &str) -> Result<()> {
    if id.is_empty() || id == "." || id == ".." || id.contains('/') || id.contains('\0') {
        return Err(Error::Path {
            path: path.to_string(),
            reason: format!("container id {id:?} cannot name a cgroup directory"),
        });
    }
    Ok(())
}

/// Joins `base` (absolute) and `rel`, rejecting any `..` and collapsing `.` and repeated `/`.
fn normalize(orig: &str, base: &str, rel: &str) -> Result<String> {
    let mut out = String::new();
    for part in base.split('/').chain(rel.split('/')) {
        match part {
            "" | "." => {}
            ".." => {
                return Err(Error::Path {
                    path: orig.to_string(),
                    reason: "\"..\" would escape the cgroup root".to_string(),
                })
            }
            p => {
                out.push('/');
                out.push_str(p);
            }
        }
    }
    if out.is_empty() {
        return Err(Error::Path {
            path: orig.to_string(),
            reason: "resolves to the cgroup root, which cannot hold a container's limits"
                .to_string(),
        });
    }
    Ok(out)
}

/// The caller's cgroup from /proc/self/cgroup text: the v2 (`0::`) line, else the
/// name=systemd line, else "/".
pub(crate) fn own_cgroup_from(proc_self_cgroup: &str) -> String {
    let mut systemd = None;
    for line in proc_self_cgroup.lines() {
        let mut it = line.splitn(3, ':');
        let (Some(id), Some(ctl), Some(p)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        let p = p.strip_suffix(" (deleted)").unwrap_or(p);
        if id == "0" && ctl.is_empty() {
            return p.to_string();
        }
        if ctl == "name=systemd" {
            systemd = Some(p.to_string());
        }
    }
    systemd.unwrap_or_else(|| "/".to_string())
}

fn own_cgroup() -> Result<String> {
    let p = "/proc/self/cgroup";
    let s = crate::fsutil::read_small(std::path::Path::new(p)).map_err(|source| Error::Read {
        path: p.into(),
        source,
    })?;
    Ok(own_cgroup_from(&s))
}

/// Resolves a cgroupsPath to the absolute cgroup path the manager uses everywhere.
pub(crate) fn resolve(cgroups_path: Option<&str>, id: &str) -> Result<String> {
    resolve_with(cgroups_path, id, own_cgroup)
}

pub(crate) fn resolve_with(
    cgroups_path: Option<&str>,
    id: &str,
    own: impl FnOnce() -> Result<String>,
) -> Result<String> {
    let raw = cgroups_path.unwrap_or("");
    if raw.contains('\0') {
        return Err(Error::Path {
            path: raw.to_string(),
            reason: "contains a NUL byte".to_string(),
        });
    }
    if raw.is_empty() {
        check_id(raw, id)?;
        return normalize(raw, "/", id);
    }
    if raw.contains(':') {
        return Err(Error::Path {
            path: raw.to_string(),
            reason: "systemd \"slice:prefix:name\" syntax needs a systemd cgroup driver, \
                     which KOS does not have; use a cgroupfs path such as \"/kos/<id>\""
                .to_string(),
        });
    }
    if raw.starts_with('/') {
        normalize(raw, "/", raw)
    } else {
        let base = own()?;
        normalize(raw, &base, raw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own() -> Result<String> {
        Ok("/user.slice/session-1.scope".to_string())
    }

    #[test]
    fn default_is_slash_id() {
        assert_eq!(resolve_with(None, "abc", own).unwrap(), "/abc");
        assert_eq!(resolve_with(Some(""), "abc", own).unwrap(), "/abc");
    }

    #[test]
    fn absolute_is_normalized() {
        assert_eq!(
            resolve_with(Some("//kos/./x/"), "id", own).unwrap(),
            "/kos/x"
        );
    }

    #[test]
    fn relative_joins_own_cgroup() {
        assert_eq!(
            resolve_with(Some("kos/c1"), "id", own).unwrap(),
            "/user.slice/session-1.scope/kos/c1"
        );
    }

    #[test]
    fn rejects_escape_systemd_root_and_bad_ids() {
        for p in ["/kos/../../etc", "../x", "a/../../b"] {
            let e = resolve_with(Some(p), "id", own).unwrap_err().to_string();
            assert!(e.contains("escape"), "{p}: {e}");
        }
        let e = resolve_with(Some("system.slice:kos:abc"), "id", own)
            .unwrap_err()
            .to_string();
        assert!(e.contains("systemd"), "{e}");
        assert!(resolve_with(Some("/"), "id", own).is_err());
        assert!(resolve_with(None, "a/b", own).is_err());
        assert!(resolve_with(None, "..", own).is_err());
        assert!(resolve_with(None, "", own).is_err());
    }

    #[test]
    fn resolved_form_maps_back_to_itself() {
        let r = resolve_with(Some("kos/c1"), "id", own).unwrap();
        assert_eq!(resolve_with(Some(&r), "id", own).unwrap(), r);
    }

    #[test]
    fn own_cgroup_prefers_v2_line() {
        let s = "9:name=systemd:/sys\n4:memory:/m\n0::/v2path\n";
        assert_eq!(own_cgroup_from(s), "/v2path");
        assert_eq!(own_cgroup_from("9:name=systemd:/sys\n"), "/sys");
        assert_eq!(own_cgroup_from("4:memory:/m\n"), "/");
    }
}
