//! containerd's runc `Options` message, as the shim reads it from CreateTaskRequest.options,
//! and KOS's own `io.kos.shim.v1.Options` (the same fields plus `start_at_create`).

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::CodedOutputStream;

use crate::error::{Error, Result};

/// The fields of `containerd.runc.v1.Options` the kos shim honours.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeOptions {
    /// Runtime binary (`BinaryName`, field 6); the shim's default when empty.
    pub binary_name: String,
    /// The runtime's `--root` (`Root`, field 7).
    pub root: String,
    /// `SystemdCgroup` (field 9).
    pub systemd_cgroup: bool,
}

/// KOS's options message type; runc's field numbers, and `start_at_create` as field 100.
pub const KOS_OPTIONS_TYPE: &str = "io.kos.shim.v1.Options";
const RUNC_OPTIONS_TYPE: &str = "containerd.runc.v1.Options";

impl RuntimeOptions {
    /// containerd's runc `Options` message: the shim behaves as under containerd.
    pub fn to_any(&self) -> Result<Any> {
        self.encode(RUNC_OPTIONS_TYPE, None)
    }

    /// KOS's options message, which only the kos shim understands. With `start_at_create`,
    /// Create runs the program at once (the runtime's `run --detach`, one exec instead of
    /// `create` then `start`) while the task API stays as it is: the task reads CREATED, the
    /// TaskStart event and an exit's TaskExit and Wait answer wait for Start, and Start
    /// returns the pid with nothing left to run. Errors the program's start would give
    /// (executable not found) come from Create instead.
    pub fn to_kos_any(&self, start_at_create: bool) -> Result<Any> {
        self.encode(KOS_OPTIONS_TYPE, Some(start_at_create))
    }

    /// Encodes the message by hand: the protos crate does not ship runc's options type.
    fn encode(&self, type_url: &str, start_at_create: Option<bool>) -> Result<Any> {
        let mut buf = Vec::new();
        {
            let mut os = CodedOutputStream::vec(&mut buf);
            let mut write = || -> containerd_shim_protos::protobuf::Result<()> {
                if !self.binary_name.is_empty() {
                    os.write_string(6, &self.binary_name)?;
                }
                if !self.root.is_empty() {
                    os.write_string(7, &self.root)?;
                }
                if self.systemd_cgroup {
                    os.write_bool(9, true)?;
                }
                if start_at_create == Some(true) {
                    os.write_bool(100, true)?;
                }
                os.flush()
            };
            write().map_err(|e| Error::Encode {
                step: "encoding runtime options",
                message: e.to_string(),
            })?;
        }
        let mut any = Any::new();
        any.type_url = type_url.into();
        any.value = buf;
        Ok(any)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn encodes_binary_and_root() {
        let a = RuntimeOptions {
            binary_name: "kosrun".into(),
            root: "/r".into(),
            systemd_cgroup: false,
        }
        .to_any()
        .unwrap();
        assert_eq!(a.type_url, "containerd.runc.v1.Options");
        assert_eq!(a.value, b"\x32\x06kosrun\x3a\x02/r");
        assert!(RuntimeOptions::default().to_any().unwrap().value.is_empty());
    }

    #[test]
    fn kos_message_carries_start_at_create() {
        let o = RuntimeOptions {
            root: "/r".into(),
            ..Default::default()
        };
        let a = o.to_kos_any(true).unwrap();
        assert_eq!(a.type_url, KOS_OPTIONS_TYPE);
        // Field 100, varint: tag 800 = 0xa0 0x06.
        assert_eq!(a.value, b"\x3a\x02/r\xa0\x06\x01");
        let a = o.to_kos_any(false).unwrap();
        assert_eq!(a.type_url, KOS_OPTIONS_TYPE);
        assert_eq!(a.value, b"\x3a\x02/r");
    }
}
