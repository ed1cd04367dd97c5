//! Request context: case-insensitive condition keys with one or many string values.

use std::collections::HashMap;

/// Condition-key values of a request. Keys are case-insensitive; values are case-sensitive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    /// lower-cased key -> values
    values: HashMap<String, Vec<String>>,
}

impl Context {
    /// An empty context.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set a single-valued key (replacing any previous values).
    pub fn insert(&mut self, key: &str, value: impl Into<String>) {
        self.values.insert(key.to_lowercase(), vec![value.into()]);
    }

    /// Set a multi-valued key (replacing any previous values). An empty list is an
    /// empty set (which `ForAllValues` treats as matching and `ForAnyValue` as not).
    pub fn insert_multi(&mut self, key: &str, values: Vec<String>) {
        self.values.insert(key.to_lowercase(), values);
    }

    /// Values of a key, case-insensitively.
    pub fn get(&self, key: &str) -> Option<&[String]> {
        if key.chars().any(|c| c.is_uppercase()) {
            self.get_lc(&key.to_lowercase())
        } else {
            self.get_lc(key)
        }
    }

    /// Remove a key; returns its values.
    pub fn remove(&mut self, key: &str) -> Option<Vec<String>> {
        self.values.remove(&key.to_lowercase())
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// True when no key is set.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Iterate over (lower-cased key, values).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.values.iter().map(|(k, v)| (k.as_str(), v.as_slice()))
    }

    /// Lookup with an already lower-cased key (no allocation).
    pub(crate) fn get_lc(&self, key_lc: &str) -> Option<&[String]> {
        self.values.get(key_lc).map(Vec::as_slice)
    }
}
