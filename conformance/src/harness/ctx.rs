//! What a test sees: the suite-wide runtime and rootfs, its own scratch directory, and
//! helpers that create containers whose cleanup is guaranteed by Drop guards.

use std::ffi::OsString;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;

use super::bundle::{default_config, Bundle};
use super::rootfs::BaseRootfs;
use super::runtime::{default_timeout, run_command, Output, RunOpts};

/// Shared by every test of one run.
pub struct Suite {
    pub runtime: PathBuf,
    /// The runtime's `--root`: a private state directory for this run.
    pub state_root: PathBuf,
    pub work: PathBuf,
    pub rootfs: BaseRootfs,
    pub counter: AtomicU64,
    /// Parsed `features` output, when the runtime has that command.
    pub features: Option<Value>,
}

impl Suite {
    pub fn next(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    /// Runs the runtime with `--root` set, outside any test (setup and final sweep).
    pub fn runtime_cmd(&self, args: &[&str], scratch: &Path, tag: &str) -> Result<Output> {
        let mut full: Vec<OsString> = vec!["--root".into(), self.state_root.clone().into()];
        full.extend(args.iter().map(OsString::from));
        run_command(
            &self.runtime,
            &full,
            &RunOpts {
                timeout: default_timeout(),
                cwd: None,
                env: vec![],
                fds: vec![],
                stdout: scratch.join(format!("{tag}.out")),
                stderr: scratch.join(format!("{tag}.err")),
            },
        )
    }
}

/// One test's context.
pub struct Ctx<'s> {
    pub suite: &'s Suite,
    /// Scratch directory of this test; removed by the runner afterwards.
    pub dir: PathBuf,
    log: Mutex<Vec<String>>,
    seq: AtomicU64,
    /// cgroupsPath of every bundle this test made, checked and cleaned after the test.
    cgroups: Mutex<Vec<String>>,
}

/// Extra knobs for one runtime invocation.
#[derive(Default)]
pub struct Call {
    pub timeout: Option<Duration>,
    pub cwd: Option<PathBuf>,
    pub env: Vec<(String, String)>,
    pub fds: Vec<(i32, i32)>,
    /// Run through `/bin/sh -c '... exec runtime "$@"'` with this prefix (for variables
    /// that need the runtime's own pid, such as LISTEN_PID).
    pub sh_prefix: Option<String>,
}

impl<'s> Ctx<'s> {
    pub fn new(suite: &'s Suite, dir: PathBuf) -> Self {
        Self {
            suite,
            dir,
            log: Mutex::new(Vec::new()),
            seq: AtomicU64::new(0),
            cgroups: Mutex::new(Vec::new()),
        }
    }

    pub fn log(&self, line: impl Into<String>) {
        if let Ok(mut l) = self.log.lock() {
            l.push(line.into());
        }
    }

    pub fn take_log(&self) -> Vec<String> {
        self.log
            .lock()
            .map(|mut l| std::mem::take(&mut *l))
            .unwrap_or_default()
    }

