//! Running `nft`: found once on PATH, stdin fed, stderr captured, output bounded.

use std::io::Write;
use std::process::{Command, Stdio};

use crate::error::Error;

/// nft, found on PATH once per process (an exec through PATH tries every directory).
fn nft_program() -> &'static std::path::Path {
    static NFT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    NFT.get_or_init(|| {
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .map(|dir| dir.join("nft"))
            .find(|p| p.is_file())
            .unwrap_or_else(|| "nft".into())
    })
}

/// Output of `nft list table` is bounded by the number of elements KOS made; this bound only
/// protects against garbage.
pub(super) const MAX_LIST_OUTPUT: usize = 64 * 1024 * 1024;

/// Why an `nft` run failed.
#[derive(Debug)]
pub(super) enum NftFailure {
    /// nft ran and refused: its stderr.
    Refused(String),
    Other(String),
}

impl NftFailure {
    pub(super) fn is_missing(&self) -> bool {
        match self {
            NftFailure::Refused(stderr) => {
                stderr.contains("No such file or directory") || stderr.contains("does not exist")
            }
            NftFailure::Other(_) => false,
        }
    }

    pub(super) fn into_error(self, step: String) -> Error {
        let detail = match self {
            NftFailure::Refused(s) => s
                .lines()
                .filter(|l| !l.trim().is_empty())
                .collect::<Vec<_>>()
                .join("; "),
            NftFailure::Other(s) => s,
        };
        Error::Nft { step, detail }
    }
}

/// Runs `nft ARGS`, feeding `stdin`; returns stdout (bounded).
pub(super) fn run_nft(
    args: &[&str],
    stdin: Option<&[u8]>,
) -> std::result::Result<String, NftFailure> {
    let mut child = Command::new(nft_program())
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| NftFailure::Other(format!("run {}: {e}", nft_program().display())))?;
    if let (Some(data), Some(mut pipe)) = (stdin, child.stdin.take()) {
        pipe.write_all(data)
            .map_err(|e| NftFailure::Other(format!("write to nft: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| NftFailure::Other(format!("wait for nft: {e}")))?;
    if out.stdout.len() > MAX_LIST_OUTPUT {
        return Err(NftFailure::Other("nft output too large".to_string()));
    }
    if !out.status.success() {
        // nft reports some errors on stdout.
        let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stdout));
        if let Some(data) = stdin {
            tracing::debug!(payload = %String::from_utf8_lossy(data), "nft refused this");
        }
        return Err(NftFailure::Refused(text));
    }
    String::from_utf8(out.stdout).map_err(|e| NftFailure::Other(format!("nft output: {e}")))
}
