//! The embedded SQLite backend (WAL, one writer, several readers), with
//! audit events journaled first and indexed in batches (`journal`); a
//! journaled event's body stays in its journal file, the table points at it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use crate::journal::{self, Decoded, Journal, Loc, Pos};
use crate::mover;
use crate::{AuditQuery, AuditRow, Op, Record, Result, Store, StoreError};

/// Meta key: the journal position (`gen:offset`) of the first byte not yet
/// in the audit table (before bodies stayed in the files: a generation).
pub(crate) const JOURNAL_GEN: &str = "audit_journal_gen";

/// How often journaled events move into the audit table when idle.
const INGEST_EVERY: Duration = Duration::from_millis(250);

/// Pending journal bytes that start a move without waiting for the timer
/// (about 700 events): bounds the memory a burst holds.
const INGEST_AT_BYTES: usize = 1 << 20;

/// Settings every connection to the database file shares, the pool's and
/// the move's (`mover::open`).
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);
/// SQLite's default 2 MiB page cache per connection: audit events are
/// indexed in batches, so a larger cache only holds memory (8 MiB × 4
/// connections showed in RSS).
pub(crate) const CACHE_SIZE: &str = "-2000";
/// Checkpoint every ~16 MiB of WAL instead of 4 MiB: the audit indexes'
/// hot pages are copied once per checkpoint, not once per 1,000 pages.
pub(crate) const WAL_AUTOCHECKPOINT: &str = "4000";

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
        account TEXT NOT NULL DEFAULT '',
        seg INTEGER,
        seg_off INTEGER,
        seg_len INTEGER,
        resources TEXT NOT NULL DEFAULT '[]'
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
    // The oldest journal file a row still points into: older ones can go.
    "CREATE INDEX IF NOT EXISTS audit_seg ON audit (seg) WHERE seg IS NOT NULL",
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

/// The move's connection, shared with the blocking task that uses it.
type Mover = Arc<std::sync::Mutex<rusqlite::Connection>>;

/// SQLite store. `open` creates the file and schema when missing.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: SqlitePool,
    /// Where the journal files (the bodies of journaled events) are; `None`
    /// for the in-memory store, which has none.
    dir: Option<PathBuf>,
    /// The journal, when this process owns it. Without (the in-memory
    /// store, or a second process on a directory a server owns) events go
    /// straight into the table.
    journal: Option<Arc<Journal>>,
    /// The move's own connection (with the journal): see `mover`.
    mover: Option<Mover>,
    /// One move from the journal into the table at a time.
    ingest: tokio::sync::Mutex<()>,
    wake: Arc<tokio::sync::Notify>,
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
            .busy_timeout(BUSY_TIMEOUT)
            .pragma("cache_size", CACHE_SIZE)
            .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        init_schema(&pool).await?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        // One process owns the journal (the server); another one opening
        // the same directory meanwhile (`keycard audit tail`) reads the
        // table and writes its own events straight into it.
        let Some(lock) = journal::try_own(&dir)? else {
            return Ok(SqliteStore::from_parts(pool, Some(dir), None));
        };
        let mover = Arc::new(std::sync::Mutex::new(mover::open(path, durability)?));
        let generation = recover_journal(&pool, mover.clone(), &dir).await?;
        let sync = durability == Durability::PowerLoss;
        let journal = Arc::new(Journal::create(&dir, generation, sync, lock)?);
        let store = SqliteStore::from_parts(pool, Some(dir), Some((journal, mover)));
        tokio::spawn(ingest_loop(
            Arc::downgrade(&store.inner),
            store.inner.wake.clone(),
        ));
        Ok(store)
    }

    /// A private in-memory database (tests, `--ephemeral`).
    pub async fn memory() -> Result<Self> {
        let opts = SqliteConnectOptions::from_str("sqlite::memory:")?;
        // One connection: every connection to `:memory:` is its own database.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts)
            .await?;
        init_schema(&pool).await?;
        Ok(SqliteStore::from_parts(pool, None, None))
    }

    fn from_parts(
        pool: SqlitePool,
        dir: Option<PathBuf>,
        owned: Option<(Arc<Journal>, Mover)>,
    ) -> SqliteStore {
        let (journal, mover) = owned.unzip();
        SqliteStore {
            inner: Arc::new(Inner {
                pool,
                dir,
                journal,
                mover,
                ingest: tokio::sync::Mutex::new(()),
                wake: Arc::new(tokio::sync::Notify::new()),
            }),
        }
    }

    fn pool(&self) -> &SqlitePool {
        &self.inner.pool
    }

    /// Move every journaled event into the audit table now.
    pub async fn ingest_journal(&self) -> Result<()> {
        self.inner.ingest().await
    }
}

