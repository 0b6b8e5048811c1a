//! Layer unpacking: decompression, whiteouts and root-confined extraction.

pub mod compression;
pub mod safe_path;
pub mod tar;
pub mod whiteout;

pub use self::compression::Compression;
pub use self::tar::{unpack_layer, Limits, Mode, UnpackOptions, UnpackStats};
