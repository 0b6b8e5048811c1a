//! The server's shared state: records in memory and on disk, the services it drives, and
//! the container event stream.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use k8s_cri::v1 as cri;
use kos_network::netns::NetnsDir;
use kos_shim_client::{LaunchOptions, ShimClient};
use tokio::sync::broadcast;

use crate::config::CriConfig;
use crate::error::{Error, Result};
use crate::images::Images;
use crate::sandbox::network::PodNetwork;
use crate::state::{ContainerRecord, SandboxRecord, StateDir};

pub struct Inner {
    pub sandboxes: HashMap<String, SandboxRecord>,
    pub containers: HashMap<String, ContainerRecord>,
    /// Names being made (sandbox or container), so two concurrent calls cannot both win.
    pub reserved: std::collections::HashSet<String>,
}

pub struct Core {
    pub config: CriConfig,
    pub state: StateDir,
    pub images: Images,
    pub network: PodNetwork,
    pub netns: NetnsDir,
    pub launch: LaunchOptions,
    pub events: ContainerEvents,
    inner: Mutex<Inner>,
    shims: Mutex<HashMap<String, ShimClient>>,
    /// Write ends holding containers' stdin fifos open between attaches.
    stdin_keepers: Mutex<HashMap<String, std::os::fd::OwnedFd>>,
}

pub type Shared = Arc<Core>;

/// Events a subscriber that falls behind may miss before it skips ahead.
const EVENT_BUFFER: usize = 1024;

/// The container event stream (GetContainerEvents). Its buffer is made for the first
/// subscriber: tokio fills every slot of a broadcast buffer up front, and 1024 events of
/// about 470 bytes stayed resident in every kosd, kubelet or not. Events sent before any
/// subscriber are dropped either way (a receiver sees only what is sent after it
/// subscribed).
#[derive(Default)]
pub struct ContainerEvents {
    tx: OnceLock<broadcast::Sender<cri::ContainerEventResponse>>,
}

impl ContainerEvents {
    pub fn subscribe(&self) -> broadcast::Receiver<cri::ContainerEventResponse> {
        self.tx
            .get_or_init(|| broadcast::channel(EVENT_BUFFER).0)
            .subscribe()
    }

    pub fn send(&self, ev: cri::ContainerEventResponse) {
        if let Some(tx) = self.tx.get() {
            // No subscriber left is fine.
            let _ = tx.send(ev);
        }
    }
}

