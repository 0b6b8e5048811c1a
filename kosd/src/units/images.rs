//! The units' images: OCI archives `NAME.oci.tar` (services/build-images.sh, installed by
//! `make install`) loaded into kosd's store as `kos.local/NAME:latest` when missing.

use std::path::Path;

use crate::engine::Engine;

/// Loads every archive of the unit image directory whose image the store lacks. A missing
/// directory is no images; a bad archive is logged and skipped (its units fail to start
/// and say why).
pub fn load_missing(e: &Engine) {
    let dir = &e.config.unit_image_dir;
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return,
        Err(err) => {
            tracing::warn!(dir = %dir.display(), error = %err, "reading the unit image directory");
            return;
        }
    };
    let mut files: Vec<_> = rd.flatten().map(|d| d.path()).collect();
    files.sort();
    for path in files {
        let Some(name) = image_name(&path) else {
            continue;
        };
        if crate::images::resolve(&e.store, &name).is_ok() {
            continue;
        }
        match load(e, &path) {
            Ok(n) => tracing::info!(image = %name, loaded = n, "unit image loaded"),
            Err(err) => {
                tracing::warn!(archive = %path.display(), error = %err, "loading a unit image")
            }
        }
    }
}

/// `kaim.oci.tar` -> `kos.local/kaim:latest`.
fn image_name(p: &Path) -> Option<String> {
    let stem = p.file_name()?.to_str()?.strip_suffix(".oci.tar")?;
    let ok = !stem.is_empty()
        && stem
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    ok.then(|| format!("kos.local/{stem}:latest"))
}

fn load(e: &Engine, p: &Path) -> Result<usize, String> {
    let f = std::fs::File::open(p).map_err(|err| err.to_string())?;
    let recs =
        kos_image::archive::oci_layout::load_tar(&e.store, std::io::BufReader::new(f), None, None)
            .map_err(|err| err.to_string())?;
    for r in &recs {
        let shown = crate::images::familiar(&r.name);
        e.event("image", "load", &shown, &[("name", &shown)]);
    }
    Ok(recs.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names() {
        assert_eq!(
            image_name(Path::new("/usr/lib/kos/images/kaim.oci.tar")).as_deref(),
            Some("kos.local/kaim:latest")
        );
        assert_eq!(
            image_name(Path::new("/x/kos-dns.oci.tar")).as_deref(),
            Some("kos.local/kos-dns:latest")
        );
        assert_eq!(image_name(Path::new("/x/README")), None);
        assert_eq!(image_name(Path::new("/x/Bad Name.oci.tar")), None);
    }
}
