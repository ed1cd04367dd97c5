//! The PostgreSQL backend: the same semantics as `SqliteStore`, for several
//! keycard nodes sharing one database.
//!
//! - Schema changes are numbered migrations recorded in `schema_migrations`,
//!   applied at open inside one transaction under an advisory lock, so nodes
//!   starting together apply each exactly once.
//! - The audit trail is range-partitioned by day on the event time; a day's
//!   partition is created just before its first insert, and retention drops
//!   whole partitions instead of deleting rows.
//! - Every commit with entity changes takes one global advisory lock, writes
//!   its changes to the `changes` feed (a sequence) and notifies
//!   `keycard_changes`: the feed's order is the commit order on every node.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{AssertSqlSafe, PgConnection, Postgres, QueryBuilder, Row};

use crate::{
    AuditQuery, AuditRow, CommitOutcome, Op, Record, Result, Store, StoreError, one_per_id,
};

/// The channel every commit with entity changes notifies (payload: its
/// last change sequence number).
pub const CHANGES_CHANNEL: &str = "keycard_changes";

/// Advisory lock keys: arbitrary constants, one per purpose ("kc" + n).
const LOCK_MIGRATE: i64 = 0x6b63_0001;
const LOCK_WRITE: i64 = 0x6b63_0002;
const LOCK_PARTITIONS: i64 = 0x6b63_0003;

const DAY_MS: i64 = 86_400_000;

/// Most changes one `changes_since` call returns: a node far behind pages.
pub const CHANGES_PAGE: i64 = 10_000;

/// Events per multi-row statement (ten binds each, under PostgreSQL's
/// 65,535-parameter limit even before the arrays below).
const AUDIT_CHUNK: usize = 500;

/// How long a write whose COMMIT lost its answer keeps asking the
/// database whether it took effect (see `resolve_commit`).
const RESOLVE_FOR: Duration = Duration::from_secs(30);

/// One schema version: statements applied together, in order.
struct Migration {
    version: i64,
    statements: &'static [&'static str],
}

/// Every schema version, oldest first. Never edit an applied one: add the
/// next. Keys and names compare bytewise (`COLLATE "C"`) as in SQLite, so
/// `load_all` orders the same on both backends.
const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    statements: &[
        r#"CREATE TABLE records (
            kind text COLLATE "C" NOT NULL,
            key text COLLATE "C" NOT NULL,
            value text NOT NULL,
            PRIMARY KEY (kind, key))"#,
        "CREATE TABLE meta (key text PRIMARY KEY, value bytea NOT NULL)",
        // The change feed: one row per entity op, in commit order.
        "CREATE TABLE changes (
            seq bigserial PRIMARY KEY,
            op text NOT NULL,
            kind text NOT NULL,
            key text,
            value text)",
        "CREATE SEQUENCE audit_seq",
        // Event ids are unique across partitions (a partitioned table's
        // unique keys must contain the partition key), and give each event
        // its seq and day for a replacement.
        "CREATE TABLE audit_ids (
            event_id text PRIMARY KEY,
            seq bigint NOT NULL DEFAULT nextval('audit_seq'),
            event_time_ms bigint NOT NULL)",
        "CREATE INDEX audit_ids_time ON audit_ids (event_time_ms)",
        "CREATE TABLE audit (
            seq bigint NOT NULL,
            event_id text NOT NULL,
            event_time_ms bigint NOT NULL,
            event_name text NOT NULL,
            event_source text NOT NULL,
            username text NOT NULL,
            access_key_id text NOT NULL,
            account text NOT NULL,
            read_only boolean NOT NULL,
            body text NOT NULL,
            PRIMARY KEY (seq, event_time_ms)
        ) PARTITION BY RANGE (event_time_ms)",
        // LookupEvents filters by account and pages newest first by seq:
        // each lookup attribute behind the account, seq last (SQLite has
        // the rowid there implicitly).
        "CREATE INDEX audit_account ON audit (account, seq)",
        "CREATE INDEX audit_account_name ON audit (account, event_name, seq)",
        "CREATE INDEX audit_account_user ON audit (account, username, seq)",
        "CREATE INDEX audit_account_key ON audit (account, access_key_id, seq)",
        "CREATE INDEX audit_account_source ON audit (account, event_source, seq)",
        "CREATE INDEX audit_account_time ON audit (account, event_time_ms)",
        "CREATE INDEX audit_event_id ON audit (event_id)",
        r#"CREATE TABLE audit_resource (
            name text COLLATE "C" NOT NULL,
            seq bigint NOT NULL,
            event_time_ms bigint NOT NULL,
            PRIMARY KEY (name, seq, event_time_ms)
        ) PARTITION BY RANGE (event_time_ms)"#,
        "CREATE INDEX audit_resource_seq ON audit_resource (seq)",
        // The partitions that exist, by day (`to_ms` NULL: unbounded).
        "CREATE TABLE audit_partitions (
            day bigint PRIMARY KEY,
            suffix text NOT NULL,
            to_ms bigint)",
    ],
}];

