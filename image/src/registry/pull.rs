//! Pull: resolve a reference, pick the platform, fetch and unpack layers
//! concurrently while verifying every byte.

use std::io::{self, Read, Write};
use std::sync::Arc;

use futures_util::StreamExt;
use oci_client::RegistryOperation;
use tracing::{debug, info};

use super::{reg_err, Credentials, Registry};
use crate::digest::{chain_ids, Digest};
use crate::error::{Error, Result};
use crate::manifest::{self, Descriptor, Document, ImageConfig, Platform};
use crate::progress::{report, Progress, ProgressFn};
use crate::reference::ImageRef;
use crate::store::{BlobWriter, ImageRecord, Store};

/// Options of one pull.
#[derive(Clone, Default)]
pub struct PullOptions {
    pub credentials: Credentials,
    /// Overrides the registry config's platform.
    pub platform: Option<Platform>,
    pub progress: Option<ProgressFn>,
    /// Also unpack layers into snapshots (the usual case).
    pub unpack: bool,
}

fn blocking_err(e: tokio::task::JoinError) -> Error {
    Error::io("background task failed", io::Error::other(e.to_string()))
}

impl Registry {
    /// Pulls `reference` into `store` and names it there. Nothing is named
    /// until every blob (and, with `unpack`, every snapshot) is in place.
    pub async fn pull(
        &self,
        store: Arc<Store>,
        reference: &str,
        opts: &PullOptions,
    ) -> Result<ImageRecord> {
        let r = ImageRef::parse(reference)?;
        let client = self.client(&r).await;
        let auth = opts.credentials.to_oci();
        let st = store.clone();
        let _lock = tokio::task::spawn_blocking(move || st.lock(false))
            .await
            .map_err(blocking_err)??;
        if !matches!(opts.credentials, Credentials::Anonymous) {
            client
                .auth(r.oci(), &auth, RegistryOperation::Pull)
                .await
                .map_err(|e| reg_err(&r, e))?;
        }

        let (top_mt, top_bytes, top_digest) =
            fetch_manifest(&client, &r, &auth, r.digest().as_ref(), None).await?;
        report(
            &opts.progress,
            Progress::Resolved {
                reference: r.to_string(),
                digest: top_digest.clone(),
            },
        );
        let (_, doc) = manifest::parse_document(&top_bytes, Some(&top_mt))?;
        let (manifest_digest, mt, body, m) = match doc {
            Document::Image(m) => (top_digest.clone(), top_mt.clone(), top_bytes.clone(), m),
            Document::Index(index) => {
                let want = opts
                    .platform
                    .clone()
                    .or_else(|| self.config.platform.clone())
                    .unwrap_or_else(Platform::host);
                let desc = manifest::select_platform(&index, &want)?.clone();
                let (mt, body, d) =
                    fetch_manifest(&client, &r, &auth, Some(&desc.digest), Some(desc.size)).await?;
                let Document::Image(m) = manifest::parse_document(&body, Some(&mt))?.1 else {
                    return Err(Error::UnsupportedMediaType(format!("{mt} inside an index")));
                };
                (d, mt, body, m)
            }
        };
        m.validate()?;

        // Config: small, fetched whole, verified before use.
        let config_bytes = fetch_small_blob(&client, &r, &m.config).await?;
        let config = ImageConfig::parse(&config_bytes)?;
        if config.rootfs.diff_ids.len() != m.layers.len() {
            return Err(Error::InvalidJson {
                what: "image config".into(),
                reason: format!(
                    "{} diff ids for {} layers",
                    config.rootfs.diff_ids.len(),
                    m.layers.len()
                ),
            });
        }
        let st = store.clone();
        let cb = config_bytes.clone();
        tokio::task::spawn_blocking(move || st.put_blob(&cb))
            .await
            .map_err(blocking_err)??;

        let chains = chain_ids(&config.rootfs.diff_ids);
        let jobs: Vec<LayerJob> = m
            .layers
            .iter()
            .enumerate()
            .map(|(i, l)| LayerJob {
                desc: l.clone(),
                diff_id: config.rootfs.diff_ids[i].clone(),
                chain_id: chains[i].clone(),
                parent: if i > 0 {
                    Some(chains[i - 1].clone())
                } else {
                    None
                },
            })
            .collect();
        let limit = self.config.max_concurrent_downloads.max(1);
        futures_util::stream::iter(jobs.into_iter().map(|job| {
            let (client, store, r, progress) = (
                client.clone(),
                store.clone(),
                r.clone(),
                opts.progress.clone(),
            );
            let unpack = opts.unpack;
            async move { fetch_layer(&client, &r, store, job, unpack, &progress).await }
        }))
        .buffer_unordered(limit)
        // Every layer runs to its end (its blocking worker included) before
        // the pull reports, so no scratch work outlives a failed pull.
        .collect::<Vec<Result<()>>>()
        .await
        .into_iter()
        .collect::<Result<Vec<()>>>()?;

        let st = store.clone();
        let name = r.to_string();
        let (tmt, tb, td) = (top_mt, top_bytes, top_digest);
        let rec = tokio::task::spawn_blocking(move || -> Result<ImageRecord> {
            st.put_manifest(&manifest_digest, &mt, &body)?;
            st.put_manifest(&td, &tmt, &tb)?;
            st.tag_image(&name, &td, &manifest_digest)
        })
        .await
        .map_err(blocking_err)??;
        info!(image = %rec.name, manifest = %rec.manifest, "pulled");
        Ok(rec)
    }
}

