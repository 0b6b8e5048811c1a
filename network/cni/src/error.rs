//! The one error type of the CNI runner: each variant says which step failed and keeps the
//! cause.

use std::path::PathBuf;

/// An error a plugin reported in the CNI error format (`code`, `msg`, `details`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginError {
    pub code: u32,
    pub msg: String,
    pub details: String,
}

impl std::fmt::Display for PluginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "code {}: {}", self.code, self.msg)?;
        if !self.details.is_empty() {
            write!(f, " ({})", self.details)?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading CNI config {path}: {source}")]
    ReadConfig {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("CNI config {path}: {why}")]
    BadConfig { path: PathBuf, why: String },
    #[error("no CNI network config in {dir}")]
    NoConfig { dir: PathBuf },
    #[error("no CNI network named {name:?} in {dir}")]
    NoSuchNetwork { dir: PathBuf, name: String },
    #[error("invalid {what} {value:?}: {why}")]
    InvalidArgument {
        what: &'static str,
        value: String,
        why: &'static str,
    },
    #[error("CNI plugin {plugin:?} not found in {}", .path.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":"))]
    PluginNotFound { plugin: String, path: Vec<PathBuf> },
    #[error("running CNI plugin {plugin} {command}: {source}")]
    Exec {
        plugin: String,
        command: &'static str,
        source: std::io::Error,
    },
    #[error("CNI plugin {plugin} {command} did not finish within {secs}s; killed")]
    Timeout {
        plugin: String,
        command: &'static str,
        secs: u64,
    },
    #[error("CNI plugin {plugin} {command} failed: {error}")]
    Plugin {
        plugin: String,
        command: &'static str,
        error: PluginError,
    },
    #[error("CNI plugin {plugin} {command} failed with {status} and no CNI error{}", stderr_suffix(.stderr))]
    PluginCrashed {
        plugin: String,
        command: &'static str,
        status: String,
        stderr: String,
    },
    #[error("CNI plugin {plugin} {command} printed an invalid result: {why}")]
    BadOutput {
        plugin: String,
        command: &'static str,
        why: String,
    },
    #[error("CNI network {network}: {command} is not supported by config version {version}")]
    Unsupported {
        network: String,
        command: &'static str,
        version: String,
    },
    #[error(
        "CNI network {network}: no cached result for container {container_id} interface {ifname}"
    )]
    NotCached {
        network: String,
        container_id: String,
        ifname: String,
    },
    #[error("CNI result cache {path}: {step}: {source}")]
    Cache {
        path: PathBuf,
        step: &'static str,
        source: std::io::Error,
    },
    #[error("CNI ADD on network {network} failed: {add}; cleanup by DEL also failed: {del}")]
    AddRollback {
        network: String,
        add: Box<Error>,
        del: Box<Error>,
    },
    #[error("CNI GC on network {network}: {} error(s), first: {first}", .count)]
    Gc {
        network: String,
        count: usize,
        first: Box<Error>,
    },
}

fn stderr_suffix(stderr: &str) -> String {
    let line = stderr.trim();
    if line.is_empty() {
        String::new()
    } else {
        format!(": {line}")
    }
}

pub type Result<T> = std::result::Result<T, Error>;