/// One entry of the change feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub seq: i64,
    pub op: Op,
}

/// What a change listener hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// A commit ending at this change sequence number.
    Seq(i64),
    /// The connection was lost (and is being re-established), or a
    /// notification was unreadable: notifications may have been missed,
    /// so catch up with `changes_since`.
    CatchUp,
}

/// Notifications of commits on any node (`PgStore::subscribe`).
pub struct ChangeListener {
    inner: PgListener,
}

impl ChangeListener {
    /// Wait for the next notification. An error means the database is
    /// unreachable right now; calling again retries.
    pub async fn recv(&mut self) -> Result<Notice> {
        Ok(match self.inner.try_recv().await? {
            Some(n) => n.payload().parse().map_or(Notice::CatchUp, Notice::Seq),
            None => Notice::CatchUp,
        })
    }
}

/// PostgreSQL store. Cheap to clone; all clones share one pool.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// Days whose audit partitions this process knows exist; cleared when
    /// an insert finds one gone (another node's retention dropped it).
    days: Arc<Mutex<HashSet<i64>>>,
    /// The audit writer's own connection, outside the pool: a pooled use
    /// costs a ping on acquire and another on release, two round trips
    /// around every group's one statement. `None` until first used, and
    /// again after a failure (reconnected on the next group).
    audit_conn: Arc<tokio::sync::Mutex<Option<PgConnection>>>,
}

impl PgStore {
    /// Connect to `url` (`postgres://user@host:port/db`) and bring the
    /// schema up to date.
    pub async fn open(url: &str) -> Result<Self> {
        Self::open_with(PgConnectOptions::from_str(url)?).await
    }

