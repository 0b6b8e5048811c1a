//! SELinux: process exec label and mount `context=`.
//!
//! A context is `user:role:type[:level]`; the MLS/MCS level is `low[-high]`, each part a
//! sensitivity `sN` optionally followed by `:` and categories (`c3`, `c1,c7`, `c0.c1023`).

use std::fmt;

use super::{write_attr, LabelError};

/// Highest category number in the default MCS policy.
pub const MAX_CATEGORY: u16 = 1023;

/// A parsed SELinux context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// SELinux user, e.g. `system_u`.
    pub user: String,
    /// Role, e.g. `system_r`.
    pub role: String,
    /// Type, e.g. `container_t`.
    pub kind: String,
    /// Level, e.g. `s0:c1,c2`, if any.
    pub level: Option<String>,
}

impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.user, self.role, self.kind)?;
        if let Some(l) = &self.level {
            write!(f, ":{l}")?;
        }
        Ok(())
    }
}

impl Context {
    /// The same context with another level (used with [`super::mcs::Allocator`]).
    pub fn with_level(&self, level: &str) -> Result<Context, LabelError> {
        let s = format!("{}:{}:{}:{}", self.user, self.role, self.kind, level);
        validate(&s)
    }
}

fn ident_ok(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
}

fn parse_category(s: &str) -> Result<u16, String> {
    let n = s
        .strip_prefix('c')
        .ok_or_else(|| format!("category {s:?} does not start with 'c'"))?;
    let v: u16 = n
        .parse()
        .map_err(|_| format!("category {s:?} is not c<number>"))?;
    if v > MAX_CATEGORY {
        return Err(format!("category {s:?} is above c{MAX_CATEGORY}"));
    }
    Ok(v)
}

fn parse_level_part(part: &str) -> Result<(), String> {
    let (sens, cats) = match part.split_once(':') {
        Some((s, c)) => (s, Some(c)),
        None => (part, None),
    };
    let n = sens
        .strip_prefix('s')
        .ok_or_else(|| format!("sensitivity {sens:?} does not start with 's'"))?;
    n.parse::<u16>()
        .map_err(|_| format!("sensitivity {sens:?} is not s<number>"))?;
    if let Some(cats) = cats {
        if cats.is_empty() {
            return Err("empty category list".into());
        }
        for item in cats.split(',') {
            match item.split_once('.') {
                Some((a, b)) => {
                    let (a, b) = (parse_category(a)?, parse_category(b)?);
                    if a >= b {
                        return Err(format!("category range {item:?} is not increasing"));
                    }
                }
                None => {
                    parse_category(item)?;
                }
            }
        }
    }
    Ok(())
}

/// Check the level syntax (`s0`, `s0:c1,c2`, `s0-s0:c0.c1023`).
pub fn validate_level(level: &str) -> Result<(), String> {
    match level.split_once('-') {
        Some((low, high)) => {
            parse_level_part(low)?;
            parse_level_part(high)
        }
        None => parse_level_part(level),
    }
}

/// Parse and check a context's syntax.
pub fn validate(label: &str) -> Result<Context, LabelError> {
    let bad = |reason: String| LabelError::Syntax {
        what: "SELinux label",
        label: label.to_string(),
        reason,
    };
    let mut it = label.splitn(4, ':');
    let user = it.next().unwrap_or_default();
    let role = it
        .next()
        .ok_or_else(|| bad("expected user:role:type[:level]".into()))?;
    let kind = it
        .next()
        .ok_or_else(|| bad("expected user:role:type[:level]".into()))?;
    let level = it.next();
    for (name, v) in [("user", user), ("role", role), ("type", kind)] {
        if !ident_ok(v) {
            return Err(bad(format!(
                "{name} {v:?} is empty or has invalid characters"
            )));
        }
    }
    if let Some(l) = level {
        validate_level(l).map_err(bad)?;
    }
    Ok(Context {
        user: user.to_string(),
        role: role.to_string(),
        kind: kind.to_string(),
        level: level.map(str::to_string),
    })
}

