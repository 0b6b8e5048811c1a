//! Finding and reading unit files.
//!
//! Search path, lowest priority first (configurable): `/usr/lib/kos/units` (shipped), then
//! `/etc/kos/units` (admin). A file in a later directory replaces one of the same name in an
//! earlier one. Drop-ins: `NAME.d/*.conf` (e.g. `kos-dns.container.d/10-mem.conf`) from every
//! directory; a drop-in in a later directory replaces one of the same file name in an earlier
//! one; all are applied after the main file in the order of their file names. A unit file that
//! is a symlink to `/dev/null` (or empty) masks the unit.
//!
//! Enablement (`[Install]`) is kept as systemd keeps it, in a directory the caller gives:
//! `TARGET.wants/NAME` and `TARGET.requires/NAME` symlinks to the unit file. Presets:
//! `*.preset` files in the unit directories with `enable GLOB` / `disable GLOB` lines, first
//! match wins, default `enabled`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::ini::{lex, read_bounded};
use crate::unit_file::{UnitDef, UnitKind};

/// Where units come from.
#[derive(Debug, Clone)]
pub struct UnitPaths {
    /// Unit directories, lowest priority first.
    pub dirs: Vec<PathBuf>,
    /// Where `enable` makes its `TARGET.wants/` links (systemd: `/etc/systemd/system`).
    pub enable_dir: PathBuf,
}

impl Default for UnitPaths {
    fn default() -> Self {
        UnitPaths {
            dirs: vec!["/usr/lib/kos/units".into(), "/etc/kos/units".into()],
            enable_dir: "/etc/kos/units".into(),
        }
    }
}

/// The outcome of loading one unit.
#[derive(Debug, Clone)]
pub enum Loaded {
    Ok(Box<UnitDef>),
    /// Parse or validation error: the unit cannot be started (systemd's `bad-setting`).
    Error {
        fragment: PathBuf,
        msg: String,
    },
    Masked {
        fragment: PathBuf,
    },
}

/// Everything found on the search path.
#[derive(Debug, Clone, Default)]
pub struct UnitSet {
    pub units: BTreeMap<String, Loaded>,
    /// (target, unit) pairs from `TARGET.wants/UNIT` links.
    pub enabled_wants: Vec<(String, String)>,
    pub enabled_requires: Vec<(String, String)>,
    presets: Vec<(bool, String)>,
}

impl UnitSet {
    /// Whether the preset policy enables `name`.
    pub fn preset_enabled(&self, name: &str) -> bool {
        self.presets
            .iter()
            .find(|(_, g)| glob_match(g, name))
            .is_none_or(|(on, _)| *on)
    }
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<(String, PathBuf)>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("read unit directory", dir, e)),
    };
    let mut out = Vec::new();
    for ent in rd {
        let ent = ent.map_err(|e| Error::io("read unit directory", dir, e))?;
        if let Some(n) = ent.file_name().to_str() {
            out.push((n.to_string(), ent.path()));
        }
    }
    out.sort();
    Ok(out)
}

fn is_masked(path: &Path) -> bool {
    std::fs::read_link(path).is_ok_and(|t| t == Path::new("/dev/null"))
        || std::fs::metadata(path).is_ok_and(|m| m.len() == 0)
}