    /// Connect with explicit options and bring the schema up to date.
    pub async fn open_with(opts: PgConnectOptions) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await?;
        migrate(&pool).await?;
        Ok(PgStore {
            pool,
            days: Arc::new(Mutex::new(HashSet::new())),
            audit_conn: Arc::new(tokio::sync::Mutex::new(None)),
        })
    }

    /// The schema version this database is at.
    pub async fn schema_version(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("v")?)
    }

    /// The sequence number of the last committed change (0: none yet).
    pub async fn current_seq(&self) -> Result<i64> {
        let row = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS s FROM changes")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("s")?)
    }

    /// Changes after `seq`, oldest first, at most `CHANGES_PAGE`: call
    /// again from the last one until fewer come back.
    pub async fn changes_since(&self, seq: i64) -> Result<Vec<Change>> {
        let rows = sqlx::query(
            "SELECT seq, op, kind, key, value FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(seq)
        .bind(CHANGES_PAGE)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row_to_change).collect()
    }

    /// Listen for commits of every node (`CHANGES_CHANNEL`).
    pub async fn subscribe(&self) -> Result<ChangeListener> {
        let mut inner = PgListener::connect_with(&self.pool).await?;
        inner.listen(CHANGES_CHANNEL).await?;
        Ok(ChangeListener { inner })
    }

    fn known_days(&self) -> std::sync::MutexGuard<'_, HashSet<i64>> {
        self.days.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Create the partitions of the events' days, and of each following
    /// day, that this process has not seen yet. Its own short transaction
    /// under a lock: creating a partition locks the parent table (briefly
    /// blocking lookups), and two nodes must not race to create the same
    /// one. Creating the next day ahead keeps that off midnight's first
    /// requests.
    async fn ensure_partitions(&self, rows: &[AuditRow]) -> sqlx::Result<()> {
        let missing: Vec<i64> = {
            let known = self.known_days();
            let days: HashSet<i64> = rows
                .iter()
                .map(|r| day_of(r.event_time_ms))
                .flat_map(|d| [d, d.saturating_add(1)])
                .filter(|d| (day_of(i64::MIN)..=day_of(i64::MAX)).contains(d))
                .collect();
            days.into_iter().filter(|d| !known.contains(d)).collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await?;
        lock(&mut tx, LOCK_PARTITIONS).await?;
        for day in &missing {
            create_partition(&mut tx, *day).await?;
        }
        tx.commit().await?;
        self.known_days().extend(missing);
        Ok(())
    }

    async fn commit_once(&self, ops: &[Op], audit: &[AuditRow]) -> sqlx::Result<()> {
        self.commit_checked(ops, audit, None).await.map(|_| ())
    }

    /// Commit; with `expected`, only when the feed still ends there
    /// (checked under the write lock). The feed's last sequence after
    /// the commit, or `CommitOutcome::Conflict`.
    async fn commit_checked(
        &self,
        ops: &[Op],
        audit: &[AuditRow],
        expected: Option<i64>,
    ) -> sqlx::Result<CommitOutcome> {
        self.ensure_partitions(audit).await?;
        let mut tx = self.pool.begin().await?;
        let mut last = None;
        if !ops.is_empty() || expected.is_some() {
            // Held to the end of the transaction: the change sequence is
            // assigned and committed in one order across every node.
            lock(&mut tx, LOCK_WRITE).await?;
        }
        if let Some(want) = expected {
            let now: i64 = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS s FROM changes")
                .fetch_one(&mut *tx)
                .await?
                .try_get("s")?;
            if now != want {
                return Ok(CommitOutcome::Conflict);
            }
            last = Some(now);
        }
        if !ops.is_empty() {
            apply_ops(&mut tx, ops).await?;
            let seq = record_changes(&mut tx, ops).await?;
            sqlx::query("SELECT pg_notify($1, $2)")
                .bind(CHANGES_CHANNEL)
                .bind(seq.to_string())
                .execute(&mut *tx)
                .await?;
            last = Some(seq);
        }
        insert_audit(&mut tx, audit, false).await?;
        match (tx.commit().await, expected) {
            (Ok(()), _) => Ok(CommitOutcome::Committed(last)),
            (Err(lost), Some(want)) if !ops.is_empty() => {
                self.resolve_commit(ops, want, lost).await
            }
            (Err(e), _) => Err(e),
        }
    }

    /// A COMMIT whose answer was lost (the connection broke, the server
    /// restarted) may or may not have taken effect. Answering "failed"
    /// when it did would make the client's retry see its own write
    /// (`EntityAlreadyExists`), so ask until the database answers: the
    /// write committed iff the first change after `expected` is its first
    /// op (it held the write lock with the feed ending at `expected`).
    async fn resolve_commit(
        &self,
        ops: &[Op],
        expected: i64,
        lost: sqlx::Error,
    ) -> sqlx::Result<CommitOutcome> {
        let n = i64::try_from(ops.len()).unwrap_or(i64::MAX);
        let deadline = tokio::time::Instant::now() + RESOLVE_FOR;
        loop {
            let rows = sqlx::query(
                "SELECT seq, op, kind, key, value FROM changes WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .bind(expected)
            .bind(n)
            .fetch_all(&self.pool)
            .await;
            match rows {
                Ok(rows) => {
                    let feed: Vec<Change> =
                        rows.iter().filter_map(|r| row_to_change(r).ok()).collect();
                    let ours = feed.first().map(|c| &c.op) == ops.first();
                    return match feed.last() {
                        Some(last) if ours => {
                            tracing::warn!(
                                seq = last.seq,
                                "a COMMIT lost its answer but took effect"
                            );
                            Ok(CommitOutcome::Committed(Some(last.seq)))
                        }
                        _ => Err(lost),
                    };
                }
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(_) => return Err(lost),
            }
        }
    }

    /// Insert a group (at most one chunk) on the audit connection. A
    /// connection that failed is replaced (on the next use whatever the
    /// error); when it was lost, the insert is tried once more: rows it may already have
    /// committed come back as known and are rewritten with the same content.
    async fn insert_on_audit_conn(&self, refs: &[&AuditRow]) -> sqlx::Result<HashSet<String>> {
        let mut slot = self.audit_conn.lock().await;
        let mut retried = false;
        loop {
            let conn = match slot.take() {
                Some(c) => slot.insert(c),
                None => {
                    let opts = self.pool.connect_options();
                    slot.insert(<PgConnection as sqlx::Connection>::connect_with(&opts).await?)
                }
            };
            match insert_chunk(conn, refs).await {
                Ok(fresh) => return Ok(fresh),
                Err(e) => {
                    *slot = None;
                    if retried || !connection_lost(&e) {
                        return Err(e);
                    }
                    retried = true;
                }
            }
        }
    }

    async fn append_once(&self, rows: &[AuditRow]) -> sqlx::Result<()> {
        self.ensure_partitions(rows).await?;
        let merged = one_per_id(rows, true);
        let refs: Vec<&AuditRow> = merged.iter().map(AsRef::as_ref).collect();
        if refs.len() > AUDIT_CHUNK {
            let mut tx = self.pool.begin().await?;
            insert_audit(&mut tx, rows, true).await?;
            return tx.commit().await;
        }
        // One statement is its own transaction: a group of new events
        // (every read) costs one round trip, not BEGIN + insert + COMMIT.
        let fresh = self.insert_on_audit_conn(&refs).await?;
        let known: Vec<&AuditRow> = refs
            .into_iter()
            .filter(|r| !fresh.contains(r.event_id.as_str()))
            .collect();
        if known.is_empty() {
            return Ok(());
        }
        // Final events replacing their drafts: each replacement whole.
        let mut tx = self.pool.begin().await?;
        for r in known {
            replace_event(&mut tx, r).await?;
        }
        tx.commit().await
    }

    /// Run a write; when it failed because a partition this process
    /// thought existed is gone, forget the known days and run it again.
    async fn retrying<F, Fut>(&self, write: F) -> Result<()>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = sqlx::Result<()>>,
    {
        match write().await {
            Err(e) if missing_partition(&e) => {
                self.known_days().clear();
                Ok(write().await?)
            }
            other => Ok(other?),
        }
    }
}

/// Whether an error means the connection is gone (I/O, or the server
/// ending the session: SQLSTATE classes 08 and 57), not that the
/// statement was refused.
fn connection_lost(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => d
            .code()
            .is_some_and(|c| c.starts_with("08") || c.starts_with("57")),
        sqlx::Error::Io(_) | sqlx::Error::Protocol(_) => true,
        _ => false,
    }
}

