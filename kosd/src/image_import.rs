//! `docker import`: an image of one layer made from a root filesystem archive, with its
//! config set by Dockerfile instructions (`changes`) as dockerd's import and commit do.

use std::io::Read;

use kos_image::build::dockerfile::{self, Command, ShellOrExec};
use kos_image::build::lex::{self, Vars};
use kos_image::{Digest, ImageRecord, Store};
use serde_json::{json, Map, Value};

use crate::error::{ApiError, Result};

/// The instructions dockerd accepts in `changes` (its commit/import set).
const ALLOWED: &[&str] = &[
    "CMD",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "HEALTHCHECK",
    "LABEL",
    "ONBUILD",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];
/// A change is one instruction line; a longer one is not.
const MAX_CHANGE: usize = 64 * 1024;
const MAX_CHANGES: usize = 256;

const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

fn env_vars(cfg: &Map<String, Value>) -> Vars {
    cfg.get("Env")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .filter_map(|e| e.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn args_of(f: &ShellOrExec) -> Vec<String> {
    match f {
        ShellOrExec::Exec(v) => v.clone(),
        ShellOrExec::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
    }
}

fn set_env(cfg: &mut Map<String, Value>, key: &str, value: &str) {
    let list = cfg
        .entry("Env")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .map(std::mem::take)
        .unwrap_or_default();
    let mut out: Vec<Value> = list
        .into_iter()
        .filter(|e| {
            e.as_str()
                .and_then(|s| s.split_once('='))
                .is_none_or(|(k, _)| k != key)
        })
        .collect();
    out.push(json!(format!("{key}={value}")));
    cfg.insert("Env".into(), Value::Array(out));
}

fn add_to_set(cfg: &mut Map<String, Value>, field: &str, key: String) {
    let m = cfg.entry(field).or_insert_with(|| json!({}));
    if !m.is_object() {
        *m = json!({});
    }
    if let Some(m) = m.as_object_mut() {
        m.insert(key, json!({}));
    }
}

/// Applies `changes` (one Dockerfile instruction each) to an image's runtime config.
pub fn apply_changes(cfg: &mut Map<String, Value>, changes: &[String]) -> Result<()> {
    if changes.len() > MAX_CHANGES {
        return Err(ApiError::bad(format!(
            "too many changes ({}; at most {MAX_CHANGES})",
            changes.len()
        )));
    }
    for (i, change) in changes.iter().enumerate() {
        let text = change.trim();
        if text.is_empty() {
            continue;
        }
        if text.len() > MAX_CHANGE {
            return Err(ApiError::bad(format!(
                "change {} is longer than {MAX_CHANGE} bytes",
                i + 1
            )));
        }
        let keyword = text
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        if !ALLOWED.contains(&keyword.as_str()) {
            return Err(ApiError::bad(format!(
                "{} is not a valid change command",
                keyword.to_ascii_lowercase()
            )));
        }
        let ins = dockerfile::parse_line(text, i + 1, '\\')
            .map_err(|e| ApiError::bad(format!("invalid change {text:?}: {e}")))?;
        let vars = env_vars(cfg);
        let word = |w: &str| {
            lex::process_word(w, &vars, '\\')
                .map_err(|e| ApiError::bad(format!("invalid change {text:?}: {e}")))
        };
        match &ins.command {
            Command::Cmd(f) => {
                cfg.insert("Cmd".into(), json!(args_of(f)));
            }
            Command::Entrypoint(f) => {
                cfg.insert("Entrypoint".into(), json!(args_of(f)));
            }
            Command::Env(pairs) => {
                let kv = pairs
                    .iter()
                    .map(|(k, v)| Ok((word(k)?, word(v)?)))
                    .collect::<Result<Vec<_>>>()?;
                for (k, v) in kv {
                    set_env(cfg, &k, &v);
                }
            }
            Command::Label(pairs) => {
                let kv = pairs
                    .iter()
                    .map(|(k, v)| Ok((word(k)?, word(v)?)))
                    .collect::<Result<Vec<_>>>()?;
                let m = cfg.entry("Labels").or_insert_with(|| json!({}));
                if !m.is_object() {
                    *m = json!({});
                }
                if let Some(m) = m.as_object_mut() {
                    for (k, v) in kv {
                        m.insert(k, json!(v));
                    }
                }
            }
            Command::Expose(ports) => {
                for p in ports {
                    let p = word(p)?;
                    let p = if p.contains('/') {
                        p
                    } else {
                        format!("{p}/tcp")
                    };
                    add_to_set(cfg, "ExposedPorts", p);
                }
            }
            Command::Volume(vols) => {
                for v in vols {
                    add_to_set(cfg, "Volumes", word(v)?);
                }
            }
            Command::User(u) => {
                cfg.insert("User".into(), json!(word(u)?));
            }
            Command::Workdir(w) => {
                let w = word(w)?;
                // A relative WORKDIR is taken from the one before it, as in a build.
                let base = cfg
                    .get("WorkingDir")
                    .and_then(Value::as_str)
                    .unwrap_or("/")
                    .to_string();
                let w = if w.starts_with('/') {
                    w
                } else {
                    format!("{}/{w}", base.trim_end_matches('/'))
                };
                cfg.insert("WorkingDir".into(), json!(w));
            }
            Command::StopSignal(s) => {
                cfg.insert("StopSignal".into(), json!(word(s)?));
            }
            Command::Onbuild(t) => {
                let list = cfg.entry("OnBuild").or_insert_with(|| json!([]));
                if !list.is_array() {
                    *list = json!([]);
                }
                if let Some(l) = list.as_array_mut() {
                    l.push(json!(t));
                }
            }
            Command::Healthcheck(h) => {
                let v = match h {
                    None => json!({"Test": ["NONE"]}),
                    Some(h) => {
                        let mut v = json!({"Test": h.test});
                        for (k, x) in [
                            ("Interval", h.interval),
                            ("Timeout", h.timeout),
                            ("StartPeriod", h.start_period),
                            ("StartInterval", h.start_interval),
                            ("Retries", h.retries),
                        ] {
                            if let Some(x) = x {
                                v[k] = json!(x);
                            }
                        }
                        v
                    }
                };
                cfg.insert("Healthcheck".into(), v);
            }
            other => {
                return Err(ApiError::bad(format!(
                    "{other:?} is not a valid change command"
                )))
            }
        }
    }
    Ok(())
}

/// What `POST /images/create?fromSrc=-` asked for.
pub struct ImportRequest {
    /// The store name to give the image; `None` keeps it untagged (dangling).
    pub name: Option<String>,
    pub message: String,
    pub changes: Vec<String>,
    /// `os/arch[/variant]` for the config; the host's when empty.
    pub platform: Option<kos_image::manifest::Platform>,
}

/// Checks that a decompressed stream starts as a tar archive: a ustar header, or the
/// zero blocks of an empty archive.
fn looks_like_tar(head: &[u8]) -> bool {
    if head.len() < 512 {
        return false;
    }
    let block = &head[..512];
    block.iter().all(|&b| b == 0) || &block[257..262] == b"ustar"
}

/// A reader that keeps the first bytes it passes on.
struct Peek<R> {
    inner: R,
    head: Vec<u8>,
}

impl<R: Read> Read for Peek<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.head.len() < 512 {
            let take = n.min(512 - self.head.len());
            self.head.extend_from_slice(&buf[..take]);
        }
        Ok(n)
    }
}

