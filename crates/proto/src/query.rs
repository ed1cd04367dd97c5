//! AWS query protocol input.
//!
//! IAM and STS flatten lists as `X.member.N` and structures as
//! `Tags.member.N.Key`; EC2 flattens lists as `X.N` (`InstanceId.1`,
//! `Filter.1.Name`, `Filter.1.Value.1`). [`Params`] keeps the decoded pairs in
//! insertion order (a repeated key keeps its first position and its last value)
//! and offers list/struct views over them.

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

    /// HTTP status (always 400).
    pub fn http_status(&self) -> u16 {
        400
    }
}

/// Decoded query-protocol parameters, in insertion order.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl fmt::Debug for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.pairs.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Strict `application/x-www-form-urlencoded` decoding of one component.
fn decode_strict(raw: &[u8]) -> Result<String, QueryError> {
    if raw.iter().all(|&b| b != b'%' && b != b'+') {
        return String::from_utf8(raw.to_vec())
            .map_err(|_| QueryError::malformed("The query string is not valid UTF-8"));
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'%' => {
                let h = raw.get(i + 1).copied().and_then(hex_val);
                let l = raw.get(i + 2).copied().and_then(hex_val);
                let (Some(h), Some(l)) = (h, l) else {
                    return Err(QueryError::malformed(
                        "The query string contains an invalid percent-encoding",
                    ));
                };
                out.push(h << 4 | l);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| QueryError::malformed("The query string is not valid UTF-8"))
}

/// Split `key` into `(N, rest)` if it is `prefix.N` or `prefix.N.rest`.
fn split_indexed<'a>(key: &'a str, prefix: &str) -> Option<(u32, &'a str)> {
    let rest = key.strip_prefix(prefix)?.strip_prefix('.')?;
    let (num, tail) = match rest.find('.') {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, ""),
    };
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
    /// invalid UTF-8 (`MalformedQueryString`). A repeated key: last value wins.
    pub fn parse(form: &[u8]) -> Result<Params, QueryError> {
        let mut p = Params::new();
        p.extend_from(form)?;
        Ok(p)
    }

    /// Parse and append more pairs (e.g. the URL query, then the form body).
    pub fn extend_from(&mut self, form: &[u8]) -> Result<(), QueryError> {
        for pair in form.split(|&b| b == b'&') {
            if pair.is_empty() {
                continue;
            }
            let (k, v) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &b""[..]),
            };
            let k = decode_strict(k)?;
            let v = decode_strict(v)?;
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
        if let Some(slot) = self.pairs.iter_mut().find(|(ek, _)| *ek == k) {
            slot.1 = v;
        } else {
            self.pairs.push((k, v));
        }
    }

    /// The value of `k`.
    pub fn get(&self, k: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(ek, _)| ek == k)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `k`, or `MissingParameter`.
    pub fn required(&self, k: &str) -> Result<&str, QueryError> {
        self.get(k).ok_or_else(|| QueryError::missing_parameter(k))
    }

    /// Whether `k` is present.
    pub fn contains(&self, k: &str) -> bool {
        self.get(k).is_some()
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
        let mut groups: Vec<(u32, Params)> = Vec::new();
        for (k, v) in &self.pairs {
            let Some((n, rest)) = split_indexed(k, prefix) else {
                continue;
            };
            if rest.is_empty() {
                continue;
            }
            let group = match groups.iter().position(|(gn, _)| *gn == n) {
                Some(i) => &mut groups[i].1,
                None => {
                    groups.push((n, Params::new()));
                    let last = groups.len() - 1;
                    &mut groups[last].1
                }
            };
            group.pairs.push((rest.to_owned(), v.clone()));
        }
        groups.sort_by_key(|(n, _)| *n);
        groups.into_iter().map(|(_, p)| p).collect()
    }

    /// The members under `prefix.` with the prefix stripped:
    /// `sub("IamInstanceProfile")` → `{Name, Arn}`.
    pub fn sub(&self, prefix: &str) -> Params {
        Params {
            pairs: self
                .pairs
                .iter()
                .filter_map(|(k, v)| {
                    let rest = k.strip_prefix(prefix)?.strip_prefix('.')?;
                    (!rest.is_empty()).then(|| (rest.to_owned(), v.clone()))
                })
                .collect(),
        }
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
