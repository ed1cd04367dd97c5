//! The move of journaled events into the audit table, on a connection of
//! its own driven synchronously (rusqlite, the same bundled SQLite as
//! sqlx). Through sqlx every multi-row statement was a round trip to the
//! connection's worker thread and every returned row a message back: the
//! move took about 30% of keycard's CPU per authorized GetObject, twice
//! what it takes here (`cargo run --release -p keycard-store --example
//! ingest`: 27 → 13-16 µs per event).

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;
use std::sync::LazyLock;

use rusqlite::types::{ToSqlOutput, Value, ValueRef};
use rusqlite::{Connection, TransactionBehavior, params, params_from_iter};

use crate::journal::{self, Decoded, Loc, Pos, Taken};
use crate::sqlite::{
    BUSY_TIMEOUT, CACHE_SIZE, CHUNK_SIZES, Durability, JOURNAL_GEN, ON_CONFLICT_MERGE,
    WAL_AUTOCHECKPOINT, fixed_chunks, resources_json,
};
use crate::{AuditRow, Result, StoreError};

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

/// Events decoded and inserted per statement group during a move (about
/// a millisecond of work between yields, see `apply`).
const INGEST_CHUNK: usize = 64;

/// The audit columns, in the order `insert` binds them.
const COLUMNS: &str = "event_id, event_time_ms, event_name, event_source, username,
    access_key_id, account, read_only, body, seg, seg_off, seg_len, resources";

/// `n` rows of `width` placeholders: `(?,?),(?,?)`.
fn values(n: usize, width: usize) -> String {
    let row = format!("({})", vec!["?"; width].join(","));
    vec![row; n].join(",")
}

/// Multi-row statements, in the sizes of `fixed_chunks` so each is
/// prepared once and cached: one statement per row opened every index's
/// cursor per event and cost more than the sqlx path it replaced.
fn upsert_sql(n: usize) -> String {
    format!(
        "INSERT INTO audit ({COLUMNS}) VALUES {}{ON_CONFLICT_MERGE} RETURNING seq, event_id",
        values(n, 13)
    )
}

fn resource_sql(n: usize) -> String {
    format!(
        "INSERT OR IGNORE INTO audit_resource (seq, name) VALUES {}",
        values(n, 2)
    )
}

/// Both statements' text for each of `CHUNK_SIZES`, built once: the text is
/// the statement cache's key, and building it per chunk was wasted work.
static SQL: LazyLock<Vec<(usize, String, String)>> = LazyLock::new(|| {
    CHUNK_SIZES
        .iter()
        .map(|n| (*n, upsert_sql(*n), resource_sql(*n)))
        .collect()
});

/// The upsert and resource statements for `n` rows.
fn sql_for(n: usize) -> (Cow<'static, str>, Cow<'static, str>) {
    match SQL.iter().find(|(size, ..)| *size == n) {
        Some((_, upsert, resource)) => (Cow::Borrowed(upsert), Cow::Borrowed(resource)),
        None => (Cow::Owned(upsert_sql(n)), Cow::Owned(resource_sql(n))),
    }
}

fn text(s: &str) -> ToSqlOutput<'_> {
    ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes()))
}

fn int(v: Option<i64>) -> ToSqlOutput<'static> {
    ToSqlOutput::Owned(v.map_or(Value::Null, Value::Integer))
}

const PUT_POS: &str = "INSERT INTO meta (key, value) VALUES (?1, ?2)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value";

/// The mover's connection, with the pool's settings.
pub(crate) fn open(path: &Path, durability: Durability) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let sync = match durability {
        Durability::Crash => "NORMAL",
        Durability::PowerLoss => "FULL",
    };
    // Per connection: the mover writes most of the WAL, so its checkpoint
    // interval is the one that counts (see `open_with`).
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {sync}; PRAGMA cache_size = {CACHE_SIZE};
         PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT}; PRAGMA foreign_keys = ON;"
    ))?;
    Ok(conn)
}

