//! Fallback when overlayfs is unavailable: apply every layer, in order, to a
//! plain directory.

use std::io::BufReader;
use std::path::Path;

use crate::error::Result;
use crate::store::{Image, Store};
use crate::unpack::{self, Mode, UnpackOptions};

/// Builds a full copy of the image's root filesystem in `dest`.
pub fn materialize(store: &Store, image: &Image, dest: &Path) -> Result<()> {
    for (i, layer) in image.manifest.layers.iter().enumerate() {
        let blob = BufReader::new(store.open_blob(&layer.digest)?);
        let opts = UnpackOptions {
            mode: Mode::Apply,
            limits: store.limits,
            expected_diff_id: image.config.rootfs.diff_ids.get(i).cloned(),
        };
        unpack::unpack_layer(blob, dest, &opts)?;
    }
    Ok(())
}
