//! AWS query protocol input.
//!
//! IAM and STS flatten lists as `X.member.N` and structures as
//! `Tags.member.N.Key`; EC2 flattens lists as `X.N` (`InstanceId.1`,
//! `Filter.1.Name`, `Filter.1.Value.1`). [`Params`] keeps the decoded pairs in
//! insertion order (a repeated key keeps its first position and its last value)
//! and offers list/struct views over them.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// A query-protocol input error, with the AWS code and message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct QueryError {
    /// AWS error code, e.g. `MissingParameter`, `MalformedQueryString`, `MalformedXML`.
    pub code: &'static str,
    /// Message in AWS's wording.
    pub message: String,
}

impl QueryError {
    /// Build an error.
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// `MissingParameter`: "The request must contain the parameter {name}".
    pub fn missing_parameter(name: &str) -> Self {
        Self::new(
            "MissingParameter",
            format!("The request must contain the parameter {name}"),
        )
    }

    /// IAM/STS-style `ValidationError` for a missing member, e.g.
    /// "1 validation error detected: Value null at 'userName' failed to satisfy
    /// constraint: Member must not be null".
    pub fn validation_null(name: &str) -> Self {
        let mut member = String::with_capacity(name.len());
        let mut chars = name.chars();
        if let Some(c) = chars.next() {
            member.extend(c.to_lowercase());
        }
        member.extend(chars);
        Self::new(
            "ValidationError",
            format!(
                "1 validation error detected: Value null at '{member}' failed to satisfy constraint: Member must not be null"
            ),
        )
    }

    /// `InvalidParameterValue` with a message.
    pub fn invalid_value(message: impl Into<String>) -> Self {
        Self::new("InvalidParameterValue", message)
    }

    /// `MalformedQueryString` with a message.
    pub fn malformed(message: impl Into<String>) -> Self {
        Self::new("MalformedQueryString", message)
    }
}

/// Most parameters one request may carry (URL query and form body together,
/// repeated keys counted each time). AWS documents no single number; the largest
/// inputs it does document stay far below this — `CreateTags` takes up to 1,000
/// resource ids plus 50 tags, EC2 filters take up to 200 values each, IAM lists
/// are capped at 10–50 members — while a 1 MB body could otherwise carry over
/// 100,000 pairs. 10,000 keeps every real request working and bounds the work.
pub const MAX_PARAMS: usize = 10_000;

/// Longest parameter name, in bytes. Real names are under 150 bytes
/// (`LaunchTemplateConfigs.member.1.Overrides.member.1.InstanceRequirements…`).
pub const MAX_KEY_BYTES: usize = 512;

/// Largest list index (`N` in `X.member.N` / `X.N`). A list cannot have more
/// members than the request has parameters, so an index beyond [`MAX_PARAMS`]
/// is never a real member.
pub const MAX_LIST_INDEX: u32 = MAX_PARAMS as u32;

/// AWS's wording for `InvalidQueryParameter`, followed by which limit was hit.
fn limit_error(what: impl fmt::Display) -> QueryError {
    QueryError::new(
        "InvalidQueryParameter",
        format!("The AWS query string is malformed or does not adhere to AWS standards: {what}"),
    )
}

/// Decoded query-protocol parameters, in insertion order.
///
/// A key → position index makes `insert`/`get` O(1), so parsing is linear in the
/// input; the list/struct views are one pass plus a sort of what they return.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(String, String)>,
    index: HashMap<String, usize>,
}

impl fmt::Debug for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.pairs.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

/// Test-only count of pairs and bytes touched, to check that work stays linear.
#[cfg(test)]
pub(crate) mod work {
    use std::cell::Cell;

    thread_local! {
        static UNITS: Cell<u64> = const { Cell::new(0) };
    }

    /// Add `n` units of work.
    pub(crate) fn add(n: usize) {
        UNITS.with(|u| u.set(u.get().saturating_add(n as u64)));
    }

    /// Units counted so far on this thread, and reset.
    pub(crate) fn take() -> u64 {
        UNITS.with(|u| u.replace(0))
    }
}

