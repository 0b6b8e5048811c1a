//! CDI: kadcm's own specs for host devices, third-party specs, and resolving a CDI name into
//! OCI spec edits (the library call kosd makes for `--device kos.dev/kvm=kvm`).

pub mod json;
pub mod oci;
pub mod registry;
pub mod spec;
pub mod write;

use std::path::PathBuf;

use crate::error::Result;

/// Resolves qualified CDI names against the specs in `dirs` (lowest priority first) and
/// applies the edits to `spec`. Broken spec files elsewhere do not stop a name that resolves.
pub fn apply_devices<S: AsRef<str>>(
    spec: &mut oci_spec::runtime::Spec,
    names: &[S],
    dirs: &[PathBuf],
) -> Result<()> {
    let (reg, _broken) = registry::Registry::load(dirs);
    let edits = reg.resolve(names)?;
    oci::apply(spec, &edits)
}

/// The merged edits of the qualified `names` from the specs in `dirs` (lowest priority
/// first), their device nodes checked against the host: the check an engine makes when a
/// container is created, so an unknown or broken device fails before anything is made.
pub fn resolve<S: AsRef<str>>(names: &[S], dirs: &[PathBuf]) -> Result<spec::ContainerEdits> {
    let (reg, _broken) = registry::Registry::load(dirs);
    let edits = reg.resolve(names)?;
    oci::resolve_nodes(&edits)?;
    Ok(edits)
}

/// `apply_devices` for a runtime spec held as JSON.
pub fn apply_devices_json<S: AsRef<str>>(
    spec: &mut serde_json::Value,
    names: &[S],
    dirs: &[PathBuf],
) -> Result<()> {
    let (reg, _broken) = registry::Registry::load(dirs);
    let edits = reg.resolve(names)?;
    json::apply(spec, &edits)
}

/// The standard CDI directories.
pub fn default_dirs() -> Vec<PathBuf> {
    registry::DEFAULT_DIRS.iter().map(PathBuf::from).collect()
}