/// Stores `archive` (a tar, plain, gzip or zstd) as the one layer of a new image with
/// `req`'s config and name; the layer is unpacked before the image is named, so a bad
/// archive leaves no image. Returns the record and the image id.
pub fn import(
    store: &Store,
    archive: impl Read + Send,
    max: u64,
    req: &ImportRequest,
) -> Result<(ImageRecord, Digest)> {
    let mut cfg = Map::new();
    cfg.insert("Env".into(), json!([DEFAULT_PATH]));
    apply_changes(&mut cfg, &req.changes)?;
    let (_, plain) = kos_image::unpack::compression::decompress(archive)
        .map_err(|e| ApiError::bad(format!("reading the archive: {e}")))?;
    let mut peek = Peek {
        inner: plain,
        head: Vec::new(),
    };
    let (diff_id, size) = store.put_blob_stream(&mut peek, max).map_err(|e| match e {
        kos_image::Error::LimitExceeded { .. } => {
            ApiError::bad(format!("the archive is larger than {max} bytes"))
        }
        e => ApiError::bad(format!("reading the archive: {e}")),
    })?;
    if !looks_like_tar(&peek.head) {
        return Err(ApiError::bad(
            "the archive is not a tar file (plain, gzip or zstd)",
        ));
    }
    let now = crate::timefmt::rfc3339_go(crate::timefmt::now_nanos());
    let p = req
        .platform
        .clone()
        .unwrap_or_else(kos_image::manifest::Platform::host);
    let (os, arch, variant) = (p.os, p.architecture, p.variant);
    let comment = if req.message.is_empty() {
        "Imported from -".to_string()
    } else {
        req.message.clone()
    };
    let mut config = json!({
        "architecture": arch,
        "os": os,
        "created": now,
        "comment": req.message,
        "config": Value::Object(cfg),
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
        "history": [{"created": now, "comment": comment}],
    });
    if let Some(v) = variant {
        config["variant"] = json!(v);
    }
    let layer = json!({
        "mediaType": "application/vnd.oci.image.layer.v1.tar",
        "digest": diff_id.to_string(),
        "size": size,
    });
    store_image(store, &config, vec![layer], req.name.clone()).map_err(|e| match e {
        // Unpacked at once: a layer that cannot be unpacked is refused here, not at `run`.
        StoreImageError::Unpack(e) => ApiError::bad(format!("the archive cannot be unpacked: {e}")),
        StoreImageError::Api(e) => e,
    })
}

