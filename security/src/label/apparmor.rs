//! AppArmor: `process.apparmorProfile`, applied on exec.

use super::{write_attr, LabelError};

/// The profile name that means "no confinement".
pub const UNCONFINED: &str = "unconfined";

/// Whether AppArmor is enabled in the running kernel.
pub fn is_enabled() -> bool {
    std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .map(|s| s.trim_start().starts_with('Y'))
        .unwrap_or(false)
        && lsm_active("apparmor")
}

/// Whether `name` is among the active LSMs (`/sys/kernel/security/lsm` when securityfs is
/// mounted; otherwise the module parameter alone decides).
fn lsm_active(name: &str) -> bool {
    match std::fs::read_to_string("/sys/kernel/security/lsm") {
        Ok(list) => list.trim().split(',').any(|l| l == name),
        Err(_) => true,
    }
}

/// Syntax check of a profile name.
pub fn validate(profile: &str) -> Result<(), LabelError> {
    let bad = |reason: &str| LabelError::Syntax {
        what: "AppArmor profile",
        label: profile.to_string(),
        reason: reason.to_string(),
    };
    if profile.chars().any(|c| c == '\0' || c == '\n') {
        return Err(bad("contains a NUL or newline"));
    }
    if profile.len() > 4096 {
        return Err(bad("longer than 4096 bytes"));
    }
    if profile.trim() != profile {
        return Err(bad("has leading or trailing whitespace"));
    }
    Ok(())
}

/// Before the container exists: refuse a profile this host cannot apply.
pub fn check_available(profile: &str) -> Result<(), LabelError> {
    validate(profile)?;
    if profile.is_empty() || is_enabled() {
        return Ok(());
    }
    if profile == UNCONFINED {
        tracing::info!(
            "AppArmor is not enabled on this host; profile \"unconfined\" needs nothing"
        );
        return Ok(());
    }
    Err(LabelError::NotEnabled {
        what: "AppArmor profile",
        label: profile.to_string(),
        lsm: "AppArmor",
    })
}

/// In the init, before `execve`: confine the program about to be executed by `profile`.
pub fn apply(profile: &str) -> Result<(), LabelError> {
    check_available(profile)?;
    if profile.is_empty() || !is_enabled() {
        return Ok(());
    }
    let value = format!("exec {profile}");
    // The per-LSM directory exists on kernels with LSM stacking; the shared file before.
    let stacked = "/proc/thread-self/attr/apparmor/exec";
    if std::path::Path::new(stacked).exists() {
        write_attr(stacked, &value)
    } else {
        write_attr("/proc/thread-self/attr/exec", &value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax() {
        assert!(validate("docker-default").is_ok());
        assert!(validate("").is_ok());
        assert!(validate("bad\nname").is_err());
        assert!(validate(" padded").is_err());
    }

    #[test]
    fn behaviour_on_this_host() {
        assert!(check_available("").is_ok());
        if is_enabled() {
            return;
        }
        assert!(check_available(UNCONFINED).is_ok());
        assert!(apply(UNCONFINED).is_ok());
        let e = check_available("kos-profile").expect_err("disabled host");
        assert_eq!(
            e.to_string(),
            "AppArmor profile \"kos-profile\" is specified, but AppArmor is not enabled on this host"
        );
        assert!(apply("kos-profile").is_err());
    }
}
