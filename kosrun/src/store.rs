//! Per-container state under `--root`: one directory per container holding
//! `state.json` (written atomically) and, while created, the socket `start` connects to.
//! Commands serialise on an flock of the directory.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Hooks, LinuxNamespaceType, Spec};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::error::{Error, Result};
use crate::id;

pub const STATE_FILE: &str = "state.json";
/// Where a save writes before it exchanges the file with [`STATE_FILE`]; after the
/// exchange it holds the previous state.
const TMP_STATE_FILE: &str = ".state.json.tmp";
/// The socket the created init waits on for `start`. Containers created by kosrun before
/// the name changed have `exec.sock`; `start` falls back to it.
pub const START_SOCKET: &str = "start.sock";
pub const OLD_START_SOCKET: &str = "exec.sock";

/// Where a container is in its lifecycle, as the runtime spec names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        };
        f.write_str(s)
    }
}

/// What kosrun remembers about a container between commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Saved {
    pub id: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub pid: i32,
    /// Start time of `pid` in clock ticks since boot (field 22 of /proc/pid/stat):
    /// together with the pid it names one process, so a reused pid is never signalled.
    pub pid_start: u64,
    pub created: String,
    pub owner: String,
    /// True once `start` has released the init process.
    pub started: bool,
    /// The cgroup as resolved at create time (absolute), so later commands find the same one.
    pub cgroup_path: String,
    pub annotations: HashMap<String, String>,
    pub config: SavedConfig,
    /// False from the moment the id is taken until `create` has finished: a container
    /// whose `create` died half-way shows as creating (or stopped) and `delete --force`
    /// removes what was made. States written before this field existed were complete.
    #[serde(default = "yes")]
    pub create_done: bool,
    /// Device and inode of the init's executable before its exec (the runtime binary that
    /// cloned it). Once /proc/<pid>/exe names another file, the init has exec'd the user's
    /// program, whatever `started` says: the kernel's word, not a step that may not have
    /// been recorded.
    #[serde(default)]
    pub init_exe: Option<(u64, u64)>,
}

/// The config a container was created from, as `create` read it. Every save writes it
/// back verbatim and a load only finds where it ends: re-encoding, cloning and decoding
/// the whole spec at each step was a large part of `run`'s own CPU time. Commands parse
/// what they need of it ([`Saved::spec`], [`Saved::view`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SavedConfig(Box<RawValue>);

impl SavedConfig {
    /// From config.json's bytes, already parsed as a spec (so well-formed JSON).
    pub fn from_json(data: &[u8]) -> std::result::Result<SavedConfig, serde_json::Error> {
        serde_json::from_slice(data).map(SavedConfig)
    }

    pub fn from_spec(spec: &Spec) -> std::result::Result<SavedConfig, serde_json::Error> {
        serde_json::value::to_raw_value(spec).map(SavedConfig)
    }
}

/// The parts of the saved config that start and delete need (the version has its own,
/// smaller view: [`Saved::oci_version`]).
#[derive(Debug, Deserialize)]
pub struct ConfigView {
    #[serde(default)]
    pub hooks: Option<Hooks>,
    #[serde(default)]
    linux: Option<LinuxView>,
}

#[derive(Debug, Deserialize)]
struct LinuxView {
    #[serde(default)]
    namespaces: Option<Vec<NamespaceView>>,
}

#[derive(Debug, Deserialize)]
struct NamespaceView {
    #[serde(rename = "type")]
    typ: LinuxNamespaceType,
}

impl ConfigView {
    /// Whether the container has a mount namespace of its own (else its mounts were made
    /// in the host's, and delete undoes them).
    pub fn has_mount_ns(&self) -> bool {
        self.linux
            .as_ref()
            .and_then(|l| l.namespaces.as_ref())
            .is_some_and(|n| n.iter().any(|n| n.typ == LinuxNamespaceType::Mount))
    }
}

/// Only the version, for state documents (`list` makes one per container).
#[derive(Deserialize)]
struct VersionView {
    #[serde(rename = "ociVersion", default)]
    oci_version: String,
}

fn yes() -> bool {
    true
}

/// An open, locked container directory.
pub struct ContainerDir {
    pub id: String,
    pub path: PathBuf,
    lock: OwnedFd,
}

