//! The embedded SQLite backend (WAL, one writer, several readers).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite};

use crate::{AuditQuery, AuditRow, Op, Record, Result, Store};

const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS records (
        kind TEXT NOT NULL,
        key TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (kind, key)
    ) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL)",
    "CREATE TABLE IF NOT EXISTS audit (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL,
        event_time_ms INTEGER NOT NULL,
        event_name TEXT NOT NULL,
        event_source TEXT NOT NULL,
        username TEXT NOT NULL,
        access_key_id TEXT NOT NULL,
        read_only INTEGER NOT NULL,
        body TEXT NOT NULL
    )",
    "CREATE INDEX IF NOT EXISTS audit_time ON audit (event_time_ms)",
    "CREATE INDEX IF NOT EXISTS audit_name ON audit (event_name)",
    "CREATE INDEX IF NOT EXISTS audit_user ON audit (username)",
    "CREATE INDEX IF NOT EXISTS audit_key ON audit (access_key_id)",
    "CREATE INDEX IF NOT EXISTS audit_source ON audit (event_source)",
    "CREATE INDEX IF NOT EXISTS audit_event_id ON audit (event_id)",
    "CREATE TABLE IF NOT EXISTS audit_resource (
        seq INTEGER NOT NULL,
        name TEXT NOT NULL,
        PRIMARY KEY (name, seq)
    ) WITHOUT ROWID",
];

/// SQLite store. `open` creates the file and schema when missing.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Open (or create) the database file at `path`.
    pub async fn open(path: &Path) -> Result<Self> {
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        Self::init(pool).await
    }

    /// A private in-memory database (tests, `--ephemeral`).
    pub async fn memory() -> Result<Self> {
        let opts = SqliteConnectOptions::from_str("sqlite::memory:")?;
        // One connection: every connection to `:memory:` is its own database.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await?;
        Self::init(pool).await
    }

    async fn init(pool: SqlitePool) -> Result<Self> {
        for stmt in SCHEMA {
            sqlx::query(*stmt).execute(&pool).await?;
        }
        Ok(SqliteStore { pool })
    }
}