/// Whether SELinux is enabled (selinuxfs mounted, as libselinux decides).
pub fn is_enabled() -> bool {
    if std::path::Path::new("/sys/fs/selinux/enforce").exists() {
        return true;
    }
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| {
            m.lines().any(|l| {
                l.split(" - ")
                    .nth(1)
                    .is_some_and(|t| t.starts_with("selinuxfs "))
            })
        })
        .unwrap_or(false)
}

/// Before the container exists: validate both labels and refuse them on a host without
/// SELinux.
pub fn check_available(
    process_label: Option<&str>,
    mount_label: Option<&str>,
) -> Result<(), LabelError> {
    for (what, l) in [
        ("SELinux process label", process_label),
        ("SELinux mount label", mount_label),
    ] {
        let Some(l) = l.filter(|l| !l.is_empty()) else {
            continue;
        };
        validate(l)?;
        if !is_enabled() {
            return Err(LabelError::NotEnabled {
                what,
                label: l.to_string(),
                lsm: "SELinux",
            });
        }
    }
    Ok(())
}

/// In the init, before `execve`: the program about to be executed runs as `label`.
pub fn set_exec_label(label: &str) -> Result<(), LabelError> {
    if label.is_empty() {
        return Ok(());
    }
    check_available(Some(label), None)?;
    write_attr("/proc/thread-self/attr/exec", label)
}

/// The mount option labelling a new filesystem with `label`, e.g.
/// `context="system_u:object_r:container_file_t:s0:c1,c2"` (quoted: the level has commas).
pub fn mount_context_option(label: &str) -> Result<String, LabelError> {
    check_available(None, Some(label))?;
    Ok(format!("context=\"{label}\""))
}

/// Filesystems that accept `context=` when mounted for a container (bind mounts keep the
/// source's labels; proc, sysfs and cgroup have fixed ones).
pub fn takes_context(fstype: &str) -> bool {
    matches!(fstype, "tmpfs" | "devpts" | "mqueue" | "ramfs" | "shm")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_labels() {
        for l in [
            "system_u:system_r:container_t:s0:c1,c2",
            "system_u:object_r:container_file_t:s0:c715,c811",
            "system_u:system_r:spc_t:s0",
            "unconfined_u:unconfined_r:unconfined_t:s0-s0:c0.c1023",
            "user_u:user_r:user_t",
        ] {
            let c = validate(l).expect(l);
            assert_eq!(c.to_string(), l);
        }
    }

    #[test]
    fn bad_labels() {
        for (l, needle) in [
            ("container_t", "expected user:role:type"),
            ("system_u::container_t:s0", "role"),
            ("system_u:system_r:container_t:x0", "sensitivity"),
            ("system_u:system_r:container_t:s0:c1,", "category"),
            ("system_u:system_r:container_t:s0:c2000", "above c1023"),
            ("system_u:system_r:container_t:s0:c5.c2", "not increasing"),
            ("system_u:system_r:contai ner_t:s0", "invalid characters"),
            ("system_u:system_r:container_t:s0:", "empty category"),
        ] {
            let e = validate(l).expect_err(l).to_string();
            assert!(e.contains(needle), "{e} / {needle}");
        }
    }

    #[test]
    fn with_level_replaces_the_level() {
        let c = validate("system_u:system_r:container_t:s0").expect("valid");
        let d = c.with_level("s0:c3,c9").expect("level");
        assert_eq!(d.to_string(), "system_u:system_r:container_t:s0:c3,c9");
        assert!(c.with_level("s0:c9999").is_err());
    }

    #[test]
    fn behaviour_on_this_host() {
        assert!(check_available(None, Some("")).is_ok());
        if is_enabled() {
            return;
        }
        let e = check_available(Some("system_u:system_r:container_t:s0:c1,c2"), None)
            .expect_err("disabled");
        assert!(e.to_string().contains("SELinux is not enabled"), "{e}");
        assert!(mount_context_option("system_u:object_r:container_file_t:s0").is_err());
        assert!(set_exec_label("system_u:system_r:container_t:s0").is_err());
        // Syntax errors are reported as such even on a host without SELinux.
        let e = check_available(Some("nonsense"), None).expect_err("syntax");
        assert!(e.to_string().contains("invalid SELinux label"), "{e}");
    }
}