/// Reads all units on the search path.
pub fn load(paths: &UnitPaths) -> Result<UnitSet> {
    let mut fragments: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut dropins: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
    let mut set = UnitSet::default();
    for dir in &paths.dirs {
        for (name, path) in read_dir_sorted(dir)? {
            if UnitKind::of_name(&name).is_some() && !path.is_dir() {
                fragments.insert(name, path);
            } else if let Some(unit) = name.strip_suffix(".d") {
                if UnitKind::of_name(unit).is_some() && path.is_dir() {
                    for (f, p) in read_dir_sorted(&path)? {
                        if f.ends_with(".conf") && p.is_file() {
                            dropins.entry(unit.to_string()).or_default().insert(f, p);
                        }
                    }
                }
            } else if name.ends_with(".preset") && path.is_file() {
                for line in read_bounded(&path)?.lines() {
                    let mut w = line.split_whitespace();
                    match (w.next(), w.next()) {
                        (Some("enable"), Some(g)) => set.presets.push((true, g.to_string())),
                        (Some("disable"), Some(g)) => set.presets.push((false, g.to_string())),
                        _ => {}
                    }
                }
            }
        }
    }
    for (name, fragment) in fragments {
        let loaded = if is_masked(&fragment) {
            Loaded::Masked { fragment }
        } else {
            let ds: Vec<PathBuf> = dropins
                .remove(&name)
                .unwrap_or_default()
                .into_values()
                .collect();
            match load_one(&name, &fragment, &ds) {
                Ok(d) => Loaded::Ok(Box::new(d)),
                Err(e) => {
                    tracing::warn!("unit {name}: {e}");
                    Loaded::Error {
                        fragment,
                        msg: e.to_string(),
                    }
                }
            }
        };
        set.units.insert(name, loaded);
    }
    for (name, path) in read_dir_sorted(&paths.enable_dir)? {
        let (target, list) = if let Some(t) = name.strip_suffix(".wants") {
            (t, &mut set.enabled_wants)
        } else if let Some(t) = name.strip_suffix(".requires") {
            (t, &mut set.enabled_requires)
        } else {
            continue;
        };
        if UnitKind::of_name(target).is_none() || !path.is_dir() {
            continue;
        }
        for (unit, _) in read_dir_sorted(&path)? {
            if UnitKind::of_name(&unit).is_some() {
                list.push((target.to_string(), unit));
            }
        }
    }
    Ok(set)
}

fn load_one(name: &str, fragment: &Path, dropins: &[PathBuf]) -> Result<UnitDef> {
    let mut all = lex(fragment, &read_bounded(fragment)?)?;
    for d in dropins {
        all.extend(lex(d, &read_bounded(d)?)?);
    }
    UnitDef::build(name, fragment.to_path_buf(), dropins.to_vec(), &all)
}

/// `systemctl cat`: the file and its drop-ins, each under a `# /path` header.
pub fn cat(loaded: &Loaded) -> Result<String> {
    let files: Vec<PathBuf> = match loaded {
        Loaded::Ok(d) => std::iter::once(d.fragment.clone())
            .chain(d.dropins.iter().cloned())
            .collect(),
        Loaded::Error { fragment, .. } | Loaded::Masked { fragment } => vec![fragment.clone()],
    };
    let mut out = String::new();
    for (i, f) in files.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!("# {}\n", f.display()));
        let text = if is_masked(f) {
            String::new()
        } else {
            read_bounded(f)?
        };
        out.push_str(&text);
        if !text.ends_with('\n') && !text.is_empty() {
            out.push('\n');
        }
    }
    Ok(out)
}

/// What `enable`/`disable` changed, in systemctl's words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallChange {
    Symlink { link: PathBuf, target: PathBuf },
    Removed { link: PathBuf },
}

impl std::fmt::Display for InstallChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InstallChange::Symlink { link, target } => {
                write!(
                    f,
                    "Created symlink {} → {}.",
                    link.display(),
                    target.display()
                )
            }
            InstallChange::Removed { link } => write!(f, "Removed \"{}\".", link.display()),
        }
    }
}

/// Makes the `[Install]` links of `def` in `enable_dir`.
pub fn enable(def: &UnitDef, enable_dir: &Path) -> Result<Vec<InstallChange>> {
    if def.install.wanted_by.is_empty() && def.install.required_by.is_empty() {
        return Err(Error::Static(def.name.clone()));
    }
    let mut changes = Vec::new();
    let links = def
        .install
        .wanted_by
        .iter()
        .map(|t| format!("{t}.wants"))
        .chain(
            def.install
                .required_by
                .iter()
                .map(|t| format!("{t}.requires")),
        );
    for sub in links {
        let dir = enable_dir.join(sub);
        std::fs::create_dir_all(&dir)
            .map_err(|e| Error::io("create install directory", &dir, e))?;
        let link = dir.join(&def.name);
        if std::fs::read_link(&link).is_ok_and(|t| t == def.fragment) {
            continue;
        }
        match std::fs::remove_file(&link) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("replace install link", &link, e)),
        }
        std::os::unix::fs::symlink(&def.fragment, &link)
            .map_err(|e| Error::io("create install link", &link, e))?;
        changes.push(InstallChange::Symlink {
            link,
            target: def.fragment.clone(),
        });
    }
    Ok(changes)
}

