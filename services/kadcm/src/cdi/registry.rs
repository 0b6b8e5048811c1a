//! Reading CDI specs (kadcm's and third parties') and resolving `vendor/class=name` into the
//! container edits to apply. Directories are read lowest priority first (/etc/cdi, then
//! /var/run/cdi): a device defined again in a later directory replaces the earlier one; the
//! same device twice in one directory is a conflict and resolving it is refused.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::spec::{self, ContainerEdits, Spec};
use crate::error::{Error, Result};

/// Largest spec file read.
const MAX_SPEC: u64 = 4 << 20;

pub const DEFAULT_DIRS: &[&str] = &["/etc/cdi", "/var/run/cdi"];

#[derive(Debug, Clone)]
struct Entry {
    spec_path: PathBuf,
    priority: usize,
    spec_edits: ContainerEdits,
    device_edits: ContainerEdits,
    conflict: Option<PathBuf>,
}

#[derive(Debug, Default)]
pub struct Registry {
    devices: BTreeMap<String, Entry>,
}

/// Loads and checks one spec file.
pub fn read_spec(path: &Path) -> Result<Spec> {
    let mut text = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_SPEC + 1).read_to_end(&mut text))
        .map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
    let bad = |message: String| Error::CdiSpec {
        path: path.to_path_buf(),
        message,
    };
    if text.len() as u64 > MAX_SPEC {
        return Err(bad(format!("larger than {MAX_SPEC} bytes")));
    }
    let s: Spec = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
    if !spec::KNOWN_VERSIONS.contains(&s.cdi_version.as_str()) {
        return Err(bad(format!("unsupported cdiVersion {:?}", s.cdi_version)));
    }
    if !spec::valid_kind(&s.kind) {
        return Err(bad(format!("invalid kind {:?}", s.kind)));
    }
    for d in &s.devices {
        if !spec::valid_device_name(&d.name) {
            return Err(bad(format!("invalid device name {:?}", d.name)));
        }
        check_edits(&d.container_edits).map_err(&bad)?;
    }
    check_edits(&s.container_edits).map_err(bad)?;
    Ok(s)
}

fn check_edits(e: &ContainerEdits) -> std::result::Result<(), String> {
    for n in &e.device_nodes {
        if !n.path.starts_with('/') {
            return Err(format!("device node path {:?} is not absolute", n.path));
        }
        if let Some(t) = &n.typ {
            if !matches!(t.as_str(), "c" | "b" | "u" | "p") {
                return Err(format!("device node {:?}: bad type {t:?}", n.path));
            }
        }
        if let Some(p) = &n.permissions {
            if p.is_empty() || !p.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
                return Err(format!("device node {:?}: bad permissions {p:?}", n.path));
            }
        }
    }
    for m in &e.mounts {
        if !m.container_path.starts_with('/') {
            return Err(format!(
                "mount target {:?} is not absolute",
                m.container_path
            ));
        }
    }
    for h in &e.hooks {
        if !matches!(
            h.hook_name.as_str(),
            "prestart"
                | "createRuntime"
                | "createContainer"
                | "startContainer"
                | "poststart"
                | "poststop"
        ) {
            return Err(format!("unknown hook name {:?}", h.hook_name));
        }
    }
    for v in &e.env {
        if !v.contains('=') {
            return Err(format!("env entry {v:?} is not NAME=VALUE"));
        }
    }
    Ok(())
}

impl Registry {
    /// Reads every `*.json` spec in `dirs` (lowest priority first). Files that do not parse
    /// or check are returned as errors beside the registry and otherwise ignored, as CDI
    /// requires; YAML specs are reported as unsupported.
    pub fn load(dirs: &[PathBuf]) -> (Registry, Vec<Error>) {
        let mut reg = Registry::default();
        let mut errors = Vec::new();
        for (priority, dir) in dirs.iter().enumerate() {
            let Ok(rd) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut files: Vec<PathBuf> = rd.filter_map(|e| e.ok().map(|e| e.path())).collect();
            files.sort();
            for path in files {
                match path.extension().and_then(|e| e.to_str()) {
                    Some("json") => {}
                    Some("yaml") | Some("yml") => {
                        errors.push(Error::CdiSpec {
                            path,
                            message: "YAML specs are not supported; use JSON".into(),
                        });
                        continue;
                    }
                    _ => continue,
                }
                match read_spec(&path) {
                    Ok(s) => reg.add(&path, priority, &s),
                    Err(e) => errors.push(e),
                }
            }
        }
        (reg, errors)
    }

    fn add(&mut self, path: &Path, priority: usize, s: &Spec) {
        for d in &s.devices {
            let key = format!("{}={}", s.kind, d.name);
            let entry = Entry {
                spec_path: path.to_path_buf(),
                priority,
                spec_edits: s.container_edits.clone(),
                device_edits: d.container_edits.clone(),
                conflict: None,
            };
            match self.devices.get_mut(&key) {
                Some(old) if old.priority == priority => {
                    old.conflict = Some(path.to_path_buf());
                }
                _ => {
                    self.devices.insert(key, entry);
                }
            }
        }
    }

    /// Every qualified device name known.
    pub fn names(&self) -> Vec<String> {
        self.devices.keys().cloned().collect()
    }

    /// The merged edits for the qualified names, each spec's own edits once.
    pub fn resolve<S: AsRef<str>>(&self, names: &[S]) -> Result<ContainerEdits> {
        let mut out = ContainerEdits::default();
        let mut specs_done: Vec<&Path> = Vec::new();
        for n in names {
            let n = n.as_ref();
            let err = |message: String| Error::CdiResolve {
                name: n.to_string(),
                message,
            };
            if spec::parse_qualified(n).is_none() {
                return Err(err("not a qualified CDI name (vendor/class=name)".into()));
            }
            let e = self
                .devices
                .get(n)
                .ok_or_else(|| err("no such device in any CDI spec".into()))?;
            if let Some(other) = &e.conflict {
                return Err(err(format!(
                    "defined in both {} and {}",
                    e.spec_path.display(),
                    other.display()
                )));
            }
            if !specs_done.contains(&e.spec_path.as_path()) {
                out.merge(&e.spec_edits);
                specs_done.push(&e.spec_path);
            }
            out.merge(&e.device_edits);
        }
        Ok(out)
    }
}