/// Move `taken` in one transaction that also advances the stored position.
pub(crate) fn apply(conn: &mut Connection, taken: &Taken) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Decoded a few hundred at a time: a large backlog never sits in
    // memory twice.
    let mut decoded = Decoded::default();
    for chunk in &taken.chunks {
        let mut at = 0;
        while journal::decode_located(chunk, &mut at, INGEST_CHUNK - decoded.len(), &mut decoded)
            > 0
        {
            if decoded.len() >= INGEST_CHUNK {
                insert(&tx, &decoded)?;
                decoded.clear();
                // A move of a second's events is a burst of milliseconds
                // on one of few cores: let request threads in between
                // chunks (it held GetObject's p99 at ~4 ms otherwise).
                std::thread::yield_now();
            }
        }
    }
    insert(&tx, &decoded)?;
    put_pos(&tx, taken.next)?;
    tx.commit()?;
    Ok(())
}

/// Insert decoded events: their columns, and where their bodies are.
fn insert(conn: &Connection, decoded: &Decoded) -> Result<()> {
    // A repeated id keeps the last record's body, as `one_per_id` keeps
    // the last one's content.
    let locs: HashMap<&str, Loc> = decoded
        .rows
        .iter()
        .map(|r| r.event_id.as_str())
        .zip(decoded.locs.iter().copied())
        .collect();
    let merged = crate::one_per_id(&decoded.rows, true);
    let rows: Vec<&AuditRow> = merged.iter().map(AsRef::as_ref).collect();
    // The columns computed per row; the rest are bound borrowed.
    let resources: Vec<String> = rows
        .iter()
        .map(|r| resources_json(&r.resource_names))
        .collect();
    let mut at = 0;
    for chunk in fixed_chunks(&rows) {
        let computed = resources.get(at..at + chunk.len()).unwrap_or_default();
        at += chunk.len();
        let mut args: Vec<ToSqlOutput<'_>> = Vec::with_capacity(chunk.len() * 13);
        for (r, resources) in chunk.iter().zip(computed) {
            let loc = locs.get(r.event_id.as_str());
            let body = if loc.is_some() { "" } else { r.body.as_str() };
            args.extend([
                text(&r.event_id),
                int(Some(r.event_time_ms)),
                text(&r.event_name),
                text(&r.event_source),
                text(&r.username),
                text(&r.access_key_id),
                text(&r.account),
                int(Some(i64::from(r.read_only))),
                text(body),
                int(loc.and_then(|l| i64::try_from(l.generation).ok())),
                int(loc.and_then(|l| i64::try_from(l.offset).ok())),
                int(loc.map(|l| i64::from(l.len))),
                text(resources),
            ]);
        }
        let (upsert_text, _) = sql_for(chunk.len());
        let mut upsert = conn.prepare_cached(&upsert_text)?;
        let seqs = upsert
            .query_map(params_from_iter(args.iter()), |row| {
                Ok((row.get::<_, String>(1)?, row.get::<_, i64>(0)?))
            })?
            .collect::<rusqlite::Result<HashMap<String, i64>>>()?;
        let names: Vec<(i64, &String)> = chunk
            .iter()
            .filter_map(|r| seqs.get(&r.event_id).map(|seq| (*seq, *r)))
            .flat_map(|(seq, r)| r.resource_names.iter().map(move |n| (seq, n)))
            .collect();
        for part in fixed_chunks(&names) {
            let args = part
                .iter()
                .flat_map(|(seq, name)| [int(Some(*seq)), text(name)]);
            let (_, resource_text) = sql_for(part.len());
            conn.prepare_cached(&resource_text)?
                .execute(params_from_iter(args))?;
        }
    }
    Ok(())
}

/// Move events decoded at start-up, in one transaction that also stores
/// the position after them.
pub(crate) fn replay(conn: &mut Connection, decoded: &Decoded, next: Pos) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    insert(&tx, decoded)?;
    put_pos(&tx, next)?;
    tx.commit()?;
    Ok(())
}

fn put_pos(conn: &Connection, pos: Pos) -> Result<()> {
    conn.prepare_cached(PUT_POS)?
        .execute(params![JOURNAL_GEN, pos.render().into_bytes()])?;
    Ok(())
}
