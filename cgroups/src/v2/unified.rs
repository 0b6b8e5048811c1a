//! `linux.resources.unified`: raw v2 key/values, checked before anything is written.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::fsutil::Writer;

/// Files that move processes or change state rather than set a limit.
const FORBIDDEN: &[&str] = &[
    "cgroup.procs",
    "cgroup.threads",
    "cgroup.kill",
    "cgroup.freeze",
];

fn field(key: &str) -> String {
    format!("linux.resources.unified[{key:?}]")
}

/// Checks a key's shape and returns its controller ("memory" for "memory.high").
pub(crate) fn check_key(key: &str) -> Result<&str> {
    let (ctl, rest) = key.split_once('.').ok_or_else(|| {
        Error::invalid(
            field(key),
            "a key is \"<controller>.<file>\", such as \"memory.high\"",
        )
    })?;
    let ok_ctl = !ctl.is_empty()
        && ctl
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    let ok_rest = !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
        && !rest.starts_with('.')
        && !rest.ends_with('.')
        && !rest.contains("..");
    if !ok_ctl || !ok_rest {
        return Err(Error::invalid(
            field(key),
            "not a cgroup v2 file name (letters, digits, '_' and '.', no '/')",
        ));
    }
    if FORBIDDEN.contains(&key) {
        return Err(Error::invalid(
            field(key),
            "moves processes or changes state; it is not a resource limit",
        ));
    }
    Ok(ctl)
}

fn sorted(u: &HashMap<String, String>) -> Result<Vec<(&String, &String)>> {
    let mut kv: Vec<_> = u.iter().collect();
    kv.sort();
    for (k, v) in &kv {
        check_key(k)?;
        if v.contains('\0') {
            return Err(Error::invalid(field(k), "value contains a NUL byte"));
        }
    }
    Ok(kv)
}

/// Validates every key first, enables the controllers they need, then writes.
pub(crate) fn apply(
    d: &Path,
    root: &Path,
    u: &HashMap<String, String>,
    w: &mut Writer,
) -> Result<()> {
    let kv = sorted(u)?;
    for (k, _) in &kv {
        let ctl = check_key(k)?;
        if ctl != "cgroup" {
            super::controllers::enable(root, d, &[ctl], &field(k))?;
        }
    }
    write_checked(d, &kv, w)
}

/// Writes without enabling controllers (for trees whose controllers are already on).
pub(crate) fn write(d: &Path, u: &HashMap<String, String>, w: &mut Writer) -> Result<()> {
    let kv = sorted(u)?;
    write_checked(d, &kv, w)
}

fn write_checked(d: &Path, kv: &[(&String, &String)], w: &mut Writer) -> Result<()> {
    for (k, _) in kv {
        if !d.join(k.as_str()).exists() {
            return Err(Error::invalid(
                field(k),
                format!("{} has no such file", d.display()),
            ));
        }
    }
    for (k, v) in kv {
        w.write(&field(k), &d.join(k.as_str()), v)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_key;

    #[test]
    fn keys() {
        assert_eq!(check_key("memory.high").unwrap(), "memory");
        assert_eq!(check_key("hugetlb.2MB.max").unwrap(), "hugetlb");
        assert_eq!(check_key("cgroup.max.depth").unwrap(), "cgroup");
        for bad in [
            "memory",
            "../memory.max",
            "memory/x.max",
            "memory.",
            ".max",
            "Memory.max",
            "cgroup.procs",
            "cgroup.kill",
            "memory..max",
        ] {
            let e = check_key(bad).unwrap_err().to_string();
            assert!(e.contains("unified"), "{bad}: {e}");
        }
    }
}