impl ContainerDir {
    /// Take the id: the directory appears under `root` already holding `initial` (made
    /// under a temporary name, then renamed without replacing), so whoever sees the id
    /// also sees its state, and of racing creates exactly one wins.
    pub fn create(root: &Path, id: &str, initial: &Saved) -> Result<ContainerDir> {
        id::validate(id)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(|e| Error::io(root, e))?;
        let path = root.join(id);
        // '~' is not allowed in ids: a temporary name never collides with a container.
        let tmp = root.join(format!("{TMP_PREFIX}{id}.{}", std::process::id()));
        match fs::DirBuilder::new().mode(0o700).create(&tmp) {
            Ok(()) => {}
            // Left by an earlier process of ours with this pid, killed before the rename.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let _ = fs::remove_dir_all(&tmp);
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&tmp)
                    .map_err(|e| Error::io(&tmp, e))?;
            }
            Err(e) => return Err(Error::io(&tmp, e)),
        }
        let made = (|| {
            let lock = lock_dir(&tmp)?;
            let staged = ContainerDir {
                id: id.to_string(),
                path: tmp.clone(),
                lock,
            };
            staged.write_state(initial, false)?;
            match rename_noreplace(&tmp, &path) {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) && abandoned(&path) => {
                    let _ = fs::remove_dir_all(&path);
                    rename_noreplace(&tmp, &path).map_err(|e| exists_or(id, &path, e))?;
                }
                Err(e) => return Err(exists_or(id, &path, e)),
            }
            Ok(ContainerDir {
                id: staged.id,
                path: path.clone(),
                lock: staged.lock,
            })
        })();
        if made.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        made
    }

    /// Open and lock an existing container's directory.
    pub fn open(root: &Path, id: &str) -> Result<ContainerDir> {
        id::validate(id)?;
        let path = root.join(id);
        let lock = lock_dir(&path).map_err(|e| match e {
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Error::NotFound(id.to_string())
            }
            e => e,
        })?;
        // The container may have been deleted while we waited for the lock.
        if !path.join(STATE_FILE).exists() {
            return Err(Error::NotFound(id.to_string()));
        }
        Ok(ContainerDir {
            id: id.to_string(),
            path,
            lock,
        })
    }

    pub fn load(&self) -> Result<Saved> {
        read_saved(&self.path, &self.id)
    }

    /// Replace state.json atomically: readers see the old or the new file, never a torn one.
    pub fn save(&self, saved: &Saved) -> Result<()> {
        self.write_state(saved, true)
    }

    fn write_state(&self, saved: &Saved, atomic: bool) -> Result<()> {
        let tmp = if atomic {
            self.path.join(TMP_STATE_FILE)
        } else {
            self.path.join(STATE_FILE)
        };
        let data = serde_json::to_vec(saved).map_err(|e| Error::BadState {
            id: self.id.clone(),
            reason: e.to_string(),
        })?;
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| Error::io(&tmp, e))?;
        f.write_all(&data).map_err(|e| Error::io(&tmp, e))?;
        drop(f);
        if !atomic {
            return Ok(());
        }
        // Exchanged, not renamed over: the previous state stays as the next save's
        // temporary file, so a save rewrites an existing inode instead of allocating one
        // (each new inode on a journal-less ext4 scans for recently deleted ones). A reader
        // that opened the old file just before and reads it only after the next save may
        // see it rewritten: `read_saved` reads again then.
        let dst = self.path.join(STATE_FILE);
        match crate::sys::renameat2(&tmp, &dst, libc::RENAME_EXCHANGE) {
            Ok(()) => Ok(()),
            // No state yet to exchange with, or a filesystem without exchange.
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EINVAL)) => {
                fs::rename(&tmp, &dst).map_err(|e| Error::io(&dst, e))
            }
            Err(e) => Err(Error::io(&dst, e)),
        }
    }

    /// Remove the directory and everything in it; the lock goes with it. The state goes
    /// first (as `remove_dir_all` would), so the id is free from that moment; a directory
    /// holding nothing else then needs one rmdir, not a listing.
    pub fn destroy(self) -> Result<()> {
        match fs::remove_file(self.path.join(STATE_FILE)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(&self.path, e)),
        }
        let _ = fs::remove_file(self.path.join(TMP_STATE_FILE));
        if fs::remove_dir(&self.path).is_ok() {
            return Ok(());
        }
        match fs::remove_dir_all(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&self.path, e)),
        }
    }

    pub fn lock_fd(&self) -> i32 {
        self.lock.as_raw_fd()
    }
}

/// Temporary directories of creates in progress start with this (not allowed in ids).
pub const TMP_PREFIX: &str = "~";

fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    crate::sys::renameat2(from, to, libc::RENAME_NOREPLACE)
}

fn exists_or(id: &str, path: &Path, e: std::io::Error) -> Error {
    if e.raw_os_error() == Some(libc::EEXIST) {
        Error::Exists(id.to_string())
    } else {
        Error::io(path, e)
    }
}

/// A container directory without state that nobody holds: left by a runtime that died
/// between making the directory and writing its state (kosrun before the staged create).
fn abandoned(path: &Path) -> bool {
    if path.join(STATE_FILE).exists() {
        return false;
    }
    let Ok(f) = fs::File::open(path) else {
        return false;
    };
    // SAFETY: flock on a descriptor we own; released when it closes.
    let free = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
    free && !path.join(STATE_FILE).exists()
}

