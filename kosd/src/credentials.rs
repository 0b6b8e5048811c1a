//! Registry logins stored encrypted: a key derived with Argon2id from a
//! per-store secret (random, 0600) and salt, each record sealed with
//! AES-256-GCM under a fresh random nonce, with the registry host as
//! associated data (a record moved to another host does not open).
//! Shared by kosd (`/auth`, pulls and pushes) and `docker-credential-kos`.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// The store file is a few records; anything bigger is not ours.
const MAX_STORE: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum CredError {
    #[error("credential store {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("credential store {0}: damaged: {1}")]
    Corrupt(PathBuf, String),
    #[error("credential store: deriving the key failed: {0}")]
    Kdf(String),
    #[error("credentials for {0} do not decrypt (wrong key or tampered record)")]
    Decrypt(String),
}

type Result<T> = std::result::Result<T, CredError>;

#[derive(Serialize, Deserialize, Default)]
struct File {
    salt: String,
    records: BTreeMap<String, Record>,
}

#[derive(Serialize, Deserialize)]
struct Record {
    nonce: String,
    data: String,
}

#[derive(Serialize, Deserialize)]
struct Plain {
    username: String,
    secret: String,
}

pub struct CredStore {
    dir: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CredError + '_ {
    move |source| CredError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn random(n: usize) -> Result<Vec<u8>> {
    let mut b = vec![0u8; n];
    let p = Path::new("/dev/urandom");
    std::fs::File::open(p)
        .and_then(|mut f| f.read_exact(&mut b))
        .map_err(io(p))?;
    Ok(b)
}

/// `https://127.0.0.1:5000/v1/` and `127.0.0.1:5000` are the same registry.
pub fn host_key(server: &str) -> String {
    let s = server.trim();
    let s = s
        .strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
        .unwrap_or(s);
    let s = s.split('/').next().unwrap_or(s);
    match s {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".into(),
        other => other.to_string(),
    }
}

impl CredStore {
    pub fn open(dir: &Path) -> Result<CredStore> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io(dir))?;
        Ok(CredStore {
            dir: dir.to_path_buf(),
        })
    }

    fn lock(&self) -> Result<std::fs::File> {
        let p = self.dir.join("lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&p)
            .map_err(io(&p))?;
        // SAFETY: valid descriptor; released when the file closes.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) } < 0 {
            return Err(CredError::Io {
                path: p,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(f)
    }

    fn secret(&self) -> Result<Vec<u8>> {
        let p = self.dir.join("secret");
        match std::fs::read(&p) {
            Ok(s) if s.len() == 32 => Ok(s),
            Ok(_) => Err(CredError::Corrupt(p, "secret is not 32 bytes".into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let s = random(32)?;
                let mut f = std::fs::OpenOptions::new()
                    .create_new(true)
                    .write(true)
                    .mode(0o600)
                    .open(&p)
                    .map_err(io(&p))?;
                std::io::Write::write_all(&mut f, &s).map_err(io(&p))?;
                Ok(s)
            }
            Err(e) => Err(CredError::Io { path: p, source: e }),
        }
    }

    fn load(&self) -> Result<File> {
        let p = self.dir.join("store.json");
        let f = match std::fs::File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let salt = hex(&random(16)?);
                return Ok(File {
                    salt,
                    records: BTreeMap::new(),
                });
            }
            Err(e) => return Err(CredError::Io { path: p, source: e }),
        };
        let mut s = String::new();
        f.take(MAX_STORE).read_to_string(&mut s).map_err(io(&p))?;
        serde_json::from_str(&s).map_err(|e| CredError::Corrupt(p, e.to_string()))
    }

    fn save(&self, f: &File) -> Result<()> {
        let p = self.dir.join("store.json");
        let tmp = self.dir.join("store.json.tmp");
        let data =
            serde_json::to_vec(f).map_err(|e| CredError::Corrupt(p.clone(), e.to_string()))?;
        let mut out = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        std::io::Write::write_all(&mut out, &data).map_err(io(&tmp))?;
        out.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &p).map_err(io(&p))
    }

    fn cipher(&self, f: &File) -> Result<Aes256Gcm> {
        let secret = self.secret()?;
        let salt = unhex(&f.salt)
            .ok_or_else(|| CredError::Corrupt(self.dir.join("store.json"), "bad salt".into()))?;
        let mut key = [0u8; 32];
        argon2::Argon2::default()
            .hash_password_into(&secret, &salt, &mut key)
            .map_err(|e| CredError::Kdf(e.to_string()))?;
        Aes256Gcm::new_from_slice(&key).map_err(|e| CredError::Kdf(e.to_string()))
    }

    pub fn store(&self, server: &str, username: &str, secret: &str) -> Result<()> {
        let _l = self.lock()?;
        let host = host_key(server);
        let mut f = self.load()?;
        let c = self.cipher(&f)?;
        let nonce = random(12)?;
        let plain = serde_json::to_vec(&Plain {
            username: username.into(),
            secret: secret.into(),
        })
        .map_err(|e| CredError::Kdf(e.to_string()))?;
        let data = c
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: host.as_bytes(),
                },
            )
            .map_err(|_| CredError::Decrypt(host.clone()))?;
        let b64 = base64::engine::general_purpose::STANDARD;
        f.records.insert(
            host,
            Record {
                nonce: b64.encode(nonce),
                data: b64.encode(data),
            },
        );
        self.save(&f)
    }

    /// (username, secret) for a registry.
    pub fn get(&self, server: &str) -> Result<Option<(String, String)>> {
        let _l = self.lock()?;
        let host = host_key(server);
        let f = self.load()?;
        let Some(r) = f.records.get(&host) else {
            return Ok(None);
        };
        let c = self.cipher(&f)?;
        let b64 = base64::engine::general_purpose::STANDARD;
        let (Ok(nonce), Ok(data)) = (b64.decode(&r.nonce), b64.decode(&r.data)) else {
            return Err(CredError::Decrypt(host));
        };
        if nonce.len() != 12 {
            return Err(CredError::Decrypt(host));
        }
        let plain = c
            .decrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: &data,
                    aad: host.as_bytes(),
                },
            )
            .map_err(|_| CredError::Decrypt(host.clone()))?;
        let p: Plain = serde_json::from_slice(&plain).map_err(|_| CredError::Decrypt(host))?;
        Ok(Some((p.username, p.secret)))
    }

    // kosd itself never erases or lists; docker-credential-kos does.
    #[allow(dead_code)]
    pub fn erase(&self, server: &str) -> Result<bool> {
        let _l = self.lock()?;
        let mut f = self.load()?;
        let had = f.records.remove(&host_key(server)).is_some();
        if had {
            self.save(&f)?;
        }
        Ok(had)
    }

    /// host -> username
    #[allow(dead_code)]
    pub fn list(&self) -> Result<BTreeMap<String, String>> {
        let hosts: Vec<String> = {
            let _l = self.lock()?;
            self.load()?.records.keys().cloned().collect()
        };
        let mut out = BTreeMap::new();
        for h in hosts {
            if let Some((u, _)) = self.get(&h)? {
                out.insert(h, u);
            }
        }
        Ok(out)
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_encrypted_and_bound_to_host() {
        let d = tempfile::tempdir().unwrap();
        let s = CredStore::open(d.path()).unwrap();
        s.store("https://127.0.0.1:5000/v1/", "kos", "s3cret-value")
            .unwrap();
        assert_eq!(
            s.get("127.0.0.1:5000").unwrap(),
            Some(("kos".into(), "s3cret-value".into()))
        );
        let raw = std::fs::read_to_string(d.path().join("store.json")).unwrap();
        assert!(
            !raw.contains("s3cret-value") && !raw.contains("\"kos\""),
            "{raw}"
        );
        // A record moved to another host does not decrypt.
        let moved = raw.replace("127.0.0.1:5000", "evil.example:443");
        std::fs::write(d.path().join("store.json"), moved).unwrap();
        assert!(matches!(
            s.get("evil.example:443"),
            Err(CredError::Decrypt(_))
        ));
        std::fs::write(d.path().join("store.json"), raw).unwrap();
        assert_eq!(
            s.list().unwrap().get("127.0.0.1:5000").map(String::as_str),
            Some("kos")
        );
        assert!(s.erase("127.0.0.1:5000").unwrap());
        assert_eq!(s.get("127.0.0.1:5000").unwrap(), None);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.path().join("secret"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(host_key("index.docker.io"), "docker.io");
    }
}