/// The day (since the epoch) an event time falls in.
fn day_of(ms: i64) -> i64 {
    ms.div_euclid(DAY_MS)
}

/// Partition name suffix: the date where it has one, else the day number.
fn suffix_of(day: i64) -> String {
    let date = day
        .checked_mul(86_400)
        .and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).ok())
        .map(|t| t.date())
        .filter(|d| d.year() >= 0);
    match date {
        Some(d) => format!("p{:04}{:02}{:02}", d.year(), u8::from(d.month()), d.day()),
        None => format!("d{}", day.to_string().replace('-', "m")),
    }
}

/// The bounds of a day's partition as SQL literals (from, to); the ends
/// of the i64 range are open.
fn bounds_of(day: i64) -> (String, Option<i64>, String) {
    let from = day
        .checked_mul(DAY_MS)
        .map_or("MINVALUE".to_string(), |v| v.to_string());
    let to = day.checked_add(1).and_then(|d| d.checked_mul(DAY_MS));
    let to_sql = to.map_or("MAXVALUE".to_string(), |v| v.to_string());
    (from, to, to_sql)
}

async fn create_partition(conn: &mut PgConnection, day: i64) -> sqlx::Result<()> {
    let suffix = suffix_of(day);
    let (from, to, to_sql) = bounds_of(day);
    for parent in ["audit", "audit_resource"] {
        // Names and bounds come from integers: nothing to quote.
        let stmt = format!(
            "CREATE TABLE IF NOT EXISTS {parent}_{suffix} PARTITION OF {parent}
             FOR VALUES FROM ({from}) TO ({to_sql})"
        );
        sqlx::query(AssertSqlSafe(stmt)).execute(&mut *conn).await?;
    }
    sqlx::query(
        "INSERT INTO audit_partitions (day, suffix, to_ms) VALUES ($1, $2, $3)
         ON CONFLICT (day) DO NOTHING",
    )
    .bind(day)
    .bind(&suffix)
    .bind(to)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Whether an insert failed for want of a partition for its row.
fn missing_partition(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.code().as_deref() == Some("23514") && d.message().contains("partition"))
}

async fn lock(conn: &mut PgConnection, key: i64) -> sqlx::Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(key)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Apply every migration this database lacks, in one transaction under
/// the migration lock (DDL is transactional in PostgreSQL): a node that
/// waited finds them applied.
async fn migrate(pool: &PgPool) -> Result<()> {
    let mut tx = pool.begin().await?;
    lock(&mut tx, LOCK_MIGRATE).await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
            version bigint PRIMARY KEY,
            applied_at timestamptz NOT NULL DEFAULT now())",
    )
    .execute(&mut *tx)
    .await?;
    let applied: i64 = sqlx::query("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations")
        .fetch_one(&mut *tx)
        .await?
        .try_get("v")?;
    for m in MIGRATIONS.iter().filter(|m| m.version > applied) {
        for stmt in m.statements {
            sqlx::query(*stmt).execute(&mut *tx).await?;
        }
        sqlx::query("INSERT INTO schema_migrations (version) VALUES ($1)")
            .bind(m.version)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}

