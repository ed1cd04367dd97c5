//! Following other nodes over a shared store: apply the change feed to
//! this node's memory, write only from an up-to-date view (see
//! `Keycard::mutate`), and know how stale the view may be.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use keycard_proto::secret::SecretKey;
use keycard_store::Op;

use crate::model::Entity;
use crate::{Keycard, META_BUMP_KIND, Result, crypto, generate, governance, now_ms};

/// The follower polls this often even without notifications.
pub const FOLLOW_PERIOD: Duration = Duration::from_millis(500);

/// Kinds that are entities of the in-memory model (the rest live in
/// the governance book, generation jobs or meta).
pub(crate) fn is_entity_kind(kind: &str) -> bool {
    !(governance::KINDS.contains(&kind) || kind == generate::KIND || kind == META_BUMP_KIND)
}

impl Keycard {
    /// Apply changes other nodes committed (feed order), skipping those
    /// this node already has.
    pub async fn apply_remote(&self, changes: &[(i64, Op)]) {
        let _w = self.write_lock.lock().await;
        self.apply_remote_locked(changes);
    }

    /// `apply_remote` for a caller holding the writer lock.
    fn apply_remote_locked(&self, changes: &[(i64, Op)]) {
        let from = self.applied_seq.load(Ordering::SeqCst);
        let fresh: Vec<&(i64, Op)> = changes.iter().filter(|(s, _)| *s > from).collect();
        let Some(last) = fresh.last().map(|(s, _)| *s) else {
            return;
        };
        let mut instances = false;
        let mut ring = false;
        {
            let mut st = self.state.write().unwrap_or_else(|e| e.into_inner());
            for (seq, op) in &fresh {
                match op {
                    Op::Put { kind, .. } | Op::Delete { kind, .. } | Op::DeleteKind { kind }
                        if kind == META_BUMP_KIND =>
                    {
                        ring = true;
                    }
                    Op::Put { kind, key, value } if is_entity_kind(kind) => {
                        instances |= kind == "instance";
                        self.put_remote(&mut st, *seq, kind, key, value);
                    }
                    Op::Delete { kind, key } if is_entity_kind(kind) => {
                        instances |= kind == "instance";
                        st.delete(kind, key);
                    }
                    Op::DeleteKind { kind } if is_entity_kind(kind) => {
                        instances |= kind == "instance";
                        st.delete_kind(kind);
                    }
                    _ => {}
                }
            }
        }
        self.applied_seq.store(last, Ordering::SeqCst);
        if ring {
            self.ring_changed.store(true, Ordering::SeqCst);
        }
        if instances {
            self.instance_events.send_modify(|n| *n += 1);
        }
        self.changes.send_modify(|n| *n += 1);
    }

    fn put_remote(
        &self,
        st: &mut crate::state::State,
        seq: i64,
        kind: &str,
        key: &str,
        value: &str,
    ) {
        let e = match Entity::from_record(kind, value) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(seq, kind, key, error = %e, "unreadable change from the feed; skipped");
                return;
            }
        };
        if let Entity::AccessKey(k) = &e {
            match crypto::open_secret(&self.master, &k.sealed_secret, key) {
                Ok(secret) => {
                    st.secrets.insert(key.to_string(), SecretKey::new(secret));
                }
                Err(e) => {
                    tracing::warn!(seq, key, error = %e, "access key secret does not open (different master key?)");
                }
            }
        }
        st.put(e);
    }

    /// Re-read the token key ring from the store (another node rotated
    /// it: the ring lives in meta, the feed only signals it).
    async fn reload_ring(&self) -> Result<()> {
        if let Some(sealed) = self.store.get_meta("token_keys").await?
            && let Some(plain) = self.master.open(&sealed, b"token_keys")
            && let Some(ring) = crypto::KeyRing::from_bytes(&plain)
        {
            *self.tokens.write().unwrap_or_else(|e| e.into_inner()) = ring;
        }
        Ok(())
    }

    /// Take every change after `applied_seq` (the writer lock held).
    pub(crate) async fn catch_up_locked(&self) -> Result<()> {
        loop {
            let from = self.applied_seq.load(Ordering::SeqCst);
            let page = self.store.changes_since(from).await?;
            if page.is_empty() {
                return Ok(());
            }
            self.apply_remote_locked(&page);
            if self.ring_changed.swap(false, Ordering::SeqCst) {
                self.reload_ring().await?;
            }
            if page.len() < usize::try_from(keycard_store::CHANGES_PAGE).unwrap_or(usize::MAX) {
                return Ok(());
            }
        }
    }

    /// One follower step: learn the database's current sequence, take
    /// everything up to it, then count the node as synced as of the
    /// moment the sequence was read.
    pub async fn sync(&self) -> Result<()> {
        let asked = now_ms();
        let Some(current) = self.store.current_seq().await? else {
            self.synced_at_ms.store(asked, Ordering::SeqCst);
            return Ok(());
        };
        if current > self.applied_seq.load(Ordering::SeqCst) {
            let _w = self.write_lock.lock().await;
            self.catch_up_locked().await?;
        }
        if self.applied_seq.load(Ordering::SeqCst) >= current {
            self.synced_at_ms.store(asked, Ordering::SeqCst);
        }
        Ok(())
    }

    /// Wake the follower now (a change notification arrived).
    pub fn nudge_follower(&self) {
        self.follow_nudge.notify_one();
    }

    /// Follow the shared store: sync on every nudge and every
    /// `FOLLOW_PERIOD`. Ends with the keycard.
    pub fn spawn_follower(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let Some(kc) = weak.upgrade() else { return };
                if let Err(e) = kc.sync().await {
                    tracing::debug!(error = %e, "follower: store unreachable; will retry");
                }
                kc.note_staleness();
                let _ = tokio::time::timeout(FOLLOW_PERIOD, kc.follow_nudge.notified()).await;
            }
        })
    }

    /// Milliseconds since the node last confirmed it was up to date.
    pub fn staleness_ms(&self) -> i64 {
        now_ms().saturating_sub(self.synced_at_ms.load(Ordering::SeqCst))
    }

    /// Whether requests must be refused: the node may be missing changes
    /// older than `--max-staleness`.
    pub fn is_stale(&self) -> bool {
        self.config.max_staleness.is_some_and(|max| {
            self.staleness_ms() > i64::try_from(max.as_millis()).unwrap_or(i64::MAX)
        })
    }

    /// Log when the node goes stale or recovers.
    fn note_staleness(&self) {
        let stale = self.is_stale();
        if self.stale.swap(stale, Ordering::SeqCst) != stale {
            if stale {
                tracing::warn!(
                    staleness_ms = self.staleness_ms(),
                    "node is stale: refusing requests until it catches up with the store"
                );
            } else {
                tracing::info!("node caught up with the store: serving again");
            }
        }
    }

    /// The sequence of the last change this node's memory reflects.
    pub fn applied_seq(&self) -> i64 {
        self.applied_seq.load(Ordering::SeqCst)
    }
}
