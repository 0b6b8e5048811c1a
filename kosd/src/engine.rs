//! The engine: what every API handler shares (settings, stores, events).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use kos_image::{Registry, RegistryConfig, Store};

use crate::config::Config;
use crate::error::Result;
use crate::events::EventBus;
use crate::hostinfo::HostInfo;
use crate::state::StateDb;

pub struct Engine {
    pub config: Config,
    pub store: Arc<Store>,
    pub registry: Registry,
    db: Mutex<StateDb>,
    pub events: EventBus,
    pub nets: Arc<kos_network::Networks>,
    pub creds: crate::credentials::CredStore,
    pub rt: crate::containers::runtime::Runtime,
    pub execs: crate::containers::exec::Execs,
    /// Removed containers' files, deleted after the removal answered.
    pub trash: crate::containers::trash::Trash,
    /// Set at shutdown: exits are then not restarted by policy.
    pub stopping: std::sync::atomic::AtomicBool,
    pub host: HostInfo,
    /// Daemon id shown by /info (stable per data root).
    pub id: String,
    /// CDI specs and device hot-plug.
    pub devices: crate::devices::Devices,
    /// The unit manager, once started (never with `--units=false`).
    pub units: std::sync::OnceLock<Arc<crate::units::Units>>,
}

impl Engine {
    pub fn open(config: Config) -> Result<Arc<Engine>> {
        let data = &config.data_root;
        let store = Store::open(data.join("image"))?;
        let db = StateDb::open(&data.join("kosd.db"))?;
        let registry = Registry::new(RegistryConfig {
            insecure_registries: config.insecure_registries.clone(),
            ..Default::default()
        });
        let id = daemon_id(data)?;
        let devices = crate::devices::Devices::new(&config)?;
        let nets = crate::network::open(&config);
        let creds = crate::credentials::CredStore::open(&data.join("credentials"))
            .map_err(|err| crate::error::ApiError::internal("opening the credential store", err))?;
        Ok(Arc::new(Engine {
            config,
            store: Arc::new(store),
            registry,
            db: Mutex::new(db),
            events: EventBus::default(),
            nets,
            creds,
            rt: Default::default(),
            execs: Default::default(),
            trash: Default::default(),
            stopping: Default::default(),
            host: HostInfo::gather(),
            id,
            devices,
            units: Default::default(),
        }))
    }

    pub fn db(&self) -> MutexGuard<'_, StateDb> {
        // SQLite stays consistent even if a holder panicked.
        self.db.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn event(&self, kind: &'static str, action: &str, id: &str, attrs: &[(&str, &str)]) {
        let a: BTreeMap<String, String> = attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.events.publish(kind, action, id, a);
    }
}

/// A random 64-hex identifier (containers, execs, networks).
/// One getrandom(2) call (the kernel's urandom pool, without opening /dev/urandom: ids are
/// made on the create and start paths).
pub fn random_id() -> Result<String> {
    let mut b = [0u8; 32];
    let mut got = 0;
    while got < b.len() {
        let rest = &mut b[got..];
        // SAFETY: the kernel writes at most `rest.len()` bytes into `rest`.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(crate::error::ApiError::internal("getrandom", err));
        }
        got += n as usize;
    }
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn daemon_id(data: &std::path::Path) -> Result<String> {
    let p = data.join("engine-id");
    if let Ok(s) = std::fs::read_to_string(&p) {
        let s = s.trim();
        if s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(s.to_string());
        }
    }
    let id = random_id()?;
    std::fs::write(&p, &id)
        .map_err(|e| crate::error::ApiError::internal("writing engine id", e))?;
    Ok(id)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn random_ids_are_64_hex_and_differ() {
        let a = super::random_id().unwrap();
        let b = super::random_id().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(a, b);
    }
}
