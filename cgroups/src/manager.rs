//! The cgroup of one container across every hierarchy of the host.

use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use crate::dirs::{Dirs, V1Dir};
use crate::error::{Error, Result};
use crate::fsutil::{self, Writer};
use crate::join::SelfJoin;
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

/// Where a container's "cgroup" filesystem mount inside the container comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMountSource {
    /// Directory name under the container's /sys/fs/cgroup: the host mount point's name for
    /// a v1 hierarchy ("cpu", "cpu,cpuacct", "systemd"), "unified" for the v2 mount of a
    /// hybrid host, and "" on a pure v2 host (mounted at /sys/fs/cgroup itself).
    pub name: String,
    /// The container's cgroup directory on the host.
    pub host_dir: PathBuf,
    /// The controllers a v1 hierarchy carries ("name=systemd" for a named one); empty for v2.
    pub controllers: Vec<String>,
    /// Whether this is a cgroup2 hierarchy.
    pub v2: bool,
}

/// The cgroup of one container: its directory in every hierarchy of the host.
///
/// A manager is rebuilt in a later process from the absolute path `resolved_path` returns and
/// the container id; nothing else is stored.
#[derive(Debug, Clone)]
pub struct Manager {
    path: String,
    dirs: Dirs,
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
            path,
            dirs: Dirs {
                layout,
                v1,
                v2_root,
                v2,
            },
        })
    }

    /// The host layout this manager drives.
    pub fn layout(&self) -> Layout {
        self.dirs.layout
    }

    /// The absolute cgroupsPath this manager resolved to. Passing it back to `new` (with any
    /// container id) reaches the same directories from any process, whatever its own cgroup.
    pub fn resolved_path(&self) -> &str {
        &self.path
    }

    /// The container's directory in each hierarchy, for the crate's own modules.
    pub(crate) fn dirs(&self) -> &Dirs {
        &self.dirs
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
            for h in &self.dirs.v1 {
                let made = fsutil::mkdir_all(&h.dir)?;
                let fresh = !made.is_empty();
                made_all.extend(made.iter().cloned());
                if fresh && h.controllers.iter().any(|c| c == "cpuset") {
                    let skip = (!seed_leaf).then_some(h.dir.as_path());
                    v1::cpuset::inherit_from_parents(&h.mount_point, &made, skip)?;
                }
            }
            if let (Some(root), Some(dir)) = (&self.dirs.v2_root, &self.dirs.v2) {
                let made = fsutil::mkdir_all(dir)?;
                let fresh = !made.is_empty();
                made_all.extend(made);
                if fresh && self.dirs.layout == Layout::V2 {
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
        self.create_rest_with_resources(&[], r)
    }

    /// [`Manager::create_with_resources`] after [`Manager::create_v2_dir`] made `premade`:
    /// those count as made by this call (so the limits are written without reading the old
    /// values first), but a failure leaves them to the caller, who has a process in them
    /// to stop before they can go ([`Manager::remove`]).
    pub fn create_rest_with_resources(
        &self,
        premade: &[PathBuf],
        r: &LinuxResources,
    ) -> Result<()> {
        crate::validate::resources(r)?;
        let sets_cpuset = r.cpu().as_ref().is_some_and(|c| {
            c.cpus().as_deref().is_some_and(|s| !s.is_empty())
                && c.mems().as_deref().is_some_and(|s| !s.is_empty())
        });
        let made = self.create_dirs(!sets_cpuset)?;
        let fresh = self
            .dirs
            .all()
            .all(|a| made.iter().chain(premade).any(|d| d == a));
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
        match self.dirs.layout {
            Layout::V2 => {
                let dir = self.dirs.v2_or_err()?;
                v2::apply(dir, self.dirs.v2_root(), r, w, updating)
            }
            Layout::V1 | Layout::Hybrid => v1::apply(&self.dirs, r, w, updating),
        }
    }

    /// Moves `pid` into the container's cgroup in every hierarchy.
    pub fn add_process(&self, pid: i32) -> Result<()> {
        self.add_process_to("", None, pid)
    }

    /// Descriptors through which a new process joins this cgroup by itself, without the
    /// global migration lock `add_process` takes (see [`SelfJoin`]). Open them after
    /// `create`, before the process is cloned.
    pub fn open_self_join(&self) -> Result<SelfJoin> {
        SelfJoin::open(&self.dirs, true, true)
    }

    /// Whether the v1 hierarchies can be made after the init is cloned: on a v1 or hybrid
    /// host the init may start in the v2 directory alone (made by [`Manager::create_v2_dir`])
    /// and join the v1 ones later, so the runtime makes them while the init builds its
    /// root. On a pure v2 host there is nothing to split.
    pub fn splits_v1(&self) -> bool {
        self.dirs.layout != Layout::V2 && !self.dirs.v1.is_empty()
    }

    /// Makes only the container's v2 directory (the unified mount's on a hybrid host), with
    /// no limits yet: for a process cloned into it (`CLONE_INTO_CGROUP`) before the rest
    /// is made by [`Manager::create_rest_with_resources`]. Returns the directories made.
    pub fn create_v2_dir(&self) -> Result<Vec<PathBuf>> {
        match &self.dirs.v2 {
            Some(d) => fsutil::mkdir_all(d),
            None => Ok(Vec::new()),
        }
    }

    /// The v2 half of [`Manager::open_self_join`]: the directory clone3 puts the init in.
    pub fn open_self_join_v2(&self) -> Result<SelfJoin> {
        SelfJoin::open(&self.dirs, false, true)
    }

    /// The v1 half of [`Manager::open_self_join`]: the `tasks` files, once they exist.
    pub fn open_self_join_v1(&self) -> Result<SelfJoin> {
        SelfJoin::open(&self.dirs, true, false)
    }

    /// Moves `pid` into the container's v2 directory only (the unified mount of a hybrid
    /// host, or the whole tree on a pure v2 host): for a process that joined the v1
    /// hierarchies by itself but could not be cloned into the v2 directory.
    pub fn add_process_v2(&self, pid: i32) -> Result<()> {
        match self.dirs.v2() {
            Some(d) => {
                let p = d.join("cgroup.procs");
                let v = pid.to_string();
                fsutil::write_raw(&p, &v).map_err(|source| Error::Write {
                    field: "cgroup.procs".into(),
                    path: p,
                    value: v,
                    source,
                })
            }
            None => Ok(()),
        }
    }

    /// Moves `pid` into `sub`, a cgroup below the container's own ("" or "/" is the
    /// container's cgroup itself), as `exec --cgroup [CONTROLLER:]PATH` asks: in every
    /// hierarchy, or with `controller` only in the v1 hierarchy that carries it.
    pub fn add_process_to(&self, sub: &str, controller: Option<&str>, pid: i32) -> Result<()> {
        if pid <= 0 {
            return Err(Error::invalid("pid", format!("{pid} is not a process id")));
        }
        let rel = Path::new(sub.trim_start_matches('/'));
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(Error::Path {
                path: sub.to_string(),
                reason: "a sub-cgroup must stay below the container's cgroup".into(),
            });
        }
        let v = pid.to_string();
        let write = |d: &Path| {
            let p = d.join(rel).join("cgroup.procs");
            fsutil::write_raw(&p, &v).map_err(|source| Error::Write {
                field: "cgroup.procs".into(),
                path: p,
                value: v.clone(),
                source,
            })
        };
        match controller {
            None => self.dirs.all().try_for_each(write),
            Some(c) => match self.dirs.v1(c) {
                Some(d) => write(d),
                None => Err(Error::unsupported(
                    format!("cgroup controller {c}"),
                    "no cgroup v1 hierarchy carries it",
                )),
            },
        }
    }

    /// Whether the container's cgroup exists (one stat of the directory `pids` reads).
    pub fn exists(&self) -> bool {
        self.dirs.procs_dir().is_ok_and(|d| d.is_dir())
    }

    /// Every process in the container's cgroup and its descendants.
    pub fn pids(&self) -> Result<Vec<i32>> {
        self.dirs.pids()
    }

    /// Freezes every process and waits until the kernel reports the cgroup frozen.
    pub fn freeze(&self) -> Result<()> {
        freeze::set(&self.dirs, true)
    }

    /// Thaws the cgroup and waits until the kernel reports it thawed.
    pub fn thaw(&self) -> Result<()> {
        freeze::set(&self.dirs, false)
    }

    /// Whether the kernel reports the cgroup frozen.
    pub fn is_frozen(&self) -> Result<bool> {
        freeze::is_frozen(&self.dirs)
    }

    /// Sends `signal` to every process in the cgroup. SIGKILL uses cgroup.kill where the
    /// kernel has it; otherwise the cgroup is frozen while the signals go out so no process
    /// can fork a child that escapes, then thawed (a v1-frozen task cannot die until
    /// thawed, so a paused container ends up thawed; cgroup.kill leaves the v2 freeze
    /// setting as it was). An absent cgroup has nothing to kill and is not an error.
    pub fn kill_all(&self, signal: i32) -> Result<()> {
        crate::kill::kill_all(&self.dirs, signal)
    }

    /// Current usage figures, shaped as runc's `events --stats` data.
    pub fn stats(&self) -> Result<stats::Stats> {
        stats::collect(&self.dirs)
    }

    /// Removes the container's directories (and any child cgroups the container made),
    /// retrying briefly while the kernel still holds an exiting process. Absent is fine.
    pub fn remove(&self) -> Result<()> {
        let mut first_err = None;
        for d in self.dirs.all() {
            if let Err(e) = remove::remove_tree(d) {
                first_err.get_or_insert(e);
            }
        }
        first_err.map_or(Ok(()), Err)
    }

    /// Sources for mounting a "cgroup" filesystem inside the container.
    pub fn mount_sources(&self) -> Vec<CgroupMountSource> {
        let mut out: Vec<CgroupMountSource> = self
            .dirs
            .v1
            .iter()
            .map(|h| CgroupMountSource {
                name: h
                    .mount_point
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                host_dir: h.dir.clone(),
                controllers: h.controllers.clone(),
                v2: false,
            })
            .collect();
        if let Some(d) = &self.dirs.v2 {
            out.push(CgroupMountSource {
                name: if self.dirs.layout == Layout::V2 {
                    String::new()
                } else {
                    "unified".to_string()
                },
                host_dir: d.clone(),
                controllers: Vec::new(),
                v2: true,
            });
        }
        out
    }
}
