//! Request context: case-insensitive condition keys with one or many string values.
//!
//! A context may sit on top of a shared base ([`Context::over`]): the request's
//! keys live in the base, each authorization check adds its own resource keys
//! on top, and nothing a check adds can reach the next check.

use std::collections::HashMap;
use std::sync::Arc;

/// Condition-key values of a request. Keys are case-insensitive; values are case-sensitive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    /// lower-cased key -> values
    values: HashMap<String, Vec<String>>,
    /// Keys underneath; `values` shadows them.
    base: Option<Arc<Context>>,
}

/// A key lower-cased; the ASCII case (every key keycard sets itself) without
/// the Unicode tables: keys are inserted about ten times per request.
fn lower(key: &str) -> String {
    if key.is_ascii() {
        key.to_ascii_lowercase()
    } else {
        key.to_lowercase()
    }
}

impl Context {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty context with room for at least `n` keys: a request's
    /// context takes some twenty, and growing a map from empty rehashed it
    /// three or four times per request.
    pub fn with_capacity(n: usize) -> Self {
        Context {
            values: HashMap::with_capacity(n),
            base: None,
        }
    }

    /// Make room for `n` more keys in this layer.
    pub fn reserve(&mut self, n: usize) {
        self.values.reserve(n);
    }

    /// An empty layer over `base`: reads fall through to `base`, writes stay
    /// in the layer.
    pub fn over(base: Arc<Context>) -> Self {
        Context {
            values: HashMap::new(),
            base: Some(base),
        }
    }

    /// Set a single-valued key (replacing any previous values).
    pub fn insert(&mut self, key: &str, value: impl Into<String>) {
        self.values.insert(lower(key), vec![value.into()]);
    }

    /// Set a multi-valued key (replacing any previous values). An empty list is an
    /// empty set (which `ForAllValues` treats as matching and `ForAnyValue` as not).
    pub fn insert_multi(&mut self, key: &str, values: Vec<String>) {
        self.values.insert(lower(key), values);
    }

    /// Values of a key, case-insensitively.
    pub fn get(&self, key: &str) -> Option<&[String]> {
        if key.chars().any(|c| c.is_uppercase()) {
            self.get_lc(&key.to_lowercase())
        } else {
            self.get_lc(key)
        }
    }

    /// Remove a key from this layer; returns its values. Keys of the base
    /// stay visible.
    pub fn remove(&mut self, key: &str) -> Option<Vec<String>> {
        self.values.remove(&key.to_lowercase())
    }

    /// Number of distinct keys, base included.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// True when no key is set, here or in the base.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty() && self.base.as_ref().is_none_or(|b| b.is_empty())
    }

    /// Iterate over (lower-cased key, values), this layer's keys shadowing
    /// the base's.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        let own = self.values.iter().map(|(k, v)| (k.as_str(), v.as_slice()));
        let below: Box<dyn Iterator<Item = (&str, &[String])> + '_> = match &self.base {
            Some(b) => Box::new(b.iter().filter(|(k, _)| !self.values.contains_key(*k))),
            None => Box::new(std::iter::empty()),
        };
        own.chain(below)
    }

    /// Lookup with an already lower-cased key (no allocation).
    pub(crate) fn get_lc(&self, key_lc: &str) -> Option<&[String]> {
        match self.values.get(key_lc) {
            Some(v) => Some(v.as_slice()),
            None => self.base.as_ref().and_then(|b| b.get_lc(key_lc)),
        }
    }
}

#[cfg(test)]
mod layer_tests {
    use super::*;

    #[test]
    fn a_layer_reads_through_and_writes_locally() {
        let mut base = Context::new();
        base.insert("aws:SourceIp", "10.0.0.1");
        base.insert("ec2:Region", "us-east-1");
        let base = Arc::new(base);
        let mut a = Context::over(base.clone());
        a.insert("ec2:ResourceTag/env", "dev");
        a.insert("ec2:Region", "eu-west-1");
        assert_eq!(a.get("aws:sourceip"), Some(&["10.0.0.1".to_string()][..]));
        assert_eq!(a.get("ec2:region"), Some(&["eu-west-1".to_string()][..]));
        assert_eq!(a.len(), 3);
        // A second layer on the same base sees nothing of the first.
        let b = Context::over(base.clone());
        assert_eq!(b.get("ec2:ResourceTag/env"), None);
        assert_eq!(b.get("ec2:region"), Some(&["us-east-1".to_string()][..]));
        assert_eq!(base.get("ec2:ResourceTag/env"), None);
    }
}
