//! Running the shim binary's `start` and `delete` actions the way containerd 1.6 does.

use std::path::{Path, PathBuf};
use std::process::Stdio as ProcStdio;
use std::time::Duration;

use crate::client::ShimClient;
use crate::error::{Error, Result};

pub const SHIM_BINARY: &str = "containerd-shim-kos-v2";
/// The start action forks the shim and returns; it never takes long unless something hangs.
const ACTION_TIMEOUT: Duration = Duration::from_secs(30);
/// An address longer than this is not what a shim prints.
const MAX_ADDRESS: usize = 4096;

/// How shims are launched: the same for every container of one caller.
#[derive(Debug, Clone)]
pub struct LaunchOptions {
    /// The shim executable (`containerd-shim-kos-v2` from PATH by default).
    pub shim_binary: PathBuf,
    /// `-namespace`: keeps the shims of different callers apart.
    pub namespace: String,
    /// `-address`: the caller's socket (the shim derives its own socket path from it).
    pub address: PathBuf,
    /// `-publish-binary`: what the shim would run to publish events (unused by the kos shim
    /// when TTRPC_ADDRESS is set).
    pub publish_binary: PathBuf,
    /// `TTRPC_ADDRESS`: where the shim forwards events (`Events/Forward`); the shim
    /// tolerates nobody listening.
    pub ttrpc_address: PathBuf,
    pub debug: bool,
}

impl LaunchOptions {
    /// The shim beside `exe_dir`, else from PATH.
    pub fn find_shim(exe_dir: Option<&Path>) -> PathBuf {
        exe_dir
            .map(|d| d.join(SHIM_BINARY))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from(SHIM_BINARY))
    }

    fn command(&self, id: &str, bundle: &Path, action: &str) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.shim_binary);
        c.arg("-namespace")
            .arg(&self.namespace)
            .arg("-address")
            .arg(&self.address)
            .arg("-publish-binary")
            .arg(&self.publish_binary)
            .arg("-id")
            .arg(id);
        if self.debug {
            c.arg("-debug");
        }
        // The bundle as `-bundle`, not as the working directory containerd gives: a
        // command with no directory to change to is spawned with posix_spawn (a vfork-like
        // clone) instead of a fork copying the caller's page tables.
        c.arg("-bundle")
            .arg(bundle)
            .arg(action)
            .env("TTRPC_ADDRESS", &self.ttrpc_address)
            .stdin(ProcStdio::null())
            .stdout(ProcStdio::piped())
            .stderr(ProcStdio::piped())
            .kill_on_drop(true);
        c
    }

    async fn run(&self, id: &str, bundle: &Path, action: &'static str) -> Result<Vec<u8>> {
        let child = self.spawn(id, bundle, action)?;
        finish(child, action).await
    }

    fn spawn(
        &self,
        id: &str,
        bundle: &Path,
        action: &'static str,
    ) -> Result<tokio::process::Child> {
        self.command(id, bundle, action)
            .spawn()
            .map_err(|e| Error::Launch {
                step: action,
                message: format!("running {}: {e}", self.shim_binary.display()),
            })
    }

    /// Starts (or finds, when one is already serving this id) the shim for `id` whose
    /// bundle is `bundle`, and connects to it.
    pub async fn launch(&self, id: &str, bundle: &Path) -> Result<Launched> {
        self.begin_launch(id, bundle)?.await
    }

    /// As [`launch`](Self::launch), but the shim's process is started before this returns,
    /// not when the returned future is first polled: a caller that has other work before
    /// it needs the shim gets the shim's start-up (an exec and a fork, ~2 ms) done meanwhile
    /// even when its executor runs the future only after that work.
    pub fn begin_launch(
        &self,
        id: &str,
        bundle: &Path,
    ) -> Result<impl std::future::Future<Output = Result<Launched>> + Send + 'static> {
        let mut child = self.spawn(id, bundle, "start")?;
        let stdout = child.stdout.take();
        Ok(async move {
            // The start action prints the address last and exits: its output ends there,
            // which the pipe tells sooner than the exit's reaping does.
            let out = tokio::time::timeout(ACTION_TIMEOUT, read_bounded(stdout, MAX_ADDRESS))
                .await
                .unwrap_or_default();
            let address = String::from_utf8_lossy(&out).trim().to_string();
            if !address.starts_with("unix://") || address.len() > MAX_ADDRESS {
                // A failed start says why on stderr, with its status.
                finish(child, "start").await?;
                return Err(Error::Launch {
                    step: "start",
                    message: format!("{SHIM_BINARY} start printed no socket address: {address:?}"),
                });
            }
            // The socket listens before the address is printed: connect while the start
            // process is reaped, and keep the connection only if it succeeded.
            let (status, client) =
                tokio::join!(finish(child, "start"), ShimClient::connect(&address));
            status?;
            Ok(Launched {
                address,
                client: client?,
            })
        })
    }

    /// The `delete` action: cleans up after a shim that is gone (runs the runtime's
    /// delete for the bundle).
    pub async fn cleanup(&self, id: &str, bundle: &Path) -> Result<()> {
        self.run(id, bundle, "delete").await.map(|_| ())
    }
}

/// Waits for a shim action to end; its stdout, or the last line of its stderr as the error.
async fn finish(child: tokio::process::Child, action: &'static str) -> Result<Vec<u8>> {
    let out = tokio::time::timeout(ACTION_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| Error::Launch {
            step: action,
            message: format!("{SHIM_BINARY} {action} did not finish in {ACTION_TIMEOUT:?}"),
        })?
        .map_err(|e| Error::Io {
            step: "waiting for the shim action",
            source: e,
        })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err.lines().last().unwrap_or("").trim();
        return Err(Error::Launch {
            step: action,
            message: format!("{SHIM_BINARY} {action} failed ({}): {line}", out.status),
        });
    }
    Ok(out.stdout)
}

/// A child's output up to its end, or up to `limit` bytes and one more (then refused as
/// too long by the caller); what a read error leaves is returned as it is.
async fn read_bounded(out: Option<tokio::process::ChildStdout>, limit: usize) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    if let Some(out) = out {
        let _ = out.take(limit as u64 + 1).read_to_end(&mut buf).await;
    }
    buf
}

/// A running shim: the address it serves and a connected client.
#[derive(Clone)]
pub struct Launched {
    pub address: String,
    pub client: ShimClient,
}
