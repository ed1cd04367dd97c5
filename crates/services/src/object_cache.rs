//! Small objects' bytes kept in memory, so a hot GetObject skips the
//! `open`/`read`/`close` of its data file.
//!
//! Keyed by data file name. A file is written once under a fresh random
//! name and never rewritten (an overwrite writes a new file), so an entry
//! can never disagree with the file it names: a stale entry is only
//! memory, never a wrong answer. Bounded in bytes, evicted oldest first.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;

/// Objects up to this size are kept.
pub const MAX_CACHED_OBJECT: u64 = 64 * 1024;
/// All kept objects together stay under this many bytes.
const CAPACITY: usize = 8 * 1024 * 1024;

#[derive(Debug, Default)]
pub struct ObjectCache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<String, Bytes>,
    /// Insertion order; may name files already forgotten (skipped when
    /// popped, compacted when they pile up).
    order: VecDeque<String>,
    bytes: usize,
}

impl ObjectCache {
    /// The bytes of data file `file`, when kept.
    pub fn get(&self, file: &str) -> Option<Bytes> {
        let inner = self.inner.lock().ok()?;
        inner.map.get(file).cloned()
    }

    /// Keep `data` as the bytes of data file `file` (too large: ignored).
    pub fn insert(&self, file: &str, data: Bytes) {
        if file.is_empty() || u64::try_from(data.len()).map_or(true, |n| n > MAX_CACHED_OBJECT) {
            return;
        }
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.bytes += data.len();
        if let Some(old) = inner.map.insert(file.to_string(), data) {
            inner.bytes = inner.bytes.saturating_sub(old.len());
        } else {
            inner.order.push_back(file.to_string());
        }
        while inner.bytes > CAPACITY {
            let Some(oldest) = inner.order.pop_front() else {
                break;
            };
            if let Some(gone) = inner.map.remove(&oldest) {
                inner.bytes = inner.bytes.saturating_sub(gone.len());
            }
        }
        if inner.order.len() > 2 * inner.map.len() + 64 {
            let Inner { map, order, .. } = &mut *inner;
            order.retain(|f| map.contains_key(f));
        }
    }

    /// Drop data file `file` (it is being deleted).
    pub fn forget(&self, file: &str) {
        if let Ok(mut inner) = self.inner.lock()
            && let Some(gone) = inner.map.remove(file)
        {
            inner.bytes = inner.bytes.saturating_sub(gone.len());
        }
    }

    /// Bytes kept (tests, metrics).
    pub fn bytes(&self) -> usize {
        self.inner.lock().map_or(0, |i| i.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blob(n: usize) -> Bytes {
        Bytes::from(vec![7u8; n])
    }

    #[test]
    fn keeps_small_objects_and_forgets_deleted_ones() {
        let c = ObjectCache::default();
        c.insert("a", blob(10));
        assert_eq!(c.get("a").map(|b| b.len()), Some(10));
        c.forget("a");
        assert!(c.get("a").is_none());
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn refuses_large_objects() {
        let c = ObjectCache::default();
        c.insert("big", blob(MAX_CACHED_OBJECT as usize + 1));
        assert!(c.get("big").is_none());
        assert_eq!(c.bytes(), 0);
    }

    #[test]
    fn stays_under_capacity_oldest_out_first() {
        let c = ObjectCache::default();
        let n = CAPACITY / (64 * 1024) + 10;
        for i in 0..n {
            c.insert(&format!("f{i}"), blob(64 * 1024));
        }
        assert!(c.bytes() <= CAPACITY);
        assert!(c.get("f0").is_none(), "the oldest went first");
        assert!(c.get(&format!("f{}", n - 1)).is_some(), "the newest stays");
    }

    #[test]
    fn forgetting_does_not_let_the_order_grow() {
        let c = ObjectCache::default();
        for i in 0..10_000 {
            let f = format!("f{i}");
            c.insert(&f, blob(1));
            c.forget(&f);
        }
        let inner = c.inner.lock().unwrap();
        assert!(inner.order.len() <= 64 + 1);
        assert_eq!(inner.bytes, 0);
    }
}
