//! Pod sandboxes without a pause image: pinned namespaces, pod files, CNI, cgroup parent and
//! (for a shared PID namespace) a built-in holder process.

pub mod files;
pub mod holder;
pub mod namespaces;
pub mod netstats;
pub mod network;
pub mod userns;

use std::path::{Path, PathBuf};

use k8s_cri::v1 as cri;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use tracing::{info, warn};

use crate::core::{new_id, now_nanos, Core};
use crate::error::{Error, Result};
use crate::state::{SandboxRecord, SandboxState};

pub const RUNTIME_HANDLER: &str = "kos";

/// Steps to undo, newest first, unless disarmed: a failed RunPodSandbox leaves nothing.
struct Undo(Vec<Box<dyn FnOnce() + Send>>);

impl Undo {
    fn push(&mut self, f: impl FnOnce() + Send + 'static) {
        self.0.push(Box::new(f));
    }
    fn disarm(mut self) {
        self.0.clear();
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        while let Some(f) = self.0.pop() {
            f();
        }
    }
}

pub fn mode(
    ns: Option<&cri::NamespaceOption>,
    f: fn(&cri::NamespaceOption) -> i32,
) -> cri::NamespaceMode {
    ns.map(|n| cri::NamespaceMode::try_from(f(n)).unwrap_or(cri::NamespaceMode::Pod))
        .unwrap_or(cri::NamespaceMode::Pod)
}

/// The CRI value of a pod's state, as status and list answers report it.
pub fn state_value(s: SandboxState) -> cri::PodSandboxState {
    match s {
        SandboxState::Ready => cri::PodSandboxState::SandboxReady,
        SandboxState::NotReady => cri::PodSandboxState::SandboxNotready,
    }
}

fn ns_options(c: &cri::PodSandboxConfig) -> Option<&cri::NamespaceOption> {
    c.linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.as_ref())
}

/// Key of the kubelet's name for a pod: one sandbox per (name, namespace, uid, attempt).
pub fn sandbox_name(c: &cri::PodSandboxConfig) -> String {
    let m = c.metadata.clone().unwrap_or_default();
    format!("{}_{}_{}_{}", m.name, m.namespace, m.uid, m.attempt)
}

/// The cgroup directories of `path` in every hierarchy (v1 controllers and the v2 mount).
pub fn cgroup_dirs(path: &str) -> Vec<PathBuf> {
    let rel = path.trim_start_matches('/');
    let root = Path::new("/sys/fs/cgroup");
    if root.join("cgroup.controllers").exists() {
        // A pure v2 host: /sys/fs/cgroup is the one hierarchy.
        return vec![root.join(rel)];
    }
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_type().map(|t| t.is_dir()).unwrap_or(false))
        .map(|e| e.path().join(rel))
        .collect()
}

/// Removes a cgroup parent we made (and any empty child left), deepest first.
pub fn remove_cgroup(path: &str) {
    for d in cgroup_dirs(path) {
        let mut all = vec![];
        let mut stack = vec![d.clone()];
        while let Some(x) = stack.pop() {
            for e in std::fs::read_dir(&x).into_iter().flatten().flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    stack.push(e.path());
                }
            }
            all.push(x);
        }
        all.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
        for x in all {
            if let Err(e) = std::fs::remove_dir(&x) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    warn!(cgroup = %x.display(), error = %e, "cgroup not removed");
                }
            }
        }
    }
}

fn mount_shm(path: &Path) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|e| Error::io("creating", path, e))?;
    mount(
        Some("shm"),
        path,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=1777,size=65536k"),
    )
    .map_err(|e| Error::sys(format!("mounting the pod's shm at {}", path.display()), e))
}

fn unmount(path: &Path) {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => warn!(path = %path.display(), error = %e, "unmount failed"),
    }
}

impl Core {
    /// RunPodSandbox (blocking: namespaces, CNI plugins and files).
    pub fn run_sandbox(&self, config: cri::PodSandboxConfig, handler: &str) -> Result<String> {
        if !(handler.is_empty() || handler == RUNTIME_HANDLER) {
            return Err(Error::InvalidArgument(format!(
                "runtime handler {handler:?} is not known (this runtime serves {RUNTIME_HANDLER:?})"
            )));
        }
        let md = config
            .metadata
            .clone()
            .ok_or_else(|| Error::InvalidArgument("pod sandbox metadata is missing".into()))?;
        if md.name.is_empty() || md.namespace.is_empty() || md.uid.is_empty() {
            return Err(Error::InvalidArgument(
                "pod sandbox metadata needs name, namespace and uid".into(),
            ));
        }
        let key = sandbox_name(&config);
        {
            let mut g = self.inner();
            if let Some(s) = g
                .sandboxes
                .values()
                .find(|s| sandbox_name(&s.config) == key)
            {
                return Err(Error::AlreadyExists(format!(
                    "pod sandbox {key} already exists as {}",
                    s.id
                )));
            }
            if !g.reserved.insert(format!("sandbox:{key}")) {
                return Err(Error::AlreadyExists(format!(
                    "pod sandbox {key} is being made"
                )));
            }
        }
        let result = self.make_sandbox(&config, &md);
        self.inner().reserved.remove(&format!("sandbox:{key}"));
        result
    }

