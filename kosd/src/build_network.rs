//! RUN steps of `docker build` on the default bridge, as dockerd runs them:
//! each build container gets its own namespace attached to the `bridge`
//! network, released when the step ends.

use std::sync::Arc;

use kos_image::build::{BuildNetwork, NetworkAttachment};
use kos_network::{AttachRequest, Networks};

pub struct DefaultBridge {
    nets: Arc<Networks>,
}

impl DefaultBridge {
    pub fn new(nets: Arc<Networks>) -> Self {
        DefaultBridge { nets }
    }
}

impl BuildNetwork for DefaultBridge {
    fn attach(&self, container_id: &str) -> Result<NetworkAttachment, String> {
        let mut req = AttachRequest::new(container_id, crate::network::DEFAULT);
        // The name kos-dns records must be a DNS label (at most 63 bytes); the builder's
        // ids are longer, so the record gets a short form of it.
        let tail: Vec<char> = container_id
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect();
        let short: String = tail[tail.len().saturating_sub(12)..].iter().collect();
        req.name = Some(format!("kos-build-{short}"));
        let att = self
            .nets
            .attach(&req)
            .map_err(|e| format!("attaching to the default network: {e}"))?;
        let netns = match att.netns.clone() {
            Some(p) => p,
            None => {
                let _ = self.nets.release_container(container_id);
                return Err("the default network gave the build container no namespace".into());
            }
        };
        Ok(NetworkAttachment {
            netns,
            resolv_conf: None,
            hosts: None,
        })
    }

    fn detach(&self, container_id: &str) {
        if let Err(e) = self.nets.release_container(container_id) {
            tracing::warn!(container = container_id, error = %e, "releasing a build container's network");
        }
    }
}
