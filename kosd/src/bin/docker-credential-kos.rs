//! `docker-credential-kos`: the docker CLI's credential-helper protocol
//! (store, get, erase, list, version) over KOS's encrypted credential store,
//! so the CLI keeps its logins in the same store as kosd.
//!
//! The store is `$KOS_CREDENTIALS_DIR`, else `/var/lib/kos/credentials`.

#[path = "../credentials.rs"]
mod credentials;

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use credentials::CredStore;

/// Requests are a URL or a small JSON object.
const MAX_INPUT: u64 = 64 << 10;

#[derive(serde::Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Creds {
    #[serde(rename = "ServerURL")]
    server_url: Option<String>,
    username: String,
    secret: String,
}

fn input() -> Result<String, String> {
    let mut s = String::new();
    std::io::stdin()
        .take(MAX_INPUT)
        .read_to_string(&mut s)
        .map_err(|e| format!("reading stdin: {e}"))?;
    Ok(s.trim().to_string())
}

fn run(cmd: &str) -> Result<String, String> {
    let dir = std::env::var_os("KOS_CREDENTIALS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/kos/credentials"));
    let store = CredStore::open(&dir).map_err(|e| e.to_string())?;
    match cmd {
        "store" => {
            let c: Creds = serde_json::from_str(&input()?)
                .map_err(|e| format!("invalid credentials JSON: {e}"))?;
            let url = c
                .server_url
                .filter(|u| !u.is_empty())
                .ok_or("no ServerURL given")?;
            store
                .store(&url, &c.username, &c.secret)
                .map_err(|e| e.to_string())?;
            Ok(String::new())
        }
        "get" => {
            let url = input()?;
            match store.get(&url).map_err(|e| e.to_string())? {
                Some((u, s)) => Ok(
                    serde_json::json!({"ServerURL": url, "Username": u, "Secret": s}).to_string(),
                ),
                None => Err("credentials not found in native keychain".into()),
            }
        }
        "erase" => {
            let url = input()?;
            if store.erase(&url).map_err(|e| e.to_string())? {
                Ok(String::new())
            } else {
                Err("credentials not found in native keychain".into())
            }
        }
        "list" => Ok(
            serde_json::to_string(&store.list().map_err(|e| e.to_string())?)
                .map_err(|e| e.to_string())?,
        ),
        "version" => Ok(format!(
            "docker-credential-kos {}",
            env!("CARGO_PKG_VERSION")
        )),
        other => Err(format!(
            "unknown command {other:?}: expected store, get, erase, list or version"
        )),
    }
}

fn main() -> ExitCode {
    let cmd = std::env::args().nth(1).unwrap_or_default();
    match run(&cmd) {
        Ok(out) => {
            if !out.is_empty() {
                let _ = writeln!(std::io::stdout(), "{out}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            // The protocol reads errors from stdout.
            let _ = writeln!(std::io::stdout(), "{e}");
            ExitCode::from(1)
        }
    }
}
