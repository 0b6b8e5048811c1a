//! Images no tag points at, kept as Docker keeps them (`<none>:<none>`):
//! the result of a build without `-t`, and the image a rebuild's tag moved
//! away from. The store names every image it keeps, so such an image is
//! recorded under a name that is not a valid reference
//! (`<none>:<none>@<image id>`): listings that show tags and digests skip
//! it, lookups by image id find it, and an image prune removes it.

use crate::digest::Digest;
use crate::error::Result;
use crate::store::{ImageRecord, Store};

const PREFIX: &str = "<none>:<none>@";

/// The store name of the dangling image with this id (config digest).
pub fn name(image_id: &Digest) -> String {
    format!("{PREFIX}{image_id}")
}

/// Whether a store name is a dangling image's.
pub fn is_dangling(name: &str) -> bool {
    name.starts_with(PREFIX)
}

/// The images `tags` point at before the build moves them.
pub fn displaced(store: &Store, tags: &[String]) -> Result<Vec<ImageRecord>> {
    let mut out = Vec::new();
    for t in tags {
        match store.image_record(t) {
            Ok(r) => out.push(r),
            Err(crate::Error::ImageNotFound(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

/// After the build named (or did not name) its image `new` (record of its
/// manifest and id): every displaced image that no name reaches any more is
/// kept as dangling, an untagged result is kept as dangling, and a result
/// that got a tag is no longer dangling.
pub fn settle(
    store: &Store,
    displaced: &[ImageRecord],
    manifest: &Digest,
    image_id: &Digest,
    tagged: bool,
) -> Result<()> {
    let all = store.images()?;
    let named = |id: &Digest| all.iter().any(|r| &r.config == id && !is_dangling(&r.name));
    for old in displaced {
        if &old.config != image_id && !named(&old.config) {
            store.tag_image(&name(&old.config), &old.target, &old.manifest)?;
        }
    }
    let own = name(image_id);
    if tagged {
        if all.iter().any(|r| r.name == own) {
            store.remove_image(&own)?;
        }
    } else if !named(image_id) {
        store.tag_image(&own, manifest, manifest)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_not_references() {
        let d = Digest::of(b"config");
        let n = name(&d);
        assert!(is_dangling(&n));
        assert!(!is_dangling("docker.io/library/app:1"));
        assert!(crate::ImageRef::parse(&n).is_err(), "{n}");
    }
}