/// Removes every `*.wants/NAME` and `*.requires/NAME` link of `name` in `enable_dir`.
pub fn disable(name: &str, enable_dir: &Path) -> Result<Vec<InstallChange>> {
    if UnitKind::of_name(name).is_none() {
        return Err(Error::BadName(name.to_string()));
    }
    let mut changes = Vec::new();
    for (sub, path) in read_dir_sorted(enable_dir)? {
        if !(sub.ends_with(".wants") || sub.ends_with(".requires")) || !path.is_dir() {
            continue;
        }
        let link = path.join(name);
        if std::fs::symlink_metadata(&link).is_ok() {
            std::fs::remove_file(&link).map_err(|e| Error::io("remove install link", &link, e))?;
            changes.push(InstallChange::Removed { link });
        }
    }
    Ok(changes)
}

/// `enabled`, `disabled`, `static` or `masked`, as `systemctl is-enabled` says.
pub fn file_state(set: &UnitSet, name: &str) -> &'static str {
    match set.units.get(name) {
        Some(Loaded::Masked { .. }) => "masked",
        Some(Loaded::Ok(d)) => {
            if set
                .enabled_wants
                .iter()
                .chain(&set.enabled_requires)
                .any(|(_, u)| u == name)
            {
                "enabled"
            } else if d.install.wanted_by.is_empty() && d.install.required_by.is_empty() {
                "static"
            } else {
                "disabled"
            }
        }
        _ => "bad",
    }
}

