//! Container id validation, as runc accepts them.

use crate::error::{Error, Result};

/// Ids become directory names under the state root, so anything that could
/// climb out of it or hide a path separator is refused.
pub fn validate(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && id != "."
        && id != ".."
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'+' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidId(id.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn accepts_runc_ids() {
        for id in ["a", "abc-123", "x_y.z+1", "A.B"] {
            assert!(validate(id).is_ok(), "{id}");
        }
    }

    #[test]
    fn refuses_paths_and_empty() {
        for id in ["", ".", "..", "../x", "a/b", "a b", "a\0b", "é"] {
            assert!(validate(id).is_err(), "{id:?}");
        }
    }
}
