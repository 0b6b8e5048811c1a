//! The daemon's own state in SQLite (WAL): containers, volumes and networks as
//! JSON records keyed by id, with unique names. Each write is one transaction,
//! so a crash leaves either the old or the new record.

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::{ApiError, Result};

/// Tables holding one kind of object each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Containers,
    Volumes,
    Networks,
}

impl Table {
    const ALL: [Table; 3] = [Table::Containers, Table::Volumes, Table::Networks];

    fn index(self) -> usize {
        self as usize
    }

    fn name(self) -> &'static str {
        match self {
            Table::Containers => "containers",
            Table::Volumes => "volumes",
            Table::Networks => "networks",
        }
    }
}

/// SQLite's page cache per connection, in KiB (as `cache_size` takes it: negative). It
/// holds pages as they are read, so a small store costs only its size; but a scan of a
/// table larger than the cache misses on every page (least recently used goes first), and
/// each list of containers reads them all: 2 MiB keeps ~700 container records (~2 KiB
/// each) cached. At 256 KiB, 100 containers (280 KiB of pages) were read again from the
/// kernel by every list.
const SQLITE_CACHE_KIB: i64 = -2048;

/// Statements kept prepared: each of the handful of queries for each table.
const STATEMENT_CACHE: usize = 32;

pub struct StateDb {
    conn: Connection,
    /// Per table, a value that changes at every write (drawn from [`GENERATIONS`], so no two
    /// databases or writes share one): a reader that decoded a table at one generation
    /// knows it unchanged while the value is the same.
    generations: [std::sync::atomic::AtomicU64; 3],
}

