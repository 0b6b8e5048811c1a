//! `exec`: run a new process in a running container, with the container's
//! namespaces, cgroup, labels, seccomp filter and capabilities, and return its
//! exit status (or its pid, detached).

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::unistd::Pid;
use oci_spec::runtime::{Capability, LinuxCapabilities, Process, Spec};

use super::run::{forwarded, wait_forwarding};
use super::StateDoc;
use crate::container::{open_pidfd, status_of, Container};
use crate::error::{Error, Result, Stage};
use crate::linux::confine::Confinement;
use crate::linux::exec::{self as lx, ExecCtx, Namespaces, Supervisor};
use crate::linux::tty;
use crate::store::{Saved, Status};

/// The process as runc's exec flags describe it, on top of the container's own.
#[derive(Debug, Clone, Default)]
pub struct ProcessFlags {
    pub args: Vec<String>,
    /// KEY=VALUE, replacing the container's value of KEY.
    pub env: Vec<String>,
    /// "uid" or "uid:gid".
    pub user: Option<String>,
    pub additional_gids: Vec<u32>,
    pub cwd: Option<PathBuf>,
    /// Added to the bounding, effective and permitted sets (not inheritable).
    pub caps: Vec<String>,
    pub no_new_privs: bool,
    pub apparmor: Option<String>,
    pub process_label: Option<String>,
    pub tty: bool,
}

#[derive(Debug, Clone)]
pub enum ProcessSource {
    /// A complete process.json (what containerd and podman pass).
    File(PathBuf),
    Flags(ProcessFlags),
}

#[derive(Debug, Clone)]
pub struct ExecOpts {
    pub root: PathBuf,
    pub id: String,
    pub process: ProcessSource,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub preserve_fds: u32,
    /// The descriptors from 3 on that were open when kosrun started
    /// ([`crate::linux::process::fds::open_among`]); only these of the preserved range
    /// reach the process.
    pub inherited_fds: Vec<i32>,
    pub ignore_paused: bool,
    /// runc's `--cgroup [controller[,controller]:]path`: a sub-cgroup of the container's.
    pub cgroup: Vec<String>,
}

pub struct ExecOutcome {
    /// The process's pid as kosrun's namespace sees it.
    pub pid: i32,
    /// None when detached.
    pub exit_code: Option<i32>,
}

pub fn exec(opts: &ExecOpts) -> Result<ExecOutcome> {
    let saved = load_running(opts)?;
    let mut spec = saved.spec()?;
    let process = match &opts.process {
        ProcessSource::File(p) => read_process(p)?,
        ProcessSource::Flags(f) => from_flags(&spec, f)?,
    };
    check_process(&process)?;
    let subs = parse_cgroup_flags(&opts.cgroup)?;
    let terminal = process.terminal().unwrap_or(false);
    if opts.console_socket.is_some() && !(terminal && opts.detach) {
        // As runc: a socket that would never get a pty, or whose pty nobody would
        // relay, is a mistake of the caller's.
        return Err(Error::failed(
            Stage::Exec,
            "--console-socket needs both a terminal (-t or process.terminal) and --detach".into(),
        ));
    }
    let own_tty = terminal && opts.console_socket.is_none();
    if own_tty {
        if opts.detach {
            return Err(Error::failed(
                Stage::Exec,
                "a terminal was requested: --detach needs a --console-socket to hand it to".into(),
            ));
        }
        tty::require_caller_tty()?;
    }
    let mut process = process;
    if own_tty {
        // The program may ask for its size before kosrun relays anything.
        if let Some((rows, cols)) = tty::caller_size() {
            let b = oci_spec::runtime::BoxBuilder::default()
                .height(rows)
                .width(cols)
                .build()
                .map_err(|e| Error::failed(Stage::Exec, format!("console size: {e}")))?;
            process.set_console_size(Some(b));
        }
    }
    spec.set_process(Some(process));
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| Error::invalid_in(Stage::Exec, "process", "process is required".into()))?;
    let confinement = Confinement::prepare(&spec, &saved.rootfs)?;
    let init = open_pidfd(&saved)?;

    let (console, own_end) = if !terminal {
        (None, None)
    } else if let Some(p) = &opts.console_socket {
        let s = UnixStream::connect(p).map_err(|e| {
            Error::failed_by(
                Stage::Exec,
                format!("console socket {}: {e}", p.display()),
                e,
            )
        })?;
        (Some(OwnedFd::from(s)), None)
    } else {
        let (mine, theirs) = tty::socket_pair()?;
        (Some(theirs), Some(mine))
    };

    let set = forwarded();
    if !opts.detach {
        // Blocked before the fork so none is lost before the wait; the child
        // unblocks them before its exec.
        set.thread_block()
            .map_err(|e| Error::sys("block signals", e))?;
    }
    let preserved: Vec<i32> = opts
        .inherited_fds
        .iter()
        .copied()
        .filter(|fd| (*fd as i64) < 3 + opts.preserve_fds as i64)
        .collect();
    let ctx = ExecCtx {
        spec: &spec,
        process,
        rootfs: &saved.rootfs,
        id: &saved.id,
        init: &init,
        console_socket: console.as_ref(),
        preserved: &preserved,
        confinement: &confinement,
    };
    let sup = Joiner {
        saved: &saved,
        subs: &subs,
        confinement: &confinement,
        oom_score_adj: process.oom_score_adj(),
    };
    let pid = lx::spawn(&ctx, Namespaces::of(&spec), &sup)?;
    drop(console);
    let pid_t = Pid::from_raw(pid);
    let master = match own_end.as_ref().map(tty::recv_master).transpose() {
        Ok(m) => m,
        Err(e) => {
            kill_reap(pid_t);
            return Err(e);
        }
    };
    if let Some(pf) = &opts.pid_file {
        if let Err(e) = super::create::write_pid_file(pf, pid) {
            kill_reap(pid_t);
            return Err(e);
        }
    }
    if opts.detach {
        return Ok(ExecOutcome {
            pid,
            exit_code: None,
        });
    }
    let code = match master {
        Some(m) => tty::relay(m, pid_t, &set),
        None => wait_forwarding(pid_t, &set),
    };
    let code = match code {
        Ok(c) => c,
        Err(e) => {
            kill_reap(pid_t);
            return Err(e);
        }
    };
    Ok(ExecOutcome {
        pid,
        exit_code: Some(code),
    })
}