/// Remove what creates of `id` killed before they took the id left in `root`: staged
/// directories nobody holds.
pub fn sweep_staged(root: &Path, id: &str) {
    let prefix = format!("{TMP_PREFIX}{id}.");
    let Ok(rd) = fs::read_dir(root) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().starts_with(&prefix) {
            continue;
        }
        let p = e.path();
        let Ok(f) = fs::File::open(&p) else {
            continue;
        };
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            let _ = fs::remove_dir_all(&p);
        }
    }
}

fn lock_dir(path: &Path) -> Result<OwnedFd> {
    let f = fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let fd = OwnedFd::from(f);
    // SAFETY: flock on a descriptor we own.
    let rc = unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX) };
    if rc != 0 {
        return Err(Error::io(path, std::io::Error::last_os_error()));
    }
    Ok(fd)
}

pub fn read_saved(dir: &Path, id: &str) -> Result<Saved> {
    let p = dir.join(STATE_FILE);
    let mut tries = 0;
    loop {
        let data = fs::read(&p).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::NotFound(id.to_string())
            } else {
                Error::io(&p, e)
            }
        })?;
        match serde_json::from_slice(&data) {
            Ok(saved) => return Ok(saved),
            // Read without the lock while a save rewrote the file we had opened (see
            // `write_state`): the name now holds a whole state.
            Err(_) if tries < 3 => tries += 1,
            Err(e) => {
                return Err(Error::BadState {
                    id: id.to_string(),
                    reason: e.to_string(),
                })
            }
        }
    }
}

/// Every container id under root, sorted.
pub fn list_ids(root: &Path) -> Result<Vec<String>> {
    let rd = match fs::read_dir(root) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(root, e)),
    };
    let mut ids: Vec<String> = rd
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| !n.starts_with(TMP_PREFIX) && root.join(n).join(STATE_FILE).exists())
        .collect();
    ids.sort();
    Ok(ids)
}

/// The start time (clock ticks since boot) of a live, non-zombie process.
pub fn process_start_time(pid: i32) -> Option<u64> {
    match stat_state_and_start(pid)? {
        ("Z" | "X", _) => None,
        (_, start) => Some(start),
    }
}

/// The start time of `pid` even once it has exited but is not yet reaped: what `create`
/// records for its init, which (started at once by `run`) may be done already.
pub fn process_start_time_unreaped(pid: i32) -> Option<u64> {
    stat_state_and_start(pid).map(|(_, start)| start)
}

/// The state letter and the start time (in clock ticks since boot) of `pid`.
fn stat_state_and_start(pid: i32) -> Option<(&'static str, u64)> {
    if pid <= 0 {
        return None;
    }
    let stat = kos_cgroups::read_small(Path::new(&format!("/proc/{pid}/stat"))).ok()?;
    // comm may contain spaces and parentheses: fields resume after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = match fields.next()? {
        "Z" => "Z",
        "X" => "X",
        _ => "",
    };
    // rest starts at field 3; starttime is field 22.
    Some((state, fields.nth(18)?.parse().ok()?))
}

impl Saved {
    /// The whole config.
    pub fn spec(&self) -> Result<Spec> {
        crate::config::parse_spec(self.config.0.get().as_bytes()).map_err(|e| Error::BadState {
            id: self.id.clone(),
            reason: format!("saved config: {e}"),
        })
    }

    /// The config's hooks and namespace types.
    pub fn view(&self) -> Result<ConfigView> {
        serde_json::from_str(self.config.0.get()).map_err(|e| Error::BadState {
            id: self.id.clone(),
            reason: format!("saved config: {e}"),
        })
    }

    /// The config's `ociVersion` (empty if the saved config has none).
    pub fn oci_version(&self) -> String {
        serde_json::from_str::<VersionView>(self.config.0.get())
            .map(|v| v.oci_version)
            .unwrap_or_default()
    }

    /// True while the process this state was made for is alive.
    pub fn init_alive(&self) -> bool {
        self.pid > 0 && process_start_time(self.pid) == Some(self.pid_start)
    }

    /// Whether the (live) init has exec'd the user's program, from the kernel: its
    /// executable is no longer the runtime binary that cloned it.
    pub fn init_execed(&self) -> bool {
        if self.started {
            return true;
        }
        let Some(before) = self.init_exe else {
            return false;
        };
        file_id(Path::new(&format!("/proc/{}/exe", self.pid))).is_some_and(|now| now != before)
    }
}