async fn init_schema(pool: &SqlitePool) -> Result<()> {
    for stmt in SCHEMA {
        sqlx::query(*stmt).execute(pool).await?;
    }
    migrate_audit(pool).await?;
    for stmt in AUDIT_INDEXES {
        sqlx::query(*stmt).execute(pool).await?;
    }
    Ok(())
}

impl Inner {
    /// Move what the journal holds into the audit table.
    async fn ingest(&self) -> Result<()> {
        let _one = self.ingest.lock().await;
        self.ingest_locked().await
    }

    /// `ingest` with the move lock held: in one transaction that also
    /// advances the stored position. On failure the events stay pending.
    async fn ingest_locked(&self) -> Result<()> {
        let (Some(j), Some(mover)) = (&self.journal, &self.mover) else {
            return Ok(());
        };
        let Some(taken) = j.take() else {
            return Ok(());
        };
        // Shared, so that a move that fails in any way (a panic too)
        // gives the events back, ahead of newer ones.
        let taken = Arc::new(taken);
        let job = taken.clone();
        let moved = on_mover(mover.clone(), move |c| mover::apply(c, &job)).await;
        if moved.is_err()
            && let Ok(taken) = Arc::try_unwrap(taken)
        {
            j.give_back(taken);
        }
        moved
    }

    /// Remove the journal files no row points into and nothing pending is
    /// in (after rows went); call with the move lock held. Only the owner
    /// removes files.
    async fn drop_unused_segments(&self) -> Result<()> {
        let (Some(j), Some(dir)) = (&self.journal, &self.dir) else {
            return Ok(());
        };
        let oldest: Option<i64> = sqlx::query_scalar("SELECT MIN(seg) FROM audit")
            .fetch_one(&self.pool)
            .await?;
        let unmoved = j.first_unmoved();
        let keep_from = oldest
            .and_then(|g| u64::try_from(g).ok())
            .map_or(unmoved, |g| g.min(unmoved));
        for g in journal::generations(dir)? {
            if g < keep_from {
                journal::remove(dir, g);
            }
        }
        Ok(())
    }
}

/// The expiring events' resource-name rows, by key from each row's own
/// names: `audit_resource` is keyed (name, seq), so `seq IN (…)` scanned all
/// of it.
const EXPIRE_RESOURCE_NAMES: &str = "DELETE FROM audit_resource WHERE (name, seq) IN
     (SELECT j.value, a.seq FROM audit a, json_each(a.resources) j WHERE a.event_time_ms < ?)";

/// Give every row its resource names as a column (a sorted JSON array), from
/// `audit_resource`, whose key (name, seq) serves lookups by name: reading
/// a page's names from it by seq scanned the whole table.
async fn backfill_resources(conn: &mut SqliteConnection) -> Result<()> {
    for stmt in [
        "ALTER TABLE audit ADD COLUMN resources TEXT NOT NULL DEFAULT '[]'",
        // Only for this one pass: kept, it would cost every insert.
        "CREATE INDEX audit_resource_backfill ON audit_resource (seq)",
        "UPDATE audit SET resources = (SELECT json_group_array(name ORDER BY name)
             FROM audit_resource r WHERE r.seq = audit.seq)
         WHERE seq IN (SELECT seq FROM audit_resource)",
        "DROP INDEX audit_resource_backfill",
    ] {
        sqlx::query(stmt).execute(&mut *conn).await?;
    }
    Ok(())
}

/// A row's resource names as stored in its `resources` column: sorted, each
/// once (as the backfill and the upsert's merge also write them).
pub(crate) fn resources_json(names: &[String]) -> String {
    let mut sorted: Vec<&String> = names.iter().collect();
    sorted.sort();
    sorted.dedup();
    serde_json::to_string(&sorted).unwrap_or_else(|_| "[]".into())
}

/// The names in a `resources` column.
fn resources_from(json: &str) -> Vec<String> {
    serde_json::from_str(json).unwrap_or_default()
}