async fn apply_ops(conn: &mut PgConnection, ops: &[Op]) -> sqlx::Result<()> {
    for op in ops {
        let q = match op {
            Op::Put { kind, key, value } => sqlx::query(
                "INSERT INTO records (kind, key, value) VALUES ($1, $2, $3)
                 ON CONFLICT (kind, key) DO UPDATE SET value = excluded.value",
            )
            .bind(kind)
            .bind(key)
            .bind(value),
            Op::Delete { kind, key } => {
                sqlx::query("DELETE FROM records WHERE kind = $1 AND key = $2")
                    .bind(kind)
                    .bind(key)
            }
            Op::DeleteKind { kind } => {
                sqlx::query("DELETE FROM records WHERE kind = $1").bind(kind)
            }
        };
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// The feed's encoding of an op: (op, kind, key, value).
fn change_columns(op: &Op) -> (&'static str, &str, Option<&str>, Option<&str>) {
    match op {
        Op::Put { kind, key, value } => ("put", kind, Some(key), Some(value)),
        Op::Delete { kind, key } => ("delete", kind, Some(key), None),
        Op::DeleteKind { kind } => ("delete_kind", kind, None, None),
    }
}

/// Append the ops to the change feed; returns the last sequence number.
async fn record_changes(conn: &mut PgConnection, ops: &[Op]) -> sqlx::Result<i64> {
    let mut last = 0;
    for chunk in ops.chunks(AUDIT_CHUNK) {
        let mut qb: QueryBuilder<Postgres> =
            QueryBuilder::new("WITH c AS (INSERT INTO changes (op, kind, key, value) ");
        qb.push_values(chunk, |mut b, op| {
            let (o, kind, key, value) = change_columns(op);
            b.push_bind(o)
                .push_bind(kind)
                .push_bind(key)
                .push_bind(value);
        });
        qb.push(" RETURNING seq) SELECT MAX(seq) AS s FROM c");
        let row = qb.build().persistent(false).fetch_one(&mut *conn).await?;
        last = row.try_get::<Option<i64>, _>("s")?.unwrap_or(last);
    }
    Ok(last)
}

fn row_to_change(r: &PgRow) -> Result<Change> {
    let seq: i64 = r.try_get("seq")?;
    let op: String = r.try_get("op")?;
    let kind: String = r.try_get("kind")?;
    let key: Option<String> = r.try_get("key")?;
    let value: Option<String> = r.try_get("value")?;
    let op = match (op.as_str(), key, value) {
        ("put", Some(key), Some(value)) => Op::Put { kind, key, value },
        ("delete", Some(key), _) => Op::Delete { kind, key },
        ("delete_kind", _, _) => Op::DeleteKind { kind },
        (other, _, _) => {
            return Err(StoreError::Corrupt {
                kind: "change".into(),
                key: seq.to_string(),
                reason: format!("unreadable change {other:?}"),
            });
        }
    };
    Ok(Change { seq, op })
}

/// Insert audit events. An event whose id is stored is skipped, or with
/// `replace` overwrites the stored one in place (same seq).
async fn insert_audit(
    conn: &mut PgConnection,
    rows: &[AuditRow],
    replace: bool,
) -> sqlx::Result<()> {
    let merged = one_per_id(rows, replace);
    let rows: Vec<&AuditRow> = merged.iter().map(AsRef::as_ref).collect();
    for chunk in rows.chunks(AUDIT_CHUNK) {
        let fresh = insert_chunk(conn, chunk).await?;
        if replace {
            for r in chunk
                .iter()
                .filter(|r| !fresh.contains(r.event_id.as_str()))
            {
                replace_event(conn, r).await?;
            }
        }
    }
    Ok(())
}

/// One statement per chunk (one round trip, where three cost PostgreSQL
/// nodes most of their extra CPU per request): claim a seq for every event
/// id not stored yet (in the rows' order), insert those events and index
/// their resource names. Returns the ids it inserted.
async fn insert_chunk(
    conn: &mut PgConnection,
    rows: &[&AuditRow],
) -> sqlx::Result<HashSet<String>> {
    let col = |f: fn(&AuditRow) -> &str| rows.iter().map(|r| f(r)).collect::<Vec<&str>>();
    let (mut names, mut owners) = (Vec::new(), Vec::new());
    for (n, r) in (1i64..).zip(rows) {
        for name in &r.resource_names {
            names.push(name.as_str());
            owners.push(n);
        }
    }
    let inserted = sqlx::query(
        "WITH input AS (
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                                  $6::text[], $7::text[], $8::boolean[], $9::text[])
                 WITH ORDINALITY AS u(event_id, event_time_ms, event_name, event_source, username,
                                      access_key_id, account, read_only, body, n)),
         claimed AS (
             INSERT INTO audit_ids (event_id, event_time_ms)
             SELECT event_id, event_time_ms FROM input ORDER BY n
             ON CONFLICT (event_id) DO NOTHING
             RETURNING event_id, seq),
         events AS (
             INSERT INTO audit (seq, event_id, event_time_ms, event_name, event_source, username,
                                access_key_id, account, read_only, body)
             SELECT c.seq, i.event_id, i.event_time_ms, i.event_name, i.event_source, i.username,
                    i.access_key_id, i.account, i.read_only, i.body
             FROM claimed c JOIN input i USING (event_id)),
         names AS (
             INSERT INTO audit_resource (name, seq, event_time_ms)
             SELECT r.name, c.seq, i.event_time_ms
             FROM UNNEST($10::text[], $11::bigint[]) AS r(name, n)
             JOIN input i USING (n) JOIN claimed c USING (event_id)
             ON CONFLICT DO NOTHING)
         SELECT event_id FROM claimed",
    )
    .bind(col(|r| &r.event_id))
    .bind(rows.iter().map(|r| r.event_time_ms).collect::<Vec<i64>>())
    .bind(col(|r| &r.event_name))
    .bind(col(|r| &r.event_source))
    .bind(col(|r| &r.username))
    .bind(col(|r| &r.access_key_id))
    .bind(col(|r| &r.account))
    .bind(rows.iter().map(|r| r.read_only).collect::<Vec<bool>>())
    .bind(col(|r| &r.body))
    .bind(names)
    .bind(owners)
    .fetch_all(&mut *conn)
    .await?;
    inserted.iter().map(|r| r.try_get("event_id")).collect()
}

