//! The CRI ImageService over kos-image's store and registry client, with registry mirrors
//! from `hosts.toml` files.

pub mod mirrors;
pub mod reference;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use base64::Engine as _;
use k8s_cri::v1 as cri;
use kos_image::build::dangling;
use kos_image::{Credentials, ImageRecord, PullOptions, Registry, Store};
use tonic::{Request, Response, Status};
use tracing::{info, warn};

use self::mirrors::Mirrors;
use self::reference::{as_image_id, is_tag, normalise, repo_digest};
use crate::error::{Error, Result};

/// Images for CRI: the shared store, a registry client and the mirror configuration.
#[derive(Clone)]
pub struct Images {
    pub store: Arc<Store>,
    pub registry: Registry,
    pub mirrors: Mirrors,
    /// The host's other users of images (see [`crate::config::ImageInUse`]).
    pub in_use: Option<crate::config::ImageInUse>,
}

/// Runs blocking store work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal {
            step: "background task",
            message: e.to_string(),
        })?
}

/// CRI credentials to the registry client's.
pub fn credentials(auth: Option<&cri::AuthConfig>) -> Result<Credentials> {
    let Some(a) = auth else {
        return Ok(Credentials::Anonymous);
    };
    if !a.registry_token.is_empty() {
        return Ok(Credentials::Bearer(a.registry_token.clone()));
    }
    if !a.username.is_empty() || !a.password.is_empty() {
        return Ok(Credentials::Basic {
            username: a.username.clone(),
            password: a.password.clone(),
        });
    }
    if !a.auth.is_empty() {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(a.auth.trim())
            .map_err(|e| Error::InvalidArgument(format!("auth config: auth is not base64: {e}")))?;
        let s = String::from_utf8(raw)
            .map_err(|_| Error::InvalidArgument("auth config: auth is not UTF-8".into()))?;
        let (u, p) = s.split_once(':').ok_or_else(|| {
            Error::InvalidArgument("auth config: auth is not base64 of user:password".into())
        })?;
        return Ok(Credentials::Basic {
            username: u.into(),
            password: p.into(),
        });
    }
    if !a.identity_token.is_empty() {
        return Err(Error::InvalidArgument(
            "auth config: identity tokens (OAuth refresh tokens) are not supported; use a registry token or username and password".into(),
        ));
    }
    Ok(Credentials::Anonymous)
}

impl Images {
    /// Resolves what kubelet names an image (reference, id, or repo@digest) to a stored name.
    pub fn resolve(&self, image: &str) -> Result<Option<ImageRecord>> {
        let records = self
            .store
            .images()
            .map_err(|e| Error::image("listing images", e))?;
        if let Some(id) = as_image_id(image) {
            if let Some(r) = records.iter().find(|r| r.config.to_string() == id) {
                return Ok(Some(r.clone()));
            }
        }
        let r = normalise(image)?;
        let name = r.to_string();
        if let Some(rec) = records.iter().find(|rec| rec.name == name) {
            return Ok(Some(rec.clone()));
        }
        // repo@digest matches any name of that repository at that manifest.
        if let Some(d) = r.digest() {
            let want = repo_digest(&name, &d.to_string());
            return Ok(records
                .into_iter()
                .find(|rec| repo_digest(&rec.name, &rec.manifest.to_string()) == want));
        }
        Ok(None)
    }

    /// The CRI view of the image `rec` points at (all its names).
    pub fn describe(&self, rec: &ImageRecord) -> Result<cri::Image> {
        let all = self
            .store
            .images()
            .map_err(|e| Error::image("listing images", e))?;
        let same: Vec<&ImageRecord> = all.iter().filter(|r| r.config == rec.config).collect();
        let img = self
            .store
            .image(&rec.name)
            .map_err(|e| Error::image(format!("reading image {}", rec.name), e))?;
        let size: u64 =
            img.manifest.layers.iter().map(|l| l.size).sum::<u64>() + img.manifest.config.size;
        let mut repo_tags: Vec<String> = same
            .iter()
            .filter(|r| is_tag(&r.name))
            .map(|r| r.name.clone())
            .collect();
        repo_tags.sort();
        repo_tags.dedup();
        let mut repo_digests: Vec<String> = same
            .iter()
            .map(|r| repo_digest(&r.name, &r.manifest.to_string()))
            .collect();
        repo_digests.sort();
        repo_digests.dedup();
        let user = img
            .config
            .config
            .as_ref()
            .and_then(|c| c.user.clone())
            .unwrap_or_default();
        let user = user.split(':').next().unwrap_or("").to_string();
        let (uid, username) = match user.parse::<i64>() {
            Ok(n) => (Some(cri::Int64Value { value: n }), String::new()),
            Err(_) if user.is_empty() => (None, String::new()),
            Err(_) => (None, user),
        };
        Ok(cri::Image {
            id: rec.config.to_string(),
            repo_tags,
            repo_digests,
            size,
            uid,
            username,
            spec: Some(cri::ImageSpec {
                image: rec.config.to_string(),
                ..Default::default()
            }),
            pinned: false,
        })
    }

