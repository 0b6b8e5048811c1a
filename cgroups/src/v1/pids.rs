//! v1 pids controller.

use std::path::Path;

use crate::error::Result;
use crate::fsutil::Writer;

/// The pids.max value for a spec limit: positive is a count, negative is unlimited, and 0
/// (the zero value of runtimes that always emit the field) leaves the file alone.
pub(crate) fn value(limit: i64) -> Option<String> {
    match limit {
        0 => None,
        l if l < 0 => Some("max".into()),
        l => Some(l.to_string()),
    }
}

pub(crate) fn write(d: &Path, v: &str, w: &mut Writer) -> Result<()> {
    w.write("linux.resources.pids.limit", &d.join("pids.max"), v)
}

#[cfg(test)]
mod tests {
    #[test]
    fn pids_values() {
        assert_eq!(super::value(0), None);
        assert_eq!(super::value(-1).as_deref(), Some("max"));
        assert_eq!(super::value(64).as_deref(), Some("64"));
    }
}