/// Replay what a previous run journaled but did not move (a crash, or a
/// stop before the last move) into the audit table; returns the
/// generation to continue in, a new file after every existing one (the
/// last may end in a torn record). Files before the stored position are
/// the bodies of moved events and stay.
async fn recover_journal(pool: &SqlitePool, mover: Mover, dir: &Path) -> Result<u64> {
    let stored = sqlx::query("SELECT value FROM meta WHERE key = ?")
        .bind(JOURNAL_GEN)
        .fetch_optional(pool)
        .await?
        .map(|r| {
            let v = String::from_utf8_lossy(&r.get::<Vec<u8>, _>("value")).into_owned();
            Pos::parse(&v).ok_or(StoreError::Corrupt {
                kind: "meta".into(),
                key: JOURNAL_GEN.into(),
                reason: format!("not a journal position: {v:?}"),
            })
        })
        .transpose()?
        .unwrap_or_default();
    let gens = journal::generations(dir)?;
    let mut decoded = Decoded::default();
    // Only what follows the stored position is read: the files before it
    // are moved events' bodies, which can be many.
    let mut empty = Vec::new();
    for g in gens.iter().copied().filter(|g| *g >= stored.generation) {
        let from = if g == stored.generation {
            stored
        } else {
            Pos::start(g)
        };
        let chunk = journal::read_from(dir, from)?;
        if chunk.bytes.is_empty() && from.offset == 0 {
            // Not one whole record: no body, nothing points into it.
            empty.push(g);
        }
        journal::decode_located(&chunk, &mut 0, usize::MAX, &mut decoded);
    }
    let after_files = gens.last().map_or(0, |g| g + 1);
    let after_stored = stored.generation + u64::from(stored.offset > 0);
    let next = Pos::start(after_files.max(after_stored));
    for g in empty {
        journal::remove(dir, g);
    }
    if next != stored {
        let events = decoded.len();
        on_mover(mover, move |c| mover::replay(c, &decoded, next)).await?;
        if events > 0 {
            tracing::info!(events, "audit events replayed from the journal");
        }
    }
    Ok(next.generation)
}

/// Run `f` on the move's connection, on a blocking thread: its statements
/// are synchronous.
async fn on_mover<T: Send + 'static>(
    mover: Mover,
    f: impl FnOnce(&mut rusqlite::Connection) -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(move || f(&mut mover.lock().unwrap_or_else(|e| e.into_inner())))
        .await
        .unwrap_or_else(|e| Err(StoreError::Backend(e.to_string())))
}

/// Moves journaled events into the table every `INGEST_EVERY`, or sooner
/// when a lot is pending; ends with the store (it holds no reference while
/// it waits, so dropping the store releases the journal at once).
async fn ingest_loop(inner: Weak<Inner>, wake: Arc<tokio::sync::Notify>) {
    loop {
        let _ = tokio::time::timeout(INGEST_EVERY, wake.notified()).await;
        let Some(i) = inner.upgrade() else { return };
        if let Err(e) = i.ingest().await {
            tracing::error!(error = %e, "moving audit events from the journal into the table failed; retrying");
        }
    }
}