/// Insert events whose seqs are known (a replacement whose partition was
/// dropped under it).
async fn insert_new(conn: &mut PgConnection, rows: &[(i64, &AuditRow)]) -> sqlx::Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let col = |f: fn(&AuditRow) -> &str| rows.iter().map(|(_, r)| f(r)).collect::<Vec<&str>>();
    sqlx::query(
        "INSERT INTO audit (seq, event_id, event_time_ms, event_name, event_source, username,
                            access_key_id, account, read_only, body)
         SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::text[],
                              $6::text[], $7::text[], $8::text[], $9::boolean[], $10::text[])",
    )
    .bind(rows.iter().map(|(s, _)| *s).collect::<Vec<i64>>())
    .bind(col(|r| &r.event_id))
    .bind(
        rows.iter()
            .map(|(_, r)| r.event_time_ms)
            .collect::<Vec<i64>>(),
    )
    .bind(col(|r| &r.event_name))
    .bind(col(|r| &r.event_source))
    .bind(col(|r| &r.username))
    .bind(col(|r| &r.access_key_id))
    .bind(col(|r| &r.account))
    .bind(rows.iter().map(|(_, r)| r.read_only).collect::<Vec<bool>>())
    .bind(col(|r| &r.body))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Index the events' resource names (names already indexed stay).
async fn insert_names(conn: &mut PgConnection, rows: &[(i64, &AuditRow)]) -> sqlx::Result<()> {
    let mut names = Vec::new();
    let mut seqs = Vec::new();
    let mut times = Vec::new();
    for (seq, r) in rows {
        for n in &r.resource_names {
            names.push(n.as_str());
            seqs.push(*seq);
            times.push(r.event_time_ms);
        }
    }
    if names.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO audit_resource (name, seq, event_time_ms)
         SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::bigint[])
         ON CONFLICT DO NOTHING",
    )
    .bind(names)
    .bind(seqs)
    .bind(times)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Overwrite a stored event with `r` (same id), keeping its seq; its
/// resource names are added to the stored ones, as in SQLite.
async fn replace_event(conn: &mut PgConnection, r: &AuditRow) -> sqlx::Result<()> {
    let Some(old) = sqlx::query(
        "UPDATE audit_ids n SET event_time_ms = $2 FROM audit_ids o
         WHERE n.event_id = $1 AND o.event_id = $1
         RETURNING n.seq, o.event_time_ms AS old_ms",
    )
    .bind(&r.event_id)
    .bind(r.event_time_ms)
    .fetch_optional(&mut *conn)
    .await?
    else {
        return Ok(());
    };
    let seq: i64 = old.try_get("seq")?;
    let old_ms: i64 = old.try_get("old_ms")?;
    let updated = sqlx::query(
        "UPDATE audit SET event_time_ms = $3, event_name = $4, event_source = $5, username = $6,
                access_key_id = $7, account = $8, read_only = $9, body = $10
         WHERE seq = $1 AND event_time_ms = $2",
    )
    .bind(seq)
    .bind(old_ms)
    .bind(r.event_time_ms)
    .bind(&r.event_name)
    .bind(&r.event_source)
    .bind(&r.username)
    .bind(&r.access_key_id)
    .bind(&r.account)
    .bind(r.read_only)
    .bind(&r.body)
    .execute(&mut *conn)
    .await?;
    if updated.rows_affected() == 0 {
        // Its partition was dropped under it: store it anew.
        insert_new(conn, &[(seq, r)]).await?;
    } else if old_ms != r.event_time_ms {
        sqlx::query(
            "UPDATE audit_resource SET event_time_ms = $3 WHERE seq = $1 AND event_time_ms = $2",
        )
        .bind(seq)
        .bind(old_ms)
        .bind(r.event_time_ms)
        .execute(&mut *conn)
        .await?;
    }
    insert_names(conn, &[(seq, r)]).await
}