/// Count `n` units of work (no-op outside tests).
#[inline]
fn count_work(_n: usize) {
    #[cfg(test)]
    work::add(_n);
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn not_utf8() -> QueryError {
    QueryError::malformed("The query string is not valid UTF-8")
}

/// Strict `application/x-www-form-urlencoded` decoding of one component.
fn decode_strict(raw: &[u8]) -> Result<String, QueryError> {
    count_work(raw.len());
    if raw.iter().all(|&b| b != b'%' && b != b'+') {
        return String::from_utf8(raw.to_vec()).map_err(|_| not_utf8());
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'%' => {
                let h = bytes.next().copied().and_then(hex_val);
                let l = bytes.next().copied().and_then(hex_val);
                let (Some(h), Some(l)) = (h, l) else {
                    return Err(QueryError::malformed(
                        "The query string contains an invalid percent-encoding",
                    ));
                };
                out.push(h << 4 | l);
            }
            b'+' => out.push(b' '),
            b => out.push(b),
        }
    }
    String::from_utf8(out).map_err(|_| not_utf8())
}

/// Reject a key longer than [`MAX_KEY_BYTES`] or with a numeric segment beyond
/// [`MAX_LIST_INDEX`].
fn check_key(key: &str) -> Result<(), QueryError> {
    if key.len() > MAX_KEY_BYTES {
        return Err(limit_error(format_args!(
            "a parameter name is longer than {MAX_KEY_BYTES} bytes"
        )));
    }
    let too_large = key
        .split('.')
        .filter(|seg| !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()))
        .any(|seg| !seg.parse::<u32>().is_ok_and(|n| n <= MAX_LIST_INDEX));
    if too_large {
        return Err(limit_error(format_args!(
            "a list index is greater than {MAX_LIST_INDEX}"
        )));
    }
    Ok(())
}

/// Split `key` into `(N, rest)` if it is `prefix.N` or `prefix.N.rest`.
fn split_indexed<'a>(key: &'a str, prefix: &str) -> Option<(u32, &'a str)> {
    let rest = key.strip_prefix(prefix)?.strip_prefix('.')?;
    let (num, tail) = rest.split_once('.').unwrap_or((rest, ""));
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) || num.len() > 9 {
        return None;
    }
    num.parse().ok().map(|n| (n, tail))
}

impl Params {
    /// Empty parameters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parse a form body or URL query string. Rejects invalid percent-encoding and
    /// invalid UTF-8 (`MalformedQueryString`) and input beyond [`MAX_PARAMS`],
    /// [`MAX_KEY_BYTES`] or [`MAX_LIST_INDEX`] (`InvalidQueryParameter`).
    /// A repeated key: last value wins.
    pub fn parse(form: &[u8]) -> Result<Params, QueryError> {
        let mut p = Params::new();
        p.extend_from(form)?;
        Ok(p)
    }

    /// Parse and append more pairs (e.g. the URL query, then the form body).
    /// The parameter limit counts the pairs already present.
    pub fn extend_from(&mut self, form: &[u8]) -> Result<(), QueryError> {
        let mut seen = self.len();
        for pair in form.split(|&b| b == b'&') {
            if pair.is_empty() {
                continue;
            }
            seen += 1;
            if seen > MAX_PARAMS {
                return Err(limit_error(format_args!(
                    "the request has more than {MAX_PARAMS} parameters"
                )));
            }
            let mut kv = pair.splitn(2, |&b| b == b'=');
            let k = decode_strict(kv.next().unwrap_or_default())?;
            check_key(&k)?;
            let v = decode_strict(kv.next().unwrap_or_default())?;
            self.insert(k, v);
        }
        Ok(())
    }