fn kill_reap(pid: Pid) {
    crate::sys::kill_and_reap(pid.as_raw());
}

/// The container's saved state, if it can take a new process. The directory
/// lock is not held past this: an exec may outlive any other command.
fn load_running(opts: &ExecOpts) -> Result<Saved> {
    let saved = Container::load(&opts.root, &opts.id)?.unlock();
    match status_of(&saved) {
        Status::Stopped => Err(Error::WrongState {
            id: opts.id.clone(),
            status: "stopped".into(),
            what: "cannot exec in a stopped container",
        }),
        // Its init has not finished setting up (or its create died half-way).
        Status::Creating => Err(Error::WrongState {
            id: opts.id.clone(),
            status: "creating".into(),
            what: "cannot exec in a container that is still being created",
        }),
        Status::Paused if !opts.ignore_paused => Err(Error::WrongState {
            id: opts.id.clone(),
            status: "paused".into(),
            what: "cannot exec in a paused container (resume it, or pass --ignore-paused to wait for the resume)",
        }),
        _ => Ok(saved),
    }
}

fn read_process(path: &Path) -> Result<Process> {
    let data = std::fs::read(path).map_err(|e| {
        Error::failed_by(
            Stage::Exec,
            format!("process file {}: {e}", path.display()),
            e,
        )
    })?;
    serde_json::from_slice(&data).map_err(|e| {
        Error::failed_by(
            Stage::Exec,
            format!("process file {}: {e}", path.display()),
            e,
        )
    })
}

fn check_process(p: &Process) -> Result<()> {
    if p.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::failed(
            Stage::Exec,
            "exec: no command given (process.args is empty)".into(),
        ));
    }
    if !p.cwd().is_absolute() {
        return Err(Error::failed(
            Stage::Exec,
            format!("exec: cwd {} must be an absolute path", p.cwd().display()),
        ));
    }
    crate::config::check_user(p.user(), "exec: user")
}