fn row_to_audit(r: &PgRow) -> sqlx::Result<AuditRow> {
    Ok(AuditRow {
        seq: r.try_get("seq")?,
        event_id: r.try_get("event_id")?,
        event_time_ms: r.try_get("event_time_ms")?,
        event_name: r.try_get("event_name")?,
        event_source: r.try_get("event_source")?,
        username: r.try_get("username")?,
        access_key_id: r.try_get("access_key_id")?,
        account: r.try_get("account")?,
        resource_names: Vec::new(),
        read_only: r.try_get("read_only")?,
        body: r.try_get("body")?,
    })
}

fn row_to_record(r: &PgRow) -> sqlx::Result<Record> {
    Ok(Record {
        kind: r.try_get("kind")?,
        key: r.try_get("key")?,
        value: r.try_get("value")?,
    })
}

/// The WHERE and ORDER BY of a lookup, as in `SqliteStore`.
fn push_filters(qb: &mut QueryBuilder<Postgres>, q: &AuditQuery) {
    let text = [
        ("account", &q.account),
        ("event_name", &q.event_name),
        ("event_source", &q.event_source),
        ("username", &q.username),
        ("access_key_id", &q.access_key_id),
        ("event_id", &q.event_id),
    ];
    for (col, v) in text {
        if let Some(v) = v {
            qb.push(format!(" AND a.{col} = ")).push_bind(v.clone());
        }
    }
    if let Some(v) = q.read_only {
        qb.push(" AND a.read_only = ").push_bind(v);
    }
    if let Some(v) = &q.resource_name {
        qb.push(" AND a.seq IN (SELECT seq FROM audit_resource WHERE name = ")
            .push_bind(v.clone())
            .push(")");
    }
    let bounds = [
        (" AND a.event_time_ms >= ", q.start_ms),
        (" AND a.event_time_ms <= ", q.end_ms),
        (" AND a.seq < ", q.before_seq),
    ];
    for (sql, v) in bounds {
        if let Some(v) = v {
            qb.push(sql).push_bind(v);
        }
    }
    if let Some(v) = q.after_seq {
        qb.push(" AND a.seq > ").push_bind(v);
        qb.push(" ORDER BY a.seq ASC");
    } else {
        qb.push(" ORDER BY a.seq DESC");
    }
    qb.push(" LIMIT ").push_bind(i64::from(q.page_limit()));
}

impl PgStore {
    /// Fill in the resource names of a page of events, in one query.
    async fn attach_names(&self, out: &mut [AuditRow]) -> Result<()> {
        if out.is_empty() {
            return Ok(());
        }
        let seqs: Vec<i64> = out.iter().map(|r| r.seq).collect();
        let rows =
            sqlx::query("SELECT seq, name FROM audit_resource WHERE seq = ANY($1) ORDER BY name")
                .bind(seqs)
                .fetch_all(&self.pool)
                .await?;
        let mut names: HashMap<i64, Vec<String>> = HashMap::new();
        for r in &rows {
            names
                .entry(r.try_get("seq")?)
                .or_default()
                .push(r.try_get("name")?);
        }
        for row in out.iter_mut() {
            row.resource_names = names.remove(&row.seq).unwrap_or_default();
        }
        Ok(())
    }
}