    fn make_sandbox(
        &self,
        config: &cri::PodSandboxConfig,
        md: &cri::PodSandboxMetadata,
    ) -> Result<String> {
        let ns = ns_options(config);
        let net_mode = mode(ns, |n| n.network);
        let ipc_mode = mode(ns, |n| n.ipc);
        let pid_mode = mode(ns, |n| n.pid);
        for (what, m) in [("network", net_mode), ("ipc", ipc_mode)] {
            if m == cri::NamespaceMode::Target || m == cri::NamespaceMode::Container {
                return Err(Error::InvalidArgument(format!(
                    "{what} namespace mode {m:?} is not valid for a pod"
                )));
            }
        }
        if pid_mode == cri::NamespaceMode::Target {
            return Err(Error::InvalidArgument(
                "pid namespace mode TARGET is not supported".into(),
            ));
        }
        let host_net = net_mode == cri::NamespaceMode::Node;
        let own_ipc = ipc_mode != cri::NamespaceMode::Node;
        let user_ranges = match ns.and_then(|n| n.userns_options.as_ref()) {
            None => None,
            Some(u) => match cri::NamespaceMode::try_from(u.mode) {
                Ok(cri::NamespaceMode::Node) => None,
                Ok(cri::NamespaceMode::Pod) => {
                    // As the kubelet: a pod in its own user namespace uses none of the
                    // host's namespaces.
                    if host_net || !own_ipc || pid_mode == cri::NamespaceMode::Node {
                        return Err(Error::InvalidArgument(
                            "a pod with its own user namespace cannot use the host's network, IPC or PID namespace".into(),
                        ));
                    }
                    Some(userns::ranges(u)?)
                }
                _ => {
                    return Err(Error::InvalidArgument(format!(
                        "user namespace mode {} is not valid for a pod (POD or NODE)",
                        u.mode
                    )))
                }
            },
        };
        let hostname = if host_net {
            nix::unistd::gethostname()
                .map(|h| h.to_string_lossy().into_owned())
                .unwrap_or_default()
        } else if config.hostname.is_empty() {
            md.name.clone()
        } else {
            config.hostname.clone()
        };
        if !host_net {
            files::check_hostname(&hostname)?;
        }
        let empty = Default::default();
        let sysctls = config.linux.as_ref().map(|l| &l.sysctls).unwrap_or(&empty);
        namespaces::check_sysctls(sysctls, !host_net, own_ipc)?;
        let resolv = files::resolv_conf(config.dns_config.as_ref())?;
        // Checked before anything is made.
        network::capability_args(config)?;

        let id = new_id()?;
        let mut undo = Undo(Vec::new());
        let dir = self.config.exec_root.join("pods").join(&id);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
        {
            let d = dir.clone();
            undo.push(move || {
                let _ = std::fs::remove_dir_all(&d);
            });
        }
        let user_pins = match user_ranges {
            Some((uid, gid)) => {
                let pins = userns::create(&dir, uid, gid, !host_net, own_ipc, !host_net)?;
                let all: Vec<PathBuf> = pins.all().cloned().collect();
                undo.push(move || {
                    for p in all {
                        let _ = namespaces::unpin(&p);
                    }
                });
                if let Some(uts) = &pins.uts {
                    namespaces::set_hostname(uts, &hostname)?;
                }
                Some(pins)
            }
            None => None,
        };
        let netns = if let Some(p) = &user_pins {
            p.net.clone()
        } else if host_net {
            None
        } else {
            let p = self.netns.create(&id).map_err(|e| Error::Network {
                step: "pinning the pod's network namespace".into(),
                source: e,
            })?;
            let nd = self.netns.clone();
            let i = id.clone();
            undo.push(move || {
                let _ = nd.remove(&i);
            });
            Some(p)
        };
        let (ipcns, utsns) = match &user_pins {
            Some(p) => (p.ipc.clone(), p.uts.clone()),
            None => namespaces::pin_ipc_uts(&dir, own_ipc, !host_net, &hostname)?,
        };
        let userns_pin = user_pins.map(|p| p.user);
        for p in ipcns.clone().into_iter().chain(utsns.clone()) {
            undo.push(move || {
                let _ = namespaces::unpin(&p);
            });
        }
        namespaces::apply_sysctls(sysctls, netns.as_deref(), ipcns.as_deref())?;
        if own_ipc {
            let shm = dir.join("shm");
            mount_shm(&shm)?;
            undo.push(move || unmount(&shm));
        }
        let given_parent = config
            .linux
            .as_ref()
            .map(|l| l.cgroup_parent.clone())
            .unwrap_or_default();
        let (cgroup_parent, own_cgroup) = if given_parent.is_empty() {
            (
                format!("/{}/{id}", self.config.cgroup_root.trim_matches('/')),
                true,
            )
        } else {
            (format!("/{}", given_parent.trim_start_matches('/')), false)
        };
        let (cni_network, ips) = match &netns {
            Some(p) => {
                let (name, ips) = self.network.attach(&id, p, config)?;
                let net = self.network.clone();
                let (i, n) = (id.clone(), name.clone());
                undo.push(move || {
                    let _ = net.detach(&i, &n);
                });
                (Some(name), ips)
            }
            None => (None, Vec::new()),
        };
        files::write(&dir, &hostname, host_net, &ips, &resolv)?;
        let holder = if pid_mode == cri::NamespaceMode::Pod {
            let pid = holder::start(userns_pin.as_deref())?;
            let st = holder::start_time(pid).ok_or_else(|| Error::Internal {
                step: "starting the pod's PID holder",
                message: format!("holder {pid} exited at once"),
            })?;
            let cg = holder::cgroup_path(&cgroup_parent, &id);
            {
                let (cg, parent, own) = (cg.clone(), cgroup_parent.clone(), own_cgroup);
                // The holder first: a cgroup that still holds it cannot go.
                undo.push(move || {
                    holder::stop((pid, st));
                    let _ = holder::remove_cgroup(&cg);
                    if own {
                        remove_cgroup(&parent);
                    }
                });
            }
            holder::place(pid, &cg)?;
            Some((pid, st))
        } else {
            None
        };
        let rec = SandboxRecord {
            id: id.clone(),
            config: config.clone(),
            state: SandboxState::Ready,
            created_at: now_nanos(),
            dir,
            netns,
            ipcns,
            utsns,
            userns: userns_pin,
            holder,
            cni_network,
            ips,
            cgroup_parent,
            own_cgroup,
        };
        self.save_sandbox(rec)?;
        undo.disarm();
        info!(id = %id, pod = %md.name, "pod sandbox ready");
        Ok(id)
    }

