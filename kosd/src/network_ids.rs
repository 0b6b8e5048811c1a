//! Docker network IDs. kos-network knows its networks by name; the API shows each network
//! with a 64-hex ID and a creation time, as dockerd does, kept in kosd's state database
//! (keyed by the network's name) from the network's creation, or from when kosd first
//! shows it (the default bridge kos-network makes on first use, host and none, a network
//! of an older kosd).

use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::error::{ApiError, Result};
use crate::state::Table;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NetworkMeta {
    /// Unix nanoseconds.
    pub created: i64,
    /// Empty in records of a kosd before IDs: one is given at the next look.
    #[serde(default)]
    pub id: String,
}

/// A new record for a network created now (replacing whatever a removed network of the
/// same name left).
pub fn record_new(e: &Engine, name: &str) -> Result<NetworkMeta> {
    let m = NetworkMeta {
        created: crate::timefmt::now_nanos(),
        id: crate::engine::random_id()?,
    };
    e.db().put(Table::Networks, name, name, &m)?;
    Ok(m)
}

/// The record of network `name`, made (and kept) on first look.
pub fn meta(e: &Engine, name: &str) -> Result<NetworkMeta> {
    // Bound first: the database guard must not live into the put's lock.
    let known = e.db().get::<NetworkMeta>(Table::Networks, name)?;
    match known {
        Some(m) if !m.id.is_empty() => Ok(m),
        Some(mut m) => {
            m.id = crate::engine::random_id()?;
            e.db().put(Table::Networks, name, name, &m)?;
            Ok(m)
        }
        None => record_new(e, name),
    }
}

/// The ID of network `name`; its name where the record cannot be read or written (a
/// value that still finds the network).
pub fn id_of(e: &Engine, name: &str) -> String {
    meta(e, name)
        .map(|m| m.id)
        .unwrap_or_else(|_| name.to_string())
}

pub fn forget(e: &Engine, name: &str) -> Result<()> {
    e.db().delete(Table::Networks, name).map(|_| ())
}

/// Which of `(name, id)` pairs `key` names, as dockerd resolves a network reference: a
/// full ID, then a name, then an ID prefix that only one network has.
pub fn resolve<'a>(key: &str, nets: &'a [(String, String)]) -> Result<&'a str> {
    if let Some((n, _)) = nets.iter().find(|(_, id)| id == key) {
        return Ok(n);
    }
    if let Some((n, _)) = nets.iter().find(|(n, _)| n == key) {
        return Ok(n);
    }
    let by_prefix: Vec<&(String, String)> = if key.is_empty() {
        Vec::new()
    } else {
        nets.iter().filter(|(_, id)| id.starts_with(key)).collect()
    };
    match by_prefix.as_slice() {
        [(n, _)] => Ok(n),
        [] => Err(ApiError::NotFound(format!("network {key} not found"))),
        many => Err(ApiError::bad(format!(
            "network {key} is ambiguous ({} matches found based on ID prefix)",
            many.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets() -> Vec<(String, String)> {
        vec![
            ("bridge".into(), "ab12".into()),
            ("ab".into(), "cd34".into()),
            ("web".into(), "ab99".into()),
        ]
    }

    #[test]
    fn ids_then_names_then_unique_prefixes() {
        let n = nets();
        assert_eq!(resolve("cd34", &n).ok(), Some("ab"));
        // A name wins over the ID prefix it also is.
        assert_eq!(resolve("ab", &n).ok(), Some("ab"));
        assert_eq!(resolve("ab1", &n).ok(), Some("bridge"));
        assert_eq!(resolve("c", &n).ok(), Some("ab"));
        assert!(matches!(resolve("a", &n), Err(ApiError::BadRequest(_))));
        assert!(matches!(resolve("zz", &n), Err(ApiError::NotFound(_))));
        assert!(matches!(resolve("", &n), Err(ApiError::NotFound(_))));
    }
}