    /// Pulls `reference`, trying the registry's mirrors first; returns the record under the
    /// canonical (upstream) name.
    pub async fn pull(&self, reference: &str, creds: Credentials) -> Result<ImageRecord> {
        let r = normalise(reference)?;
        let name = r.to_string();
        let endpoints = self.mirrors.endpoints(r.registry())?;
        let mut last: Option<Error> = None;
        for ep in endpoints {
            if !ep.resolve && r.digest().is_none() {
                continue;
            }
            let mut cfg = self.registry.config.clone();
            if ep.plain_http {
                cfg.insecure_registries.push(ep.host.clone());
            }
            if ep.skip_verify {
                cfg.skip_verify_registries.push(ep.host.clone());
            }
            let reg = Registry::new(cfg);
            let opts = PullOptions {
                credentials: creds.clone(),
                unpack: true,
                ..Default::default()
            };
            let from = if ep.upstream {
                name.clone()
            } else {
                let mut s = format!("{}/{}", ep.host, r.repository());
                if let Some(t) = r.tag() {
                    s.push(':');
                    s.push_str(t);
                }
                if let Some(d) = r.digest() {
                    s.push('@');
                    s.push_str(&d.to_string());
                }
                s
            };
            let existed = self.store.image_record(&from).is_ok();
            match reg.pull(self.store.clone(), &from, &opts).await {
                Ok(rec) if ep.upstream => return Ok(rec),
                Ok(_) => {
                    let st = self.store.clone();
                    let (f, n) = (from.clone(), name.clone());
                    let rec = blocking(move || {
                        let rec = st
                            .tag(&f, &n)
                            .map_err(|e| Error::image("naming the mirrored image", e))?;
                        if !existed {
                            st.remove_image(&f)
                                .map_err(|e| Error::image("dropping the mirror's name", e))?;
                        }
                        Ok(rec)
                    })
                    .await?;
                    info!(image = %name, mirror = %ep.host, "pulled through mirror");
                    return Ok(rec);
                }
                Err(e) => {
                    warn!(image = %name, from = %from, error = %e, "pull failed; trying the next host");
                    last = Some(Error::image(format!("pulling {name} from {}", ep.host), e));
                }
            }
        }
        Err(last.unwrap_or_else(|| {
            Error::NotFound(format!(
                "no host in the mirror configuration may resolve {name}"
            ))
        }))
    }

    /// Removes every name of the image `image` names; a missing image is not an error.
    /// As containerd's CRI, an image in use is removed too (containers keep their
    /// snapshots); one the host's other containers use keeps its content under its
    /// unnamed (`<none>:<none>`) name, made before the names go so no gc can take it.
    pub fn remove(&self, image: &str) -> Result<()> {
        let Some(rec) = self.resolve(image)? else {
            return Ok(());
        };
        let all = self
            .store
            .images()
            .map_err(|e| Error::image("listing images", e))?;
        let unnamed = dangling::name(&rec.config);
        let keep = self
            .in_use
            .as_ref()
            .is_some_and(|f| f(&rec.config.to_string()));
        if keep {
            self.store
                .tag_image(&unnamed, &rec.target, &rec.manifest)
                .map_err(|e| Error::image("keeping the image for the host's containers", e))?;
            info!(image = %rec.config, "image removed; content kept for the host's containers");
        }
        for r in all
            .iter()
            .filter(|r| r.config == rec.config && !(keep && r.name == unnamed))
        {
            match self.store.remove_image(&r.name) {
                Ok(()) | Err(kos_image::Error::ImageNotFound(_)) => {}
                Err(e) => return Err(Error::image(format!("removing {}", r.name), e)),
            }
        }
        Ok(())
    }
}