/// Device and inode of a file, following links (so of /proc/<pid>/exe's target).
pub fn file_id(p: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A state written before the config was kept verbatim (the spec re-encoded as an
    /// object) still loads, and the views read the same facts from either form.
    #[test]
    fn saved_config_reads_old_and_verbatim_states() {
        let config = r#"{"ociVersion":"1.3.0","x-future":{"a":[1,2]},
            "hooks":{"poststop":[{"path":"/bin/true"}]},
            "linux":{"namespaces":[{"type":"pid"},{"type":"mount"}]}}"#;
        let state = |c: &str| {
            format!(
                r#"{{"id":"c","bundle":"/b","rootfs":"/b/r","pid":1,"pid_start":2,
                "created":"","owner":"","started":true,"cgroup_path":"/c",
                "annotations":{{}},"config":{c}}}"#
            )
        };
        let verbatim: Saved = serde_json::from_str(&state(config)).expect("verbatim state");
        // Unknown fields of a newer spec stay in the state as given.
        let again = serde_json::to_string(&verbatim).expect("encode");
        assert!(again.contains(r#""x-future":{"a":[1,2]}"#), "{again}");
        let spec: Spec = serde_json::from_str(config).expect("spec");
        let old_json = serde_json::to_string(&spec).expect("encode spec");
        let old: Saved = serde_json::from_str(&state(&old_json)).expect("old state");
        for s in [&verbatim, &old] {
            assert_eq!(s.oci_version(), "1.3.0");
            let v = s.view().expect("view");
            assert!(v.has_mount_ns());
            let hooks = v.hooks.expect("hooks");
            assert_eq!(hooks.poststop().as_ref().map(Vec::len), Some(1));
            assert_eq!(s.spec().expect("spec").version(), "1.3.0");
        }
        let none: Saved = serde_json::from_str(&state(r#"{"ociVersion":"1.0.2"}"#)).expect("state");
        let v = none.view().expect("view");
        assert!(!v.has_mount_ns() && v.hooks.is_none());
        // A saved config that is not a spec is this container's bad state, not a panic.
        let bad: Saved = serde_json::from_str(&state(r#"{"process":7}"#)).expect("state");
        assert!(matches!(bad.spec(), Err(Error::BadState { .. })));
    }

    #[test]
    fn own_start_time_is_stable() {
        let me = std::process::id() as i32;
        let a = process_start_time(me);
        assert!(a.is_some());
        assert_eq!(a, process_start_time(me));
        assert_eq!(process_start_time(0), None);
        assert_eq!(process_start_time(-5), None);
    }

    #[test]
    fn create_twice_is_refused_and_destroy_cleans() {
        let root = std::env::temp_dir().join(format!("kosrun-state-test-{}", std::process::id()));
        let spec: Spec = serde_json::from_str(r#"{"ociVersion":"1.0.2"}"#).expect("spec");
        let spec = SavedConfig::from_spec(&spec).expect("encode");
        let s = Saved {
            id: "c1".into(),
            bundle: "/b".into(),
            rootfs: "/b/rootfs".into(),
            pid: 0,
            pid_start: 0,
            created: String::new(),
            owner: String::new(),
            started: false,
            cgroup_path: "/x".into(),
            annotations: HashMap::new(),
            config: spec,
            create_done: false,
            init_exe: None,
        };
        let d = ContainerDir::create(&root, "c1", &s).expect("create");
        assert!(!d.load().expect("state is there at once").create_done);
        assert!(matches!(
            ContainerDir::create(&root, "c1", &s),
            Err(Error::Exists(_))
        ));
        assert!(matches!(
            ContainerDir::create(&root, "../x", &s),
            Err(Error::InvalidId(_))
        ));
        assert_eq!(list_ids(&root).expect("list"), vec!["c1".to_string()]);
        d.destroy().expect("destroy");
        assert!(!root.join("c1").exists());
        // A directory without state that nobody holds is taken over.
        fs::create_dir(root.join("c2")).expect("mkdir");
        let d = ContainerDir::create(&root, "c2", &s).expect("abandoned dir taken over");
        d.destroy().expect("destroy");
        let left: Vec<_> = fs::read_dir(&root).expect("read").collect();
        assert!(left.is_empty(), "staging left {left:?}");
        // Saves exchange the state with the previous one's file: the latest is read back,
        // the directory holds the state and one spare file, and destroy takes both.
        let d = ContainerDir::create(&root, "c3", &s).expect("create");
        let mut next = s.clone();
        for pid in [11, 12, 13] {
            next.pid = pid;
            d.save(&next).expect("save");
            assert_eq!(d.load().expect("load").pid, pid);
        }
        let mut names: Vec<String> = fs::read_dir(root.join("c3"))
            .expect("read")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [TMP_STATE_FILE, STATE_FILE]);
        d.destroy().expect("destroy");
        assert!(!root.join("c3").exists());
        fs::remove_dir_all(&root).expect("cleanup");
    }
}
