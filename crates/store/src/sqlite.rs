//! The embedded SQLite backend (WAL, one writer, several readers).

use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

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
        body TEXT NOT NULL,
        account TEXT NOT NULL DEFAULT ''
    )",
    "CREATE TABLE IF NOT EXISTS audit_resource (
        seq INTEGER NOT NULL,
        name TEXT NOT NULL,
        PRIMARY KEY (name, seq)
    ) WITHOUT ROWID",
];

/// Indexes of the audit table, created after the migration. LookupEvents
/// always filters by account and pages newest first, so every lookup
/// attribute is indexed behind the account (the rowid `seq` follows each
/// index key, which gives the order for free). The event id is unique: a
/// request's final event replaces its draft by it.
const AUDIT_INDEXES: &[&str] = &[
    "CREATE UNIQUE INDEX IF NOT EXISTS audit_event_id_unique ON audit (event_id)",
    "CREATE INDEX IF NOT EXISTS audit_account ON audit (account)",
    "CREATE INDEX IF NOT EXISTS audit_account_name ON audit (account, event_name)",
    "CREATE INDEX IF NOT EXISTS audit_account_user ON audit (account, username)",
    "CREATE INDEX IF NOT EXISTS audit_account_key ON audit (account, access_key_id)",
    "CREATE INDEX IF NOT EXISTS audit_account_source ON audit (account, event_source)",
    "CREATE INDEX IF NOT EXISTS audit_account_time ON audit (account, event_time_ms)",
];

/// Indexes of data dirs written before the account column; each is
/// superseded by one in `AUDIT_INDEXES`.
const DROP_OLD_AUDIT_INDEXES: &[&str] = &[
    "DROP INDEX IF EXISTS audit_time",
    "DROP INDEX IF EXISTS audit_name",
    "DROP INDEX IF EXISTS audit_user",
    "DROP INDEX IF EXISTS audit_key",
    "DROP INDEX IF EXISTS audit_source",
    "DROP INDEX IF EXISTS audit_event_id",
];

/// Whether each commit waits for the disk. Both survive a crash of the
/// keycard process (kill -9): in WAL mode a commit is in the OS's page
/// cache before it returns. Only `PowerLoss` survives losing the machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// `synchronous=NORMAL`: no fsync per commit (the WAL is synced at
    /// checkpoints).
    #[default]
    Crash,
    /// `synchronous=FULL`: every commit fsyncs the WAL.
    PowerLoss,
}

/// SQLite store. `open` creates the file and schema when missing.
#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Open (or create) the database file at `path`.
    pub async fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, Durability::default()).await
    }

    /// Open (or create) the database file at `path` with the given
    /// commit durability.
    pub async fn open_with(path: &Path, durability: Durability) -> Result<Self> {
        let sync = match durability {
            Durability::Crash => SqliteSynchronous::Normal,
            Durability::PowerLoss => SqliteSynchronous::Full,
        };
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(sync)
            .busy_timeout(Duration::from_secs(10))
            // 8 MiB of page cache per connection: the audit indexes' hot
            // pages stay in memory under load.
            .pragma("cache_size", "-8192")
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
        migrate_audit(&pool).await?;
        for stmt in AUDIT_INDEXES {
            sqlx::query(*stmt).execute(&pool).await?;
        }
        Ok(SqliteStore { pool })
    }
}