/// runc's exec flags over a copy of the container's process.
pub fn from_flags(config: &Spec, f: &ProcessFlags) -> Result<Process> {
    let mut p = config.process().clone().unwrap_or_default();
    p.set_args(Some(f.args.clone()));
    p.set_terminal(Some(f.tty));
    p.set_console_size(None);
    let mut env = p.env().clone().unwrap_or_default();
    for kv in &f.env {
        let key = kv.split('=').next().unwrap_or(kv);
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    p.set_env(Some(env));
    if let Some(cwd) = &f.cwd {
        p.set_cwd(cwd.clone());
    }
    if let Some(u) = &f.user {
        let (uid, gid) = parse_user(u)?;
        p.user_mut().set_uid(uid);
        if let Some(g) = gid {
            p.user_mut().set_gid(g);
        }
    }
    if !f.additional_gids.is_empty() {
        p.user_mut()
            .set_additional_gids(Some(f.additional_gids.clone()));
    }
    if !f.caps.is_empty() {
        let mut caps = p.capabilities().clone().unwrap_or_else(empty_caps);
        for name in &f.caps {
            let c = parse_cap(name)?;
            let add = |set: &Option<oci_spec::runtime::Capabilities>| {
                let mut set = set.clone().unwrap_or_default();
                set.insert(c);
                Some(set)
            };
            caps.set_bounding(add(caps.bounding()));
            caps.set_effective(add(caps.effective()));
            caps.set_permitted(add(caps.permitted()));
            // Never inheritable: a binary with inheritable file capabilities would
            // gain it (CVE-2022-29162). Ambient only where the config already uses
            // inheritable capabilities on purpose.
            if caps.inheritable().as_ref().is_some_and(|i| !i.is_empty()) {
                caps.set_inheritable(add(caps.inheritable()));
                caps.set_ambient(add(caps.ambient()));
            }
        }
        p.set_capabilities(Some(caps));
    }
    if f.no_new_privs {
        p.set_no_new_privileges(Some(true));
    }
    if let Some(a) = &f.apparmor {
        p.set_apparmor_profile(Some(a.clone()));
    }
    if let Some(l) = &f.process_label {
        p.set_selinux_label(Some(l.clone()));
    }
    Ok(p)
}

fn empty_caps() -> LinuxCapabilities {
    let mut c = LinuxCapabilities::default();
    c.set_bounding(None);
    c.set_effective(None);
    c.set_permitted(None);
    c.set_inheritable(None);
    c.set_ambient(None);
    c
}

/// "CAP_NET_ADMIN", "net_admin" and "NET_ADMIN" name the same capability.
pub fn parse_cap(name: &str) -> Result<Capability> {
    let up = name.to_ascii_uppercase();
    let full = if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    };
    serde_json::from_value(serde_json::Value::String(full))
        .map_err(|_| Error::failed(Stage::Exec, format!("--cap {name:?}: unknown capability")))
}

/// "uid" or "uid:gid", numeric as in the container's user namespace.
pub fn parse_user(s: &str) -> Result<(u32, Option<u32>)> {
    let bad = || {
        Error::failed(
            Stage::Exec,
            format!("--user {s:?}: expected uid[:gid] as numbers"),
        )
    };
    let (u, g) = match s.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (s, None),
    };
    let uid = u.parse().map_err(|_| bad())?;
    let gid = match g {
        Some(g) => Some(g.parse().map_err(|_| bad())?),
        None => None,
    };
    Ok((uid, gid))
}

/// A `--cgroup` value: the controllers it is for (all when empty) and the
/// sub-path under the container's cgroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubCgroup {
    pub controllers: Vec<String>,
    pub path: String,
}

pub fn parse_cgroup_flags(values: &[String]) -> Result<Vec<SubCgroup>> {
    let mut out = Vec::new();
    for v in values {
        let (ctrls, path) = match v.split_once(':') {
            Some((c, p)) => (
                c.split(',')
                    .filter(|c| !c.is_empty())
                    .map(str::to_string)
                    .collect(),
                p,
            ),
            None => (Vec::new(), v.as_str()),
        };
        // "/" is the container's own cgroup (runc and youki accept it); an empty path is
        // a mistake.
        let raw = path;
        let path = path.trim_matches('/');
        if raw.is_empty() || path.split('/').any(|c| c == ".." || c == ".") {
            return Err(Error::failed(Stage::Exec, format!(
                "--cgroup {v:?}: expected [controller[,controller]:]path, a path below the container's cgroup"
            )));
        }
        out.push(SubCgroup {
            controllers: ctrls,
            path: path.to_string(),
        });
    }
    Ok(out)
}

/// kosrun's side while the child sets up: the cgroup, the seccomp agent.
struct Joiner<'a> {
    saved: &'a Saved,
    subs: &'a [SubCgroup],
    confinement: &'a Confinement,
    oom_score_adj: Option<i32>,
}

