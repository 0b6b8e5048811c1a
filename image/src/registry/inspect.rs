//! What a registry holds for a reference, without pulling it: the top manifest's
//! descriptor and the platforms it serves (dockerd's `GET /distribution/{name}/json`).

use oci_client::RegistryOperation;

use super::pull::{fetch_manifest, fetch_small_blob};
use super::{reg_err, Credentials, Registry};
use crate::digest::Digest;
use crate::error::Result;
use crate::manifest::{self, Document, ImageConfig, Platform};
use crate::reference::ImageRef;

/// The registry's answer for one reference.
#[derive(Debug, Clone)]
pub struct Distribution {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    /// The index's platforms, or the one an image manifest's config names.
    pub platforms: Vec<Platform>,
}

impl Registry {
    /// Resolves `reference` on its registry: the manifest (or index) it names and the
    /// platforms behind it. Fetches the manifest, and the config only for a single image.
    pub async fn inspect(
        &self,
        reference: &str,
        credentials: &Credentials,
    ) -> Result<Distribution> {
        let r = ImageRef::parse(reference)?;
        let client = self.client(&r).await;
        let auth = credentials.to_oci();
        if !matches!(credentials, Credentials::Anonymous) {
            client
                .auth(r.oci(), &auth, RegistryOperation::Pull)
                .await
                .map_err(|e| reg_err(&r, e))?;
        }
        let (media_type, body, digest) =
            fetch_manifest(&client, &r, &auth, r.digest().as_ref(), None).await?;
        let platforms = match manifest::parse_document(&body, Some(&media_type))?.1 {
            Document::Index(index) => index
                .manifests
                .iter()
                .filter_map(|d| d.platform.clone())
                .collect(),
            Document::Image(m) => {
                let cfg = ImageConfig::parse(&fetch_small_blob(&client, &r, &m.config).await?)?;
                vec![Platform {
                    architecture: cfg.architecture,
                    os: cfg.os,
                    variant: cfg.variant,
                }]
            }
        };
        Ok(Distribution {
            media_type,
            digest,
            size: body.len() as u64,
            platforms,
        })
    }
}