    fn seq(&self) -> u64 {
        self.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// A container id unique to this run.
    pub fn new_id(&self) -> String {
        format!("kosconf-{}-{}", std::process::id(), self.suite.next())
    }

    /// A fresh directory under this test's scratch dir, world-traversable so that a
    /// user-namespaced container can reach what it is given.
    pub fn mkdir(&self, tag: &str) -> Result<PathBuf> {
        let p = self.dir.join(format!("{tag}{}", self.seq()));
        fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755))?;
        Ok(p)
    }

    /// A bundle with a fresh rootfs and the default config running `args`.
    pub fn bundle(&self, args: &[&str]) -> Result<Bundle> {
        let dir = self.mkdir("b")?;
        self.suite.rootfs.populate(&dir.join("rootfs"))?;
        // The cgroup path is set per bundle so leftover checks know where to look; it is
        // named like the container ids of this run.
        let cg = format!("/kosconf-{}-cg{}", std::process::id(), self.suite.next());
        if let Ok(mut v) = self.cgroups.lock() {
            v.push(cg.clone());
        }
        Ok(Bundle::new(dir, default_config(args, &cg)))
    }

    /// Runs the runtime with `--root` and `args`.
    pub fn rt(&self, args: &[&str]) -> Result<Output> {
        self.rt_with(args, Call::default())
    }

    pub fn rt_with(&self, args: &[&str], call: Call) -> Result<Output> {
        let n = self.seq();
        let mut full: Vec<OsString> = vec!["--root".into(), self.suite.state_root.clone().into()];
        full.extend(args.iter().map(OsString::from));
        let (program, full) = match &call.sh_prefix {
            None => (self.suite.runtime.clone(), full),
            Some(prefix) => {
                let mut v: Vec<OsString> = vec![
                    "-c".into(),
                    format!("{prefix} exec \"$0\" \"$@\"").into(),
                    self.suite.runtime.clone().into(),
                ];
                v.extend(full);
                (PathBuf::from("/bin/sh"), v)
            }
        };
        let opts = RunOpts {
            timeout: call.timeout.unwrap_or_else(default_timeout),
            cwd: call.cwd,
            env: call.env,
            fds: call.fds,
            stdout: self.dir.join(format!("io{n}.out")),
            stderr: self.dir.join(format!("io{n}.err")),
        };
        let out = run_command(&program, &full, &opts);
        match &out {
            Ok(o) => self.log(format!(
                "{} [{:.2}s]",
                o.describe(),
                o.elapsed.as_secs_f64()
            )),
            Err(e) => self.log(format!("{program:?} {args:?}: {e:#}")),
        }
        out
    }

    /// `run --bundle B ID` in the foreground; the returned guard deletes the container.
    pub fn run(&self, b: &Bundle) -> Result<(Output, Container<'_>)> {
        self.run_with(b, &[], Call::default())
    }

    pub fn run_with(
        &self,
        b: &Bundle,
        extra: &[&str],
        call: Call,
    ) -> Result<(Output, Container<'_>)> {
        b.write_config()?;
        let id = self.new_id();
        let guard = Container::new(self, &id);
        let dir = b.dir.to_string_lossy().into_owned();
        let mut args = vec!["run", "--bundle", dir.as_str()];
        args.extend_from_slice(extra);
        args.push(&id);
        let out = self.rt_with(&args, call)?;
        Ok((out, guard))
    }

    /// Runs the bundle and returns stdout, failing unless it exited 0.
    pub fn run_ok(&self, b: &Bundle) -> Result<String> {
        let (out, _c) = self.run(b)?;
        out.expect_success()?;
        Ok(out.stdout)
    }

    /// `create --bundle B ID`; fails unless create succeeded. The container's stdout and
    /// stderr go to the files of this invocation.
    pub fn create(&self, b: &Bundle) -> Result<Container<'_>> {
        self.create_with(b, &[], Call::default())
    }

    pub fn create_with(&self, b: &Bundle, extra: &[&str], call: Call) -> Result<Container<'_>> {
        let (out, c) = self.try_create(b, extra, call)?;
        out.expect_success()?;
        Ok(c)
    }

    /// `create` that may fail; the guard is returned either way.
    pub fn try_create(
        &self,
        b: &Bundle,
        extra: &[&str],
        call: Call,
    ) -> Result<(Output, Container<'_>)> {
        b.write_config()?;
        let id = self.new_id();
        self.try_create_id(b, &id, extra, call)
    }

    pub fn try_create_id(
        &self,
        b: &Bundle,
        id: &str,
        extra: &[&str],
        call: Call,
    ) -> Result<(Output, Container<'_>)> {
        b.write_config()?;
        let mut c = Container::new(self, id);
        let dir = b.dir.to_string_lossy().into_owned();
        let mut args = vec!["create", "--bundle", dir.as_str()];
        args.extend_from_slice(extra);
        args.push(id);
        let out = self.rt_with(&args, call)?;
        c.out = Some(out.stdout_path.clone());
        Ok((out, c))
    }

    /// The namespace link of this (host) process, e.g. `mnt:[4026531841]`.
    pub fn host_ns(&self, kind: &str) -> Result<String> {
        let l = fs::read_link(format!("/proc/self/ns/{kind}"))
            .with_context(|| format!("reading /proc/self/ns/{kind}"))?;
        Ok(l.to_string_lossy().into_owned())
    }

    /// Whether the runtime's `features` lists `value` under the JSON array at `pointer`.
    /// None when the runtime has no usable `features` output.
    pub fn feature_has(&self, pointer: &str, value: &str) -> Option<bool> {
        let f = self.suite.features.as_ref()?;
        let arr = f.pointer(pointer)?.as_array()?;
        Some(arr.iter().any(|v| v == value))
    }

    /// Skips the test when the runtime's `features` say it implements a runtime-spec older
    /// than `version`, the release that introduced `what`. Runtimes without `features`
    /// are tested anyway.
    pub fn require_spec(&self, version: &str, what: &str) -> Result<()> {
        let max = self
            .suite
            .features
            .as_ref()
            .and_then(|f| f["ociVersionMax"].as_str().map(str::to_string));
        if let Some(max) = max {
            if version_triplet(&max) < version_triplet(version) {
                crate::skip!(
                    "{what} arrived in runtime-spec {version}; the runtime implements up to {max}"
                );
            }
        }
        Ok(())
    }

    /// Asserts the runtime kept nothing of a container that failed or was deleted: no state,
    /// no `list` entry, no cgroup directory and no process in its cgroup.
    pub fn assert_gone(&self, id: &str, b: &Bundle) -> Result<()> {
        let st = self.rt(&["state", id])?;
        if st.success() {
            bail!("`state {id}` still succeeds: {}", st.stdout.trim());
        }
        let list = self.rt(&["list", "-q"])?;
        if list.stdout.lines().any(|l| l.trim() == id) {
            bail!("`list -q` still shows {id}");
        }
        if let Some(cg) = b.config["linux"]["cgroupsPath"].as_str() {
            let cg = cg.trim_start_matches('/');
            for dir in cgroup_hierarchies() {
                let p = dir.join(cg);
                if p.exists() {
                    bail!("cgroup {} was left behind", p.display());
                }
            }
            let procs = processes_in_cgroup(cg);
            if !procs.is_empty() {
                bail!("processes {procs:?} are still in cgroup /{cg}");
            }
        }
        Ok(())
    }

    /// After the test and its guards are done: anything of its containers still on the host
    /// (processes in their cgroups, cgroup directories) was leaked by the runtime. It is
    /// removed here so one failure does not spill into the machine, and reported.
    pub fn sweep_cgroups(&self) -> Vec<String> {
        let cgs = self.cgroups.lock().map(|v| v.clone()).unwrap_or_default();
        let mut leaks = Vec::new();
        for cg in cgs {
            let cg = cg.trim_start_matches('/');
            let procs = processes_in_cgroup(cg);
            if !procs.is_empty() {
                leaks.push(format!("processes {procs:?} in cgroup /{cg}"));
                for p in &procs {
                    // SAFETY: kill(2) of pids found in this test's own cgroup.
                    unsafe {
                        libc::kill(*p, libc::SIGKILL);
                    }
                }
                let _ = self.wait_until(Duration::from_secs(5), "leaked processes to die", || {
                    Ok(processes_in_cgroup(cg).is_empty())
                });
            }
            for dir in cgroup_hierarchies() {
                let p = dir.join(cg);
                if p.exists() {
                    leaks.push(format!("cgroup {}", p.display()));
                    let _ = fs::remove_dir(&p);
                }
            }
        }
        leaks
    }

    /// Polls `cond` every 20ms until it holds or `limit` passes.
    pub fn wait_until(
        &self,
        limit: Duration,
        what: &str,
        mut cond: impl FnMut() -> Result<bool>,
    ) -> Result<()> {
        let start = Instant::now();
        loop {
            if cond()? {
                return Ok(());
            }
            if start.elapsed() > limit {
                bail!("timed out after {limit:?} waiting for {what}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A container of the runtime under test; Drop force-deletes it.
pub struct Container<'a> {
    ctx: &'a Ctx<'a>,
    pub id: String,
    /// stdout file of the `create` that made it (the container writes there too).
    pub out: Option<PathBuf>,
    deleted: bool,
}

impl<'a> Container<'a> {
    fn new(ctx: &'a Ctx<'a>, id: &str) -> Self {
        Self {
            ctx,
            id: id.to_string(),
            out: None,
            deleted: false,
        }
    }

    pub fn start(&self) -> Result<Output> {
        self.ctx.rt(&["start", &self.id])
    }

    pub fn start_ok(&self) -> Result<()> {
        self.start()?.expect_success()?;
        Ok(())
    }

    /// Parsed `state` output; fails if `state` fails.
    pub fn state(&self) -> Result<Value> {
        let out = self.ctx.rt(&["state", &self.id])?;
        out.expect_success()?;
        serde_json::from_str(&out.stdout).map_err(|e| {
            anyhow!(
                "`state {}` printed invalid JSON ({e}): {:?}",
                self.id,
                out.stdout
            )
        })
    }

    pub fn status(&self) -> Result<String> {
        let st = self.state()?;
        st["status"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| anyhow!("state has no string `status`: {st}"))
    }

    pub fn pid(&self) -> Result<i64> {
        let st = self.state()?;
        st["pid"]
            .as_i64()
            .filter(|p| *p > 0)
            .ok_or_else(|| anyhow!("state has no positive `pid`: {st}"))
    }

    pub fn wait_status(&self, want: &str, limit: Duration) -> Result<()> {
        let mut last = String::new();
        let r = self.ctx.wait_until(limit, &format!("status {want}"), || {
            last = self.status()?;
            Ok(last == want)
        });
        r.map_err(|e| anyhow!("{e} (last status {last:?})"))
    }

    pub fn kill(&self, sig: &str) -> Result<Output> {
        self.ctx.rt(&["kill", &self.id, sig])
    }

    /// What the container wrote to stdout so far.
    pub fn output(&self) -> String {
        self.out
            .as_deref()
            .map(super::runtime::read_lossy)
            .unwrap_or_default()
    }

    /// Waits until the container printed a line containing `marker`.
    pub fn wait_output(&self, marker: &str, limit: Duration) -> Result<()> {
        self.ctx
            .wait_until(limit, &format!("container output {marker:?}"), || {
                Ok(self.output().contains(marker))
            })
            .map_err(|e| anyhow!("{e}; output so far: {:?}", self.output()))
    }

    pub fn delete(&mut self) -> Result<Output> {
        let out = self.ctx.rt(&["delete", &self.id])?;
        if out.success() {
            self.deleted = true;
        }
        Ok(out)
    }

    pub fn delete_force(&mut self) -> Result<Output> {
        let out = self.ctx.rt(&["delete", "--force", &self.id])?;
        if out.success() {
            self.deleted = true;
        }
        Ok(out)
    }

    /// Marks the container as already gone (e.g. create failed), so Drop does not try.
    pub fn forget(&mut self) {
        self.deleted = true;
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        if !self.deleted {
            let _ = self.ctx.rt(&["delete", "--force", &self.id]);
        }
    }
}

/// Directories in which a container cgroup path would appear on this host.
pub fn cgroup_hierarchies() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        return vec![root.to_path_buf()];
    }
    let mut v = Vec::new();
    if let Ok(rd) = fs::read_dir(root) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() && !p.is_symlink() {
                v.push(p);
            }
        }
    }
    v
}

