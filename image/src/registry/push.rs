//! Push: upload an image's blobs (skipping those the registry has), then its
//! manifests, the named one last so the tag only appears when complete.

use std::sync::Arc;

use futures_util::StreamExt;
use http::HeaderValue;
use oci_client::RegistryOperation;
use tokio::io::AsyncReadExt;
use tracing::info;

use super::{reg_err, Credentials, Registry};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::{self, Descriptor, Document};
use crate::progress::{report, Progress, ProgressFn};
use crate::reference::ImageRef;
use crate::store::Store;

/// Options of one push.
#[derive(Clone, Default)]
pub struct PushOptions {
    pub credentials: Credentials,
    pub progress: Option<ProgressFn>,
}

impl Registry {
    /// Pushes the stored image `local` to `dest`. When the image was pulled
    /// (or built) as an index, the index and every child manifest present in
    /// the store are pushed. Returns the digest `dest` now points at.
    pub async fn push(
        &self,
        store: Arc<Store>,
        local: &str,
        dest: &str,
        opts: &PushOptions,
    ) -> Result<Digest> {
        let r = ImageRef::parse(dest)?;
        let client = self.client(&r).await;
        let auth = opts.credentials.to_oci();
        client
            .auth(r.oci(), &auth, RegistryOperation::Push)
            .await
            .map_err(|e| reg_err(&r, e))?;
        let rec = store.image_record(local)?;
        let (top_mt, top_body) = store.manifest(&rec.target)?;
        let (_, doc) = manifest::parse_document(&top_body, Some(&top_mt))?;
        // An index goes up whole only when every child is here; a pulled
        // image usually holds just its own platform, which is then pushed alone.
        let mut children: Vec<Digest> = Vec::new();
        let (mut top_digest, mut top_mt, mut top_body) = (rec.target.clone(), top_mt, top_body);
        if let Document::Index(i) = &doc {
            if i.manifests
                .iter()
                .all(|m| store.manifest(&m.digest).is_ok())
            {
                children = i.manifests.iter().map(|m| m.digest.clone()).collect();
            } else {
                (top_mt, top_body) = store.manifest(&rec.manifest)?;
                top_digest = rec.manifest.clone();
            }
        }
        let images: Vec<Digest> = if children.is_empty() {
            vec![top_digest.clone()]
        } else {
            children.clone()
        };
        for d in &images {
            let (mt, body) = store.manifest(d)?;
            let Document::Image(m) = manifest::parse_document(&body, Some(&mt))?.1 else {
                return Err(Error::UnsupportedMediaType(mt));
            };
            for blob in std::iter::once(&m.config).chain(m.layers.iter()) {
                push_blob(&client, &r, &store, blob, &opts.progress).await?;
            }
            if !children.is_empty() {
                push_manifest(&client, &r.with_digest(d), &mt, body).await?;
            }
        }
        push_manifest(&client, &r, &top_mt, top_body).await?;
        info!(image = local, dest = %r, digest = %top_digest, "pushed");
        Ok(top_digest)
    }
}

async fn push_manifest(
    client: &oci_client::Client,
    r: &ImageRef,
    mt: &str,
    body: Vec<u8>,
) -> Result<()> {
    let ct = HeaderValue::from_str(mt).map_err(|_| Error::UnsupportedMediaType(mt.to_string()))?;
    client
        .push_manifest_raw(r.oci(), body, ct)
        .await
        .map_err(|e| reg_err(r, e))?;
    Ok(())
}

async fn push_blob(
    client: &oci_client::Client,
    r: &ImageRef,
    store: &Store,
    blob: &Descriptor,
    progress: &Option<ProgressFn>,
) -> Result<()> {
    let digest = blob.digest.to_string();
    if client
        .blob_exists(r.oci(), &digest)
        .await
        .map_err(|e| reg_err(r, e))?
    {
        report(
            progress,
            Progress::Skipped {
                digest: blob.digest.clone(),
            },
        );
        return Ok(());
    }
    let path = store.blob_path(&blob.digest);
    let file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| Error::BlobNotFound(digest.clone()))?;
    report(
        progress,
        Progress::Started {
            digest: blob.digest.clone(),
            total: blob.size,
            offset: 0,
        },
    );
    let stream = futures_util::stream::unfold(file, |mut f| async move {
        let mut buf = bytes::BytesMut::with_capacity(1 << 20);
        match f.read_buf(&mut buf).await {
            Ok(0) => None,
            Ok(_) => Some((Ok(buf.freeze()), f)),
            Err(e) => Some((Err(oci_client::errors::OciDistributionError::IoError(e)), f)),
        }
    })
    .boxed();
    client
        .push_blob_stream(r.oci(), stream, &digest, Some(blob.size))
        .await
        .map_err(|e| reg_err(r, e))?;
    report(
        progress,
        Progress::Finished {
            digest: blob.digest.clone(),
        },
    );
    Ok(())
}
