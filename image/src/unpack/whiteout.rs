//! OCI whiteouts (`.wh.name`, `.wh..wh..opq`) and their overlayfs forms.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

pub const PREFIX: &str = ".wh.";
pub const OPAQUE: &str = ".wh..wh..opq";
/// overlayfs marks a directory that hides its lower layers with this xattr.
pub const OVERLAY_OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// What a file name means in a layer.
#[derive(Debug, PartialEq, Eq)]
pub enum Kind<'a> {
    /// A normal entry.
    Plain,
    /// Hide everything below the parent directory from lower layers.
    Opaque,
    /// Hide the named sibling from lower layers.
    Remove(&'a OsStr),
    /// An AUFS-internal name (e.g. `.wh..wh.plnk`) that carries no meaning here.
    Internal,
}

pub fn classify(name: &OsStr) -> Kind<'_> {
    let b = name.as_bytes();
    if b == OPAQUE.as_bytes() {
        return Kind::Opaque;
    }
    match b.strip_prefix(PREFIX.as_bytes()) {
        None => Kind::Plain,
        Some(rest) if rest.starts_with(PREFIX.as_bytes()) || rest.is_empty() => Kind::Internal,
        Some(rest) => {
            if rest == b"." || rest == b".." || rest.contains(&b'/') {
                Kind::Internal
            } else {
                Kind::Remove(OsStr::from_bytes(rest))
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        assert_eq!(classify(OsStr::new("a")), Kind::Plain);
        assert_eq!(classify(OsStr::new(".wh..wh..opq")), Kind::Opaque);
        assert_eq!(
            classify(OsStr::new(".wh.foo")),
            Kind::Remove(OsStr::new("foo"))
        );
        assert_eq!(classify(OsStr::new(".wh..wh.plnk")), Kind::Internal);
        assert_eq!(classify(OsStr::new(".wh..")), Kind::Internal);
    }
}
