//! The move of journaled events into the audit table, on a connection of
//! its own driven synchronously (rusqlite, the same bundled SQLite as
//! sqlx). Through sqlx every multi-row statement was a round trip to the
//! connection's worker thread and every returned row a message back: the
//! move took about 30% of keycard's CPU per authorized GetObject, twice
//! what it takes here (`cargo run --release -p keycard-store --example
//! ingest`: 27 → 13-16 µs per event).

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::types::Value;
use rusqlite::{Connection, TransactionBehavior, params, params_from_iter};

use crate::journal::{self, Decoded, Loc, Pos, Taken};
use crate::sqlite::{
    Durability, INGEST_CHUNK, JOURNAL_GEN, ON_CONFLICT_MERGE, fixed_chunks, resources_json,
};
use crate::{AuditRow, Result, StoreError};

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

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

const PUT_POS: &str = "INSERT INTO meta (key, value) VALUES (?1, ?2)
    ON CONFLICT (key) DO UPDATE SET value = excluded.value";

/// The mover's connection, with the pool's settings.
pub(crate) fn open(path: &Path, durability: Durability) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(Duration::from_secs(10))?;
    let sync = match durability {
        Durability::Crash => "NORMAL",
        Durability::PowerLoss => "FULL",
    };
    // Per connection: the mover writes most of the WAL, so its checkpoint
    // interval is the one that counts (see `open_with`).
    conn.execute_batch(&format!(
        "PRAGMA synchronous = {sync}; PRAGMA cache_size = -2000;
         PRAGMA wal_autocheckpoint = 4000; PRAGMA foreign_keys = ON;"
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
pub(crate) fn insert(conn: &Connection, decoded: &Decoded) -> Result<()> {
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
    for chunk in fixed_chunks(&rows) {
        let mut args: Vec<Value> = Vec::with_capacity(chunk.len() * 13);
        for r in chunk {
            let loc = locs.get(r.event_id.as_str());
            let body = if loc.is_some() { "" } else { r.body.as_str() };
            args.extend([
                Value::Text(r.event_id.clone()),
                Value::Integer(r.event_time_ms),
                Value::Text(r.event_name.clone()),
                Value::Text(r.event_source.clone()),
                Value::Text(r.username.clone()),
                Value::Text(r.access_key_id.clone()),
                Value::Text(r.account.clone()),
                Value::Integer(i64::from(r.read_only)),
                Value::Text(body.to_string()),
                opt_int(loc.and_then(|l| i64::try_from(l.generation).ok())),
                opt_int(loc.and_then(|l| i64::try_from(l.offset).ok())),
                opt_int(loc.map(|l| i64::from(l.len))),
                Value::Text(resources_json(&r.resource_names)),
            ]);
        }
        let mut upsert = conn.prepare_cached(&upsert_sql(chunk.len()))?;
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
                .flat_map(|(seq, name)| [Value::Integer(*seq), Value::Text((*name).clone())]);
            conn.prepare_cached(&resource_sql(part.len()))?
                .execute(params_from_iter(args))?;
        }
    }
    Ok(())
}

fn opt_int(v: Option<i64>) -> Value {
    v.map_or(Value::Null, Value::Integer)
}

pub(crate) fn put_pos(conn: &Connection, pos: Pos) -> Result<()> {
    conn.prepare_cached(PUT_POS)?
        .execute(params![JOURNAL_GEN, pos.render().into_bytes()])?;
    Ok(())
}