/// Host pids whose cgroup (any hierarchy) is `/cg` or below it.
pub fn processes_in_cgroup(cg: &str) -> Vec<i32> {
    let want = format!("/{cg}");
    let mut out = Vec::new();
    let Ok(rd) = fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        // A zombie holds nothing: it waits for its reaper (slow when that is pid 1), and
        // its cgroup shows as "<path> (deleted)" once the runtime removed the cgroup.
        if !process_alive(i64::from(pid)) {
            continue;
        }
        let Ok(text) = fs::read_to_string(e.path().join("cgroup")) else {
            continue;
        };
        let hit = text.lines().any(|l| {
            let path = l.splitn(3, ':').nth(2).unwrap_or("");
            path == want || path.starts_with(&format!("{want}/"))
        });
        if hit {
            out.push(pid);
        }
    }
    out
}

/// Whether a process exists and is not a zombie.
pub fn process_alive(pid: i64) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => {
            let state = s
                .rsplit_once(") ")
                .map(|(_, r)| r.chars().next())
                .unwrap_or(None);
            !matches!(state, Some('Z') | Some('X'))
        }
        Err(_) => false,
    }
}

/// (major, minor, patch) of a SemVer string; pre-release and build suffixes are ignored,
/// which is precise enough to gate features by spec release.
pub fn version_triplet(v: &str) -> (u64, u64, u64) {
    let core = v.split(['-', '+']).next().unwrap_or("");
    let mut it = core.split('.').map(|p| p.parse::<u64>().unwrap_or(0));
    (
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
        it.next().unwrap_or(0),
    )
}

#[cfg(test)]
mod tests {
    use super::version_triplet;

    #[test]
    fn version_triplet_orders_releases() {
        assert_eq!(version_triplet("1.0.2-dev"), (1, 0, 2));
        assert!(version_triplet("1.0.2-dev") < version_triplet("1.1.0"));
        assert!(version_triplet("1.2.1") >= version_triplet("1.2.0"));
        assert_eq!(version_triplet("1.1.0-rc.1+build"), (1, 1, 0));
        assert_eq!(version_triplet("garbage"), (0, 0, 0));
    }
}
