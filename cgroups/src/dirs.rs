//! The directories of one container's cgroup, one per hierarchy: what the controllers,
//! freezing, killing and stats look up, below the `Manager` that owns them.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::layout::Layout;

/// A v1 hierarchy with the container's directory in it.
#[derive(Debug, Clone)]
pub(crate) struct V1Dir {
    pub controllers: Vec<String>,
    pub mount_point: PathBuf,
    pub dir: PathBuf,
}

#[derive(Debug, Clone)]
pub(crate) struct Dirs {
    pub layout: Layout,
    pub v1: Vec<V1Dir>,
    pub v2_root: Option<PathBuf>,
    pub v2: Option<PathBuf>,
}

impl Dirs {
    /// The container's directory in the v1 hierarchy carrying `controller`.
    pub fn v1(&self, controller: &str) -> Option<&Path> {
        self.v1
            .iter()
            .find(|h| h.controllers.iter().any(|c| c == controller))
            .map(|h| h.dir.as_path())
    }

    /// The container's directory in the v2 hierarchy (the unified mount on a hybrid host).
    pub fn v2(&self) -> Option<&Path> {
        self.v2.as_deref()
    }

    pub fn v2_root(&self) -> Option<&Path> {
        self.v2_root.as_deref()
    }

    pub fn v2_or_err(&self) -> Result<&Path> {
        self.v2()
            .ok_or_else(|| Error::Layout("no cgroup2 hierarchy".into()))
    }

    /// Every directory of this container's cgroup, v1 first.
    pub fn all(&self) -> impl Iterator<Item = &Path> {
        self.v1
            .iter()
            .map(|h| h.dir.as_path())
            .chain(self.v2.as_deref())
    }

    /// The directory whose cgroup.procs lists the container's processes.
    pub fn procs_dir(&self) -> Result<&Path> {
        if self.layout == Layout::V2 {
            return self.v2_or_err();
        }
        for c in ["pids", "freezer", "memory", "cpu", "devices"] {
            if let Some(d) = self.v1(c) {
                return Ok(d);
            }
        }
        self.v1
            .first()
            .map(|h| h.dir.as_path())
            .ok_or_else(|| Error::Layout("no cgroup hierarchy".into()))
    }

    /// Every process in the container's cgroup and its descendants.
    pub fn pids(&self) -> Result<Vec<i32>> {
        let mut out = Vec::new();
        collect_pids(self.procs_dir()?, &mut out)?;
        Ok(out)
    }
}

fn collect_pids(dir: &Path, out: &mut Vec<i32>) -> Result<()> {
    let p = dir.join("cgroup.procs");
    let s = match crate::fsutil::read_small(&p) {
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