fn row_to_audit(r: &sqlx::sqlite::SqliteRow) -> AuditRow {
    AuditRow {
        seq: r.get("seq"),
        event_id: r.get("event_id"),
        event_time_ms: r.get("event_time_ms"),
        event_name: r.get("event_name"),
        event_source: r.get("event_source"),
        username: r.get("username"),
        access_key_id: r.get("access_key_id"),
        resource_names: Vec::new(),
        read_only: r.get::<i64, _>("read_only") != 0,
        body: r.get("body"),
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn load_all(&self) -> Result<Vec<Record>> {
        let rows = sqlx::query("SELECT kind, key, value FROM records ORDER BY kind, key")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| Record {
                kind: r.get("kind"),
                key: r.get("key"),
                value: r.get("value"),
            })
            .collect())
    }

    async fn load_kind(&self, kind: &str) -> Result<Vec<Record>> {
        let rows = sqlx::query("SELECT kind, key, value FROM records WHERE kind = ? ORDER BY key")
            .bind(kind)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(|r| Record {
                kind: r.get("kind"),
                key: r.get("key"),
                value: r.get("value"),
            })
            .collect())
    }

    async fn commit(&self, ops: &[Op]) -> Result<()> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        for op in ops {
            match op {
                Op::Put { kind, key, value } => {
                    sqlx::query(
                        "INSERT INTO records (kind, key, value) VALUES (?, ?, ?)
                         ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value",
                    )
                    .bind(kind)
                    .bind(key)
                    .bind(value)
                    .execute(&mut *tx)
                    .await?;
                }
                Op::Delete { kind, key } => {
                    sqlx::query("DELETE FROM records WHERE kind = ? AND key = ?")
                        .bind(kind)
                        .bind(key)
                        .execute(&mut *tx)
                        .await?;
                }
                Op::DeleteKind { kind } => {
                    sqlx::query("DELETE FROM records WHERE kind = ?")
                        .bind(kind)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn append_audit(&self, rows: &[AuditRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        // Multi-row statements: one round trip per chunk, not per event.
        for chunk in rows.chunks(200) {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO audit (event_id, event_time_ms, event_name, event_source, username,
                                    access_key_id, read_only, body) ",
            );
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(&r.event_id)
                    .push_bind(r.event_time_ms)
                    .push_bind(&r.event_name)
                    .push_bind(&r.event_source)
                    .push_bind(&r.username)
                    .push_bind(&r.access_key_id)
                    .push_bind(r.read_only as i64)
                    .push_bind(&r.body);
            });
            let res = qb.build().execute(&mut *tx).await?;
            // One statement assigns consecutive rowids inside the
            // transaction, so the first row's seq follows from the last.
            let last = res.last_insert_rowid();
            let first = last - chunk.len() as i64 + 1;
            let names: Vec<(i64, &String)> = chunk
                .iter()
                .enumerate()
                .flat_map(|(i, r)| r.resource_names.iter().map(move |n| (first + i as i64, n)))
                .collect();
            for part in names.chunks(500) {
                let mut qb: QueryBuilder<Sqlite> =
                    QueryBuilder::new("INSERT OR IGNORE INTO audit_resource (seq, name) ");
                qb.push_values(part, |mut b, (seq, name)| {
                    b.push_bind(*seq).push_bind(*name);
                });
                qb.build().execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn query_audit(&self, q: &AuditQuery) -> Result<Vec<AuditRow>> {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT a.* FROM audit a WHERE 1=1");
        if let Some(v) = &q.event_name {
            qb.push(" AND a.event_name = ").push_bind(v.clone());
        }
        if let Some(v) = &q.event_source {
            qb.push(" AND a.event_source = ").push_bind(v.clone());
        }
        if let Some(v) = &q.username {
            qb.push(" AND a.username = ").push_bind(v.clone());
        }
        if let Some(v) = &q.access_key_id {
            qb.push(" AND a.access_key_id = ").push_bind(v.clone());
        }
        if let Some(v) = &q.event_id {
            qb.push(" AND a.event_id = ").push_bind(v.clone());
        }
        if let Some(v) = q.read_only {
            qb.push(" AND a.read_only = ").push_bind(v as i64);
        }
        if let Some(v) = &q.resource_name {
            qb.push(" AND a.seq IN (SELECT seq FROM audit_resource WHERE name = ")
                .push_bind(v.clone())
                .push(")");
        }
        if let Some(v) = q.start_ms {
            qb.push(" AND a.event_time_ms >= ").push_bind(v);
        }
        if let Some(v) = q.end_ms {
            qb.push(" AND a.event_time_ms <= ").push_bind(v);
        }
        if let Some(v) = q.before_seq {
            qb.push(" AND a.seq < ").push_bind(v);
        }
        if let Some(v) = q.after_seq {
            qb.push(" AND a.seq > ").push_bind(v);
            qb.push(" ORDER BY a.seq ASC");
        } else {
            qb.push(" ORDER BY a.seq DESC");
        }
        let limit = if q.limit == 0 {
            50
        } else {
            q.limit.min(10_000)
        };
        qb.push(" LIMIT ").push_bind(limit as i64);
        let rows = qb.build().fetch_all(&self.pool).await?;
        let mut out: Vec<AuditRow> = rows.iter().map(row_to_audit).collect();
        for row in &mut out {
            let names = sqlx::query("SELECT name FROM audit_resource WHERE seq = ? ORDER BY name")
                .bind(row.seq)
                .fetch_all(&self.pool)
                .await?;
            row.resource_names = names.iter().map(|r| r.get("name")).collect();
        }
        Ok(out)
    }

    async fn clear_audit(&self) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM audit").execute(&mut *tx).await?;
        sqlx::query("DELETE FROM audit_resource")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.get::<Vec<u8>, _>("value")))
    }

    async fn put_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES (?, ?)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
