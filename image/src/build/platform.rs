//! Platforms in a build: the automatic platform ARGs BuildKit defines, and
//! finding a base image's manifest for the platform a stage asks for (the
//! store names an image by its index when it was pulled from one).

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::manifest::{self, Document, ImageConfig, Platform};
use crate::store::{Image, ImageRecord, Store};

/// `BUILDPLATFORM`, `BUILDOS`, `BUILDARCH`, `BUILDVARIANT` and the
/// `TARGET*` four: global-scope values every FROM line sees, and that a
/// stage gets by declaring `ARG NAME` without a value.
pub fn automatic_args(build: &Platform, target: &Platform) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for (prefix, p) in [("BUILD", build), ("TARGET", target)] {
        // arm64's only variant is left out, as containerd normalises it.
        let mut p = p.clone();
        if p.architecture == "arm64" && p.variant.as_deref() == Some("v8") {
            p.variant = None;
        }
        v.push((format!("{prefix}PLATFORM"), p.to_string()));
        v.push((format!("{prefix}OS"), p.os.clone()));
        v.push((format!("{prefix}ARCH"), p.architecture.clone()));
        v.push((
            format!("{prefix}VARIANT"),
            p.variant.clone().unwrap_or_default(),
        ));
    }
    v
}

/// The platform an image config declares.
fn config_platform(cfg: &ImageConfig) -> Platform {
    Platform {
        os: cfg.os.clone(),
        architecture: cfg.architecture.clone(),
        variant: cfg.variant.clone(),
    }
}

/// The image `name` names, for `want`. An index is searched for the
/// platform; a single manifest is taken as it is unless the platform was
/// asked for explicitly and the config says another one. The inner error
/// is a platform the image does not have; the outer one a name or content
/// the store lacks (a pull may bring it).
pub fn local_image(
    store: &Store,
    name: &str,
    want: &Platform,
    explicit: bool,
) -> Result<std::result::Result<Image, String>> {
    let record = store.image_record(name)?;
    let (mt, body) = store.manifest(&record.target)?;
    let chosen: Digest = match manifest::parse_document(&body, Some(&mt))?.1 {
        Document::Index(idx) => match manifest::select_platform(&idx, want) {
            Ok(d) => d.digest.clone(),
            Err(_) => {
                let have: Vec<String> = idx
                    .manifests
                    .iter()
                    .filter_map(|d| d.platform.as_ref().map(Platform::to_string))
                    .collect();
                return Ok(Err(format!(
                    "image {name} has no manifest for platform {want} (it has {})",
                    if have.is_empty() {
                        "none with a platform".to_string()
                    } else {
                        have.join(", ")
                    }
                )));
            }
        },
        Document::Image(_) => record.target.clone(),
    };
    let img = if chosen == record.manifest {
        store.image(name)?
    } else {
        // An index pulled for one platform holds only that child.
        let (mt, body) = match store.manifest(&chosen) {
            Err(Error::BlobNotFound(_)) => {
                return Err(Error::ImageNotFound(format!("{name} for platform {want}")))
            }
            other => other?,
        };
        let Document::Image(m) = manifest::parse_document(&body, Some(&mt))?.1 else {
            return Err(Error::UnsupportedMediaType(mt));
        };
        let config_bytes = store.read_blob(&m.config.digest)?;
        let config = ImageConfig::parse(&config_bytes)?;
        Image {
            record: ImageRecord {
                name: record.name.clone(),
                target: record.target.clone(),
                manifest: chosen,
                config: m.config.digest.clone(),
                created: record.created,
            },
            manifest: m,
            config,
            config_bytes,
        }
    };
    let have = config_platform(&img.config);
    if explicit && !have.architecture.is_empty() && !want.matches(&have) {
        return Ok(Err(format!(
            "image {name} is for platform {have}, not the requested {want}"
        )));
    }
    Ok(Ok(img))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automatic_args_as_buildkit_names_them() {
        let b = Platform::parse("linux/amd64").unwrap_or_else(|_| Platform::host());
        let t = Platform {
            os: "linux".into(),
            architecture: "arm".into(),
            variant: Some("v7".into()),
        };
        let a: std::collections::BTreeMap<_, _> = automatic_args(&b, &t).into_iter().collect();
        assert_eq!(a["BUILDPLATFORM"], "linux/amd64");
        assert_eq!(a["BUILDOS"], "linux");
        assert_eq!(a["BUILDARCH"], "amd64");
        assert_eq!(a["BUILDVARIANT"], "");
        assert_eq!(a["TARGETPLATFORM"], "linux/arm/v7");
        assert_eq!(a["TARGETARCH"], "arm");
        assert_eq!(a["TARGETVARIANT"], "v7");
        assert_eq!(a.len(), 8);
    }
}
