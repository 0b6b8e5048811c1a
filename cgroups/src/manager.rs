//! The cgroup of one container across every hierarchy of the host.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use crate::error::{Error, Result};
use crate::fsutil::{self, Writer};
use crate::layout::{self, Layout, CGROUP_ROOT};
use crate::{freeze, path, remove, stats, v1, v2};

/// One hierarchy as `Manager::new_at` takes it: where it is mounted and, for v1, which
/// controllers it carries ("name=systemd" for a named hierarchy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub mount_point: PathBuf,
    pub controllers: Vec<String>,
    pub v2: bool,
}

/// A v1 hierarchy with the container's directory in it.
#[derive(Debug, Clone)]
pub(crate) struct V1Dir {
    pub controllers: Vec<String>,
    pub mount_point: PathBuf,
    pub dir: PathBuf,
}

/// Where a container's "cgroup" filesystem mount inside the container comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMountSource {
    /// Directory name under the container's /sys/fs/cgroup: the host mount point's name for
    /// a v1 hierarchy ("cpu", "cpu,cpuacct", "systemd"), "unified" for the v2 mount of a
    /// hybrid host, and "" on a pure v2 host (mounted at /sys/fs/cgroup itself).
    pub name: String,
    /// The container's cgroup directory on the host.
    pub host_dir: PathBuf,
    /// Whether this is a cgroup2 hierarchy.
    pub v2: bool,
}

/// The cgroup of one container: its directory in every hierarchy of the host.
///
/// A manager is rebuilt in a later process from the absolute path `resolved_path` returns and
/// the container id; nothing else is stored.
#[derive(Debug, Clone)]
pub struct Manager {
    layout: Layout,
    path: String,
    v1: Vec<V1Dir>,
    v2_root: Option<PathBuf>,
    v2: Option<PathBuf>,
}

fn join_cgroup(root: &Path, abs: &str) -> PathBuf {
    root.join(abs.trim_start_matches('/'))
}

impl Manager {
    /// Resolves the container's cgroup on this host's layout.
    ///
    /// `cgroups_path` None or empty means "/<container_id>". An absolute path names the same
    /// cgroup under every hierarchy root; a relative one is taken relative to the caller's
    /// cgroup (see `resolved_path`). The systemd "slice:prefix:name" form and paths that climb
    /// out of the root with ".." are errors.
    pub fn new(cgroups_path: Option<&str>, container_id: &str) -> Result<Manager> {
        let layout = layout::detect_layout()?;
        let mut hierarchies = Vec::new();
        match layout {
            Layout::V2 => hierarchies.push(Hierarchy {
                mount_point: PathBuf::from(CGROUP_ROOT),
                controllers: Vec::new(),
                v2: true,
            }),
            Layout::V1 | Layout::Hybrid => {
                for m in layout::v1_mounts()? {
                    hierarchies.push(Hierarchy {
                        mount_point: m.mount_point,
                        controllers: m.controllers,
                        v2: false,
                    });
                }
                if layout == Layout::Hybrid {
                    hierarchies.push(Hierarchy {
                        mount_point: Path::new(CGROUP_ROOT).join("unified"),
                        controllers: Vec::new(),
                        v2: true,
                    });
                }
            }
        }
        Self::new_at(layout, &hierarchies, cgroups_path, container_id)
    }

    /// Like `new`, with the hierarchies given instead of discovered: for hierarchies mounted
    /// somewhere else, and for tests against a cgroupfs-shaped tree of plain files.
    pub fn new_at(
        layout: Layout,
        hierarchies: &[Hierarchy],
        cgroups_path: Option<&str>,
        container_id: &str,
    ) -> Result<Manager> {
        let path = path::resolve(cgroups_path, container_id)?;
        let mut v1 = Vec::new();
        let mut v2_root = None;
        for h in hierarchies {
            if h.v2 {
                if v2_root.is_some() {
                    return Err(Error::Layout(
                        "more than one cgroup2 hierarchy given".into(),
                    ));
                }
                v2_root = Some(h.mount_point.clone());
            } else {
                v1.push(V1Dir {
                    controllers: h.controllers.clone(),
                    mount_point: h.mount_point.clone(),
                    dir: join_cgroup(&h.mount_point, &path),
                });
            }
        }
        match layout {
            Layout::V2 if v2_root.is_none() || !v1.is_empty() => {
                return Err(Error::Layout(
                    "a v2 layout needs exactly one cgroup2 hierarchy and no v1 ones".into(),
                ))
            }
            Layout::V1 | Layout::Hybrid if v1.is_empty() => {
                return Err(Error::Layout("no cgroup v1 hierarchy is mounted".into()))
            }
            Layout::Hybrid if v2_root.is_none() => {
                return Err(Error::Layout(
                    "a hybrid layout needs a cgroup2 hierarchy".into(),
                ))
            }
            _ => {}
        }
        let v2 = v2_root.as_deref().map(|r| join_cgroup(r, &path));
        Ok(Manager {
            layout,
            path,
            v1,
            v2_root,
            v2,
        })
    }

