//! containerd's runc `Options` message, as the shim reads it from CreateTaskRequest.options.

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

impl RuntimeOptions {
    /// Encodes the message by hand: the protos crate does not ship runc's options type.
    pub fn to_any(&self) -> Result<Any> {
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
                os.flush()
            };
            write().map_err(|e| Error::Encode {
                step: "encoding runtime options",
                message: e.to_string(),
            })?;
        }
        let mut any = Any::new();
        any.type_url = "containerd.runc.v1.Options".into();
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
}