#[async_trait]
impl Store for PgStore {
    async fn load_all(&self) -> Result<Vec<Record>> {
        let rows = sqlx::query("SELECT kind, key, value FROM records ORDER BY kind, key")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(row_to_record)
            .collect::<sqlx::Result<_>>()?)
    }

    async fn load_kind(&self, kind: &str) -> Result<Vec<Record>> {
        let rows = sqlx::query("SELECT kind, key, value FROM records WHERE kind = $1 ORDER BY key")
            .bind(kind)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .map(row_to_record)
            .collect::<sqlx::Result<_>>()?)
    }

    async fn commit(&self, ops: &[Op], audit: &[AuditRow]) -> Result<()> {
        if ops.is_empty() && audit.is_empty() {
            return Ok(());
        }
        self.retrying(|| self.commit_once(ops, audit)).await
    }

    async fn commit_at(
        &self,
        ops: &[Op],
        audit: &[AuditRow],
        expected_seq: Option<i64>,
    ) -> Result<CommitOutcome> {
        let write = || self.commit_checked(ops, audit, expected_seq);
        match write().await {
            Err(e) if missing_partition(&e) => {
                self.known_days().clear();
                Ok(write().await?)
            }
            other => Ok(other?),
        }
    }

    async fn current_seq(&self) -> Result<Option<i64>> {
        PgStore::current_seq(self).await.map(Some)
    }

    async fn changes_since(&self, seq: i64) -> Result<Vec<(i64, Op)>> {
        Ok(PgStore::changes_since(self, seq)
            .await?
            .into_iter()
            .map(|c| (c.seq, c.op))
            .collect())
    }

    async fn append_audit(&self, rows: &[AuditRow]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        self.retrying(|| self.append_once(rows)).await
    }

    async fn query_audit(&self, q: &AuditQuery) -> Result<Vec<AuditRow>> {
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(
            "SELECT a.seq, a.event_id, a.event_time_ms, a.event_name, a.event_source, a.username,
                    a.access_key_id, a.account, a.read_only, a.body
             FROM audit a WHERE true",
        );
        push_filters(&mut qb, q);
        let rows = qb.build().fetch_all(&self.pool).await?;
        let mut out = rows
            .iter()
            .map(row_to_audit)
            .collect::<sqlx::Result<Vec<_>>>()?;
        self.attach_names(&mut out).await?;
        Ok(out)
    }

    async fn clear_audit(&self) -> Result<()> {
        sqlx::query("TRUNCATE audit, audit_resource, audit_ids")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn expire_audit(&self, before_ms: i64) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        lock(&mut tx, LOCK_PARTITIONS).await?;
        let old = sqlx::query(
            "DELETE FROM audit_partitions WHERE to_ms IS NOT NULL AND to_ms <= $1
             RETURNING day, suffix",
        )
        .bind(before_ms)
        .fetch_all(&mut *tx)
        .await?;
        let mut dropped = Vec::with_capacity(old.len());
        for r in &old {
            let day: i64 = r.try_get("day")?;
            // Rebuilt from the day, never taken from the table as SQL.
            let suffix = suffix_of(day);
            for parent in ["audit", "audit_resource"] {
                sqlx::query(AssertSqlSafe(format!(
                    "DROP TABLE IF EXISTS {parent}_{suffix}"
                )))
                .execute(&mut *tx)
                .await?;
            }
            dropped.push(day);
        }
        if let Some(end) = dropped.iter().max().and_then(|d| bounds_of(*d).1) {
            sqlx::query("DELETE FROM audit_ids WHERE event_time_ms < $1")
                .bind(end)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        let mut known = self.known_days();
        for d in dropped {
            known.remove(&d);
        }
        Ok(())
    }

    async fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT value FROM meta WHERE key = $1")
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get::<Vec<u8>, _>("value")).transpose()?)
    }

    async fn put_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        sqlx::query(
            "INSERT INTO meta (key, value) VALUES ($1, $2)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(key)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn list_meta(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let rows =
            sqlx::query("SELECT key, value FROM meta WHERE starts_with(key, $1) ORDER BY key")
                .bind(prefix)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("key")?, r.try_get("value")?)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_names_and_bounds() {
        assert_eq!(suffix_of(0), "p19700101");
        assert_eq!(suffix_of(day_of(1_764_547_200_000)), "p20251201");
        assert_eq!(suffix_of(day_of(-1)), "p19691231");
        assert_eq!(
            bounds_of(1),
            ("86400000".into(), Some(172_800_000), "172800000".into())
        );
        let (from, to, to_sql) = bounds_of(day_of(i64::MAX));
        assert!(from.parse::<i64>().is_ok());
        assert_eq!((to, to_sql.as_str()), (None, "MAXVALUE"));
        let (from, _, _) = bounds_of(day_of(i64::MIN));
        assert_eq!(from, "MINVALUE");
        assert!(suffix_of(day_of(i64::MIN)).starts_with("dm"));
    }

    #[test]
    fn one_event_per_id() {
        let ev = |id: &str, body: &str| AuditRow {
            event_id: id.into(),
            body: body.into(),
            resource_names: vec![format!("n{body}")],
            ..AuditRow::default()
        };
        let rows = [ev("a", "1"), ev("b", "2"), ev("a", "3")];
        let bodies = |v: Vec<std::borrow::Cow<'_, AuditRow>>| {
            v.iter()
                .map(|r| (r.body.clone(), r.resource_names.join(",")))
                .collect::<Vec<_>>()
        };
        let pair = |b: &str, n: &str| (b.to_string(), n.to_string());
        assert_eq!(
            bodies(one_per_id(&rows, false)),
            [pair("1", "n1,n3"), pair("2", "n2")]
        );
        assert_eq!(
            bodies(one_per_id(&rows, true)),
            [pair("3", "n1,n3"), pair("2", "n2")]
        );
    }
}