/// `*` and `?` globs as preset files use them.
fn glob_match(pat: &str, s: &str) -> bool {
    fn rec(p: &[u8], s: &[u8]) -> bool {
        match (p.first(), s.first()) {
            (None, None) => true,
            (Some(b'*'), _) => rec(&p[1..], s) || (!s.is_empty() && rec(p, &s[1..])),
            (Some(b'?'), Some(_)) => rec(&p[1..], &s[1..]),
            (Some(a), Some(b)) if a == b => rec(&p[1..], &s[1..]),
            _ => false,
        }
    }
    rec(pat.as_bytes(), s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(p: &Path, text: &str) {
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn paths(root: &Path) -> UnitPaths {
        UnitPaths {
            dirs: vec![root.join("lib"), root.join("etc")],
            enable_dir: root.join("etc"),
        }
    }

    #[test]
    fn admin_overrides_shipped_and_dropins_apply_in_name_order() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(
            &r.join("lib/a.container"),
            "[Unit]\nDescription=shipped\n[Container]\nImage=x\nEnvironment=A=1\n",
        );
        write(
            &r.join("lib/b.container"),
            "[Unit]\nDescription=B\nWants=c.container\n[Container]\nImage=b\n",
        );
        write(
            &r.join("etc/b.container"),
            "[Unit]\nDescription=admin B\n[Container]\nImage=b2\n",
        );
        write(
            &r.join("lib/a.container.d/20-x.conf"),
            "[Container]\nEnvironment=B=lib20\n",
        );
        write(
            &r.join("lib/a.container.d/10-y.conf"),
            "[Container]\nEnvironment=C=lib10\n",
        );
        // same file name in /etc replaces /usr/lib's
        write(
            &r.join("etc/a.container.d/20-x.conf"),
            "[Container]\nEnvironment=B=etc20\n",
        );
        write(
            &r.join("etc/a.container.d/30-reset.conf"),
            "[Unit]\nDescription=dropped in\n[Container]\nEnvironment=\nEnvironment=D=4\n",
        );
        write(&r.join("etc/a.container.d/ignored.txt"), "garbage");
        let set = load(&paths(r)).unwrap();
        let Loaded::Ok(a) = &set.units["a.container"] else {
            panic!()
        };
        assert_eq!(a.description, "dropped in");
        assert_eq!(a.container.env, ["D=4"]);
        assert_eq!(
            a.dropins,
            [
                r.join("lib/a.container.d/10-y.conf"),
                r.join("etc/a.container.d/20-x.conf"),
                r.join("etc/a.container.d/30-reset.conf")
            ]
        );
        let Loaded::Ok(b) = &set.units["b.container"] else {
            panic!()
        };
        assert_eq!(b.description, "admin B");
        assert_eq!(b.container.image, "b2");
        assert!(
            b.deps.wants.is_empty(),
            "the admin file replaces the whole shipped file"
        );
        let text = cat(&set.units["a.container"]).unwrap();
        assert!(text.starts_with(&format!(
            "# {}\n[Unit]\nDescription=shipped\n",
            r.join("lib/a.container").display()
        )));
        assert!(text.contains(&format!(
            "\n# {}\n[Container]\nEnvironment=B=etc20\n",
            r.join("etc/a.container.d/20-x.conf").display()
        )));
    }

    #[test]
    fn bad_unit_is_an_error_entry_not_fatal_and_masking() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(
            &r.join("lib/bad.container"),
            "[Container]\nImage=x\nMemory=much\n",
        );
        write(&r.join("lib/good.target"), "[Unit]\nDescription=ok\n");
        write(&r.join("lib/m.container"), "[Container]\nImage=x\n");
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::os::unix::fs::symlink("/dev/null", r.join("etc/m.container")).unwrap();
        let set = load(&paths(r)).unwrap();
        match &set.units["bad.container"] {
            Loaded::Error { msg, .. } => assert!(msg.contains("bad.container:3: Memory:"), "{msg}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(set.units["good.target"], Loaded::Ok(_)));
        assert!(matches!(set.units["m.container"], Loaded::Masked { .. }));
        assert_eq!(file_state(&set, "m.container"), "masked");
    }

    #[test]
    fn enable_disable_links_and_presets() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(
            &r.join("lib/a.container"),
            "[Container]\nImage=x\n[Install]\nWantedBy=kos-system.target\nRequiredBy=x.target\n",
        );
        write(&r.join("lib/s.container"), "[Container]\nImage=x\n");
        write(&r.join("lib/90-kos.preset"), "disable s.*\nenable *\n");
        let set = load(&paths(r)).unwrap();
        assert_eq!(file_state(&set, "a.container"), "disabled");
        assert_eq!(file_state(&set, "s.container"), "static");
        assert!(set.preset_enabled("a.container"));
        assert!(!set.preset_enabled("s.container"));
        let Loaded::Ok(a) = &set.units["a.container"] else {
            panic!()
        };
        let ch = enable(a, &r.join("etc")).unwrap();
        assert_eq!(ch.len(), 2);
        assert!(ch[0].to_string().starts_with("Created symlink "));
        assert_eq!(
            std::fs::read_link(r.join("etc/kos-system.target.wants/a.container")).unwrap(),
            r.join("lib/a.container")
        );
        assert!(
            enable(a, &r.join("etc")).unwrap().is_empty(),
            "enable is idempotent"
        );
        let set = load(&paths(r)).unwrap();
        assert_eq!(file_state(&set, "a.container"), "enabled");
        assert_eq!(
            set.enabled_wants,
            [("kos-system.target".to_string(), "a.container".to_string())]
        );
        assert_eq!(
            set.enabled_requires,
            [("x.target".to_string(), "a.container".to_string())]
        );
        let Loaded::Ok(s) = &set.units["s.container"] else {
            panic!()
        };
        assert!(matches!(enable(s, &r.join("etc")), Err(Error::Static(_))));
        assert_eq!(disable("a.container", &r.join("etc")).unwrap().len(), 2);
        let set = load(&paths(r)).unwrap();
        assert_eq!(file_state(&set, "a.container"), "disabled");
    }

    #[test]
    fn globs() {
        assert!(glob_match("*", "a.container"));
        assert!(glob_match("kos-*.container", "kos-dns.container"));
        assert!(!glob_match("kos-*.target", "kos-dns.container"));
        assert!(glob_match("a?c", "abc"));
    }
}