/// Fetches a manifest, checks its digest (against the reference's or the
/// descriptor's) and its size, and returns media type, bytes and digest.
pub(super) async fn fetch_manifest(
    client: &oci_client::Client,
    r: &ImageRef,
    auth: &oci_client::secrets::RegistryAuth,
    digest: Option<&Digest>,
    size: Option<u64>,
) -> Result<(String, Vec<u8>, Digest)> {
    let target = match digest {
        Some(d) => r.with_digest(d),
        None => r.clone(),
    };
    let (bytes, _server_digest) = client
        .pull_manifest_raw(target.oci(), auth, manifest::ACCEPTED_MANIFESTS)
        .await
        .map_err(|e| reg_err(&target, e))?;
    let actual = Digest::of(&bytes);
    if let Some(d) = digest {
        if *d != actual {
            return Err(Error::DigestMismatch {
                what: format!("manifest of {target}"),
                expected: d.to_string(),
                actual: actual.to_string(),
            });
        }
    }
    if let Some(s) = size {
        if s != bytes.len() as u64 {
            return Err(Error::SizeMismatch {
                digest: actual.to_string(),
                expected: s,
                actual: bytes.len() as u64,
            });
        }
    }
    let (mt, _) = manifest::parse_document(&bytes, None)?;
    Ok((mt, bytes.to_vec(), actual))
}