/// Bytes and inodes used under `root` (the store), not following symlinks.
pub(crate) fn usage(root: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut bytes = 0u64;
    let mut inodes = 0u64;
    let mut seen = std::collections::HashSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if !seen.insert((m.dev(), m.ino())) {
                continue;
            }
            inodes += 1;
            bytes += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    (bytes, inodes)
}

fn now_nanos() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0)
}

#[tonic::async_trait]
impl cri::image_service_server::ImageService for Images {
    async fn list_images(
        &self,
        req: Request<cri::ListImagesRequest>,
    ) -> std::result::Result<Response<cri::ListImagesResponse>, Status> {
        let filter = req
            .into_inner()
            .filter
            .and_then(|f| f.image)
            .map(|s| s.image)
            .filter(|s| !s.is_empty());
        let this = self.clone();
        let images = blocking(move || {
            let records = this
                .store
                .images()
                .map_err(|e| Error::image("listing images", e))?;
            let wanted = match &filter {
                Some(f) => this.resolve(f)?.map(|r| r.config),
                None => None,
            };
            let mut by_id: BTreeMap<String, ImageRecord> = BTreeMap::new();
            for r in records {
                if filter.is_some() && wanted.as_ref() != Some(&r.config) {
                    continue;
                }
                by_id.entry(r.config.to_string()).or_insert(r);
            }
            by_id
                .values()
                .map(|r| this.describe(r))
                .collect::<Result<Vec<_>>>()
        })
        .await?;
        Ok(Response::new(cri::ListImagesResponse { images }))
    }

    async fn image_status(
        &self,
        req: Request<cri::ImageStatusRequest>,
    ) -> std::result::Result<Response<cri::ImageStatusResponse>, Status> {
        let req = req.into_inner();
        let image = req.image.map(|s| s.image).unwrap_or_default();
        let verbose = req.verbose;
        let this = self.clone();
        let resp = blocking(move || {
            // Not found is an empty answer, not an error (kubelet then pulls).
            let Some(rec) = this.resolve(&image)? else {
                return Ok(cri::ImageStatusResponse::default());
            };
            let img = this.describe(&rec)?;
            let mut info = std::collections::HashMap::new();
            if verbose {
                let full = this
                    .store
                    .image(&rec.name)
                    .map_err(|e| Error::image("reading image", e))?;
                info.insert(
                    "info".to_string(),
                    serde_json::json!({
                        "name": rec.name,
                        "manifest": rec.manifest.to_string(),
                        "config": serde_json::from_slice::<serde_json::Value>(&full.config_bytes).unwrap_or_default(),
                    })
                    .to_string(),
                );
            }
            Ok(cri::ImageStatusResponse {
                image: Some(img),
                info,
            })
        })
        .await?;
        Ok(Response::new(resp))
    }

    async fn pull_image(
        &self,
        req: Request<cri::PullImageRequest>,
    ) -> std::result::Result<Response<cri::PullImageResponse>, Status> {
        let req = req.into_inner();
        let image = req.image.map(|s| s.image).unwrap_or_default();
        let creds = credentials(req.auth.as_ref())?;
        let rec = self.pull(&image, creds).await?;
        Ok(Response::new(cri::PullImageResponse {
            image_ref: rec.config.to_string(),
        }))
    }

    async fn remove_image(
        &self,
        req: Request<cri::RemoveImageRequest>,
    ) -> std::result::Result<Response<cri::RemoveImageResponse>, Status> {
        let image = req.into_inner().image.map(|s| s.image).unwrap_or_default();
        if image.is_empty() {
            return Err(Error::InvalidArgument("image is empty".into()).into());
        }
        let this = self.clone();
        blocking(move || this.remove(&image)).await?;
        Ok(Response::new(cri::RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _req: Request<cri::ImageFsInfoRequest>,
    ) -> std::result::Result<Response<cri::ImageFsInfoResponse>, Status> {
        let root = self.store.root().to_path_buf();
        let r2 = root.clone();
        let (bytes, inodes) = blocking(move || Ok(usage(&r2))).await?;
        Ok(Response::new(cri::ImageFsInfoResponse {
            image_filesystems: vec![cri::FilesystemUsage {
                timestamp: now_nanos(),
                fs_id: Some(cri::FilesystemIdentifier {
                    mountpoint: root.to_string_lossy().into_owned(),
                }),
                used_bytes: Some(cri::UInt64Value { value: bytes }),
                inodes_used: Some(cri::UInt64Value { value: inodes }),
            }],
            container_filesystems: Vec::new(),
        }))
    }
}