/// Why [`store_image`] failed: the image could not be written, or its layers not unpacked
/// (the image is removed again then).
pub enum StoreImageError {
    Api(ApiError),
    Unpack(kos_image::Error),
}

impl From<ApiError> for StoreImageError {
    fn from(e: ApiError) -> Self {
        StoreImageError::Api(e)
    }
}

impl From<kos_image::Error> for StoreImageError {
    fn from(e: kos_image::Error) -> Self {
        StoreImageError::Api(e.into())
    }
}

/// Writes an image made here (import, commit) into `store`: its `config` blob, an OCI
/// manifest over `layers` (blobs already stored), the name (`None`: a dangling name), and
/// the layers unpacked into snapshots, so `run` does not pay for them. Returns the record
/// and the image id (the config digest).
pub fn store_image(
    store: &Store,
    config: &Value,
    layers: Vec<Value>,
    name: Option<String>,
) -> std::result::Result<(ImageRecord, Digest), StoreImageError> {
    let config_bytes =
        serde_json::to_vec(config).map_err(|e| ApiError::internal("encoding config", e))?;
    let config_digest = store.put_blob(&config_bytes)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest.to_string(),
            "size": config_bytes.len(),
        },
        "layers": layers,
    });
    let body =
        serde_json::to_vec(&manifest).map_err(|e| ApiError::internal("encoding manifest", e))?;
    let md = Digest::of(&body);
    store.put_manifest(&md, "application/vnd.oci.image.manifest.v1+json", &body)?;
    let name = name.unwrap_or_else(|| kos_image::build::dangling::name(&config_digest));
    let rec = store.tag_image(&name, &md, &md)?;
    if let Err(e) = store
        .image(&name)
        .and_then(|img| store.ensure_snapshots(&img))
    {
        let _ = store.remove_image(&name);
        return Err(StoreImageError::Unpack(e));
    }
    Ok((rec, config_digest))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn apply(changes: &[&str]) -> Result<Map<String, Value>> {
        let mut cfg = Map::new();
        cfg.insert("Env".into(), json!([DEFAULT_PATH]));
        apply_changes(
            &mut cfg,
            &changes.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )?;
        Ok(cfg)
    }

    #[test]
    fn changes_set_the_config_as_dockerfile_instructions() {
        let c = apply(&[
            r#"CMD ["sh", "-c", "echo hi"]"#,
            "ENTRYPOINT /bin/app",
            "ENV A=1 B=\"two words\"",
            "ENV C=${A}-x",
            "LABEL l=v",
            "EXPOSE 80 53/udp",
            "VOLUME /data",
            "USER app",
            "WORKDIR /srv",
            "WORKDIR sub",
            "STOPSIGNAL SIGINT",
            "ONBUILD RUN true",
            "HEALTHCHECK --interval=5s CMD true",
        ])
        .unwrap();
        assert_eq!(c["Cmd"], json!(["sh", "-c", "echo hi"]));
        assert_eq!(c["Entrypoint"], json!(["/bin/sh", "-c", "/bin/app"]));
        let env: Vec<&str> = c["Env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(env, [DEFAULT_PATH, "A=1", "B=two words", "C=1-x"]);
        assert_eq!(c["Labels"], json!({"l": "v"}));
        assert_eq!(c["ExposedPorts"], json!({"80/tcp": {}, "53/udp": {}}));
        assert_eq!(c["Volumes"], json!({"/data": {}}));
        assert_eq!(c["User"], "app");
        assert_eq!(c["WorkingDir"], "/srv/sub");
        assert_eq!(c["StopSignal"], "SIGINT");
        assert_eq!(c["OnBuild"], json!(["RUN true"]));
        assert_eq!(c["Healthcheck"]["Interval"], json!(5_000_000_000i64));
    }

    #[test]
    fn other_instructions_are_refused() {
        for bad in ["RUN true", "FROM busybox", "COPY a b", "ADD a b", "bogus x"] {
            let e = apply(&[bad]).unwrap_err();
            assert!(matches!(e, ApiError::BadRequest(_)), "{bad}: {e}");
            assert!(e.to_string().contains("not a valid change command"), "{e}");
        }
        assert!(matches!(apply(&["ENV"]), Err(ApiError::BadRequest(_))));
    }

    #[test]
    fn tar_sniffing() {
        let mut h = vec![0u8; 512];
        assert!(looks_like_tar(&h));
        h[0] = b'a';
        assert!(!looks_like_tar(&h));
        h[257..262].copy_from_slice(b"ustar");
        assert!(looks_like_tar(&h));
        assert!(!looks_like_tar(b"short"));
    }
}
