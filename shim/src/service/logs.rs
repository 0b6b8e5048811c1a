//! `kos.shim.v1.Logs`, KOS's own ttrpc service beside the task API, on the same socket:
//!
//! - `Reopen`: opens the json-file or CRI log file(s) of a process again at their path, so
//!   that output goes into a new file once the old one was renamed away (kubelet's log
//!   rotation, then ReopenContainerLog). The request is encoded as containerd's
//!   `containerd.task.v2.StateRequest` (field 1 `id`, field 2 `exec_id`, empty for the init
//!   process), whose fields are exactly what it needs; the answer is empty
//!   (`google.protobuf.Empty`) and is sent only once the new file is open.

use containerd_shim_protos::api;
use protobuf::Message;

use super::{empty, Reply, Service, R};
use crate::ttrpc::RpcError;

pub const LOGS_SERVICE: &str = "kos.shim.v1.Logs";

impl Service {
    pub fn dispatch_logs(&mut self, method: &str, payload: &[u8]) -> Reply {
        match method {
            "Reopen" => Reply::Now(
                api::StateRequest::parse_from_bytes(payload)
                    .map_err(|e| RpcError::invalid(format!("Reopen: bad request: {e}")))
                    .and_then(|r| self.reopen_log(r)),
            ),
            other => Reply::Now(Err(RpcError::new(
                containerd_shim_protos::ttrpc::Code::UNIMPLEMENTED,
                format!("{LOGS_SERVICE} has no method {other:?}"),
            ))),
        }
    }

    fn reopen_log(&mut self, r: api::StateRequest) -> R<Vec<u8>> {
        let p = self.process(&r.id, &r.exec_id)?;
        let what = if r.exec_id.is_empty() {
            format!("container {}", r.id)
        } else {
            format!("exec {} of {}", r.exec_id, r.id)
        };
        match p.io.reopen_logs() {
            Ok(0) => Err(RpcError::precondition(format!(
                "{what} has no log file to reopen: its output goes to neither a cri-log:// nor \
                 a json-file:// target"
            ))),
            Ok(_) => empty(),
            Err(e) => Err(RpcError::internal(format!("{what}: {e}"))),
        }
    }
}