    /// Parameters from an HTTP request: URL query first, then the body if it is a
    /// form (`POST` with `application/x-www-form-urlencoded`, or any non-empty body
    /// without a content type).
    pub fn from_request(parts: &http::request::Parts, body: &[u8]) -> Result<Params, QueryError> {
        let mut p = Params::new();
        if let Some(q) = parts.uri.query() {
            p.extend_from(q.as_bytes())?;
        }
        let ct = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let is_form = match ct {
            Some(ct) => ct.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            }),
            None => !body.is_empty(),
        };
        if is_form {
            p.extend_from(body)?;
        }
        Ok(p)
    }

    /// Set `k` to `v` (replacing an existing value in place).
    pub fn insert(&mut self, k: String, v: String) {
        count_work(1 + k.len());
        if let Some(slot) = self.index.get(&k).and_then(|&i| self.pairs.get_mut(i)) {
            slot.1 = v;
            return;
        }
        self.index.insert(k.clone(), self.pairs.len());
        self.pairs.push((k, v));
    }

    /// The value of `k`.
    pub fn get(&self, k: &str) -> Option<&str> {
        let i = *self.index.get(k)?;
        self.pairs.get(i).map(|(_, v)| v.as_str())
    }

    /// The value of `k`, or `MissingParameter`.
    pub fn required(&self, k: &str) -> Result<&str, QueryError> {
        self.get(k).ok_or_else(|| QueryError::missing_parameter(k))
    }

    /// Whether `k` is present.
    pub fn contains(&self, k: &str) -> bool {
        self.index.contains_key(k)
    }

    /// `Action`.
    pub fn action(&self) -> Option<&str> {
        self.get("Action")
    }

    /// `Version`.
    pub fn version(&self) -> Option<&str> {
        self.get("Version")
    }

    /// The values of `prefix.1`, `prefix.2`, … in numeric order (gaps allowed).
    /// `list("PolicyArns.member")`, EC2 `list("InstanceId")`.
    pub fn list(&self, prefix: &str) -> Vec<&str> {
        count_work(self.pairs.len());
        let mut items: Vec<(u32, &str)> = self
            .pairs
            .iter()
            .filter_map(|(k, v)| match split_indexed(k, prefix) {
                Some((n, "")) => Some((n, v.as_str())),
                _ => None,
            })
            .collect();
        items.sort_by_key(|(n, _)| *n);
        items.into_iter().map(|(_, v)| v).collect()
    }

    /// Structures `prefix.N.*` as sub-parameters with `prefix.N.` stripped, in
    /// numeric order: `structs("Tags.member")` → `[{Key, Value}, …]`.
    pub fn structs(&self, prefix: &str) -> Vec<Params> {
        count_work(self.pairs.len());
        let mut groups: BTreeMap<u32, Params> = BTreeMap::new();
        for (k, v) in &self.pairs {
            let Some((n, rest)) = split_indexed(k, prefix) else {
                continue;
            };
            if rest.is_empty() {
                continue;
            }
            groups
                .entry(n)
                .or_default()
                .insert(rest.to_owned(), v.clone());
        }
        groups.into_values().collect()
    }

    /// The members under `prefix.` with the prefix stripped:
    /// `sub("IamInstanceProfile")` → `{Name, Arn}`.
    pub fn sub(&self, prefix: &str) -> Params {
        count_work(self.pairs.len());
        let mut out = Params::new();
        for (k, v) in &self.pairs {
            let rest = k
                .strip_prefix(prefix)
                .and_then(|r| r.strip_prefix('.'))
                .filter(|r| !r.is_empty());
            if let Some(rest) = rest {
                out.insert(rest.to_owned(), v.clone());
            }
        }
        out
    }

    /// All pairs in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of pairs.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// Whether there are no pairs.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