/// Where generations come from, process-wide.
static GENERATIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn next_generation() -> u64 {
    GENERATIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl StateDb {
    pub fn open(path: &Path) -> Result<StateDb> {
        let conn = Connection::open(path)
            .map_err(|e| ApiError::internal(&format!("opening {}", path.display()), e))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "cache_size", SQLITE_CACHE_KIB)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // Every statement is prepared once and kept (parsing one cost more than running it).
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        for t in Table::ALL {
            conn.execute_batch(&format!(
                "CREATE TABLE IF NOT EXISTS {} (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, record TEXT NOT NULL)",
                t.name()
            ))?;
        }
        Ok(StateDb {
            conn,
            generations: Table::ALL.map(|_| next_generation().into()),
        })
    }

    /// The table's current generation (see [`StateDb::generations`]).
    pub fn generation(&self, t: Table) -> u64 {
        self.generations[t.index()].load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Called before each write, whether or not it then succeeds.
    fn written(&self, t: Table) {
        self.generations[t.index()].store(next_generation(), std::sync::atomic::Ordering::Relaxed);
    }

    /// Inserts or replaces a record; a name held by another id is a conflict.
    pub fn put<T: Serialize>(&self, t: Table, id: &str, name: &str, rec: &T) -> Result<()> {
        let json =
            serde_json::to_string(rec).map_err(|e| ApiError::internal("encoding record", e))?;
        self.written(t);
        let r = self
            .conn
            .prepare_cached(&format!(
                "INSERT INTO {} (id, name, record) VALUES (?1, ?2, ?3)
                 ON CONFLICT(id) DO UPDATE SET name = excluded.name, record = excluded.record",
                t.name()
            ))?
            .execute(params![id, name, json]);
        match r {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(ApiError::Conflict(format!(
                    "Conflict. The name \"{name}\" is already in use"
                )))
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn get<T: DeserializeOwned>(&self, t: Table, id: &str) -> Result<Option<T>> {
        self.record_where(t, "id", id)
    }

    /// The one record whose `column` (id or name, both unique) is `key`.
    fn record_where<T: DeserializeOwned>(
        &self,
        t: Table,
        column: &str,
        key: &str,
    ) -> Result<Option<T>> {
        let s: Option<String> = self
            .conn
            .prepare_cached(&format!(
                "SELECT record FROM {} WHERE {column} = ?1",
                t.name()
            ))?
            .query_row(params![key], |r| r.get(0))
            .optional()?;
        s.map(|s| serde_json::from_str(&s).map_err(|e| ApiError::internal("decoding record", e)))
            .transpose()
    }

    /// The record named `name` (the unique `name` column: no other record is decoded).
    pub fn get_by_name<T: DeserializeOwned>(&self, t: Table, name: &str) -> Result<Option<T>> {
        self.record_where(t, "name", name)
    }

    /// The id of the record named `name`, if any.
    pub fn id_of_name(&self, t: Table, name: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .prepare_cached(&format!("SELECT id FROM {} WHERE name = ?1", t.name()))?
            .query_row(params![name], |r| r.get(0))
            .optional()?)
    }

    /// Up to `limit` ids that start with `prefix`, read from the id column alone.
    pub fn ids_with_prefix(&self, t: Table, prefix: &str, limit: u32) -> Result<Vec<String>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT id FROM {} WHERE substr(id, 1, length(?1)) = ?1 LIMIT ?2",
            t.name()
        ))?;
        let rows = st.query_map(params![prefix, limit], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    pub fn delete(&self, t: Table, id: &str) -> Result<bool> {
        self.written(t);
        Ok(self
            .conn
            .prepare_cached(&format!("DELETE FROM {} WHERE id = ?1", t.name()))?
            .execute(params![id])?
            > 0)
    }

    /// Each record's id and JSON text in rowid order, borrowed from SQLite's row (no copy),
    /// for a caller that decodes only the records it has not seen in that exact text.
    pub fn each_record(&self, t: Table, mut f: impl FnMut(&str, &str)) -> Result<()> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT id, record FROM {} ORDER BY rowid",
            t.name()
        ))?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let text = |i: usize| -> Result<&str> {
                r.get_ref(i)?
                    .as_str()
                    .map_err(|e| ApiError::internal("reading a record", e))
            };
            f(text(0)?, text(1)?);
        }
        Ok(())
    }

    /// Every record; undecodable rows (from a newer kosd, or damage) are skipped with a warning.
    pub fn all<T: DeserializeOwned>(&self, t: Table) -> Result<Vec<T>> {
        let mut st = self.conn.prepare_cached(&format!(
            "SELECT id, record FROM {} ORDER BY rowid",
            t.name()
        ))?;
        let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, rec) = row?;
            match serde_json::from_str(&rec) {
                Ok(v) => out.push(v),
                Err(e) => tracing::warn!(table = t.name(), %id, error = %e, "skipping bad record"),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn generations_change_with_every_write_and_differ_between_stores() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(&dir.path().join("a.db")).unwrap();
        let other = StateDb::open(&dir.path().join("b.db")).unwrap();
        let g0 = db.generation(Table::Containers);
        assert_ne!(g0, other.generation(Table::Containers));
        db.put(Table::Volumes, "v", "v", &1).unwrap();
        assert_eq!(
            db.generation(Table::Containers),
            g0,
            "another table's write"
        );
        db.put(Table::Containers, "c", "c", &1).unwrap();
        let g1 = db.generation(Table::Containers);
        assert_ne!(g1, g0);
        let _: Option<i32> = db.get(Table::Containers, "c").unwrap();
        db.each_record(Table::Containers, |_, _| {}).unwrap();
        assert_eq!(db.generation(Table::Containers), g1, "reads");
        // A failed write may still have changed nothing or something: it counts.
        db.put(Table::Containers, "d", "c", &2).unwrap_err();
        let g2 = db.generation(Table::Containers);
        assert_ne!(g2, g1);
        db.delete(Table::Containers, "c").unwrap();
        assert_ne!(db.generation(Table::Containers), g2);
    }

    #[test]
    fn records_and_name_conflicts() {
        let dir = tempfile::tempdir().unwrap();
        let db = StateDb::open(&dir.path().join("s.db")).unwrap();
        db.put(Table::Volumes, "a", "one", &serde_json::json!({"x": 1}))
            .unwrap();
        let e = db
            .put(Table::Volumes, "b", "one", &serde_json::json!({}))
            .unwrap_err();
        assert!(matches!(e, ApiError::Conflict(_)), "{e}");
        db.put(Table::Volumes, "a", "renamed", &serde_json::json!({"x": 2}))
            .unwrap();
        let v: serde_json::Value = db.get(Table::Volumes, "a").unwrap().unwrap();
        assert_eq!(v["x"], 2);
        assert_eq!(
            db.all::<serde_json::Value>(Table::Volumes).unwrap().len(),
            1
        );
        let mut seen = Vec::new();
        db.each_record(Table::Volumes, |id, rec| {
            seen.push((id.to_string(), rec.to_string()))
        })
        .unwrap();
        assert_eq!(seen, [("a".to_string(), r#"{"x":2}"#.to_string())]);
        assert!(db.delete(Table::Volumes, "a").unwrap());
        assert!(db
            .get::<serde_json::Value>(Table::Volumes, "a")
            .unwrap()
            .is_none());
        let mode: String = db
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }
}