impl Supervisor for Joiner<'_> {
    fn join_cgroup(&self, pid: i32) -> Result<()> {
        let cg = kos_cgroups::Manager::new(Some(&self.saved.cgroup_path), &self.saved.id)?;
        let all = self.subs.iter().find(|s| s.controllers.is_empty());
        match all {
            Some(s) if !s.path.is_empty() => {
                let sub = format!(
                    "{}/{}",
                    self.saved.cgroup_path.trim_end_matches('/'),
                    s.path
                );
                kos_cgroups::Manager::new(Some(&sub), &self.saved.id)?
                    .add_process(pid)
                    .map_err(|e| {
                        Error::failed_by(Stage::Exec, format!("--cgroup {}: {e}", s.path), e)
                    })?;
            }
            _ => cg.add_process(pid)?,
        }
        for s in self.subs.iter().filter(|s| !s.controllers.is_empty()) {
            for c in &s.controllers {
                cg.add_process_to(&s.path, Some(c), pid).map_err(|e| {
                    Error::failed_by(Stage::Exec, format!("--cgroup {c}:{}: {e}", s.path), e)
                })?;
            }
        }
        // From our side, as for the init: the child is non-dumpable, so in a user
        // namespace its own /proc files are not its to write.
        if let Some(adj) = self.oom_score_adj {
            crate::linux::spawn::write_oom_score_adj(pid, adj)?;
        }
        Ok(())
    }

    fn seccomp_listener(&self, fd: OwnedFd) -> Result<()> {
        let Some(prog) = self.confinement.seccomp.as_ref() else {
            return Err(Error::failed(
                Stage::Exec,
                "seccomp listener without a seccomp profile".into(),
            ));
        };
        let doc = StateDoc::new(self.saved, Status::Running);
        let state = serde_json::to_value(&doc)
            .and_then(serde_json::from_value)
            .map_err(|e| Error::failed_by(Stage::Exec, format!("state document: {e}"), e))?;
        prog.send_listener(std::os::fd::AsFd::as_fd(&fd), &state)
            .map_err(|e| Error::failed_by(Stage::Exec, format!("seccomp listener: {e}"), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users() {
        assert_eq!(parse_user("1000").ok(), Some((1000, None)));
        assert_eq!(parse_user("1:2").ok(), Some((1, Some(2))));
        assert!(parse_user("root").is_err());
        assert!(parse_user("1:x").is_err());
    }

    #[test]
    fn caps() {
        assert_eq!(parse_cap("CAP_NET_ADMIN").ok(), Some(Capability::NetAdmin));
        assert_eq!(parse_cap("net_admin").ok(), Some(Capability::NetAdmin));
        assert!(parse_cap("CAP_BOGUS").is_err());
    }

    #[test]
    fn cgroup_flags() {
        let v = parse_cgroup_flags(&["sub".into(), "cpu,memory:a/b".into()]).expect("parse");
        assert_eq!(v[0].controllers, Vec::<String>::new());
        assert_eq!(v[0].path, "sub");
        assert_eq!(v[1].controllers, vec!["cpu", "memory"]);
        assert_eq!(v[1].path, "a/b");
        assert!(parse_cgroup_flags(&["../x".into()]).is_err());
        assert!(parse_cgroup_flags(&["cpu:".into()]).is_err());
        let own = parse_cgroup_flags(&["/".into(), "cpu:/".into()]).expect("own cgroup");
        assert!(own.iter().all(|s| s.path.is_empty()));
    }

    #[test]
    fn flags_override_the_container_process() {
        let spec: Spec = serde_json::from_str(
            r#"{"ociVersion":"1.0.2","process":{"args":["sh"],"cwd":"/","env":["A=1","B=2"],
               "user":{"uid":0,"gid":0},"terminal":true}}"#,
        )
        .expect("spec");
        let f = ProcessFlags {
            args: vec!["id".into()],
            env: vec!["A=9".into(), "C=3".into()],
            user: Some("5:6".into()),
            cwd: Some("/tmp".into()),
            caps: vec!["NET_ADMIN".into()],
            no_new_privs: true,
            ..Default::default()
        };
        let p = from_flags(&spec, &f).expect("process");
        assert_eq!(p.args().as_deref(), Some(&["id".to_string()][..]));
        assert_eq!(
            p.env().as_deref(),
            Some(&["B=2".to_string(), "A=9".into(), "C=3".into()][..])
        );
        assert_eq!((p.user().uid(), p.user().gid()), (5, 6));
        assert_eq!(p.cwd(), Path::new("/tmp"));
        assert_eq!(p.terminal(), Some(false));
        assert_eq!(p.no_new_privileges(), Some(true));
        let caps = p.capabilities().clone().expect("caps");
        assert!(caps
            .bounding()
            .as_ref()
            .is_some_and(|b| b.contains(&Capability::NetAdmin)));
        assert!(caps
            .effective()
            .as_ref()
            .is_some_and(|b| b.contains(&Capability::NetAdmin)));
    }
}