    /// Releases what a sandbox holds at stop: network (CNI DEL and the pin), the PID holder.
    pub fn release_sandbox_network(&self, rec: &mut SandboxRecord) -> Result<()> {
        if let Some(h) = rec.holder.take() {
            holder::stop(h);
        }
        if let Some(n) = rec.cni_network.clone() {
            self.network.detach(&rec.id, &n)?;
            rec.cni_network = None;
        }
        if let Some(p) = rec.netns.take() {
            if rec.userns.is_some() {
                // Made inside the pod's user namespace and pinned by us, not kos-network.
                return namespaces::unpin(&p);
            }
            self.netns.remove(&rec.id).map_err(|e| Error::Network {
                step: "removing the pod's network namespace pin".into(),
                source: e,
            })?;
        }
        Ok(())
    }

    /// Removes the pod's files, pins, shm and cgroup parent (after its containers are gone).
    pub fn destroy_sandbox(&self, rec: &SandboxRecord) -> Result<()> {
        for p in rec
            .ipcns
            .iter()
            .chain(rec.utsns.iter())
            .chain(rec.userns.iter())
        {
            namespaces::unpin(p)?;
        }
        unmount(&rec.dir.join("shm"));
        match std::fs::remove_dir_all(&rec.dir) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("removing", &rec.dir, e)),
        }
        // The holder (stopped with the network) had a cgroup of its own below the parent.
        holder::remove_cgroup(&holder::cgroup_path(&rec.cgroup_parent, &rec.id))?;
        if rec.own_cgroup {
            remove_cgroup(&rec.cgroup_parent);
        }
        Ok(())
    }

    pub fn sandbox_status(&self, rec: &SandboxRecord) -> cri::PodSandboxStatus {
        let ns = ns_options(&rec.config).cloned().unwrap_or_default();
        let mut ips = rec.ips.iter();
        cri::PodSandboxStatus {
            id: rec.id.clone(),
            metadata: rec.config.metadata.clone(),
            state: state_value(rec.state) as i32,
            created_at: rec.created_at,
            network: Some(cri::PodSandboxNetworkStatus {
                ip: ips.next().cloned().unwrap_or_default(),
                additional_ips: ips.map(|ip| cri::PodIp { ip: ip.clone() }).collect(),
            }),
            linux: Some(cri::LinuxPodSandboxStatus {
                namespaces: Some(cri::Namespace { options: Some(ns) }),
            }),
            labels: rec.config.labels.clone(),
            annotations: rec.config.annotations.clone(),
            runtime_handler: RUNTIME_HANDLER.into(),
        }
    }
}