    /// The host layout this manager drives.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The absolute cgroupsPath this manager resolved to. Passing it back to `new` (with any
    /// container id) reaches the same directories from any process, whatever its own cgroup.
    pub fn resolved_path(&self) -> &str {
        &self.path
    }

    /// The container's directory in the v2 hierarchy (the unified mount on a hybrid host).
    pub fn v2_dir(&self) -> Option<&Path> {
        self.v2.as_deref()
    }

    /// The container's directory in the v1 hierarchy carrying `controller`.
    pub fn v1_dir(&self, controller: &str) -> Option<&Path> {
        self.v1
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
            .map(|h| h.dir.as_path())
    }

    pub(crate) fn v2_root(&self) -> Option<&Path> {
        self.v2_root.as_deref()
    }

    /// Every directory of this container's cgroup, v1 first.
    fn all_dirs(&self) -> impl Iterator<Item = &Path> {
        self.v1
            .iter()
            .map(|h| h.dir.as_path())
            .chain(self.v2.as_deref())
    }

    /// Creates the container's directory in every hierarchy. Idempotent.
    pub fn create(&self) -> Result<()> {
        self.create_dirs(true).map(|_| ())
    }

    /// Creates the directories and returns those that did not exist before. `seed_leaf`
    /// false skips copying the parent's cpus and mems into the container's own cpuset
    /// directory when the caller writes both anyway (new parents are always seeded).
    fn create_dirs(&self, seed_leaf: bool) -> Result<Vec<PathBuf>> {
        let mut made_all = Vec::new();
        let res = (|| {
            for h in &self.v1 {
                let made = fsutil::mkdir_all(&h.dir)?;
                let fresh = !made.is_empty();
                made_all.extend(made.iter().cloned());
                if fresh && h.controllers.iter().any(|c| c == "cpuset") {
                    let skip = (!seed_leaf).then_some(h.dir.as_path());
                    v1::cpuset::inherit_from_parents(&h.mount_point, &made, skip)?;
                }
            }
            if let (Some(root), Some(dir)) = (&self.v2_root, &self.v2) {
                let made = fsutil::mkdir_all(dir)?;
                let fresh = !made.is_empty();
                made_all.extend(made);
                if fresh && self.layout == Layout::V2 {
                    v2::controllers::enable_all(root, dir);
                }
            }
            Ok(())
        })();
        match res {
            Ok(()) => Ok(made_all),
            Err(e) => {
                remove::remove_created(&made_all);
                Err(e)
            }
        }
    }

    /// Applies the limits of `r` without reading anything first, for a cgroup `create` has
    /// just made. A failure leaves the earlier writes in place: `create_with_resources` is the
    /// form that cleans up, and `update` the one for a cgroup that already runs processes.
    pub fn apply(&self, r: &LinuxResources) -> Result<()> {
        crate::validate::resources(r)?;
        let mut w = Writer::new(false);
        self.apply_with(r, &mut w, false)
    }

    /// Creates the cgroup and applies `r`. If any limit fails, every directory this call
    /// created is removed again, so no cgroup with half its limits is left behind; a cgroup
    /// that already existed gets its previous values written back (as `update` does).
    pub fn create_with_resources(&self, r: &LinuxResources) -> Result<()> {
        crate::validate::resources(r)?;
        let sets_cpuset = r.cpu().as_ref().is_some_and(|c| {
            c.cpus().as_deref().is_some_and(|s| !s.is_empty())
                && c.mems().as_deref().is_some_and(|s| !s.is_empty())
        });
        let made = self.create_dirs(!sets_cpuset)?;
        let fresh = self.all_dirs().all(|a| made.iter().any(|d| d == a));
        let mut w = Writer::new(!fresh);
        match self.apply_with(r, &mut w, false) {
            Ok(()) => Ok(()),
            Err(e) => {
                w.rollback();
                remove::remove_created(&made);
                Err(e)
            }
        }
    }

    /// Changes the limits of a live cgroup. Each file written is read first; if a later write
    /// fails, the earlier ones get their previous values back, so the cgroup keeps either the
    /// old limits or the new ones. `memory.checkBeforeUpdate` makes a memory limit below the
    /// current usage an error before anything is written.
    pub fn update(&self, r: &LinuxResources) -> Result<()> {
        crate::validate::resources(r)?;
        let mut w = Writer::new(true);
        match self.apply_with(r, &mut w, true) {
            Ok(()) => Ok(()),
            Err(e) => {
                w.rollback();
                Err(e)
            }
        }
    }

