//! Durable state for keycard behind one trait.
//!
//! The domain keeps a typed in-memory read model and writes through this
//! trait, so the trait is deliberately small: entity records (kind, key, JSON
//! document) committed in atomic batches, an append-only audit stream with a
//! few indexed columns for lookups, and a metadata table for server keys.
//! Every backend runs the same test suite (`tests/suite.rs`).

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        clippy::panic
    )
)]

mod journal;
mod mover;
mod pg;
mod sqlite;

pub use pg::{CHANGES_CHANNEL, CHANGES_PAGE, Change, ChangeListener, Notice, PgStore};
pub use sqlite::{Durability, SqliteStore};

use std::borrow::Cow;

use async_trait::async_trait;

/// Errors from a storage backend. They are never a client's fault, so they
/// map to `InternalFailure` / `ServiceFailure` at the edge.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage backend error: {0}")]
    Backend(String),
    #[error("stored record {kind}/{key} is corrupt: {reason}")]
    Corrupt {
        kind: String,
        key: String,
        reason: String,
    },
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;

/// One stored entity: its kind ("user", "role", …), its key inside that
/// kind (unique), and its JSON document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub kind: String,
    pub key: String,
    pub value: String,
}

/// A write in an atomic batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put {
        kind: String,
        key: String,
        value: String,
    },
    Delete {
        kind: String,
        key: String,
    },
    /// Delete every record of `kind` (used by the moto-compatible reset).
    DeleteKind {
        kind: String,
    },
}

impl Op {
    pub fn put(kind: &str, key: impl Into<String>, value: impl Into<String>) -> Op {
        Op::Put {
            kind: kind.to_string(),
            key: key.into(),
            value: value.into(),
        }
    }
    pub fn delete(kind: &str, key: impl Into<String>) -> Op {
        Op::Delete {
            kind: kind.to_string(),
            key: key.into(),
        }
    }
}

/// An audit event as stored: the CloudTrail JSON body plus the columns
/// that `LookupEvents` filters on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditRow {
    /// Assigned by the store on append; ignored on input.
    pub seq: i64,
    pub event_id: String,
    /// Milliseconds since the Unix epoch.
    pub event_time_ms: i64,
    pub event_name: String,
    pub event_source: String,
    pub username: String,
    pub access_key_id: String,
    /// The account the event belongs to (CloudTrail's `recipientAccountId`),
    /// empty when no account is known; `LookupEvents` filters on it.
    pub account: String,
    /// Resource names the event touched, each one searchable.
    pub resource_names: Vec<String>,
    pub read_only: bool,
    pub body: String,
}

/// A `LookupEvents`-style query. Results are newest first.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    /// Only events of this account (`recipientAccountId`).
    pub account: Option<String>,
    pub event_name: Option<String>,
    pub event_source: Option<String>,
    pub username: Option<String>,
    pub access_key_id: Option<String>,
    pub resource_name: Option<String>,
    pub event_id: Option<String>,
    pub read_only: Option<bool>,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    /// Only events with `seq` strictly below this (pagination, newest first).
    pub before_seq: Option<i64>,
    /// Only events with `seq` strictly above this (tailing, oldest first).
    pub after_seq: Option<i64>,
    pub limit: u32,
}

impl AuditQuery {
    /// Rows one query returns: `limit`, 50 when unset, at most 10,000 (every
    /// backend pages the same way).
    pub fn page_limit(&self) -> u32 {
        if self.limit == 0 {
            50
        } else {
            self.limit.min(10_000)
        }
    }
}

/// What `Store::commit_at` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Written; the change feed's last sequence number after it, where the
    /// backend has a feed.
    Committed(Option<i64>),
    /// The feed had moved past the expected sequence: another node wrote
    /// first. Nothing was written.
    Conflict,
}

/// The storage trait every backend implements.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Every entity record, for building the in-memory read model at start.
    async fn load_all(&self) -> Result<Vec<Record>>;
    /// Records of one kind.
    async fn load_kind(&self, kind: &str) -> Result<Vec<Record>>;
    /// Apply a batch atomically, together with audit events: all of it or
    /// none of it. An event here is inserted unless one with its
    /// `event_id` is already stored (a request's draft event never
    /// replaces its final one).
    async fn commit(&self, ops: &[Op], audit: &[AuditRow]) -> Result<()>;
    /// Append audit events in one transaction, in order. An event whose
    /// `event_id` is already stored replaces it in place (keeping its
    /// `seq`): that is how a request's final event supersedes its draft.
    async fn append_audit(&self, rows: &[AuditRow]) -> Result<()>;
    /// Look audit events up. With `after_seq` the order is oldest first,
    /// otherwise newest first.
    async fn query_audit(&self, q: &AuditQuery) -> Result<Vec<AuditRow>>;
    /// Delete every audit event (moto-compatible reset).
    async fn clear_audit(&self) -> Result<()>;
    /// Retention: forget audit events older than `before_ms`. A backend
    /// may keep some older ones (PostgreSQL drops whole days, never part
    /// of one); it never removes one at or after `before_ms`. The default
    /// keeps everything.
    async fn expire_audit(&self, before_ms: i64) -> Result<()> {
        let _ = before_ms;
        Ok(())
    }
    /// Commit only if the change feed still ends at `expected_seq`
    /// (optimistic concurrency between nodes). Backends without a feed
    /// (SQLite: one process) just commit.
    async fn commit_at(
        &self,
        ops: &[Op],
        audit: &[AuditRow],
        expected_seq: Option<i64>,
    ) -> Result<CommitOutcome> {
        let _ = expected_seq;
        self.commit(ops, audit).await?;
        Ok(CommitOutcome::Committed(None))
    }
    /// The feed's last sequence number; None for backends without a feed.
    async fn current_seq(&self) -> Result<Option<i64>> {
        Ok(None)
    }
    /// Feed entries after `seq`, oldest first, at most one page; empty for
    /// backends without a feed.
    async fn changes_since(&self, seq: i64) -> Result<Vec<(i64, Op)>> {
        let _ = seq;
        Ok(Vec::new())
    }
    async fn get_meta(&self, key: &str) -> Result<Option<Vec<u8>>>;
    async fn put_meta(&self, key: &str, value: &[u8]) -> Result<()>;
    /// Every meta entry whose key starts with `prefix`, by key (nodes'
    /// heartbeats: one key each, outside the change feed).
    async fn list_meta(&self, prefix: &str) -> Result<Vec<(String, Vec<u8>)>>;
}

/// The events of one batch to write, one per event id, the same on both
/// engines: without `replace` the first of each id wins, with it the last
/// one's content at the first one's place; either way the event keeps the
/// resource names of all of them.
pub(crate) fn one_per_id(rows: &[AuditRow], replace: bool) -> Vec<Cow<'_, AuditRow>> {
    let mut at: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut out: Vec<Cow<'_, AuditRow>> = Vec::with_capacity(rows.len());
    for r in rows {
        let Some(slot) = at.get(r.event_id.as_str()).and_then(|i| out.get_mut(*i)) else {
            at.insert(&r.event_id, out.len());
            out.push(Cow::Borrowed(r));
            continue;
        };
        let mut names = slot.resource_names.clone();
        for n in &r.resource_names {
            if !names.contains(n) {
                names.push(n.clone());
            }
        }
        let mut merged = if replace {
            r.clone()
        } else {
            slot.as_ref().clone()
        };
        merged.resource_names = names;
        *slot = Cow::Owned(merged);
    }
    out
}