/// A random 64-hex-digit id, as kubelet expects of sandbox and container ids.
pub fn new_id() -> Result<String> {
    let mut b = [0u8; 32];
    let mut f =
        std::fs::File::open("/dev/urandom").map_err(|e| Error::io("opening", "/dev/urandom", e))?;
    std::io::Read::read_exact(&mut f, &mut b)
        .map_err(|e| Error::io("reading", "/dev/urandom", e))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

pub fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

impl Core {
    pub fn open(config: CriConfig, images: Images) -> Result<Core> {
        let state = StateDir::open(&config.data_dir)?;
        let mut inner = Inner {
            sandboxes: HashMap::new(),
            containers: HashMap::new(),
            reserved: Default::default(),
        };
        for s in state.sandboxes()? {
            inner.sandboxes.insert(s.id.clone(), s);
        }
        for c in state.containers()? {
            inner.containers.insert(c.id.clone(), c);
        }
        let network = PodNetwork {
            cni: kos_cni::runner::Cni::new(
                config.cni_bin_dirs.clone(),
                config.cni_cache_dir.clone(),
            ),
            conf_dir: config.cni_conf_dir.clone(),
        };
        let launch = LaunchOptions {
            shim_binary: config.shim_binary.clone(),
            namespace: "kos-cri".into(),
            address: config.exec_root.join("cri-shim.sock"),
            // The kos shim publishes over TTRPC_ADDRESS (nobody listens yet: exits are
            // seen through Wait), never through this binary.
            publish_binary: std::env::current_exe()
                .unwrap_or_else(|_| PathBuf::from("/proc/self/exe")),
            ttrpc_address: config.exec_root.join("cri-events.sock"),
            debug: false,
        };
        Ok(Core {
            netns: NetnsDir::new(config.exec_root.join("netns")),
            state,
            images,
            network,
            launch,
            events: ContainerEvents::default(),
            config,
            inner: Mutex::new(inner),
            shims: Mutex::new(HashMap::new()),
            stdin_keepers: Mutex::new(HashMap::new()),
        })
    }

    pub fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn sandbox(&self, id: &str) -> Result<SandboxRecord> {
        let g = self.inner();
        find(&g.sandboxes, id, "pod sandbox")
    }

    pub fn container(&self, id: &str) -> Result<ContainerRecord> {
        let g = self.inner();
        find(&g.containers, id, "container")
    }

    pub fn save_sandbox(&self, r: SandboxRecord) -> Result<()> {
        self.state.put_sandbox(&r)?;
        self.inner().sandboxes.insert(r.id.clone(), r);
        Ok(())
    }

    pub fn save_container(&self, r: ContainerRecord) -> Result<()> {
        self.state.put_container(&r)?;
        self.inner().containers.insert(r.id.clone(), r);
        Ok(())
    }

    /// Changes a container record under the lock and persists it.
    pub fn update_container(
        &self,
        id: &str,
        f: impl FnOnce(&mut ContainerRecord),
    ) -> Result<ContainerRecord> {
        let rec = {
            let mut g = self.inner();
            let r = g
                .containers
                .get_mut(id)
                .ok_or_else(|| Error::NotFound(format!("container {id} not found")))?;
            f(r);
            r.clone()
        };
        self.state.put_container(&rec)?;
        Ok(rec)
    }

    pub fn forget_container(&self, id: &str) -> Result<()> {
        self.state.delete_container(id)?;
        self.inner().containers.remove(id);
        self.shims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        self.stdin_keepers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        Ok(())
    }

    pub fn hold_stdin(&self, id: &str, fd: std::os::fd::OwnedFd) {
        self.stdin_keepers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), fd);
    }

    pub fn forget_sandbox(&self, id: &str) -> Result<()> {
        self.state.delete_sandbox(id)?;
        self.inner().sandboxes.remove(id);
        Ok(())
    }

    /// The shim client of a container, connecting to its recorded address when needed.
    pub async fn shim(&self, rec: &ContainerRecord) -> Result<ShimClient> {
        if let Some(c) = self
            .shims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&rec.id)
        {
            return Ok(c.clone());
        }
        let c = ShimClient::connect(&rec.shim_address)
            .await
            .map_err(|e| Error::shim(format!("connecting to the shim of {}", rec.id), e))?;
        self.shims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(rec.id.clone(), c.clone());
        Ok(c)
    }

    pub fn remember_shim(&self, id: &str, c: ShimClient) {
        self.shims
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), c);
    }

    pub fn emit(&self, ev: cri::ContainerEventResponse) {
        self.events.send(ev);
    }
}

/// Lookup by full id or unique prefix (as crictl and kubelet's tooling allow).
fn find<T: Clone>(map: &HashMap<String, T>, id: &str, what: &str) -> Result<T> {
    if id.is_empty() {
        return Err(Error::InvalidArgument(format!("{what} id is empty")));
    }
    if let Some(r) = map.get(id) {
        return Ok(r.clone());
    }
    let mut hits = map.iter().filter(|(k, _)| k.starts_with(id));
    match (hits.next(), hits.next()) {
        (Some((_, r)), None) => Ok(r.clone()),
        (Some(_), Some(_)) => Err(Error::InvalidArgument(format!(
            "{what} id prefix {id} is ambiguous"
        ))),
        _ => Err(Error::NotFound(format!("{what} {id} not found"))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn event_buffer_made_for_the_first_subscriber() {
        let ev = |id: &str| cri::ContainerEventResponse {
            container_id: id.into(),
            ..Default::default()
        };
        let events = ContainerEvents::default();
        events.send(ev("before"));
        assert!(events.tx.get().is_none());
        let mut rx = events.subscribe();
        let mut rx2 = events.subscribe();
        events.send(ev("after"));
        assert_eq!(rx.try_recv().unwrap().container_id, "after");
        assert_eq!(rx2.try_recv().unwrap().container_id, "after");
        assert!(rx.try_recv().is_err());
    }
}