/// Bring an audit table written by an older keycard up to date: add the
/// account column (filled from each event's `recipientAccountId`), drop
/// duplicate event ids so the id can be unique, and drop the old indexes.
async fn migrate_audit(pool: &SqlitePool) -> Result<()> {
    let cols = sqlx::query("SELECT name FROM pragma_table_info('audit')")
        .fetch_all(pool)
        .await?;
    let has_account = cols.iter().any(|r| r.get::<String, _>("name") == "account");
    let mut tx = pool.begin().await?;
    if !has_account {
        sqlx::query("ALTER TABLE audit ADD COLUMN account TEXT NOT NULL DEFAULT ''")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE audit SET account = CASE WHEN json_valid(body)
                 THEN COALESCE(json_extract(body, '$.recipientAccountId'), '') ELSE '' END",
        )
        .execute(&mut *tx)
        .await?;
    }
    let unique = sqlx::query(
        "SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'audit_event_id_unique'",
    )
    .fetch_optional(&mut *tx)
    .await?
    .is_some();
    if !unique {
        sqlx::query(
            "DELETE FROM audit WHERE seq NOT IN (SELECT MIN(seq) FROM audit GROUP BY event_id)",
        )
        .execute(&mut *tx)
        .await?;
    }
    for stmt in DROP_OLD_AUDIT_INDEXES {
        sqlx::query(*stmt).execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// Insert audit events on `conn`. With `replace`, an event whose id is
/// stored replaces it (same `seq`); without, it is skipped.
async fn insert_audit(conn: &mut SqliteConnection, rows: &[AuditRow], replace: bool) -> Result<()> {
    // Multi-row statements: one round trip per chunk, not per event.
    for chunk in rows.chunks(200) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO audit (event_id, event_time_ms, event_name, event_source, username,
                                access_key_id, account, read_only, body) ",
        );
        qb.push_values(chunk, |mut b, r| {
            b.push_bind(&r.event_id)
                .push_bind(r.event_time_ms)
                .push_bind(&r.event_name)
                .push_bind(&r.event_source)
                .push_bind(&r.username)
                .push_bind(&r.access_key_id)
                .push_bind(&r.account)
                .push_bind(r.read_only as i64)
                .push_bind(&r.body);
        });
        if replace {
            qb.push(
                " ON CONFLICT (event_id) DO UPDATE SET event_time_ms = excluded.event_time_ms,
                  event_name = excluded.event_name, event_source = excluded.event_source,
                  username = excluded.username, access_key_id = excluded.access_key_id,
                  account = excluded.account, read_only = excluded.read_only,
                  body = excluded.body",
            );
        } else {
            qb.push(" ON CONFLICT (event_id) DO NOTHING");
        }
        qb.push(" RETURNING seq, event_id");
        let written = qb.build().fetch_all(&mut *conn).await?;
        let seqs: HashMap<String, i64> = written
            .iter()
            .map(|r| (r.get::<String, _>("event_id"), r.get::<i64, _>("seq")))
            .collect();
        let names: Vec<(i64, &String)> = chunk
            .iter()
            .filter_map(|r| seqs.get(&r.event_id).map(|seq| (*seq, r)))
            .flat_map(|(seq, r)| r.resource_names.iter().map(move |n| (seq, n)))
            .collect();
        for part in names.chunks(500) {
            let mut qb: QueryBuilder<Sqlite> =
                QueryBuilder::new("INSERT OR IGNORE INTO audit_resource (seq, name) ");
            qb.push_values(part, |mut b, (seq, name)| {
                b.push_bind(*seq).push_bind(*name);
            });
            qb.build().execute(&mut *conn).await?;
        }
    }
    Ok(())
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
        account: r.get("account"),
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

    async fn commit(&self, ops: &[Op], audit: &[AuditRow]) -> Result<()> {
        if ops.is_empty() && audit.is_empty() {
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
        insert_audit(&mut tx, audit, false).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn append_audit(&self, rows: &[AuditRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        insert_audit(&mut tx, rows, true).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn query_audit(&self, q: &AuditQuery) -> Result<Vec<AuditRow>> {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new("SELECT a.* FROM audit a WHERE 1=1");
        if let Some(v) = &q.account {
            qb.push(" AND a.account = ").push_bind(v.clone());
        }
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
        if out.is_empty() {
            return Ok(out);
        }
        // The resource names of the whole page in one query.
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT seq, name FROM audit_resource WHERE seq IN (");
        let mut list = qb.separated(", ");
        for row in &out {
            list.push_bind(row.seq);
        }
        qb.push(") ORDER BY name");
        let mut names: HashMap<i64, Vec<String>> = HashMap::new();
        for r in qb.build().fetch_all(&self.pool).await? {
            names.entry(r.get("seq")).or_default().push(r.get("name"));
        }
        for row in &mut out {
            row.resource_names = names.remove(&row.seq).unwrap_or_default();
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