    /// The writes of apply, create_with_resources and update; callers validate `r` first.
    fn apply_with(&self, r: &LinuxResources, w: &mut Writer, updating: bool) -> Result<()> {
        match self.layout {
            Layout::V2 => {
                let dir = self.v2_dir_or_err()?;
                v2::apply(dir, self.v2_root(), r, w, updating)
            }
            Layout::V1 | Layout::Hybrid => v1::apply(self, r, w, updating),
        }
    }

    fn v2_dir_or_err(&self) -> Result<&Path> {
        self.v2
            .as_deref()
            .ok_or_else(|| Error::Layout("no cgroup2 hierarchy".into()))
    }

    /// Moves `pid` into the container's cgroup in every hierarchy.
    pub fn add_process(&self, pid: i32) -> Result<()> {
        if pid <= 0 {
            return Err(Error::invalid("pid", format!("{pid} is not a process id")));
        }
        let v = pid.to_string();
        for d in self.all_dirs() {
            let p = d.join("cgroup.procs");
            fsutil::write_raw(&p, &v).map_err(|source| Error::Write {
                field: "cgroup.procs".into(),
                path: p,
                value: v.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// The directory whose cgroup.procs lists the container's processes.
    pub(crate) fn procs_dir(&self) -> Result<&Path> {
        if self.layout == Layout::V2 {
            return self.v2_dir_or_err();
        }
        for c in ["pids", "freezer", "memory", "cpu", "devices"] {
            if let Some(d) = self.v1_dir(c) {
                return Ok(d);
            }
        }
        self.v1
            .first()
            .map(|h| h.dir.as_path())
            .ok_or_else(|| Error::Layout("no cgroup hierarchy".into()))
    }

    /// Whether the container's cgroup exists (one stat of the directory `pids` reads).
    pub fn exists(&self) -> bool {
        self.procs_dir().is_ok_and(|d| d.is_dir())
    }

    /// Every process in the container's cgroup and its descendants.
    pub fn pids(&self) -> Result<Vec<i32>> {
        let mut out = Vec::new();
        collect_pids(self.procs_dir()?, &mut out)?;
        Ok(out)
    }

    /// Freezes every process and waits until the kernel reports the cgroup frozen.
    pub fn freeze(&self) -> Result<()> {
        freeze::set(self, true)
    }

    /// Thaws the cgroup and waits until the kernel reports it thawed.
    pub fn thaw(&self) -> Result<()> {
        freeze::set(self, false)
    }

    /// Whether the kernel reports the cgroup frozen.
    pub fn is_frozen(&self) -> Result<bool> {
        freeze::is_frozen(self)
    }

    /// Sends `signal` to every process in the cgroup. SIGKILL uses cgroup.kill where the
    /// kernel has it; otherwise the cgroup is frozen while the signals go out so no process
    /// can fork a child that escapes, then thawed (a v1-frozen task cannot die until
    /// thawed, so a paused container ends up thawed; cgroup.kill leaves the v2 freeze
    /// setting as it was). An absent cgroup has nothing to kill and is not an error.
    pub fn kill_all(&self, signal: i32) -> Result<()> {
        crate::kill::kill_all(self, signal)
    }

    /// Current usage figures, shaped as runc's `events --stats` data.
    pub fn stats(&self) -> Result<stats::Stats> {
        stats::collect(self)
    }

    /// Removes the container's directories (and any child cgroups the container made),
    /// retrying briefly while the kernel still holds an exiting process. Absent is fine.
    pub fn remove(&self) -> Result<()> {
        let mut first_err = None;
        for d in self.all_dirs() {
            if let Err(e) = remove::remove_tree(d) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Sources for mounting a "cgroup" filesystem inside the container.
    pub fn mount_sources(&self) -> Vec<CgroupMountSource> {
        let mut out: Vec<CgroupMountSource> = self
            .v1
            .iter()
            .map(|h| CgroupMountSource {
                name: h
                    .mount_point
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                host_dir: h.dir.clone(),
                v2: false,
            })
            .collect();
        if let Some(d) = &self.v2 {
            out.push(CgroupMountSource {
                name: if self.layout == Layout::V2 {
                    String::new()
                } else {
                    "unified".to_string()
                },
                host_dir: d.clone(),
                v2: true,
            });
        }
        out
    }
}

fn collect_pids(dir: &Path, out: &mut Vec<i32>) -> Result<()> {
    let p = dir.join("cgroup.procs");
    let s = match fs::read_to_string(&p) {
        Ok(s) => s,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(Error::Read { path: p, source }),
    };
    out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(Error::Dir {
                op: "readdir",
                path: dir.to_path_buf(),
                source,
            })
        }
    };
    for ent in rd.flatten() {
        if ent.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            collect_pids(&ent.path(), out)?;
        }
    }
    Ok(())
}
