//! The metadata database: image names, manifests and snapshots (SQLite, WAL).

use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension};

use crate::digest::Digest;
use crate::error::{Error, Result};

/// A named image in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    /// Canonical reference, e.g. `localhost:5000/app:1.2`.
    pub name: String,
    /// Digest of what the name points at (an index or a manifest).
    pub target: Digest,
    /// Digest of the platform manifest that was selected.
    pub manifest: Digest,
    pub config: Digest,
    /// Unix seconds.
    pub created: i64,
}

/// A unpacked layer directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotRecord {
    pub chain_id: Digest,
    pub diff_id: Digest,
    pub parent: Option<Digest>,
    pub size: u64,
}

pub(crate) struct Db {
    conn: Connection,
}

fn digest_col(s: String) -> rusqlite::Result<Digest> {
    s.parse().map_err(|e: Error| {
        rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e))
    })
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

impl Db {
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // SQLite's own page cache (2 MiB by default) only doubles the kernel's for this
        // small database; a daemon holding the store keeps that cache for its whole life.
        conn.pragma_update(None, "cache_size", -256)?;
        // Every statement is prepared once and kept: a container's create and removal run
        // several, and parsing one cost more than running it.
        conn.set_prepared_statement_cache_capacity(32);
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS manifests (
                digest TEXT PRIMARY KEY,
                media_type TEXT NOT NULL,
                body BLOB NOT NULL
            );
            CREATE TABLE IF NOT EXISTS images (
                name TEXT PRIMARY KEY,
                target TEXT NOT NULL REFERENCES manifests(digest),
                manifest TEXT NOT NULL REFERENCES manifests(digest),
                config TEXT NOT NULL,
                created INTEGER NOT NULL
            );
            CREATE TABLE IF NOT EXISTS snapshots (
                chain_id TEXT PRIMARY KEY,
                diff_id TEXT NOT NULL,
                parent TEXT,
                size INTEGER NOT NULL
            );
            CREATE TABLE IF NOT EXISTS leases (
                id TEXT PRIMARY KEY,
                chain_id TEXT NOT NULL
            );",
        )?;
        Ok(Db { conn })
    }

    pub fn put_manifest(&self, digest: &Digest, media_type: &str, body: &[u8]) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR IGNORE INTO manifests (digest, media_type, body) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![digest.to_string(), media_type, body])?;
        Ok(())
    }

    pub fn manifest(&self, digest: &Digest) -> Result<Option<(String, Vec<u8>)>> {
        Ok(self
            .conn
            .prepare_cached("SELECT media_type, body FROM manifests WHERE digest = ?1")?
            .query_row(params![digest.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?)
    }

    pub fn all_manifests(&self) -> Result<Vec<(Digest, String, Vec<u8>)>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT digest, media_type, body FROM manifests")?;
        let rows = st.query_map([], |r| Ok((digest_col(r.get(0)?)?, r.get(1)?, r.get(2)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn delete_manifest(&self, digest: &Digest) -> Result<()> {
        self.conn
            .prepare_cached("DELETE FROM manifests WHERE digest = ?1")?
            .execute(params![digest.to_string()])?;
        Ok(())
    }

    pub fn put_image(
        &self,
        name: &str,
        target: &Digest,
        manifest: &Digest,
        config: &Digest,
    ) -> Result<()> {
        self.conn.prepare_cached("INSERT INTO images (name, target, manifest, config, created) VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT(name) DO UPDATE SET target = excluded.target, manifest = excluded.manifest,
               config = excluded.config, created = excluded.created")?.execute(params![name, target.to_string(), manifest.to_string(), config.to_string(), now()],
        )?;
        Ok(())
    }

    fn image_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ImageRecord> {
        Ok(ImageRecord {
            name: r.get(0)?,
            target: digest_col(r.get(1)?)?,
            manifest: digest_col(r.get(2)?)?,
            config: digest_col(r.get(3)?)?,
            created: r.get(4)?,
        })
    }

    pub fn image(&self, name: &str) -> Result<Option<ImageRecord>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT name, target, manifest, config, created FROM images WHERE name = ?1",
            )?
            .query_row(params![name], Self::image_row)
            .optional()?)
    }

    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        let mut st = self.conn.prepare_cached(
            "SELECT name, target, manifest, config, created FROM images ORDER BY name",
        )?;
        let rows = st.query_map([], Self::image_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn delete_image(&self, name: &str) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("DELETE FROM images WHERE name = ?1")?
            .execute(params![name])?
            > 0)
    }

    pub fn put_snapshot(&self, s: &SnapshotRecord) -> Result<()> {
        self.conn.prepare_cached("INSERT OR REPLACE INTO snapshots (chain_id, diff_id, parent, size) VALUES (?1, ?2, ?3, ?4)")?.execute(params![
                s.chain_id.to_string(),
                s.diff_id.to_string(),
                s.parent.as_ref().map(|p| p.to_string()),
                s.size as i64
            ],
        )?;
        Ok(())
    }

    pub fn snapshot(&self, chain_id: &Digest) -> Result<Option<SnapshotRecord>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT chain_id, diff_id, parent, size FROM snapshots WHERE chain_id = ?1",
            )?
            .query_row(params![chain_id.to_string()], Self::snapshot_row)
            .optional()?)
    }

    fn snapshot_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<SnapshotRecord> {
        let parent: Option<String> = r.get(2)?;
        Ok(SnapshotRecord {
            chain_id: digest_col(r.get(0)?)?,
            diff_id: digest_col(r.get(1)?)?,
            parent: parent.map(digest_col).transpose()?,
            size: r.get::<_, i64>(3)? as u64,
        })
    }

    pub fn snapshots(&self) -> Result<Vec<SnapshotRecord>> {
        let mut st = self
            .conn
            .prepare_cached("SELECT chain_id, diff_id, parent, size FROM snapshots")?;
        let rows = st.query_map([], Self::snapshot_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn delete_snapshot(&self, chain_id: &Digest) -> Result<()> {
        self.conn
            .prepare_cached("DELETE FROM snapshots WHERE chain_id = ?1")?
            .execute(params![chain_id.to_string()])?;
        Ok(())
    }

    pub fn put_lease(&self, id: &str, chain_id: &Digest) -> Result<()> {
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO leases (id, chain_id) VALUES (?1, ?2)")?
            .execute(params![id, chain_id.to_string()])?;
        Ok(())
    }

    pub fn delete_lease(&self, id: &str) -> Result<()> {
        self.conn
            .prepare_cached("DELETE FROM leases WHERE id = ?1")?
            .execute(params![id])?;
        Ok(())
    }

    pub fn leased_chain_ids(&self) -> Result<Vec<Digest>> {
        let mut st = self.conn.prepare_cached("SELECT chain_id FROM leases")?;
        let rows = st.query_map([], |r| digest_col(r.get(0)?))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }
}
