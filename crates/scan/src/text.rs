//! The plain-text rules: key ids, secrets, session tokens, private keys.

use crate::{Kind, Match, account_from_key_id, entropy, preview};

/// How far (in bytes, either direction) a secret or session token may be
/// from an access key id to count as its pair (trufflehog pairs within a
/// chunk; a few lines of a config file or a JSON object fit in this).
pub const PAIR_WINDOW: usize = 1024;
/// trufflehog's threshold for a secret access key.
pub const SECRET_MIN_ENTROPY: f64 = 4.25;
/// gitleaks' threshold for a key id (drops `AKIAAAAAAAAAAAAAAAAA`).
const ID_MIN_ENTROPY: f64 = 3.0;
/// Random base64 of 100+ characters is far above this.
const TOKEN_MIN_ENTROPY: f64 = 4.5;
const TOKEN_MIN_LEN: usize = 100;
/// How far before a secret on its line the `aws … key` context is looked for.
const CONTEXT_WINDOW: usize = 64;
/// A private key body shorter than this (base64 characters) is a placeholder.
const PEM_MIN_BODY: usize = 64;
/// How far after `BEGIN` the `END` line is looked for.
const PEM_MAX_LEN: usize = 64 * 1024;

const ID_PREFIXES: [&str; 4] = ["AKIA", "ASIA", "ABIA", "ACCA"];
/// Words that, after `aws` on a secret's line, make it a credential
/// (detect-secrets' `key|pwd|pw|password|pass|token`, plus `secret`).
const SECRET_WORDS: [&str; 5] = ["key", "secret", "token", "pass", "pw"];
const TOKEN_WORDS: [&str; 2] = ["token", "session"];

fn is_word(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_b64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/'
}

fn is_token_char(b: u8) -> bool {
    is_b64(b) || matches!(b, b'-' | b'_')
}

fn is_upper_digit(b: u8) -> bool {
    b.is_ascii_uppercase() || b.is_ascii_digit()
}

/// A match before positions and previews are filled in.
struct Found {
    kind: Kind,
    start: usize,
    end: usize,
    key_id: Option<String>,
    paired: bool,
}

pub(crate) fn scan(text: &str) -> Vec<Match> {
    let ids = find_ids(text);
    let pems = find_private_keys(text);
    let in_pem = |s: usize| pems.iter().any(|&(a, b)| s >= a && s < b);
    let mut found: Vec<Found> = Vec::new();
    let mut paired_ids = vec![false; ids.len()];
    for (start, end) in runs(text, is_b64) {
        if end - start != 40 || in_pem(start) {
            continue;
        }
        let Some(s) = text.get(start..end) else {
            continue;
        };
        if s.contains("EXAMPLE") || entropy(s) < SECRET_MIN_ENTROPY {
            continue;
        }
        let near = nearest(text, &ids, start, |_| true);
        if let Some(i) = near
            && let Some(flag) = paired_ids.get_mut(i)
        {
            *flag = true;
        } else if !aws_context(text, start, &SECRET_WORDS) {
            continue;
        }
        found.push(Found {
            kind: Kind::SecretAccessKey,
            start,
            end,
            key_id: near.and_then(|i| id_text(text, &ids, i)),
            paired: near.is_some(),
        });
    }
    for (start, end) in runs(text, is_token_char) {
        if end - start < TOKEN_MIN_LEN || in_pem(start) {
            continue;
        }
        let Some(s) = text.get(start..end) else {
            continue;
        };
        if entropy(s) < TOKEN_MIN_ENTROPY {
            continue;
        }
        let near = nearest(text, &ids, start, |id| id.starts_with("ASIA"));
        if near.is_none() && !token_context(text, start) {
            continue;
        }
        found.push(Found {
            kind: Kind::SessionToken,
            start,
            end,
            key_id: near.and_then(|i| id_text(text, &ids, i)),
            paired: near.is_some(),
        });
    }
    for (i, &(start, end)) in ids.iter().enumerate() {
        found.push(Found {
            kind: Kind::AccessKeyId,
            start,
            end,
            key_id: text.get(start..end).map(str::to_string),
            paired: paired_ids.get(i).copied().unwrap_or(false),
        });
    }
    for &(start, end) in &pems {
        found.push(Found {
            kind: Kind::PrivateKey,
            start,
            end,
            key_id: None,
            paired: false,
        });
    }
    found.sort_by_key(|f| (f.start, f.kind));
    let lines = LineIndex::new(text);
    found
        .into_iter()
        .map(|f| {
            let (line, column) = lines.position(text, f.start);
            let account = f.key_id.as_deref().and_then(account_from_key_id);
            Match {
                kind: f.kind,
                line,
                column,
                start: f.start,
                end: f.end,
                preview: preview(text.get(f.start..f.end).unwrap_or("")),
                key_id: f.key_id,
                account,
                paired: f.paired,
                via: Vec::new(),
            }
        })
        .collect()
}

fn id_text(text: &str, ids: &[(usize, usize)], i: usize) -> Option<String> {
    let &(a, b) = ids.get(i)?;
    text.get(a..b).map(str::to_string)
}

/// The index of the key id closest to `pos` within [`PAIR_WINDOW`].
fn nearest(
    text: &str,
    ids: &[(usize, usize)],
    pos: usize,
    keep: impl Fn(&str) -> bool,
) -> Option<usize> {
    ids.iter()
        .enumerate()
        .filter(|&(_, &(a, b))| text.get(a..b).is_some_and(&keep))
        .map(|(i, &(a, _))| (i, a.abs_diff(pos)))
        .filter(|&(_, d)| d <= PAIR_WINDOW)
        .min_by_key(|&(_, d)| d)
        .map(|(i, _)| i)
}