pub(super) async fn fetch_small_blob(
    client: &oci_client::Client,
    r: &ImageRef,
    d: &Descriptor,
) -> Result<Vec<u8>> {
    const MAX_CONFIG: u64 = 16 << 20;
    if d.size > MAX_CONFIG {
        return Err(Error::LimitExceeded {
            limit: MAX_CONFIG,
            unit: "config bytes",
        });
    }
    let digest = d.digest.to_string();
    let mut stream = client
        .pull_blob_stream(r.oci(), &digest.as_str())
        .await
        .map_err(|e| reg_err(r, e))?;
    let mut out = Vec::with_capacity(d.size as usize);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| reg_err(r, e))?;
        if out.len() as u64 + chunk.len() as u64 > d.size {
            return Err(Error::SizeMismatch {
                digest: digest.clone(),
                expected: d.size,
                actual: out.len() as u64 + chunk.len() as u64,
            });
        }
        out.extend_from_slice(&chunk);
    }
    let actual = Digest::of(&out);
    if actual != d.digest || out.len() as u64 != d.size {
        return Err(Error::DigestMismatch {
            what: "config".into(),
            expected: d.digest.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(out)
}

struct LayerJob {
    desc: Descriptor,
    diff_id: Digest,
    chain_id: Digest,
    parent: Option<Digest>,
}

async fn fetch_layer(
    client: &oci_client::Client,
    r: &ImageRef,
    store: Arc<Store>,
    job: LayerJob,
    unpack: bool,
    progress: &Option<ProgressFn>,
) -> Result<()> {
    let d = job.desc.digest.clone();
    let have_blob = store.has_blob(&d);
    let have_snap = !unpack || store.has_snapshot(&job.chain_id)?;
    if have_blob && have_snap {
        report(progress, Progress::Skipped { digest: d });
        return Ok(());
    }
    if have_blob {
        debug!(layer = %d, "unpacking layer already in the store");
        let st = store.clone();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let f = std::io::BufReader::new(st.open_blob(&job.desc.digest)?);
            st.unpack_snapshot(&job.chain_id, job.parent.as_ref(), &job.diff_id, f)?;
            Ok(())
        })
        .await
        .map_err(blocking_err)??;
        report(progress, Progress::Finished { digest: d });
        return Ok(());
    }

    let st = store.clone();
    let (dd, size) = (d.clone(), job.desc.size);
    let mut writer = tokio::task::spawn_blocking(move || st.blob_writer(&dd, Some(size)))
        .await
        .map_err(blocking_err)??;
    // Another pull may have finished this blob while we waited for its lock.
    if store.has_blob(&d) {
        drop(writer);
        return Box::pin(fetch_layer(client, r, store, job, unpack, progress)).await;
    }
    let offset = writer.resumed_from();
    let digest_str = d.to_string();
    let stream = if offset > 0 && offset < size {
        match client
            .pull_blob_stream_partial(r.oci(), &digest_str.as_str(), offset, None)
            .await
            .map_err(|e| reg_err(r, e))?
        {
            oci_client::client::BlobResponse::Partial(s) => s,
            oci_client::client::BlobResponse::Full(s) => {
                writer.restart()?;
                s
            }
        }
    } else {
        if offset > 0 {
            writer.restart()?;
        }
        client
            .pull_blob_stream(r.oci(), &digest_str.as_str())
            .await
            .map_err(|e| reg_err(r, e))?
    };
    let offset = writer.resumed_from();
    report(
        progress,
        Progress::Started {
            digest: d.clone(),
            total: size,
            offset,
        },
    );

    // The blocking side writes the blob and, when the download starts from
    // zero, unpacks the same bytes as they arrive: one pass over the data.
    let stream_unpack = unpack && !have_snap && offset == 0;
    let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<bytes::Bytes>>(32);
    let st = store.clone();
    let job_chain = job.chain_id.clone();
    let worker = tokio::task::spawn_blocking(move || -> Result<()> {
        let mut tee = Tee {
            rx,
            cur: bytes::Bytes::new(),
            writer: Some(writer),
        };
        if stream_unpack {
            let res = st.unpack_snapshot_checked(
                &job.chain_id,
                job.parent.as_ref(),
                &job.diff_id,
                &mut tee,
                |tee| {
                    io::copy(tee, &mut io::sink())
                        .map_err(|e| Error::io("downloading layer", e))?;
                    tee.writer_commit()
                },
            );
            if let Err(e) = res {
                // A corrupt blob usually breaks decompression first; report
                // the root cause when the whole blob arrived and is wrong.
                let _ = io::copy(&mut tee, &mut io::sink());
                if let Some(w) = tee.writer.as_mut() {
                    if w.written() == size {
                        w.verify()?;
                    }
                }
                return Err(e);
            }
        } else {
            io::copy(&mut tee, &mut io::sink()).map_err(|e| Error::io("downloading layer", e))?;
            tee.writer_commit()?;
            if unpack && !st.has_snapshot(&job.chain_id)? {
                let f = std::io::BufReader::new(st.open_blob(&job.desc.digest)?);
                st.unpack_snapshot(&job.chain_id, job.parent.as_ref(), &job.diff_id, f)?;
            }
        }
        Ok(())
    });

    let mut stream = stream;
    let mut done = offset;
    let mut last_report = 0u64;
    while let Some(chunk) = stream.next().await {
        let failed = chunk.is_err();
        if let Ok(c) = &chunk {
            done += c.len() as u64;
        }
        if tx.send(chunk).await.is_err() || failed {
            break; // the worker stopped (and will say why) or the download failed
        }
        if done - last_report >= (1 << 20) || done == size {
            last_report = done;
            report(
                progress,
                Progress::Advanced {
                    digest: d.clone(),
                    done,
                    total: size,
                },
            );
        }
    }
    drop(tx);
    worker.await.map_err(blocking_err)??;
    debug!(layer = %d, chain = %job_chain, "layer done");
    report(progress, Progress::Finished { digest: d });
    Ok(())
}

/// Reads the download stream and copies every byte into the blob writer.
struct Tee {
    rx: tokio::sync::mpsc::Receiver<io::Result<bytes::Bytes>>,
    cur: bytes::Bytes,
    writer: Option<BlobWriter>,
}

impl Tee {
    fn writer_commit(&mut self) -> Result<()> {
        let w = self.writer.take().ok_or_else(|| {
            Error::io(
                "committing layer",
                io::Error::other("blob already committed"),
            )
        })?;
        w.commit().map(|_| ())
    }
}

impl Read for Tee {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Err(e)) => return Err(e),
                Some(Ok(b)) => {
                    if let Some(w) = &mut self.writer {
                        w.write_all(&b)?;
                    }
                    self.cur = b;
                }
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}
