//! Runtime options: containerd's runc `Options` message from CreateTaskRequest.options, or
//! KOS's own `io.kos.shim.v1.Options` (runc's fields plus what only kosd asks for), kept in
//! the bundle (options.json) so the `delete` action can clean up without the shim.

use std::path::{Path, PathBuf};

use protobuf::well_known_types::any::Any;
use protobuf::CodedInputStream;
use serde::{Deserialize, Serialize};

const OPTIONS_FILE: &str = "options.json";

/// KOS's options message: runc's field numbers, plus [`START_AT_CREATE_FIELD`].
pub const KOS_OPTIONS_TYPE: &str = "io.kos.shim.v1.Options";
/// Far above runc's numbers, so that runc adding fields never collides with it.
const START_AT_CREATE_TAG: u32 = 100 << 3;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct RuntimeOptions {
    pub binary_name: String,
    pub root: String,
    pub systemd_cgroup: bool,
    pub no_pivot_root: bool,
    pub no_new_keyring: bool,
    /// Owner of the stdio pipes handed to the process (a user-namespaced root must be able
    /// to reopen them through /proc/self/fd).
    pub io_uid: u32,
    pub io_gid: u32,
    /// The cgroup the shim itself goes into (`shim_cgroup`).
    pub shim_cgroup: String,
    /// Create runs the program at once (`run --detach`); Start only reports it. Only in
    /// KOS's own options message: containerd never asks for it.
    pub start_at_create: bool,
}

impl RuntimeOptions {
    /// From the request's options (runc's Options or KOS's; other types, such as the CRI
    /// plugin's runtimeoptions, carry nothing the shim uses).
    pub fn from_any(any: Option<&Any>) -> Result<RuntimeOptions, String> {
        let mut o = RuntimeOptions::default();
        if let Some(a) = any {
            let kos = a.type_url.ends_with(KOS_OPTIONS_TYPE);
            if kos || a.type_url.ends_with("runc.v1.Options") {
                decode(&a.value, &mut o, kos)
                    .map_err(|e| format!("runtime options ({}): {e}", a.type_url))?;
            }
        }
        Ok(o)
    }

    /// Fills in what the caller left empty.
    pub fn with_defaults(mut self, namespace: &str) -> RuntimeOptions {
        if self.binary_name.is_empty() {
            self.binary_name = default_binary();
        }
        if self.root.is_empty() {
            self.root = format!("/run/containerd/kos/{namespace}");
        }
        self
    }

    /// The stdio pipes' owner, when one is asked for.
    pub fn io_owner(&self) -> Option<(u32, u32)> {
        (self.io_uid != 0 || self.io_gid != 0).then_some((self.io_uid, self.io_gid))
    }

    pub fn save(&self, bundle: &Path) -> std::io::Result<()> {
        let data = serde_json::to_vec(self).map_err(std::io::Error::other)?;
        std::fs::write(bundle.join(OPTIONS_FILE), data)
    }

    pub fn load(bundle: &Path) -> Option<RuntimeOptions> {
        let data = crate::spec::read_bounded(&bundle.join(OPTIONS_FILE), 64 * 1024).ok()?;
        serde_json::from_slice(&data).ok()
    }
}

/// kosrun next to the shim's own executable when it is there, else `kosrun` from PATH.
fn default_binary() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("kosrun")))
        .filter(|p| p.is_file())
        .map(|p: PathBuf| p.to_string_lossy().into_owned())
        .unwrap_or_else(|| "kosrun".to_string())
}

/// runc's fields, and with `kos` KOS's own too (a runc message's unknown fields are skipped).
fn decode(bytes: &[u8], o: &mut RuntimeOptions, kos: bool) -> protobuf::Result<()> {
    let mut is = CodedInputStream::from_bytes(bytes);
    while let Some(tag) = is.read_raw_tag_or_eof()? {
        match tag {
            START_AT_CREATE_TAG if kos => o.start_at_create = is.read_bool()?,
            8 => o.no_pivot_root = is.read_bool()?,
            16 => o.no_new_keyring = is.read_bool()?,
            26 => o.shim_cgroup = is.read_string()?,
            32 => o.io_uid = is.read_uint32()?,
            40 => o.io_gid = is.read_uint32()?,
            50 => o.binary_name = is.read_string()?,
            58 => o.root = is.read_string()?,
            72 => o.systemd_cgroup = is.read_bool()?,
            _ => {
                let wire = protobuf::rt::WireType::new(tag & 7)
                    .ok_or_else(|| protobuf::Error::from(std::io::Error::other("bad wire type")))?;
                is.skip_field(wire)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use protobuf::CodedOutputStream;

    #[test]
    fn decodes_runc_options_and_skips_unknown_fields() {
        let mut buf = Vec::new();
        {
            let mut os = CodedOutputStream::vec(&mut buf);
            os.write_bool(1, true).expect("w");
            os.write_string(3, "/shim-cgroup").expect("w");
            os.write_uint32(4, 1000).expect("w");
            os.write_string(6, "/usr/sbin/runc").expect("w");
            os.write_string(7, "/run/x").expect("w");
            os.write_bool(9, true).expect("w");
            os.flush().expect("flush");
        }
        let mut any = Any::new();
        any.type_url = "containerd.runc.v1.Options".into();
        any.value = buf;
        let o = RuntimeOptions::from_any(Some(&any)).expect("decode");
        assert!(o.no_pivot_root && o.systemd_cgroup && !o.no_new_keyring);
        assert!(!o.start_at_create);
        assert_eq!((o.io_uid, o.io_gid), (1000, 0));
        assert_eq!(o.binary_name, "/usr/sbin/runc");
        assert_eq!(o.root, "/run/x");
        assert_eq!(o.shim_cgroup, "/shim-cgroup");
        let d = RuntimeOptions::default().with_defaults("k8s.io");
        assert_eq!(d.root, "/run/containerd/kos/k8s.io");
        assert!(d.binary_name.ends_with("kosrun"));
    }

    fn message(start_at_create: bool) -> Vec<u8> {
        let mut buf = Vec::new();
        {
            let mut os = CodedOutputStream::vec(&mut buf);
            os.write_string(7, "/run/y").expect("w");
            os.write_bool(100, start_at_create).expect("w");
            os.flush().expect("flush");
        }
        buf
    }

    #[test]
    fn start_at_create_only_from_the_kos_message() {
        let mut any = Any::new();
        any.type_url = KOS_OPTIONS_TYPE.into();
        any.value = message(true);
        let o = RuntimeOptions::from_any(Some(&any)).expect("decode");
        assert!(o.start_at_create);
        assert_eq!(o.root, "/run/y");
        any.value = message(false);
        assert!(
            !RuntimeOptions::from_any(Some(&any))
                .expect("decode")
                .start_at_create
        );
        // Field 100 in runc's message is not ours: skipped.
        any.type_url = "containerd.runc.v1.Options".into();
        any.value = message(true);
        let o = RuntimeOptions::from_any(Some(&any)).expect("decode");
        assert!(!o.start_at_create);
        assert_eq!(o.root, "/run/y");
    }
}