/// Maximal runs of bytes accepted by `class`, as byte ranges.
fn runs(text: &str, class: fn(u8) -> bool) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = None;
    for (i, &b) in text.as_bytes().iter().enumerate() {
        match (class(b), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                out.push((s, i));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        out.push((s, text.len()));
    }
    out
}

/// gitleaks' key id rule, with its `EXAMPLE` allow-list and entropy floor.
fn find_ids(text: &str) -> Vec<(usize, usize)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + 20 <= b.len() {
        if b.get(i) != Some(&b'A') || !id_at(b, i) {
            i += 1;
            continue;
        }
        if let Some(id) = text.get(i..i + 20)
            && !id.ends_with("EXAMPLE")
            && entropy(id) >= ID_MIN_ENTROPY
        {
            out.push((i, i + 20));
        }
        i += 20;
    }
    out
}

fn id_at(b: &[u8], i: usize) -> bool {
    let Some(head) = b.get(i..i + 4) else {
        return false;
    };
    let prefix_ok = ID_PREFIXES.iter().any(|p| p.as_bytes() == head)
        || (head.starts_with(b"A3T") && head.get(3).copied().is_some_and(is_upper_digit));
    let before_ok = i == 0 || b.get(i - 1).is_none_or(|&c| !is_word(c));
    let after_ok = b.get(i + 20).is_none_or(|&c| !is_word(c));
    prefix_ok
        && before_ok
        && after_ok
        && b.get(i + 4..i + 20)
            .is_some_and(|r| r.iter().all(|&c| is_upper_digit(c)))
}

/// `-----BEGIN … PRIVATE KEY-----` … `-----END … PRIVATE KEY-----` with a
/// real body.
fn find_private_keys(text: &str) -> Vec<(usize, usize)> {
    const BEGIN: &str = "-----BEGIN ";
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(rel) = text.get(from..).and_then(|t| t.find(BEGIN)) {
        let start = from + rel;
        from = start + BEGIN.len();
        let Some(rest) = text.get(from..) else { break };
        let Some(label_end) = rest.find("-----") else {
            break;
        };
        let label = rest.get(..label_end).unwrap_or("");
        if !label.ends_with("PRIVATE KEY")
            || label.len() > 40
            || !label.bytes().all(|c| c.is_ascii_uppercase() || c == b' ')
        {
            continue;
        }
        let body_start = from + label_end + 5;
        let window_end = floor_boundary(text, body_start.saturating_add(PEM_MAX_LEN));
        let Some(window) = text.get(body_start..window_end) else {
            continue;
        };
        let end_marker = format!("-----END {label}-----");
        let Some(end_rel) = window.find(&end_marker) else {
            continue;
        };
        let body = window.get(..end_rel).unwrap_or("");
        if body.bytes().filter(|&c| is_b64(c)).count() < PEM_MIN_BODY || body.contains("EXAMPLE") {
            continue;
        }
        let end = body_start + end_rel + end_marker.len();
        out.push((start, end));
        from = end;
    }
    out
}

fn floor_boundary(text: &str, mut i: usize) -> usize {
    if i >= text.len() {
        return text.len();
    }
    while i > 0 && !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The text before `pos` on its line, at most [`CONTEXT_WINDOW`] bytes, lowercased.
fn line_before(text: &str, pos: usize) -> String {
    let mut from = pos.saturating_sub(CONTEXT_WINDOW);
    while from < pos && !text.is_char_boundary(from) {
        from += 1;
    }
    let pre = text.get(from..pos).unwrap_or("");
    let pre = pre.rsplit('\n').next().unwrap_or("");
    pre.to_ascii_lowercase()
}

/// detect-secrets' context: `aws`, then one of `words`, before `pos` on its line.
fn aws_context(text: &str, pos: usize, words: &[&str]) -> bool {
    let pre = line_before(text, pos);
    pre.find("aws")
        .and_then(|a| pre.get(a + 3..))
        .is_some_and(|rest| words.iter().any(|w| rest.contains(w)))
}

/// An STS token's context: `aws … token/session` or `security-token`.
fn token_context(text: &str, pos: usize) -> bool {
    aws_context(text, pos, &TOKEN_WORDS) || {
        let pre = line_before(text, pos);
        pre.contains("security-token") || pre.contains("security_token")
    }
}

/// Line starts, for 1-based line and column numbers.
struct LineIndex(Vec<usize>);

impl LineIndex {
    fn new(text: &str) -> Self {
        let mut v = vec![0];
        v.extend(
            text.bytes()
                .enumerate()
                .filter(|&(_, b)| b == b'\n')
                .map(|(i, _)| i + 1),
        );
        LineIndex(v)
    }

    fn position(&self, text: &str, pos: usize) -> (usize, usize) {
        let line = self.0.partition_point(|&s| s <= pos).max(1);
        let start = self.0.get(line - 1).copied().unwrap_or(0);
        let column = text.get(start..pos).map_or(1, |s| s.chars().count() + 1);
        (line, column)
    }
}

/// Line and column of `pos` in `text` (for decoded matches re-anchored to
/// their outer region).
pub(crate) fn position(text: &str, pos: usize) -> (usize, usize) {
    LineIndex::new(text).position(text, pos)
}