/// Bring an audit table written by an older keycard up to date: add the
/// account column (filled from each event's `recipientAccountId`), drop
/// duplicate event ids so the id can be unique, and drop the old indexes.
async fn migrate_audit(pool: &SqlitePool) -> Result<()> {
    let cols = sqlx::query("SELECT name FROM pragma_table_info('audit')")
        .fetch_all(pool)
        .await?;
    let has = |c: &str| cols.iter().any(|r| r.get::<String, _>("name") == c);
    let has_account = has("account");
    let has_seg = has("seg");
    let has_resources = has("resources");
    let mut tx = pool.begin().await?;
    if !has_resources {
        backfill_resources(&mut tx).await?;
    }
    if !has_seg {
        for stmt in [
            "ALTER TABLE audit ADD COLUMN seg INTEGER",
            "ALTER TABLE audit ADD COLUMN seg_off INTEGER",
            "ALTER TABLE audit ADD COLUMN seg_len INTEGER",
        ] {
            sqlx::query(stmt).execute(&mut *tx).await?;
        }
    }
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
/// stored replaces it (same `seq`); without, it is skipped. An event in
/// `locs` is stored as a pointer to its journal record, not its body.
async fn insert_audit(
    conn: &mut SqliteConnection,
    rows: &[AuditRow],
    replace: bool,
    locs: &HashMap<&str, Loc>,
) -> Result<()> {
    // One row per event id first: a batch's repeats of an id must not
    // depend on which chunk each falls in.
    let merged = crate::one_per_id(rows, replace);
    let rows: Vec<&AuditRow> = merged.iter().map(AsRef::as_ref).collect();
    // Multi-row statements: one round trip per chunk, not per event.
    for chunk in fixed_chunks(&rows) {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO audit (event_id, event_time_ms, event_name, event_source, username,
                                access_key_id, account, read_only, body, seg, seg_off,
                                seg_len, resources) ",
        );
        qb.push_values(chunk, |mut b, r| {
            let loc = locs.get(r.event_id.as_str());
            let body = if loc.is_some() { "" } else { r.body.as_str() };
            b.push_bind(&r.event_id)
                .push_bind(r.event_time_ms)
                .push_bind(&r.event_name)
                .push_bind(&r.event_source)
                .push_bind(&r.username)
                .push_bind(&r.access_key_id)
                .push_bind(&r.account)
                .push_bind(r.read_only as i64)
                .push_bind(body)
                .push_bind(loc.and_then(|l| i64::try_from(l.generation).ok()))
                .push_bind(loc.and_then(|l| i64::try_from(l.offset).ok()))
                .push_bind(loc.map(|l| i64::from(l.len)))
                .push_bind(resources_json(&r.resource_names));
        });
        if replace {
            qb.push(ON_CONFLICT_MERGE);
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
        for part in fixed_chunks(&names) {
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

/// A final event replaces its draft by id and keeps the resource names of
/// both (here and in `mover`).
pub(crate) const ON_CONFLICT_MERGE: &str =
    " ON CONFLICT (event_id) DO UPDATE SET event_time_ms = excluded.event_time_ms,
      event_name = excluded.event_name, event_source = excluded.event_source,
      username = excluded.username, access_key_id = excluded.access_key_id,
      account = excluded.account, read_only = excluded.read_only,
      body = excluded.body, seg = excluded.seg, seg_off = excluded.seg_off,
      seg_len = excluded.seg_len,
      resources = (SELECT json_group_array(value ORDER BY value) FROM
          (SELECT value FROM json_each(audit.resources)
           UNION SELECT value FROM json_each(excluded.resources)))";

/// Row counts of the multi-row statements. A few fixed sizes, so each
/// statement is prepared once per connection and then cached: parsing a
/// fresh one per batch cost about 4% of an authorized GetObject, and
/// caching statements of every size kept tens of MB of copies.
pub(crate) const CHUNK_SIZES: [usize; 4] = [64, 16, 4, 1];

/// `items` cut greedily into slices of `CHUNK_SIZES` rows.
pub(crate) fn fixed_chunks<T>(items: &[T]) -> impl Iterator<Item = &[T]> {
    let mut rest = items;
    std::iter::from_fn(move || {
        let n = CHUNK_SIZES.into_iter().find(|n| *n <= rest.len())?;
        let (head, tail) = rest.split_at(n);
        rest = tail;
        Some(head)
    })
}

/// A stored row, and where its body is when it is in a journal file.
fn row_to_audit(r: &sqlx::sqlite::SqliteRow) -> (AuditRow, Option<Loc>) {
    let loc = match (
        r.get::<Option<i64>, _>("seg"),
        r.get::<Option<i64>, _>("seg_off"),
        r.get::<Option<i64>, _>("seg_len"),
    ) {
        (Some(g), Some(o), Some(l)) => Some(Loc {
            generation: u64::try_from(g).unwrap_or_default(),
            offset: u64::try_from(o).unwrap_or_default(),
            len: u32::try_from(l).unwrap_or_default(),
        }),
        _ => None,
    };
    let row = AuditRow {
        seq: r.get("seq"),
        event_id: r.get("event_id"),
        event_time_ms: r.get("event_time_ms"),
        event_name: r.get("event_name"),
        event_source: r.get("event_source"),
        username: r.get("username"),
        access_key_id: r.get("access_key_id"),
        account: r.get("account"),
        resource_names: resources_from(r.get("resources")),
        read_only: r.get::<i64, _>("read_only") != 0,
        body: r.get("body"),
    };
    (row, loc)
}

/// Fill in the bodies that are in journal files, each file opened once.
fn read_bodies(dir: Option<&Path>, rows: &mut [(AuditRow, Option<Loc>)]) -> Result<()> {
    let mut files: HashMap<u64, std::fs::File> = HashMap::new();
    for (row, loc) in rows.iter_mut() {
        let Some(loc) = loc else { continue };
        let Some(dir) = dir else {
            return Err(StoreError::Backend(
                "an audit event's body is in a journal file, but this store has no directory"
                    .into(),
            ));
        };
        let file = match files.entry(loc.generation) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(journal::open_segment(dir, loc.generation)?)
            }
        };
        row.body = journal::read_body(dir, file, *loc)?;
    }
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    async fn load_all(&self) -> Result<Vec<Record>> {
        let rows = sqlx::query("SELECT kind, key, value FROM records ORDER BY kind, key")
            .fetch_all(self.pool())
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
            .fetch_all(self.pool())
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
        let mut tx = self.pool().begin().await?;
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
        insert_audit(&mut tx, audit, false, &HashMap::new()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn append_audit(&self, rows: &[AuditRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        if let Some(j) = &self.inner.journal {
            // A large enough backlog starts a move.
            if j.append(rows)? >= INGEST_AT_BYTES {
                self.inner.wake.notify_one();
            }
            return Ok(());
        }
        let mut tx = self.pool().begin().await?;
        insert_audit(&mut tx, rows, true, &HashMap::new()).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn query_audit(&self, q: &AuditQuery) -> Result<Vec<AuditRow>> {
        // Every acknowledged event is visible to a lookup.
        self.inner.ingest().await?;
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
        qb.push(" LIMIT ").push_bind(i64::from(q.page_limit()));
        let rows = qb.build().fetch_all(self.pool()).await?;
        let mut located: Vec<(AuditRow, Option<Loc>)> = rows.iter().map(row_to_audit).collect();
        read_bodies(self.inner.dir.as_deref(), &mut located)?;
        Ok(located.into_iter().map(|(r, _)| r).collect())
    }

    async fn clear_audit(&self) -> Result<()> {
        // No move in between: rows it inserted could point into files
        // about to go.
        let _one = self.inner.ingest.lock().await;
        self.inner.ingest_locked().await?;
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM audit").execute(&mut *tx).await?;
        sqlx::query("DELETE FROM audit_resource")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.inner.drop_unused_segments().await
    }

    /// One file has no partitions to drop: the old rows go, with their
    /// resource names.
    async fn expire_audit(&self, before_ms: i64) -> Result<()> {
        let _one = self.inner.ingest.lock().await;
        self.inner.ingest_locked().await?;
        let mut tx = self.pool().begin().await?;
        sqlx::query(EXPIRE_RESOURCE_NAMES)
            .bind(before_ms)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM audit WHERE event_time_ms < ?")
            .bind(before_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        self.inner.drop_unused_segments().await
    }

    async fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = ?")
            .bind(key)
            .fetch_optional(self.pool())
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
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn list_meta(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let rows = sqlx::query(
            "SELECT key, value FROM meta WHERE substr(key, 1, length(?1)) = ?1 ORDER BY key",
        )
        .bind(prefix)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .iter()
            .map(|r| (r.get::<String, _>("key"), r.get::<Vec<u8>, _>("value")))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::encode_record;

    /// Repeats of an event id in one batch merge before chunking: the
    /// stored event keeps every repeat's resource names (the property test
    /// against PostgreSQL found the second repeat's names lost when the
    /// repeats fell into different chunks).
    #[tokio::test]
    async fn repeats_in_a_batch_keep_all_resource_names() {
        let s = SqliteStore::memory().await.unwrap();
        let mut first = row("e1", "{}");
        first.resource_names = Vec::new();
        let mut second = row("e1", "{}");
        second.resource_names = vec!["r3".into()];
        s.commit(&[], &[first, second]).await.unwrap();
        let got = s.query_audit(&all()).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].resource_names, ["r3"]);
    }

    /// A draft and its final event written apart keep both's names.
    #[tokio::test]
    async fn a_replaced_event_keeps_the_names_of_both_writes() {
        let s = SqliteStore::memory().await.unwrap();
        let mut draft = row("e1", "{}");
        draft.resource_names = vec!["r2".into(), "r1".into()];
        s.commit(&[], &[draft]).await.unwrap();
        let mut fin = row("e1", "{\"final\":1}");
        fin.resource_names = vec!["r3".into(), "r1".into()];
        s.append_audit(&[fin]).await.unwrap();
        let got = s.query_audit(&all()).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].body, "{\"final\":1}");
        assert_eq!(got[0].resource_names, ["r1", "r2", "r3"]);
    }

    /// A data dir from before the `resources` column: opening it copies
    /// each row's names from `audit_resource` into the row, and a page's
    /// names are then read without a scan of `audit_resource`.
    #[tokio::test]
    async fn an_old_audit_table_gets_its_resource_names_as_a_column() {
        let dir = tempdir("resources-column");
        let db = dir.join("keycard.db");
        {
            let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", db.display()))
                .unwrap()
                .create_if_missing(true);
            let pool = SqlitePool::connect_with(opts).await.unwrap();
            for stmt in [
                "CREATE TABLE audit (seq INTEGER PRIMARY KEY AUTOINCREMENT,
                    event_id TEXT NOT NULL, event_time_ms INTEGER NOT NULL,
                    event_name TEXT NOT NULL, event_source TEXT NOT NULL,
                    username TEXT NOT NULL, access_key_id TEXT NOT NULL,
                    read_only INTEGER NOT NULL, body TEXT NOT NULL,
                    account TEXT NOT NULL DEFAULT '', seg INTEGER, seg_off INTEGER,
                    seg_len INTEGER)",
                "CREATE TABLE audit_resource (seq INTEGER NOT NULL, name TEXT NOT NULL,
                    PRIMARY KEY (name, seq)) WITHOUT ROWID",
                "INSERT INTO audit (event_id, event_time_ms, event_name, event_source,
                    username, access_key_id, read_only, body, account)
                 VALUES ('e1', 1, 'GetObject', 's3.amazonaws.com', '', '', 1, '{}', 'a'),
                        ('e2', 2, 'ListBuckets', 's3.amazonaws.com', '', '', 1, '{}', 'a')",
                "INSERT INTO audit_resource (seq, name) VALUES (1, 'b'), (1, 'arn:aws:s3:::b/k')",
            ] {
                sqlx::query(stmt).execute(&pool).await.unwrap();
            }
            pool.close().await;
        }
        let s = SqliteStore::open(&db).await.unwrap();
        let got = s.query_audit(&all()).await.unwrap();
        let names: Vec<(&str, Vec<String>)> = got
            .iter()
            .map(|r| (r.event_id.as_str(), r.resource_names.clone()))
            .collect();
        assert_eq!(
            names,
            [
                ("e2", vec![]),
                ("e1", vec!["arn:aws:s3:::b/k".to_string(), "b".to_string()])
            ]
        );
        let by_name = s
            .query_audit(&AuditQuery {
                resource_name: Some("b".into()),
                ..all()
            })
            .await
            .unwrap();
        assert_eq!(by_name.len(), 1);
        drop(s);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn fixed_chunks_cover_everything_in_cached_sizes() {
        for len in 0..300usize {
            let v: Vec<usize> = (0..len).collect();
            let parts: Vec<&[usize]> = fixed_chunks(&v).collect();
            assert!(parts.iter().all(|p| CHUNK_SIZES.contains(&p.len())));
            assert_eq!(parts.concat(), v);
        }
    }

    fn row(id: &str, body: &str) -> AuditRow {
        AuditRow {
            event_id: id.into(),
            event_time_ms: 1,
            event_name: "GetObject".into(),
            event_source: "s3.amazonaws.com".into(),
            account: "123456789012".into(),
            resource_names: vec!["arn:aws:s3:::b/k".into()],
            read_only: true,
            body: body.into(),
            ..AuditRow::default()
        }
    }

    fn all() -> AuditQuery {
        AuditQuery {
            limit: 100,
            ..AuditQuery::default()
        }
    }

    fn tempdir(name: &str) -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("kc-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    /// What a crash leaves: journal files (one ending in a torn record) that
    /// never reached the table. Opening replays every whole record, once.
    #[tokio::test]
    async fn a_crash_left_journal_is_replayed_on_open() {
        let dir = tempdir("replay");
        let mut buf = Vec::new();
        encode_record(&mut buf, &row("e1", "{\"n\":1}"));
        encode_record(&mut buf, &row("e2", "{\"n\":2}"));
        let mut torn = Vec::new();
        encode_record(&mut torn, &row("e3", "{\"n\":3}"));
        buf.extend_from_slice(&torn[..torn.len() - 3]);
        std::fs::write(dir.join("audit-journal.0"), &buf).unwrap();
        let mut next = Vec::new();
        encode_record(&mut next, &row("e4", "{\"n\":4}"));
        std::fs::write(dir.join("audit-journal.1"), &next).unwrap();

        let s = SqliteStore::open(&dir.join("keycard.db")).await.unwrap();
        let ids: Vec<String> = s
            .query_audit(&all())
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.event_id)
            .collect();
        assert_eq!(ids, ["e4", "e2", "e1"]);
        assert_eq!(
            journal::generations(&dir).unwrap(),
            [0, 1, 2],
            "the replayed files stay as the bodies' segments, a new one is active"
        );
        drop(s);

        // A second open finds nothing more to replay, and the bodies are
        // read from the files.
        let s = SqliteStore::open(&dir.join("keycard.db")).await.unwrap();
        let got = s.query_audit(&all()).await.unwrap();
        let bodies: Vec<&str> = got.iter().map(|r| r.body.as_str()).collect();
        assert_eq!(bodies, ["{\"n\":4}", "{\"n\":2}", "{\"n\":1}"]);
        assert_eq!(s.get_meta(JOURNAL_GEN).await.unwrap().unwrap(), b"3:0");
        assert_eq!(
            journal::generations(&dir).unwrap(),
            [0, 1, 3],
            "the empty active file of the first open is gone"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    async fn table_bodies(s: &SqliteStore) -> Vec<(String, String, Option<i64>)> {
        sqlx::query("SELECT event_id, body, seg FROM audit ORDER BY seq")
            .fetch_all(s.pool())
            .await
            .unwrap()
            .iter()
            .map(|r| (r.get("event_id"), r.get("body"), r.get("seg")))
            .collect()
    }

    /// Moved events point at their journal records instead of copying the
    /// body; a crash after a move replays only what follows the stored
    /// position in the same file, once.
    #[tokio::test]
    async fn bodies_stay_in_the_journal_and_a_crash_replays_from_the_position() {
        let dir = tempdir("position");
        let s = SqliteStore::open(&dir.join("keycard.db")).await.unwrap();
        s.append_audit(&[row("a1", "{\"n\":1}")]).await.unwrap();
        s.ingest_journal().await.unwrap();
        s.append_audit(&[row("a2", "{\"n\":2}"), row("a3", "{\"n\":3}")])
            .await
            .unwrap();
        s.ingest_journal().await.unwrap();
        s.append_audit(&[row("a4", "{\"n\":4}")]).await.unwrap();
        let stored = table_bodies(&s).await;
        assert_eq!(stored.len(), 3);
        assert!(
            stored
                .iter()
                .all(|(_, b, seg)| b.is_empty() && *seg == Some(0)),
            "{stored:?}"
        );
        // Dropped without a final move, as a kill -9 leaves it.
        drop(s);
        let s = SqliteStore::open(&dir.join("keycard.db")).await.unwrap();
        let got = s.query_audit(&all()).await.unwrap();
        let ids: Vec<&str> = got.iter().map(|r| r.event_id.as_str()).collect();
        assert_eq!(ids, ["a4", "a3", "a2", "a1"]);
        for r in &got {
            let n = r.event_id.trim_start_matches('a');
            assert_eq!(r.body, format!("{{\"n\":{n}}}"));
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Retention removes the expired events' resource-name rows (found by
    /// key from each row's `resources`) and keeps the others'.
    #[tokio::test]
    async fn expiry_removes_exactly_the_expired_events_resource_names() {
        let s = SqliteStore::memory().await.unwrap();
        let mut old = row("old", "{}");
        old.event_time_ms = 10;
        old.resource_names = vec!["b".into(), "arn:aws:s3:::b/old".into()];
        let mut new = row("new", "{}");
        new.event_time_ms = 1000;
        new.resource_names = vec!["b".into(), "arn:aws:s3:::b/new".into()];
        s.commit(&[], &[old, new]).await.unwrap();
        s.expire_audit(500).await.unwrap();
        let left: Vec<(String, String)> = sqlx::query(
            "SELECT r.name, a.event_id FROM audit_resource r LEFT JOIN audit a ON a.seq = r.seq
             ORDER BY r.name",
        )
        .fetch_all(s.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| {
            (
                r.get("name"),
                r.get::<Option<String>, _>("event_id").unwrap_or_default(),
            )
        })
        .collect();
        assert_eq!(
            left,
            [
                ("arn:aws:s3:::b/new".to_string(), "new".to_string()),
                ("b".to_string(), "new".to_string())
            ]
        );
        // And it finds them by key, never by reading all of audit_resource.
        let plan: Vec<String> = sqlx::query(sqlx::AssertSqlSafe(format!(
            "EXPLAIN QUERY PLAN {EXPIRE_RESOURCE_NAMES}"
        )))
        .bind(500_i64)
        .fetch_all(s.pool())
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>("detail"))
        .collect();
        assert!(
            plan.iter()
                .any(|d| d.starts_with("SEARCH audit_resource USING PRIMARY KEY")),
            "{plan:?}"
        );
        assert!(
            !plan.iter().any(|d| d.starts_with("SCAN audit_resource")),
            "{plan:?}"
        );
    }

    /// Retention and clearing remove the journal files no row points into,
    /// and keep the ones that still hold bodies.
    #[tokio::test]
    async fn segments_go_when_no_row_points_into_them() {
        let dir = tempdir("segments");
        let db = dir.join("keycard.db");
        let s = SqliteStore::open(&db).await.unwrap();
        let mut old = row("old", "{\"old\":true}");
        old.event_time_ms = 10;
        s.append_audit(&[old]).await.unwrap();
        s.ingest_journal().await.unwrap();
        drop(s);
        // A new file per open: the next event lands in generation 1.
        let s = SqliteStore::open(&db).await.unwrap();
        let mut new = row("new", "{\"new\":true}");
        new.event_time_ms = 1000;
        s.append_audit(&[new]).await.unwrap();
        s.ingest_journal().await.unwrap();
        assert_eq!(journal::generations(&dir).unwrap(), [0, 1]);
        s.expire_audit(500).await.unwrap();
        assert_eq!(journal::generations(&dir).unwrap(), [1]);
        let got = s.query_audit(&all()).await.unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].body, "{\"new\":true}");
        s.clear_audit().await.unwrap();
        assert!(s.query_audit(&all()).await.unwrap().is_empty());
        // The active file stays: it is being appended to.
        assert_eq!(journal::generations(&dir).unwrap(), [1]);
        s.append_audit(&[row("after", "{}")]).await.unwrap();
        assert_eq!(s.query_audit(&all()).await.unwrap().len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A file a row points into that went missing (or was overwritten) is
    /// an error, never another event's body.
    #[tokio::test]
    async fn a_missing_segment_is_an_error_not_a_wrong_body() {
        let dir = tempdir("missing");
        let db = dir.join("keycard.db");
        let s = SqliteStore::open(&db).await.unwrap();
        s.append_audit(&[row("x1", "{\"x\":1}")]).await.unwrap();
        s.ingest_journal().await.unwrap();
        drop(s);
        std::fs::write(dir.join("audit-journal.0"), b"garbage that is no record").unwrap();
        let s = SqliteStore::open(&db).await.unwrap();
        assert!(s.query_audit(&all()).await.is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Appended events are on disk at once and reach the table on lookup;
    /// a final event replaces its draft (same id, same seq).
    #[tokio::test]
    async fn journaled_events_are_visible_and_replace_drafts() {
        let dir = tempdir("visible");
        let s = SqliteStore::open(&dir.join("keycard.db")).await.unwrap();
        s.commit(
            &[Op::put("user", "alice", "{}")],
            &[row("w1", "{\"draft\":true}")],
        )
        .await
        .unwrap();
        s.append_audit(&[row("w1", "{\"final\":true}"), row("r1", "{}")])
            .await
            .unwrap();
        let on_disk: usize = journal::generations(&dir)
            .unwrap()
            .into_iter()
            .map(|g| {
                journal::decode_all(&journal::read_from(&dir, Pos::start(g)).unwrap().bytes).len()
            })
            .sum();
        assert_eq!(on_disk, 2);
        let got = s.query_audit(&all()).await.unwrap();
        assert_eq!(got.len(), 2);
        let w1 = got.iter().find(|r| r.event_id == "w1").unwrap();
        assert_eq!(w1.body, "{\"final\":true}");
        assert_eq!(w1.resource_names, ["arn:aws:s3:::b/k"]);
        let r1 = got.iter().find(|r| r.event_id == "r1").unwrap();
        assert!(w1.seq < r1.seq, "the final event keeps its draft's place");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A second process on a directory the server owns (`keycard audit
    /// tail`) must not replay or remove the server's journal files.
    #[tokio::test]
    async fn a_second_opener_reads_without_taking_the_journal() {
        let dir = tempdir("second");
        let owner = SqliteStore::open(&dir.join("keycard.db")).await.unwrap();
        owner.append_audit(&[row("a1", "{}")]).await.unwrap();
        let files = journal::generations(&dir).unwrap();
        let reader = SqliteStore::open(&dir.join("keycard.db")).await.unwrap();
        assert!(reader.inner.journal.is_none());
        assert_eq!(
            journal::generations(&dir).unwrap(),
            files,
            "the owner's files are untouched"
        );
        owner.ingest_journal().await.unwrap();
        let ids: Vec<String> = reader
            .query_audit(&all())
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.event_id)
            .collect();
        assert_eq!(ids, ["a1"]);
        drop(owner);
        drop(reader);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