impl<K: Into<String>, V: Into<String>> FromIterator<(K, V)> for Params {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut p = Params::new();
        for (k, v) in iter {
            p.insert(k.into(), v.into());
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_iam() {
        let p = Params::parse(
            b"Action=CreateUser&Version=2010-05-08&UserName=bob%2B1&Path=%2Fa%2F&Tags.member.2.Key=k2&Tags.member.1.Key=k1&Tags.member.1.Value=v+1&Tags.member.2.Value=&Tags.member.10.Key=k10",
        )
        .expect("parse");
        assert_eq!(p.action(), Some("CreateUser"));
        assert_eq!(p.version(), Some("2010-05-08"));
        assert_eq!(p.get("UserName"), Some("bob+1"));
        assert_eq!(p.required("Path"), Ok("/a/"));
        let e = p.required("Nope").expect_err("missing");
        assert_eq!(e.code, "MissingParameter");
        assert_eq!(e.message, "The request must contain the parameter Nope");
        let tags = p.structs("Tags.member");
        assert_eq!(tags.len(), 3);
        assert_eq!(tags[0].get("Key"), Some("k1"));
        assert_eq!(tags[0].get("Value"), Some("v 1"));
        assert_eq!(tags[1].get("Key"), Some("k2"));
        assert_eq!(tags[1].get("Value"), Some(""));
        assert_eq!(tags[2].get("Key"), Some("k10"));
        assert_eq!(tags[2].get("Value"), None);
    }

    #[test]
    fn lists() {
        let p = Params::parse(
            b"PolicyArns.member.2=b&PolicyArns.member.1=a&PolicyArns.member.10=c&PolicyArns.memberX.1=z&InstanceId.1=i-1&InstanceId.2=i-2&InstanceIdX.1=no&Filter.1.Name=tag:k&Filter.1.Value.1=v1&Filter.1.Value.2=v2&Filter.2.Name=instance-state-name&Filter.2.Value.1=running",
        )
        .expect("parse");
        assert_eq!(p.list("PolicyArns.member"), vec!["a", "b", "c"]);
        assert_eq!(p.list("InstanceId"), vec!["i-1", "i-2"]);
        assert!(p.list("Missing").is_empty());
        let f = p.structs("Filter");
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].get("Name"), Some("tag:k"));
        assert_eq!(f[0].list("Value"), vec!["v1", "v2"]);
        assert_eq!(f[1].list("Value"), vec!["running"]);
    }

    #[test]
    fn sub_and_dupes() {
        let p = Params::parse(b"IamInstanceProfile.Name=prof&IamInstanceProfile.Arn=arn&IamInstanceProfileX=1&A=1&B=2&A=3")
            .expect("parse");
        let s = p.sub("IamInstanceProfile");
        assert_eq!(s.get("Name"), Some("prof"));
        assert_eq!(s.get("Arn"), Some("arn"));
        assert_eq!(s.len(), 2);
        assert_eq!(p.get("A"), Some("3"));
        let keys: Vec<&str> = p.iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            vec![
                "IamInstanceProfile.Name",
                "IamInstanceProfile.Arn",
                "IamInstanceProfileX",
                "A",
                "B"
            ]
        );
    }

    #[test]
    fn strictness() {
        assert!(Params::parse(b"A=%zz").is_err());
        assert!(Params::parse(b"A=%4").is_err());
        assert!(Params::parse(b"A=%ff").is_err());
        assert!(Params::parse(b"A=\xff").is_err());
        assert_eq!(
            Params::parse(b"A=%C3%A9").expect("utf8").get("A"),
            Some("é")
        );
        assert_eq!(Params::parse(b"&&A&=x&").expect("ok").get("A"), Some(""));
        assert_eq!(Params::parse(b"=x").expect("ok").get(""), Some("x"));
    }

    fn body_of(n: usize, pair: impl Fn(usize) -> String) -> String {
        let mut body = String::from("Action=GetCallerIdentity&Version=2011-06-15");
        for i in 1..=n {
            body.push('&');
            body.push_str(&pair(i));
        }
        body
    }

    fn assert_limit(r: Result<Params, QueryError>, what: &str) {
        let e = r.expect_err("limit");
        assert_eq!(e.code, "InvalidQueryParameter");
        assert!(
            e.message.starts_with(
                "The AWS query string is malformed or does not adhere to AWS standards"
            ),
            "{}",
            e.message
        );
        assert!(e.message.contains(what), "{}", e.message);
    }

    #[test]
    fn parameter_count_limit() {
        let at_limit = body_of(MAX_PARAMS - 2, |i| format!("P{i}=v"));
        let p = Params::parse(at_limit.as_bytes()).expect("at the limit");
        assert_eq!(p.len(), MAX_PARAMS);
        let over = body_of(MAX_PARAMS - 1, |i| format!("P{i}=v"));
        assert_limit(Params::parse(over.as_bytes()), "more than 10000 parameters");
        // Repeated keys count too: they are work even if they add no pair.
        let repeats = body_of(MAX_PARAMS, |_| "A=1".to_owned());
        assert_limit(
            Params::parse(repeats.as_bytes()),
            "more than 10000 parameters",
        );
        // The URL query and the body share the limit.
        let (parts, ()) = http::Request::builder()
            .method("POST")
            .uri("/?Q1=a&Q2=b&Q3=c")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(())
            .expect("req")
            .into_parts();
        let r = Params::from_request(&parts, at_limit.as_bytes());
        assert_limit(r, "more than 10000 parameters");
    }

    #[test]
    fn issue_body_of_100k_parameters_is_refused() {
        // The issue's request: GetCallerIdentity with 100,000 form parameters (~1 MB).
        let body = body_of(100_000, |i| format!("Tags.member.{}.Key=k{i}", i % 50 + 1));
        assert!(body.len() > 1_000_000);
        work::take();
        assert_limit(Params::parse(body.as_bytes()), "more than 10000 parameters");
        // Refused after reading MAX_PARAMS pairs (a tenth of the body): the work
        // is bounded by the limit, not by the body.
        let units = work::take();
        assert!(
            units < body.len() as u64 / 2,
            "{units} units, {} bytes",
            body.len()
        );
    }

    #[test]
    fn key_length_limit() {
        let ok = format!("{}=v", "K".repeat(MAX_KEY_BYTES));
        assert!(Params::parse(ok.as_bytes()).is_ok());
        let long = format!("{}=v", "K".repeat(MAX_KEY_BYTES + 1));
        assert_limit(Params::parse(long.as_bytes()), "longer than 512 bytes");
        // Counted after decoding: %4B is one byte.
        let enc = format!("{}=v", "%4B".repeat(MAX_KEY_BYTES));
        assert!(Params::parse(enc.as_bytes()).is_ok());
    }

    #[test]
    fn list_index_limit() {
        let p = Params::parse(b"Tags.member.10000.Key=k&InstanceId.10000=i").expect("at limit");
        assert_eq!(p.structs("Tags.member").len(), 1);
        assert_eq!(p.list("InstanceId"), vec!["i"]);
        assert_limit(
            Params::parse(b"Tags.member.99999999.Key=k"),
            "list index is greater than 10000",
        );
        assert_limit(Params::parse(b"InstanceId.10001=i"), "list index");
        assert_limit(
            Params::parse(b"Filter.1.Value.99999999999999999999=v"),
            "list index",
        );
        // Digits inside a name are not indices.
        assert!(Params::parse(b"Ec2Id99999=x&X.1a.Y=z").is_ok());
    }

    /// Work units (bytes decoded, pairs hashed or visited) per input byte for
    /// parsing plus every view, over inputs of growing size and adversarial
    /// shapes. A quadratic step (a linear search per insert or per group) makes
    /// the ratio grow with n; a linear parser keeps it under a constant.
    #[test]
    fn work_is_linear_in_input() {
        type Shape = fn(usize) -> String;
        let shapes: [(&str, Shape); 6] = [
            ("distinct", |i| format!("P{i}=v")),
            ("repeated", |_| "A=v".to_owned()),
            ("list", |i| format!("InstanceId.{i}=i-{i}")),
            ("structs", |i| format!("Tags.member.{i}.Key=k")),
            ("nested", |i| format!("Filter.{}.Value.{i}=v", i % 7 + 1)),
            ("sub", |i| format!("M.{i}=v")),
        ];
        for (name, shape) in shapes {
            for n in [100, 1_000, 9_000] {
                let body = body_of(n, shape);
                work::take();
                let p = Params::parse(body.as_bytes()).expect("parse");
                let _ = p.list("InstanceId");
                for f in p.structs("Filter") {
                    let _ = f.list("Value");
                }
                let _ = p.structs("Tags.member");
                let _ = p.sub("M");
                let units = work::take();
                let per_byte = units as f64 / body.len() as f64;
                assert!(
                    per_byte < 8.0,
                    "{name} n={n}: {units} units for {} bytes",
                    body.len()
                );
            }
        }
    }

    #[test]
    fn views_keep_first_position_last_value() {
        let p = Params::parse(b"T.1.K=a&T.01.K=b&T.2.K=c&S.x=1&S.y=2&S.x=3").expect("parse");
        let t = p.structs("T");
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].get("K"), Some("b"));
        assert_eq!(t[0].len(), 1);
        let s = p.sub("S");
        assert_eq!(s.iter().collect::<Vec<_>>(), vec![("x", "3"), ("y", "2")]);
    }

    #[test]
    fn validation_message() {
        let e = QueryError::validation_null("UserName");
        assert_eq!(e.code, "ValidationError");
        assert_eq!(
            e.message,
            "1 validation error detected: Value null at 'userName' failed to satisfy constraint: Member must not be null"
        );
    }

    #[test]
    fn from_request() {
        let (parts, ()) = http::Request::builder()
            .method("POST")
            .uri("/?Action=GetUser")
            .header(
                "content-type",
                "application/x-www-form-urlencoded; charset=utf-8",
            )
            .body(())
            .expect("req")
            .into_parts();
        let p = Params::from_request(&parts, b"Version=2010-05-08&UserName=x").expect("ok");
        assert_eq!(p.action(), Some("GetUser"));
        assert_eq!(p.get("UserName"), Some("x"));
    }
}
